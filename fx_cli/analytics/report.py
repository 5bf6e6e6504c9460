"""Results as a file (save/analytics.json) and as a table for people."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from fx_cli.atomic import atomic_write


def plain(value: Any) -> Any:
    """JSON-ready: arrays and tuples as lists, non-finite floats as null."""
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_results(path: str | Path, results: dict[str, Any]) -> None:
    """Write the results atomically as JSON."""
    with atomic_write(path) as fh:
        fh.write(json.dumps(plain(results), indent=2, allow_nan=False).encode())


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _rows(name: str, res: dict[str, Any]) -> list[list[str]]:
    notes = []
    if res.get("noise"):
        notes.append(f"{res['noise']['mechanism']} eps={res['noise']['epsilon']:g}")
    if res.get("refused"):
        notes.append("refused: " + ", ".join(sorted(res["refused"])))
    if res.get("suppressed"):
        notes.append("suppressed at: " + ", ".join(sorted(res["suppressed"])))
    if res.get("error"):
        notes.append(res["error"])
    cells: list[tuple[str, Any, Any]] = []
    per = res.get("groups") or ({"": res} if ("value" in res or "counts" in res or "quantiles" in res) else {})
    for group, v in per.items():
        if "counts" in v:
            cells.append((group, "counts " + " ".join(_fmt(c) for c in v["counts"]), None))
        elif "quantiles" in v:
            cells.append((group, " ".join(f"q{q}={_fmt(x)}" for q, x in v["quantiles"].items()), v.get("n")))
        else:
            cells.append((group, v.get("value"), v.get("n")))
    if not cells:
        cells.append(("", None, None))
    return [[name if i == 0 else "", str(g), _fmt(val), _fmt(n), "; ".join(notes) if i == 0 else ""]
            for i, (g, val, n) in enumerate(cells)]


def format_table(results: dict[str, Any]) -> str:
    """One line per query and group: query, group, value, n, notes."""
    rows = [["query", "group", "value", "n", "notes"]]
    for name, res in results.items():
        rows.extend(_rows(name, res))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
