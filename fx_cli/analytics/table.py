"""A site's tabular data: named columns as numpy arrays (float64 for numbers, str otherwise)."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fx_cli.errors import FxError


@dataclass(frozen=True)
class Table:
    """Columns of equal length."""

    columns: dict[str, np.ndarray]

    @property
    def n_rows(self) -> int:
        """Number of rows."""
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def column(self, name: str) -> np.ndarray:
        """A column by name; an unknown name lists the ones there are."""
        if name not in self.columns:
            raise FxError(f"no column {name!r} in the site's data",
                          "columns here: " + ", ".join(sorted(self.columns)))
        return self.columns[name]

    def numeric(self, name: str) -> np.ndarray:
        """A column that must hold numbers."""
        col = self.column(name)
        if col.dtype.kind not in "fiub":
            raise FxError(f"column {name!r} holds text, not numbers", "name a numeric column")
        return col.astype(np.float64)

    def rows(self, mask: np.ndarray) -> Table:
        """The rows where ``mask`` is True."""
        return Table({k: v[mask] for k, v in self.columns.items()})


def _column(values: list[str]) -> np.ndarray:
    try:
        return np.array([float(v) if v.strip() != "" else np.nan for v in values], dtype=np.float64)
    except ValueError:
        return np.array(values, dtype=str)


def read_csv(path: str | Path) -> Table:
    """Read a CSV with a header row; columns whose every value parses as a number become float64."""
    p = Path(path)
    try:
        with open(p, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            body = list(reader)
    except OSError as exc:
        raise FxError(f"cannot read the site's data {p}: {exc.strerror}",
                      "check the data path in plan/data.yaml for this collaborator") from None
    if not header:
        raise FxError(f"{p} is empty", "write a CSV with a header row")
    if len(set(header)) != len(header):
        raise FxError(f"{p} has duplicate column names in its header")
    for i, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise FxError(f"{p}: line {i} has {len(row)} fields, the header has {len(header)}")
    return Table({name: _column([row[j] for row in body]) for j, name in enumerate(header)})


def from_columns(columns: dict[str, list[object] | np.ndarray]) -> Table:
    """A table from in-memory columns (numbers stay numbers, anything else becomes text)."""
    out: dict[str, np.ndarray] = {}
    for name, values in columns.items():
        arr = np.asarray(values)
        out[name] = arr.astype(np.float64) if arr.dtype.kind in "fiub" else arr.astype(str)
    lengths = {len(v) for v in out.values()}
    if len(lengths) > 1:
        raise FxError("columns have different lengths: " + ", ".join(f"{k}={len(v)}" for k, v in out.items()))
    return Table(out)
