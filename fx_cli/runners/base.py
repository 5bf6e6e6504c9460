"""The task-runner interface every runner (shipped or in a workspace's src/) implements."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np


@dataclass
class TaskResult:
    """What a task returns: scalar metrics, and for training the updated tensors."""

    metrics: dict[str, float]
    tensors: dict[str, np.ndarray] = field(default_factory=dict)


class TaskRunner(ABC):
    """Holds a model and runs tasks on local data.

    Tensors are exchanged as ``{stable_name: numpy array}``.  ``train_task`` and
    ``validate_task`` receive the task's plan ``kwargs`` (minus ``apply``, which
    the collaborator handles by loading the global or keeping the local model).
    """

    receives_apply = False      # True: the task's ``apply`` kwarg is passed through (OpenFL runners read it)
    metrics_follow_plan = True  # False: the runner names its own metrics; ``kwargs.metrics`` does not filter them

    def __init__(self, data_loader: Any = None, **settings: Any) -> None:
        self.data_loader = data_loader

    def bind(self, collaborator: str, opt_treatment: str) -> None:
        """Told once by the collaborator before the first task: its name and the plan's ``opt_treatment``."""

    @abstractmethod
    def get_tensors(self, with_opt_vars: bool = False) -> dict[str, np.ndarray]:
        """The model's named tensors (plus optimizer state when asked)."""

    @abstractmethod
    def set_tensors(self, tensors: Mapping[str, np.ndarray], with_opt_vars: bool = False) -> None:
        """Load named tensors into the model; unknown or missing names raise."""

    @abstractmethod
    def train_task(self, round_num: int, **kwargs: Any) -> TaskResult:
        """Train locally; return metrics and the trained tensors."""

    @abstractmethod
    def validate_task(self, round_num: int, **kwargs: Any) -> TaskResult:
        """Evaluate the current model on the validation split; return metrics."""

    def tensor_buffers(self) -> dict[str, np.ndarray]:
        """Arrays the collaborator may write the next global model into, in place, before ``set_tensors``.

        Optional. A runner whose model lives in numpy arrays returns them (C-contiguous, writable, the
        dtype and shape of the model's tensors); the download then streams straight into the model and a
        collaborator holds one model, not two. ``set_tensors`` must accept its own arrays back. Default:
        none, and the global model is downloaded into new arrays.
        """
        return {}

    def train_data_size(self) -> int:
        return int(getattr(self.data_loader, "train_size", lambda: 0)())

    def valid_data_size(self) -> int:
        return int(getattr(self.data_loader, "valid_size", lambda: 0)())

    def reset_optimizer(self) -> None:
        """Forget optimizer state (opt_treatment RESET). Runners without one do nothing."""

    def optimizer_tensor_names(self) -> list[str]:
        """Names of optimizer tensors in ``get_tensors(with_opt_vars=True)``."""
        return []

    def save_native(self, path: str) -> str:
        """Write the model in the framework's own format; returns the written path."""
        raise NotImplementedError(f"{type(self).__name__} has no native model format")

    def load_native(self, path: str) -> None:
        """Load weights from a framework-native model file."""
        raise NotImplementedError(f"{type(self).__name__} has no native model format")


def fit_problems(required: Mapping[str, tuple[int, ...]], optional: Mapping[str, tuple[int, ...]],
                 found: Mapping[str, np.ndarray]) -> list[str]:
    """Every missing, unknown or mis-shaped tensor of ``found``, one line each."""
    problems = [f"tensor '{name}': missing (the model expects shape {shape})"
                for name, shape in required.items() if name not in found]
    known = {**optional, **required}
    for name, array in found.items():
        shape = tuple(np.shape(array))
        if name not in known:
            problems.append(f"tensor '{name}': unknown to the model (found shape {shape})")
        elif shape != known[name]:
            problems.append(f"tensor '{name}': the model expects shape {known[name]}, found {shape}")
    return problems
