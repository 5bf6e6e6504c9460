"""FedAvg: the weighted average of the collaborators' tensors, folded in one update at a time."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from fx_cli.aggregation.base import (AggregationFunction, Contribution, check_contributions, normalised_weights,
                                     to_base_dtype, update_reader, work_dtype)

# Elements per slice of the in-place fold: the scratch buffer stays ~8 MiB whatever the tensor size.
FOLD_CHUNK = 1 << 20


def streaming_weighted_average(tensor_name: str, shape: tuple[int, ...], dtype: np.dtype,
                               contributions: Sequence[Contribution]) -> np.ndarray:
    """Sum of weight * tensor over contributions, one at a time, into one ``dtype`` accumulator.

    Contributions are folded in the order given, so the result is deterministic.
    Peak memory: the accumulator and a small scratch slice, plus one whole
    update for contributions without ``read_slice``.
    """
    if not contributions:
        return np.zeros(shape, dtype=dtype)
    weights = normalised_weights(contributions)
    acc = np.empty(shape, dtype=dtype)  # the first contribution's products fill it: no zeroing, no first add
    flat = acc.reshape(-1)
    scratch = np.empty(min(flat.size, FOLD_CHUNK), dtype=dtype)
    for i, (c, w) in enumerate(zip(contributions, weights)):
        read = update_reader(c, tensor_name, shape)
        for start in range(0, flat.size, FOLD_CHUNK):
            stop = min(start + FOLD_CHUNK, flat.size)
            part = flat[start:stop] if i == 0 else scratch[:stop - start]
            # dtype= makes the product itself float64 when accumulating in float64 (not float32, then widened)
            np.multiply(read(start, stop), w, out=part, dtype=dtype, casting="unsafe")
            if i:
                np.add(flat[start:stop], part, out=flat[start:stop])
        del read  # frees a loaded update before the next one is read
    return acc


class WeightedAverage(AggregationFunction):
    """FedAvg (the default): sum of weight_i * tensor_i, weights from the collaborators' data sizes.

    Streams: updates are read one at a time (a slice at a time when the
    contributions offer ``read_slice``) and folded into one accumulator, so
    memory is O(tensor) whatever the number of collaborators. The
    accumulator has the tensor's own float width (float32 for float32 models:
    relative rounding error about n * 6e-8 for n collaborators); set
    ``accumulate_float64: true`` to sum in float64 at twice the memory.
    Integer tensors are averaged in float64 and rounded to nearest.
    """

    def __init__(self, accumulate_float64: bool = False) -> None:
        self.accumulate_float64 = accumulate_float64

    def aggregate(self, tensor_name: str, base: np.ndarray, contributions: Sequence[Contribution],
                  round_num: int) -> np.ndarray:
        check_contributions(tensor_name, contributions, round_num)
        dtype = np.dtype(np.float64) if self.accumulate_float64 else work_dtype(base)
        result = streaming_weighted_average(tensor_name, base.shape, dtype, contributions)
        return to_base_dtype(result, base)
