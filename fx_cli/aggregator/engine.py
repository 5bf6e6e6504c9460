"""The round engine: one object that every way of running a federation drives.

``open_engine`` binds the saved state to the plan, recovers it after a crash,
imports the first model, and builds the coordinator and round closer;
``Engine.drive`` then runs rounds until the run is over. A transport plugs in
by calling the coordinator's collaborator-side methods (``next_tasks``,
``model_for``, ``open_upload``, ``accept``, ``heartbeat``) from its own
threads: the gRPC service (``service.py``) and the simulator
(``fx_cli/simulate``) do exactly that, so round logic exists once.
No transport is imported here.
"""
from __future__ import annotations

import contextlib
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

from fx_cli.aggregator.build import Parts, build_parts, global_validation_tasks
from fx_cli.aggregator.claims import claim_policy, training_tasks
from fx_cli.aggregator.coordinator import Coordinator
from fx_cli.aggregator.layout import StateLayout, scratch_layout
from fx_cli.aggregator.memory import limit_malloc_arenas
from fx_cli.aggregator.metrics import MetricsSink, RoundReport
from fx_cli.aggregator.modelstore import RoundModel, import_model
from fx_cli.aggregator.outcomes import Event, EventKind, Observer
from fx_cli.aggregator.pauses import ActiveClock
from fx_cli.aggregator.recovery import recover
from fx_cli.aggregator.reset import state_lock
from fx_cli.aggregator.round import Presence
from fx_cli.aggregator.roundend import BestTracker, Exports, RoundCloser, SavingFailed, load_agg_state
from fx_cli.aggregator.state import Snapshot, Store
from fx_cli.aggregator.stopping import EarlyStopping, stopped_round
from fx_cli.errors import FxError
from fx_cli.faults import fault
from fx_cli.plan import Plan
from fx_cli.plan.loader import require_initialized
from fx_cli.privacy.run import start_privacy
from fx_cli.secagg.rounds import secagg_rounds

log = logging.getLogger("fx.aggregator")
STORAGE_HINT = ("free disk space (or fix the disk) under local_state/ on the aggregator, then start it again: the "
                "results already stored are kept and the collaborators are asked for the others")
STRAGGLER_HINT = ("start the missing collaborators, remove them from plan/cols.yaml, or use a straggler policy that "
                  "tolerates absentees (PercentagePolicy, CutoffTimePolicy); deadlines: "
                  "aggregator.settings.join_deadline, heartbeat_timeout, round_deadline")


@dataclass
class RunResult:
    rounds_done: int
    rounds_to_train: int
    last_path: Path | None
    best_path: Path | None
    best_score: float | None
    already_finished: bool = False
    reports: list[RoundReport] = field(default_factory=list)
    not_told: list[str] = field(default_factory=list)
    stop_reason: str = ""  # why training ended before rounds_to_train (early stopping)
    results_path: Path | None = None  # analytics: the file of results (the model file only holds its state)


@dataclass(frozen=True)
class EngineOptions:
    task_group: str | None = None  # 'evaluation': validate the initial model, save nothing
    resume: bool = False  # continue a saved run even though the plan changed since
    rounds: int | None = None  # override aggregator.settings.rounds_to_train (the simulator's --rounds)
    # (join_deadline, heartbeat_timeout) in seconds; None: the plan's. The simulator's collaborators never vanish.
    liveness: tuple[float, float] | None = None
    observers: Sequence[Observer] = ()
    # False: saved state survives the death of the process (kill -9, out of memory), not a power cut; no fsync per
    # received update (the simulator, which writes thousands of them a second).
    power_safe: bool = True
    # Where a round's input model comes from when not from the previous round (a middle aggregator's parent).
    source: "ModelSource | None" = None
    # Where the per-round metrics go (None: logs/aggregator_metrics.jsonl; a simulated region has its own file).
    metrics_path: Path | None = None
    # False: the simulator, whose virtual collaborators have no certificates (fx_cli/simulate/secagg.py signs
    # their secure-aggregation keys with per-run keys); secure aggregation then needs no mutual TLS.
    certificates: bool = True


