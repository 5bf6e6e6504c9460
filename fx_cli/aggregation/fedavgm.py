"""FedAvgM: federated averaging with server momentum (Hsu et al. 2019, "Measuring the Effects of
Non-Identical Data Distribution for Federated Visual Classification")."""
from __future__ import annotations

import numpy as np

from fx_cli.aggregation.serveropt import ServerOptimizer


class FedAvgM(ServerOptimizer):
    """velocity <- momentum * velocity + delta;  next = base + server_learning_rate * velocity.

    ``delta`` is the weighted average minus the current global tensor. With
    ``momentum: 0`` and ``server_learning_rate: 1`` this is exactly FedAvg.
    The velocity of each tensor is persisted in :meth:`state` as ``"momentum:<tensor>"``.
    """

    slots = ("momentum",)

    def __init__(self, server_learning_rate: float = 1.0, momentum: float = 0.9) -> None:
        if server_learning_rate <= 0 or not 0 <= momentum < 1:
            raise ValueError("FedAvgM needs server_learning_rate > 0 and 0 <= momentum < 1")
        super().__init__()
        self.server_learning_rate = server_learning_rate
        self.momentum = momentum

    def step(self, delta: np.ndarray, slots: dict[str, np.ndarray]) -> np.ndarray:
        velocity = slots["momentum"]
        np.multiply(velocity, self.momentum, out=velocity)
        np.add(velocity, delta, out=velocity)
        step: np.ndarray = np.multiply(velocity, self.server_learning_rate, out=delta)
        return step
