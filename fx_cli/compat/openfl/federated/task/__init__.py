"""``openfl.federated.task``: the task-runner base class; Keras and PyTorch runners load on first use."""
from typing import Any

from .runner import TaskRunner

__all__ = ["KerasTaskRunner", "PyTorchTaskRunner", "TaskRunner"]


def __getattr__(name: str) -> Any:
    # Keras/PyTorch are imported only when a workspace asks for their runner.
    if name == "KerasTaskRunner":
        from .runner_keras import KerasTaskRunner

        return KerasTaskRunner
    if name == "PyTorchTaskRunner":
        from .runner_pt import PyTorchTaskRunner

        return PyTorchTaskRunner
    raise AttributeError(f"module 'openfl.federated.task' has no attribute {name!r}")
