"""``openfl.federated``: TaskRunner and DataLoader, with the framework runners loaded on first use."""
from typing import Any

from .data import DataLoader, KerasDataLoader, PyTorchDataLoader
from .task import TaskRunner

__all__ = ["DataLoader", "KerasDataLoader", "KerasTaskRunner", "PyTorchDataLoader", "PyTorchTaskRunner",
           "TaskRunner"]


def __getattr__(name: str) -> Any:
    if name in ("KerasTaskRunner", "PyTorchTaskRunner"):
        from . import task

        return getattr(task, name)
    raise AttributeError(f"module 'openfl.federated' has no attribute {name!r}")
