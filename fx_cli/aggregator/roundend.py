"""Closing a round: aggregate, persist in a crash-safe order, export best/last, report, clean up.

Order: next model file (atomic) and server-optimizer state files, then one
SQLite transaction moves the round forward, then best/last copies are
refreshed and the round's spilled updates deleted. A crash before the
transaction redoes the round from the same updates (same result); after it,
start-up refreshes the exports again.

The copies and the deletion of the round's spilled updates run in a thread of
their own while the next round starts: at 5e7 parameters that is a third of a
second collaborators no longer wait for. They touch no file the next round
uses (old model files are deleted before, in the closing thread, since the
engine may write the next round's input into that folder at once). The next
close, and the end of the run, wait for them first, and a failure there (a full
disk) ends the run naming the round it belongs to.
"""
from __future__ import annotations

import logging
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from fx_cli.aggregation import AggregationFunction
from fx_cli.aggregator.claims import ClaimPolicy, round_metrics
from fx_cli.aggregator.combine import choose_function, model_updates, next_model, task_data_sizes
from fx_cli.aggregator.coordinator import ClosedRound
from fx_cli.aggregator.layout import SPARE_MIN_BYTES, StateLayout
from fx_cli.aggregator.metrics import MetricsSink, RoundReport, display_names
from fx_cli.aggregator.modelstore import RoundModel, export_copy, export_from_copy, file_sha256, write_round_model
from fx_cli.aggregator.stopping import EarlyStopping
from fx_cli.aggregator.state import Store, UpdateRecord
from fx_cli.atomic import atomic_write
from fx_cli.errors import FxError
from fx_cli.faults import fault
from fx_cli.plan.loader import TaskSpec
from fx_cli.privacy.run import RunPrivacy
from fx_cli.secagg.rounds import SecAggRounds, secagg_model

log = logging.getLogger("fx.aggregator")


@dataclass(frozen=True)
class Exports:
    """User-visible model files (``aggregator.settings.best_state_path`` / ``last_state_path``)."""

    last: Path
    best: Path


class SavingFailed(Exception):
    """Saving a committed round's files (best/last copies, clean-up) failed in the background."""

    def __init__(self, round_num: int, error: OSError) -> None:
        super().__init__(f"round {round_num}: {error}")
        self.round = round_num  # 1-based
        self.error = error


class Behind:
    """One piece of work at a time in a thread of its own; ``settle`` waits for it and raises what it raised."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self, work: Callable[[], None]) -> None:
        self.settle()
        self._thread = threading.Thread(target=self._run, args=(work,), name=self.name)
        self._thread.start()

    def _run(self, work: Callable[[], None]) -> None:
        try:
            work()
        except BaseException as err:  # handed to whoever settles
            self._error = err

    def settle(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()
        error, self._error = self._error, None
        if error is not None:
            raise error


class BestTracker:
    """The best aggregated validation score so far and the model that earned it."""

    def __init__(self, keys: Sequence[str], higher_is_better: bool, score: float | None,
                 model: RoundModel | None) -> None:
        self.keys = list(keys)
        self.higher = higher_is_better
        self.score = score
        self.model = model

    def consider(self, metrics: Mapping[str, float], model: RoundModel) -> bool:
        """Whether ``model`` (validated with ``metrics``) is the new best."""
        value = next((metrics[k] for k in self.keys if k in metrics), None)
        if value is None:
            return False
        if self.score is not None and not (value > self.score if self.higher else value < self.score):
            return False
        self.score, self.model = value, model
        return True


def _by_collaborator(records: Sequence[UpdateRecord]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for rec in records:
        out.setdefault(rec.collaborator, {}).update({f"{rec.task}/{k}": float(v) for k, v in rec.metrics.items()})
    return out


def load_agg_state(functions: Mapping[str, AggregationFunction], files: Mapping[str, str]) -> None:
    """Give each task's aggregation function the server state saved with the last completed round."""
    for task, path in files.items():
        if task in functions:
            try:
                with np.load(path, allow_pickle=False) as saved:
                    functions[task].load_state({k: saved[k] for k in saved.files})
            except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
                raise FxError(f"the server optimizer state of task '{task}' ({path}) cannot be read: {err}",
                              "restore local_state/ from a backup to resume this run, or run `fx aggregator "
                              "reset` to start a new run") from None


def _save_agg_state(function: AggregationFunction, path: Path) -> bool:
    arrays = function.state()
    if not arrays:
        return False
    with atomic_write(path, fault_point="aggregator:writing_file") as fh:
        np.savez(fh, allow_pickle=False, **arrays)
    return True


