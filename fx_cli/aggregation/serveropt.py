"""Server optimisers: treat the averaged update as a pseudo-gradient and take an optimiser step on the server.

Each round, per tensor: ``delta = weighted_average(updates) - base`` (the
direction the collaborators moved), then a subclass turns ``delta`` into a
step using its per-tensor slots (momentum, moments), and the next global
tensor is ``base + step``. Slots live in :meth:`state` under ``"<slot>:<tensor>"``.
Non-float tensors (counters) get the plain weighted average.
"""
from __future__ import annotations

from abc import abstractmethod
from typing import Sequence

import numpy as np

from fx_cli.aggregation.base import AggregationFunction, Contribution, check_contributions, to_base_dtype, work_dtype
from fx_cli.aggregation.fedavg import streaming_weighted_average
from fx_cli.errors import FxError


class ServerOptimizer(AggregationFunction):
    """Shared round logic of FedAvgM and the FedOpt family; subclasses define slots and the step."""

    slots: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._state: dict[str, np.ndarray] = {}

    def aggregate(self, tensor_name: str, base: np.ndarray, contributions: Sequence[Contribution],
                  round_num: int) -> np.ndarray:
        check_contributions(tensor_name, contributions, round_num)
        dtype = work_dtype(base)
        average = streaming_weighted_average(tensor_name, base.shape, dtype, contributions)
        if base.dtype.kind not in "fc":
            return to_base_dtype(average, base)
        delta = np.subtract(average, base, out=average)
        slots = {name: self._slot(name, tensor_name, base.shape, dtype) for name in self.slots}
        step = self.step(delta, slots)  # may reuse delta's buffer
        return to_base_dtype(np.add(base, step, out=step), base)

    @abstractmethod
    def step(self, delta: np.ndarray, slots: dict[str, np.ndarray]) -> np.ndarray:
        """Update ``slots`` in place from the pseudo-gradient ``delta``; return the step to add to the model."""

    def initial_slot(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A slot's value before the first round (zeros unless a subclass says otherwise)."""
        return np.zeros(shape, dtype=dtype)

    def state(self) -> dict[str, np.ndarray]:
        """The live slot arrays by ``"<slot>:<tensor>"``; they change in place, so save them before the next round."""
        return dict(self._state)

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        unknown = sorted(k for k in state if k.split(":", 1)[0] not in self.slots or ":" not in k)
        if unknown:
            raise FxError(f"saved aggregation state has entries {unknown[:3]} that {type(self).__name__} "
                          f"does not use (slots: {', '.join(self.slots)})",
                          "the plan's aggregation_type changed since the state was saved; "
                          "start a new experiment or restore the previous aggregation_type")
        self._state = {k: np.array(v) for k, v in state.items()}

    def _slot(self, name: str, tensor_name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        key = f"{name}:{tensor_name}"
        value = self._state.get(key)
        if value is None:
            value = self._state[key] = self.initial_slot(name, shape, dtype)
        elif value.shape != shape:
            raise FxError(f"saved {type(self).__name__} state '{key}' has shape {value.shape}, "
                          f"but tensor '{tensor_name}' has shape {shape}",
                          "the model changed since the state was saved; start a new experiment")
        elif value.dtype != dtype:
            value = self._state[key] = value.astype(dtype)
        return value
