"""Row filters (column, operator, value), as Ferdelance's QueryFilter; all filters of a query must hold."""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from fx_cli.analytics.table import Table
from fx_cli.errors import FxError

_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}
# Ferdelance's names for the same operators.
ALIASES = {"equals": "==", "not_equals": "!=", "less_than": "<", "less_equal": "<=", "greater_than": ">",
           "greater_equal": ">=", "eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
OPERATORS = (*_OPS, "in", "not in")


@dataclass(frozen=True)
class QueryFilter:
    """Keep rows whose ``column`` compares to ``value`` with ``operator``."""

    column: str
    operator: str
    value: Any

    @staticmethod
    def parse(raw: Any, where: str) -> QueryFilter:
        """From ``[column, operator, value]`` or ``{column, operator, value}``."""
        if isinstance(raw, dict):
            raw = [raw.get("column"), raw.get("operator"), raw.get("value")]
        if not (isinstance(raw, (list, tuple)) and len(raw) == 3 and isinstance(raw[0], str)):
            raise FxError(f"{where}: a filter is [column, operator, value], got {raw!r}")
        op = ALIASES.get(str(raw[1]).lower(), str(raw[1]).lower())
        if op not in OPERATORS:
            raise FxError(f"{where}: unknown operator {raw[1]!r}", "use one of: " + ", ".join(OPERATORS))
        if op in ("in", "not in") and not isinstance(raw[2], (list, tuple)):
            raise FxError(f"{where}: operator {op!r} needs a list of values")
        return QueryFilter(raw[0], op, list(raw[2]) if op in ("in", "not in") else raw[2])

    def mask(self, table: Table) -> np.ndarray:
        """Boolean mask of the rows that pass."""
        col = self.table_column(table)
        if self.operator in ("in", "not in"):
            hit = np.isin(col, np.asarray(self._coerce_many(col)))
            return hit if self.operator == "in" else ~hit
        return np.asarray(_OPS[self.operator](col, self._coerce(col, self.value)), dtype=bool)

    def table_column(self, table: Table) -> np.ndarray:
        """The filtered column."""
        return table.column(self.column)

    def _coerce(self, col: np.ndarray, value: Any) -> Any:
        if col.dtype.kind == "f":
            try:
                return float(value)
            except (TypeError, ValueError):
                raise FxError(f"filter on {self.column!r}: column is numeric, value {value!r} is not") from None
        if self.operator not in ("==", "!=", "in", "not in"):
            raise FxError(f"filter on {self.column!r}: text columns only support ==, !=, in, not in")
        return _text(value)

    def _coerce_many(self, col: np.ndarray) -> list[Any]:
        return [self._coerce(col, v) for v in self.value]


def _text(value: Any) -> str:
    return str(value)


def apply_filters(table: Table, filters: list[QueryFilter]) -> Table:
    """Rows passing every filter."""
    mask = np.ones(table.n_rows, dtype=bool)
    for f in filters:
        mask &= f.mask(table)
    return table.rows(mask)