class RoundCloser:
    def __init__(self, *, store: Store, functions: dict[str, AggregationFunction], tasks: dict[str, TaskSpec],
                 task_order: Sequence[str], layout: StateLayout, exports: Exports | None,
                 best: BestTracker, sink: MetricsSink, rounds_to_train: int, final_evaluation: bool,
                 privacy: RunPrivacy | None = None, claims: ClaimPolicy = ClaimPolicy(),
                 stopping: EarlyStopping | None = None, secagg: SecAggRounds | None = None) -> None:
        self.secagg = secagg  # secure aggregation: the round's model comes from the unmasked sum
        self.store = store
        self.stopping = stopping
        self.early_stop = ""  # why the run stops after the round just closed (early stopping)
        self.functions = functions
        self.tasks = tasks
        self.task_order = list(task_order)
        self.layout = layout
        self.exports = exports
        self.best = best
        self.sink = sink
        self.rounds_to_train = rounds_to_train
        self.final_evaluation = final_evaluation
        self.privacy = privacy
        self.stopped = False  # an aggregation function said the run is complete (e.g. STAR converged)
        self.claims = claims
        self.behind = Behind("fx-round-files")  # the last closed round's exports and clean-up

    def close(self, closed: ClosedRound, bytes_in: int, bytes_out: int, opened_at: float) -> tuple[RoundModel, RoundReport]:
        """The next global model, durably recorded; and the round's report."""
        self.settle()
        if closed.final:
            return closed.model, self._close_final(closed, bytes_in, bytes_out, opened_at)
        started = time.monotonic()
        r = closed.round
        target = self.layout.model(r + 1)
        updates = model_updates(closed.records, self.task_order)
        if self.secagg is not None:
            model = secagg_model(self.secagg, closed.model, target)
        elif updates and self.privacy is not None and self.privacy.central:
            model = self.privacy.next_model(closed.model, updates, target, closed.expected)
        elif updates:
            _, function = choose_function(updates, self.functions, self.task_order)
            model = next_model(closed.model, updates, function, target, self.claims.weights(r, updates),
                               reuse=self.layout.spare_model())
        else:
            model = write_round_model(target, closed.model.tensors(), r + 1, reuse=self.layout.spare_model())
        self.stopped = any(f.finished() for f in self.functions.values())
        metrics = round_metrics(closed.records, self.claims, r)
        improved = self.best.consider(metrics, closed.model)
        self.early_stop = "" if self.stopping is None else self.stopping.decide(
            [*self.store.history(), {"round": r + 1, "metrics": metrics}])
        agg_state = {task: str(self.layout.agg_state(task, r + 1)) for task in self.functions}
        agg_state = {t: p for t, p in agg_state.items() if _save_agg_state(self.functions[t], Path(p))}
        report = RoundReport(r + 1, self.rounds_to_train, metrics,
                             display_names(metrics, self.tasks, self.task_order, starting=r == 0),
                             closed.participants, closed.expected, bytes_in, bytes_out,
                             time.monotonic() - opened_at, improved, closed.note,
                             privacy=self.privacy.account() if self.privacy is not None and self._trained(closed, updates)
                             else None,
                             data_sizes=task_data_sizes(closed.records, self.claims), stopped=self.early_stop,
                             by_collaborator=_by_collaborator(closed.records),
                             model_sha256=file_sha256(model.path) or "",
                             aggregate_seconds=time.monotonic() - started)
        best = (self.best.score, self.best.model) if improved and self.best.score is not None else None
        last = model.round >= self.rounds_to_train or bool(self.early_stop)
        fault("aggregator:saving_model")  # the next model's file exists; nothing is committed
        self.store.advance(r, model, report.record(), agg_state, best,
                           finished=self.stopped or (last and not self.final_evaluation),
                           missed=closed.missed)
        fault("aggregator:saving_model")  # committed; best/last not yet refreshed
        # Old model files go now: the engine may write the next round's input into the same folder next.
        self._prune(model, set(agg_state.values()))
        best_model = closed.model if improved else None
        self.behind.start(lambda: self._after_commit(r, model, best_model))
        self.sink.write(report)
        return model, report

    def settle(self) -> None:
        """Wait for the last closed round's exports and clean-up; ``SavingFailed`` when they failed."""
        self.behind.settle()

    def _after_commit(self, r: int, model: RoundModel, best: RoundModel | None) -> None:
        """Behind the next round: refresh best/last, then delete the round's spilled updates."""
        try:
            self.export(model, best)
            fault("aggregator:saving_model")  # exported; the round's spilled updates not yet deleted
            self.layout.drop_round_updates(r, keep_spares=model.nbytes >= SPARE_MIN_BYTES)
        except OSError as err:
            raise SavingFailed(r + 1, err) from err
        fault(f"aggregator:after_round_{r + 1}")

    def _trained(self, closed: ClosedRound, updates: Sequence[UpdateRecord]) -> bool:
        """Whether a model update was released this round (under secure aggregation results carry none)."""
        if updates:
            return True
        return self.secagg is not None and any(
            r.task in self.tasks and self.tasks[r.task].function == "train_task" for r in closed.records)

    def _close_final(self, closed: ClosedRound, bytes_in: int, bytes_out: int, opened_at: float) -> RoundReport:
        """Record the validation of the final model; it may become the best one."""
        metrics = round_metrics(closed.records, self.claims, closed.round)
        improved = self.best.consider(metrics, closed.model)
        report = RoundReport(closed.round, self.rounds_to_train, metrics,
                             display_names(metrics, self.tasks, self.task_order), closed.participants,
                             closed.expected, bytes_in, bytes_out, time.monotonic() - opened_at, improved,
                             closed.note, final=True, data_sizes=task_data_sizes(closed.records, self.claims))
        best = (self.best.score, self.best.model) if improved and self.best.score is not None else None
        self.store.finish(closed.round, report.record(), best)
        if improved and self.exports is not None:
            export_copy(closed.model.path, self.exports.best)
        self.layout.drop_round_updates(closed.round)
        self.sink.write(report)
        return report

    def export(self, last: RoundModel, best: RoundModel | None) -> None:
        """Refresh last_state_path (and best_state_path when ``best`` is given)."""
        if self.exports is None:
            return
        if best is not None and not export_from_copy(self.exports.last, best.path, self.exports.best):
            export_copy(best.path, self.exports.best)
        export_copy(last.path, self.exports.last)

    def _prune(self, current: RoundModel, keep_state: set[str]) -> None:
        keep: set[Path | str] = {current.path, *keep_state}
        if self.best.model is not None:
            keep.add(self.best.model.path)
        self.layout.prune_models(keep)
