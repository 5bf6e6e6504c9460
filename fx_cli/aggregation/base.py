"""The aggregation interface: how the aggregator turns collaborator updates into the next model.

Writing your own aggregation function
-------------------------------------
1. In the workspace, create ``src/myagg.py`` with a subclass of
   :class:`AggregationFunction`::

       import numpy as np
       from fx_cli.aggregation import AggregationFunction, Contribution

       class TrimmedMean(AggregationFunction):
           def __init__(self, trim: int = 1) -> None:
               self.trim = trim

           def aggregate(self, tensor_name, base, contributions, round_num):
               stack = np.stack([c.load() for c in contributions])
               stack.sort(axis=0)
               kept = stack[self.trim:len(stack) - self.trim]
               return kept.mean(axis=0).astype(base.dtype)

2. Name it for a task in ``plan/plan.yaml``::

       tasks:
         train:
           aggregation_type:
             template: src.myagg.TrimmedMean
             settings: {trim: 1}

``aggregate`` is called once per tensor per round, after the round ends, with
``base`` (the global tensor the collaborators started from) and one
:class:`Contribution` per collaborator, sorted by collaborator name. Each
``load()`` reads that collaborator's tensor from disk: call it once and drop
the array when done, so memory stays small. Return an array of ``base``'s
shape; it is cast to ``base``'s dtype. Settings must be constructor keywords
with type hints (the plan checker validates them). Server-side state that
must survive a restart (momentum, moments) goes in :meth:`state` as numpy
arrays and comes back through :meth:`load_state`; never keep it anywhere else.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from fx_cli.errors import FxError


@dataclass(frozen=True)
class Contribution:
    """One collaborator's update of one tensor.

    ``read_slice(start, stop)``, when given, returns elements ``[start, stop)``
    of the flattened tensor (C order). Streaming functions (WeightedAverage and
    the server optimisers) then read updates a slice at a time and never hold a
    whole update: memory is the accumulator plus a few MiB. See
    :func:`file_slice_reader` for spill files of raw little-endian elements.
    """

    collaborator: str
    weight: float  # normalised: the weights of one call sum to 1
    load: Callable[[], np.ndarray]  # reads the tensor (from a spill file); call once, drop after use
    read_slice: Callable[[int, int], np.ndarray] | None = None


def file_slice_reader(path: str | Path, dtype: np.dtype | str, offset: int = 0) -> Callable[[int, int], np.ndarray]:
    """A ``read_slice`` for a file holding the tensor as raw little-endian ``dtype`` elements from ``offset``."""
    dt = np.dtype(dtype).newbyteorder("<")

    def read(start: int, stop: int) -> np.ndarray:
        with open(path, "rb") as fh:
            fh.seek(offset + start * dt.itemsize)
            part = np.fromfile(fh, dtype=dt, count=stop - start)
        if part.size != stop - start:
            raise FxError(f"spill file {path} ends after {start + part.size} elements, expected at least {stop}",
                          "the aggregator's spill directory was modified or the disk is full; rerun the round")
        return part

    return read


class AggregationFunction(ABC):
    """Turns the collaborators' versions of one tensor into the next global tensor."""

    @abstractmethod
    def aggregate(self, tensor_name: str, base: np.ndarray, contributions: Sequence[Contribution],
                  round_num: int) -> np.ndarray:
        """The next global tensor. ``base`` is the current global tensor (what the collaborators started from)."""

    def state(self) -> dict[str, np.ndarray]:
        """Server-side state to persist between rounds (default: none)."""
        return {}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state` returned (after a restart)."""

    def describe(self) -> str:
        """A short name for logs."""
        return type(self).__name__

    def finished(self) -> bool:
        """True when the run is complete after this round (a STAR analysis that converged); default never."""
        return False


def check_contributions(tensor_name: str, contributions: Sequence[Contribution], round_num: int) -> None:
    """Raise when a call has no contributions or unusable weights."""
    if not contributions:
        raise FxError(f"no collaborator updates to aggregate for tensor '{tensor_name}' in round {round_num}",
                      "the straggler policy must let at least one collaborator report before a round ends")
    for c in contributions:
        if not math.isfinite(c.weight) or c.weight < 0:
            raise FxError(f"collaborator '{c.collaborator}' has weight {c.weight} for tensor '{tensor_name}'",
                          "weights come from data sizes and must be finite and non-negative")


def normalised_weights(contributions: Sequence[Contribution]) -> list[float]:
    """The weights scaled to sum to 1 (equal weights when they are all zero)."""
    total = math.fsum(c.weight for c in contributions)
    if total <= 0:
        return [1.0 / len(contributions)] * len(contributions)
    return [c.weight / total for c in contributions]


def load_checked(c: Contribution, tensor_name: str, shape: tuple[int, ...]) -> np.ndarray:
    """``c.load()``, refusing an update whose shape differs from the global tensor."""
    array = np.asarray(c.load())
    if array.shape != shape:
        raise FxError(f"collaborator '{c.collaborator}' sent tensor '{tensor_name}' with shape {array.shape}, "
                      f"but the global tensor has shape {shape}",
                      "the collaborator's model does not match the plan's model; check its task runner settings")
    return array


def update_reader(c: Contribution, tensor_name: str, shape: tuple[int, ...]) -> Callable[[int, int], np.ndarray]:
    """Elements [start, stop) of ``c``'s flattened update: via ``read_slice``, else from one ``load()``."""
    if c.read_slice is None:
        update = load_checked(c, tensor_name, shape).reshape(-1)
        return lambda start, stop: update[start:stop]
    read_slice, size = c.read_slice, math.prod(shape)

    def read(start: int, stop: int) -> np.ndarray:
        part = np.asarray(read_slice(start, stop)).reshape(-1)
        if part.size != stop - start:
            raise FxError(f"collaborator '{c.collaborator}' update of tensor '{tensor_name}' gave {part.size} "
                          f"elements for [{start}, {stop}) of {size}",
                          "the spilled update does not match the global tensor's shape; rerun the round")
        return part

    return read


def work_dtype(base: np.ndarray) -> np.dtype:
    """The float dtype to compute in: the base's own float width (at least float32)."""
    return np.result_type(base.dtype, np.float32) if base.dtype.kind in "fc" else np.dtype(np.float64)


def to_base_dtype(result: np.ndarray, base: np.ndarray) -> np.ndarray:
    """``result`` cast to ``base``'s dtype (integers rounded to nearest); no copy when it already is."""
    if result.dtype == base.dtype:
        return result
    if base.dtype.kind in "iub":
        result = np.rint(result)
    return result.astype(base.dtype)
