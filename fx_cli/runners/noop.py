"""A runner with one tiny tensor, for certificate and connectivity checks."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from fx_cli.errors import FxError
from fx_cli.runners.base import TaskResult, TaskRunner, fit_problems


class NoOpData:
    def __init__(self, data_path: str | None = None, **_: Any) -> None:
        self.data_path = data_path

    @classmethod
    def check_data_path(cls, data_path: str, workspace: object, **_: Any) -> None:
        """Any data path will do: this loader reads nothing."""

    def train_size(self) -> int:
        return 1

    def valid_size(self) -> int:
        return 1


class NoOpRunner(TaskRunner):
    """Model: ``dummy_tensor`` = 1.0 (as OpenFL's no-op template). Tasks change nothing."""

    def __init__(self, data_loader: NoOpData | None = None) -> None:
        super().__init__(data_loader)
        self.tensor = np.array(1.0, dtype=np.float32)

    def get_tensors(self, with_opt_vars: bool = False) -> dict[str, np.ndarray]:
        return {"dummy_tensor": self.tensor}

    def set_tensors(self, tensors: Mapping[str, np.ndarray], with_opt_vars: bool = False) -> None:
        problems = fit_problems({"dummy_tensor": ()}, {}, tensors)
        if problems:
            raise FxError("the tensors do not fit the no-op model:\n" + "\n".join(f"  - {p}" for p in problems),
                          "the model file was made for another plan; the no-op model is one scalar 'dummy_tensor'")
        self.tensor = np.asarray(tensors["dummy_tensor"], dtype=np.float32)

    def train_task(self, round_num: int, **kwargs: Any) -> TaskResult:
        return TaskResult({"loss": 0.0}, {"dummy_tensor": self.tensor})

    def validate_task(self, round_num: int, **kwargs: Any) -> TaskResult:
        return TaskResult({"accuracy": 1.0})
