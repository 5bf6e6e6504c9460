"""OpenFL's record types: a tensor's key in the tensor database, a task result's key, a metric."""
from __future__ import annotations

from typing import Any, NamedTuple


class TensorKey(NamedTuple):
    """``(tensor_name, origin, round_number, report, tags)``; origin ``GLOBAL``/``LOCAL`` in required keys."""

    tensor_name: str
    origin: str
    round_number: int
    report: bool
    tags: tuple[str, ...]


class TaskResultKey(NamedTuple):
    task_name: str
    owner: str
    round_number: int


class Metric(NamedTuple):
    """A named metric value (a scalar or 0-d array)."""

    name: str
    value: Any


class LocalTensor(NamedTuple):
    col_name: str
    tensor: Any
    weight: float