class ModelSource(Protocol):
    """Gives the engine the input of a round from outside, and hears when rounds close.

    ``bind`` is called once when the engine opens, with its saved state and current round. ``input_model`` is
    called before a round opens with the model the engine would use; it may block, and
    returns that model, another one (a file under ``layout``, possibly for a later round: the engine jumps
    there), or None when no more rounds will come (the run finishes). ``round_closed`` is called after each
    round is durably saved.
    """

    def bind(self, store: Store, layout: StateLayout, round_num: int) -> None: ...

    def input_model(self, model: RoundModel, store: Store, layout: StateLayout) -> RoundModel | None: ...

    def round_closed(self, report: RoundReport) -> None: ...


class Engine:
    """A run's coordinator, round closer and saved state, ready to drive. Built by ``open_engine``."""

    def __init__(self, plan: Plan, cols: list[str], options: EngineOptions, store: Store, layout: StateLayout,
                 snap: Snapshot, parts: Parts, rounds: int, evaluation: bool) -> None:
        settings = plan.aggregator
        self.plan = plan
        self.cols = cols
        self.store = store
        self.layout = layout
        self.parts = parts
        self.rounds_to_train = rounds
        self.observers: list[Observer] = list(options.observers)
        self.exports = None if evaluation else Exports(plan.resolve_path(settings.last_state_path),
                                                       plan.resolve_path(settings.best_state_path))
        snap = recover(snap, store, layout, self.exports)
        model = snap.model or _first_model(plan, store, layout)
        self.source: ModelSource | None = options.source or parts.assigner.model_source()
        if self.source is not None:  # also when this start resumes mid-round and asks for no input
            self.source.bind(store, layout, model.round)
        sourced = self._sourced(model, started=bool(snap.updates))
        if sourced is not model:
            snap = store.load()
            model = sourced or model
        self.privacy, rounds = (None, rounds) if evaluation else start_privacy(
            plan.config, _trainers(plan, parts, cols, rounds), cols, store.history(), layout.noise_key, rounds,
            model.round)
        self.rounds_to_train = rounds
        self.secagg = None if evaluation else secagg_rounds(
            plan.config, plan.network if options.certificates else None, settings.heartbeat_timeout, cols,
            lambda r: [c for c in cols if any(plan.tasks[t].function == "train_task" for t in
                                              parts.assigner.tasks_for(c, r) if t in plan.tasks)])
        if self.secagg is not None and snap.updates:
            log.warning("secure aggregation: round %d is redone (its masked updates do not survive a restart)",
                        model.round + 1)
            for rec in snap.updates:
                store.drop_update(rec)
            snap = store.load()
        load_agg_state(parts.functions, snap.agg_state)
        keys = [f"{t}/{settings.best_metric}" for t in global_validation_tasks(plan, parts.task_order)]
        self.best = BestTracker(keys, settings.best_metric_higher_is_better, snap.best_score, snap.best_model)
        self.sink = MetricsSink(None if evaluation else options.metrics_path or plan.workspace / "logs" /
                                "aggregator_metrics.jsonl",
                                plan.workspace / "logs" / "aggregator_tensorboard" if settings.write_logs else None)
        # After the last round every collaborator validates the final model (not in evaluation mode: nothing changed).
        final_tasks = () if evaluation or not settings.final_evaluation else tuple(
            global_validation_tasks(plan, parts.task_order))
        self.closer = RoundCloser(store=store, functions=parts.functions, tasks=plan.tasks,
                                  task_order=parts.task_order, layout=layout, exports=self.exports, best=self.best,
                                  sink=self.sink, rounds_to_train=rounds, final_evaluation=bool(final_tasks),
                                  privacy=self.privacy, secagg=self.secagg, claims=claim_policy(settings, self._claim_adjusted),
                                  stopping=None if evaluation else EarlyStopping.from_settings(
                                      settings.early_stopping, global_validation_tasks(plan, parts.task_order),
                                      settings.best_metric, settings.best_metric_higher_is_better))
        if model.round > 0:
            self.closer.export(model, snap.best_model)  # a crash may have come between commit and export
            self.sink.catch_up(store.history())  # ... or between commit and the metrics line
            log.info("resuming at %s with %d result(s) already received",
                     f"round {model.round + 1}/{rounds}" if model.round < rounds else "the final evaluation",
                     len(snap.updates))
        for record in store.history():  # schedules that depend on past rounds (who missed a hop) pick up again
            if not record.get("final"):
                parts.assigner.round_record(int(record["round"]) - 1, record)
        join_deadline, heartbeat_timeout = options.liveness or (settings.join_deadline, settings.heartbeat_timeout)
        # Deadlines about peers run on a clock that stops while this process is stopped (see pauses.py).
        self.clock = ActiveClock().start()
        rejoin = None if options.liveness else settings.rejoin_deadline
        presence = Presence(cols, join_deadline, heartbeat_timeout, self.clock(), rejoin)
        self.coord = Coordinator(cols=cols, rounds_to_train=rounds, assigner=parts.assigner, policy=parts.policy,
                                 presence=presence, store=store, model=model, saved=snap, layout=layout,
                                 round_deadline=settings.round_deadline, final_tasks=final_tasks,
                                 observer=self._notify, clock=self.clock,
                                 update_tasks=frozenset() if self.secagg else training_tasks(plan))
        self.resumed_updates = len(snap.updates)
        self.stop_reason = next((str(r["stopped"]) for r in store.history() if r.get("stopped")), "")
        if sourced is None:
            self.coord.finish()
        fault(f"aggregator:before_round_{model.round + 1}")

    def _sourced(self, model: RoundModel, started: bool) -> RoundModel | None:
        """The input of the next round: ``model``, or what the source gives (saved as the round's model)."""
        if self.source is None or started:
            return model
        given = self.source.input_model(model, self.store, self.layout)
        if given is not None and given.path != model.path:
            self.store.replace_model(given)
        return given

    def _claim_adjusted(self, kind: str, **fields: Any) -> None:
        """A clipped data size or dropped metric, for observers (the audit log)."""
        numbers = {k: float(v) for k, v in fields.items() if isinstance(v, (int, float)) and k != "round"}
        self._notify(Event(EventKind.CLAIM_ADJUSTED, int(fields.get("round", 1)) - 1,
                           str(fields.get("collaborator", "")), str(fields.get("task", "")), kind,
                           str(fields.get("why", "")), numbers))

    def _notify(self, event: Event) -> None:
        for observer in self.observers:
            observer(event)

    @property
    def pipelines(self) -> set[str]:
        """Compression pipeline names a result may use."""
        return self.parts.pipelines

    def drive(self, on_round: Callable[[RoundReport], None] = lambda r: None) -> list[RoundReport]:
        """Close and open rounds until the run is over; ``FxError`` when it cannot complete (call ``abort``)."""
        coord, closer = self.coord, self.closer
        reports: list[RoundReport] = []
        opened = time.monotonic()
        while True:
            verdict = coord.await_verdict()
            if verdict is None:
                try:
                    closer.settle()  # the last round's best/last copies are in place before the run reports them
                    self.layout.drop_spare_spills()
                except SavingFailed as err:
                    raise _saving_failed(err.round, err.error) from None
                return reports
            if verdict.fail:
                raise FxError(verdict.fail, STORAGE_HINT if coord.storage.first else STRAGGLER_HINT)
            closed = coord.close_round()
            if closed.note:
                log.warning(closed.note)
            bytes_in, bytes_out = coord.take_bytes()
            try:
                model, report = closer.close(closed, bytes_in, bytes_out, opened)
                self._notify(Event(EventKind.ROUND_CLOSED, closed.round, report=report))
                if not closed.final:
                    self.parts.assigner.round_record(closed.round, report.record())
                if self.source is not None:
                    self.source.round_closed(report)
                    on_round(report)  # now: the next input may take a while to come
                opened = time.monotonic()  # before opening: collaborators may get tasks the instant it opens
                if closed.final or closer.stopped:
                    coord.finish()
                elif closer.early_stop:
                    self._stop_early(model, closer.early_stop)
                else:
                    fault(f"aggregator:before_round_{model.round + 1}")
                    given = self._sourced(model, started=False)
                    if given is None:
                        coord.finish()
                    else:
                        coord.open_next(given)
            except OSError as err:
                raise _saving_failed(closed.round + 1, err) from None
            except SavingFailed as err:  # the previous round's copies, found as this one closed
                raise _saving_failed(err.round, err.error) from None
            reports.append(report)
            if self.source is None:
                on_round(report)

    def _stop_early(self, model: RoundModel, reason: str) -> None:
        """No more training: validate ``model`` as the final one (when the plan asks for it), then finish."""
        log.warning("early stopping after round %d: %s", model.round, reason)
        self.stop_reason = reason
        self.rounds_to_train = self.closer.rounds_to_train = self.coord.rounds_to_train = model.round
        if self.closer.final_evaluation:
            self.coord.open_next(model)  # round index == rounds_to_train: the final evaluation
        else:
            self.coord.finish()

    def abort(self, reason: str) -> None:
        """End the run now (collaborators are told); the saved state stays, so a restart resumes it."""
        self.coord.abort(reason)

    def result(self, reports: list[RoundReport], not_told: list[str] | None = None) -> RunResult:
        exports = self.exports
        written = [getattr(f, "result_path", None) for f in self.closer.functions.values()]
        results = next((self.plan.resolve_path(p) for p in written if isinstance(p, str)), None)
        return RunResult(self.coord.model.round, self.rounds_to_train, exports.last if exports else None,
                         exports.best if exports and self.best.model else None, self.best.score, reports=reports,
                         not_told=not_told or [], stop_reason=self.stop_reason, results_path=results)


