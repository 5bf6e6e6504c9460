"""End of a round: the next global model, tensor by tensor from the spilled updates, and the round's metrics.

Contributions are always passed in collaborator-name order and read lazily
from disk, so the result is deterministic (a resumed run is bit-identical)
and memory stays about one tensor per stage whatever the number of updates.
"""
from __future__ import annotations

import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from fx_cli.aggregation import AggregationFunction, Contribution
from fx_cli.aggregator.claims import ClaimPolicy, effective_sizes
from fx_cli.aggregator.intake import load_spilled, spilled_slices
from fx_cli.aggregator.modelstore import RoundModel, write_round_model
from fx_cli.aggregator.state import UpdateRecord
from fx_cli.errors import FxError
from fx_cli.faults import fault

log = logging.getLogger("fx.aggregator")


def model_updates(records: Sequence[UpdateRecord], task_order: Sequence[str]) -> list[UpdateRecord]:
    """Each collaborator's model update of the round (its last task that returned tensors), by name."""
    rank = {t: i for i, t in enumerate(task_order)}
    latest: dict[str, UpdateRecord] = {}
    for rec in sorted(records, key=lambda r: (r.collaborator, rank.get(r.task, len(rank)), r.task)):
        if rec.path is not None:
            latest[rec.collaborator] = rec
    return [latest[c] for c in sorted(latest)]


def choose_function(updates: Sequence[UpdateRecord], functions: dict[str, AggregationFunction],
                    task_order: Sequence[str]) -> tuple[str, AggregationFunction]:
    """The aggregation of the round's training task (the first in plan order when several trained)."""
    tasks = sorted({u.task for u in updates}, key=lambda t: (task_order.index(t) if t in task_order else 1e9, t))
    if len(tasks) > 1:
        log.warning("updates of tasks %s are aggregated together with the aggregation_type of '%s'",
                    ", ".join(tasks), tasks[0])
    return tasks[0], functions[tasks[0]]


def next_model(model: RoundModel, updates: Sequence[UpdateRecord], function: AggregationFunction,
               target: Path, weights: Sequence[float] | None = None, reuse: Path | None = None) -> RoundModel:
    """Aggregate every tensor of ``model`` over ``updates`` and write the next round's model file.

    ``weights`` are the data sizes the claim policy accepted (default: the claims). A function with a
    ``prepare`` method (Krum, norm bounds) first sees every tensor of every update, one tensor at a time.
    """
    weights = [float(u.data_size) for u in updates] if weights is None else list(weights)
    total = math.fsum(weights) or 1.0
    crc_index = {e.name: i for i, e in enumerate(model.entries)}

    def contributions(name: str) -> list[Contribution]:
        return [Contribution(u.collaborator, w / total, _loader(u, model, name, crc_index[name]),
                             _slices(u, model, name, crc_index[name])) for u, w in zip(updates, weights)]

    prepare = getattr(function, "prepare", None)
    if updates and callable(prepare):
        prepare(((name, base, contributions(name)) for name, base in model.tensors()), model.round)

    def tensors() -> Iterator[tuple[str, np.ndarray]]:
        for i, (name, base) in enumerate(model.tensors(mapped=True)):
            if i == len(model.entries) // 2:
                fault("aggregator:aggregating")  # about half of the next model is in its temporary file
            if not updates:
                yield name, base
                continue
            result = np.asarray(function.aggregate(name, base, contributions(name), model.round))
            if result.shape != base.shape:
                raise FxError(f"{function.describe()} returned shape {result.shape} for tensor '{name}', "
                              f"the model has {base.shape}", "fix the aggregation function in the workspace's src/")
            if result.dtype.kind in "fc" and not np.isfinite(result).all():
                # Finite updates can still overflow (float32 sums near 3e38): keep the tensor, never a crash
                # that every restart would repeat.
                log.error("round %d: %s gave NaN/Inf for tensor '%s' from the updates of %s; the tensor keeps its "
                          "previous value this round", model.round + 1, function.describe(), name,
                          ", ".join(u.collaborator for u in updates))
                result = base
            yield name, result

    return write_round_model(target, tensors(), model.round + 1, reuse=reuse)


def _unreadable(update: UpdateRecord, model: RoundModel, err: OSError) -> FxError:
    return FxError(f"round {model.round + 1}: the update of '{update.collaborator}' cannot be read: {err}",
                   "the aggregator's local_state/ disk is damaged; restore it or start a new run")


def _loader(update: UpdateRecord, model: RoundModel, name: str, index: int) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        try:
            return load_spilled(Path(str(update.path)), model, name, update.crcs[index])
        except OSError as err:
            raise _unreadable(update, model, err) from None
    return load


def _slices(update: UpdateRecord, model: RoundModel, name: str, index: int) -> Callable[[int, int], np.ndarray]:
    read = spilled_slices(Path(str(update.path)), model, name, update.crcs[index])

    def read_slice(start: int, stop: int) -> np.ndarray:
        try:
            return read(start, stop)
        except OSError as err:
            raise _unreadable(update, model, err) from None
    return read_slice


def task_data_sizes(records: Sequence[UpdateRecord], policy: ClaimPolicy | None = None) -> dict[str, int]:
    """The summed data size of the counted results of each task (as the claim policy accepts them)."""
    by_task: dict[str, list[UpdateRecord]] = defaultdict(list)
    for rec in records:
        by_task[rec.task].append(rec)
    if policy is None:
        return {task: sum(r.data_size for r in recs) for task, recs in sorted(by_task.items())}
    return {task: int(math.fsum(effective_sizes(recs, policy)[0])) for task, recs in sorted(by_task.items())}
