"""FedAdagrad, FedAdam and FedYogi: adaptive server optimisers of Reddi et al. 2021, "Adaptive Federated Optimization".

Per tensor, with ``delta`` = weighted average - global tensor (Algorithm 2 of the paper)::

    m = beta_1 * m + (1 - beta_1) * delta
    v = v + delta**2                                          (FedAdagrad)
    v = beta_2 * v + (1 - beta_2) * delta**2                  (FedAdam)
    v = v - (1 - beta_2) * delta**2 * sign(v - delta**2)      (FedYogi)
    next = base + learning_rate * m / (sqrt(v) + tau)

As in the paper there is no bias correction, ``m`` starts at 0 and ``v`` at
``tau**2`` (the paper asks for v >= tau**2). Defaults follow the paper's
experiments: beta_1 = 0.9, beta_2 = 0.99, tau = 1e-3; the server learning rate
(0.01) is a starting point for the paper's grid search, tune it per task.
FedAdagrad defaults to beta_1 = 0 (classic Adagrad, no momentum). ``m`` and
``v`` are persisted in :meth:`state` as ``"m:<tensor>"`` and ``"v:<tensor>"``.
"""
from __future__ import annotations

import numpy as np

from fx_cli.aggregation.serveropt import ServerOptimizer


class _FedOpt(ServerOptimizer):
    """The shared first moment and step; subclasses update the second moment ``v`` in place."""

    slots = ("m", "v")

    def __init__(self, learning_rate: float, beta_1: float, beta_2: float, tau: float) -> None:
        if learning_rate <= 0 or tau <= 0 or not 0 <= beta_1 < 1 or not 0 <= beta_2 < 1:
            raise ValueError(f"{type(self).__name__} needs learning_rate > 0, tau > 0 and betas in [0, 1)")
        super().__init__()
        self.learning_rate = learning_rate
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.tau = tau

    def initial_slot(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return np.full(shape, self.tau ** 2 if name == "v" else 0.0, dtype=dtype)

    def step(self, delta: np.ndarray, slots: dict[str, np.ndarray]) -> np.ndarray:
        m, v = slots["m"], slots["v"]
        # In place on delta's buffer: no tensor-sized temporaries beyond the slots.
        scaled = np.multiply(delta, 1 - self.beta_1, out=delta)
        np.multiply(m, self.beta_1, out=m)
        m += scaled
        squared = np.square(scaled, out=scaled)
        squared /= (1 - self.beta_1) ** 2
        self.update_v(v, squared)
        denominator = np.sqrt(v, out=squared)
        denominator += self.tau
        step: np.ndarray = np.divide(m, denominator, out=denominator)
        step *= self.learning_rate
        return step

    def update_v(self, v: np.ndarray, squared: np.ndarray) -> None:
        """Update ``v`` in place from delta**2 (``squared`` may be overwritten)."""
        raise NotImplementedError


class FedAdagrad(_FedOpt):
    """Server Adagrad: v accumulates every squared pseudo-gradient."""

    def __init__(self, learning_rate: float = 0.01, tau: float = 1e-3, beta_1: float = 0.0) -> None:
        super().__init__(learning_rate, beta_1, 0.0, tau)

    def update_v(self, v: np.ndarray, squared: np.ndarray) -> None:
        v += squared


class FedAdam(_FedOpt):
    """Server Adam (without bias correction, as in the paper)."""

    def __init__(self, learning_rate: float = 0.01, beta_1: float = 0.9, beta_2: float = 0.99,
                 tau: float = 1e-3) -> None:
        super().__init__(learning_rate, beta_1, beta_2, tau)

    def update_v(self, v: np.ndarray, squared: np.ndarray) -> None:
        v *= self.beta_2
        squared *= 1 - self.beta_2
        v += squared


class FedYogi(_FedOpt):
    """Server Yogi: v moves towards delta**2 by a bounded additive step, so it grows slower than Adam's."""

    def __init__(self, learning_rate: float = 0.01, beta_1: float = 0.9, beta_2: float = 0.99,
                 tau: float = 1e-3) -> None:
        super().__init__(learning_rate, beta_1, beta_2, tau)

    def update_v(self, v: np.ndarray, squared: np.ndarray) -> None:
        direction = np.sign(v - squared)
        direction *= squared
        direction *= 1 - self.beta_2
        v -= direction