def _saving_failed(round_num: int, err: OSError) -> FxError:
    return FxError(f"round {round_num}: saving the round failed: {err}; the last saved state is kept",
                   "free disk space (or fix permissions) under local_state/ and save/, then start again: the run "
                   "resumes from its last saved round with the results already received")


@contextlib.contextmanager
def open_engine(plan: Plan, cols: list[str], options: EngineOptions = EngineOptions()) -> Iterator[Engine | RunResult]:
    """The engine of this plan's run, holding its saved state for the block; a ``RunResult`` when already done.

    Evaluation runs and plans with ``persist_checkpoint: false`` keep their state in memory and a temporary
    folder, deleted at the end. Otherwise the state database is locked against a second aggregator.
    """
    settings = plan.aggregator
    evaluation = options.task_group == "evaluation"
    ephemeral = evaluation or not settings.persist_checkpoint
    limit_malloc_arenas()
    db_path = plan.resolve_path(settings.persistent_db_path)
    with contextlib.nullcontext() if ephemeral else state_lock(db_path):
        layout = scratch_layout(db_path.parent) if ephemeral else StateLayout.of_database(db_path)
        try:
            store = Store(None if ephemeral else db_path, power_safe=options.power_safe)
            try:
                opened = _opened(plan, cols, options, store, layout, evaluation)
                try:
                    yield opened
                finally:
                    if isinstance(opened, Engine):
                        opened.clock.stop()
                        opened.sink.close()
            finally:
                store.close()
        finally:
            if ephemeral:
                shutil.rmtree(layout.root, ignore_errors=True)


def _opened(plan: Plan, cols: list[str], options: EngineOptions, store: Store, layout: StateLayout,
            evaluation: bool) -> Engine | RunResult:
    changed = store.bind(plan.hash, plan.config, options.task_group, resume=options.resume)
    if changed:
        log.warning("--resume: continuing the saved run under a changed plan (differing keys: %s); results already "
                    "received for the current round are asked for again", ", ".join(changed[:10]))
    rounds = 1 if evaluation else (options.rounds or plan.aggregator.rounds_to_train)
    parts = build_parts(plan, cols, options.task_group, rounds)
    rounds *= 1 if evaluation else parts.assigner.hops_per_round()
    stopped = None if evaluation else stopped_round(store.history())
    if stopped is not None and stopped < rounds:
        log.info("early stopping ended training after round %d (saved decision)", stopped)
        rounds = stopped
    snap = store.load()
    if snap.finished and options.resume and snap.round < rounds:
        log.warning("--resume: the finished run continues to %d rounds", rounds)
        store.unfinish()
        snap.finished = False
    if snap.finished:
        settings = plan.aggregator
        log.info("this plan's run already finished all %d rounds; nothing to do", rounds)
        last = None if evaluation else plan.resolve_path(settings.last_state_path)
        best = None if evaluation else plan.resolve_path(settings.best_state_path)
        return RunResult(snap.round, rounds, last, best, snap.best_score, already_finished=True)
    return Engine(plan, cols, options, store, layout, snap, parts, rounds, evaluation)


def _trainers(plan: Plan, parts: Parts, cols: list[str], rounds: int) -> list[list[str]]:
    """Who trains in each of the first rounds (the privacy accountant's sampling rate)."""
    tasks = plan.tasks
    return [[c for c in cols if any(t in tasks and tasks[t].function == "train_task"
                                    for t in parts.assigner.tasks_for(c, r))] for r in range(min(rounds, 20))]


def _first_model(plan: Plan, store: Store, layout: StateLayout) -> RoundModel:
    init = require_initialized(plan)
    model = import_model(init, layout.model(0), 0)
    store.start(model)
    return model
