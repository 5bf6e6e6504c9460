"""``fx aggregator start``: wire the plan's parts together, serve, run every round, say goodbye.

TensorFlow is never imported here: the aggregator only moves float32 arrays.
"""
from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from fx_cli.aggregator.build import build_parts, global_validation_tasks
from fx_cli.aggregator.coordinator import Coordinator
from fx_cli.aggregator.inputs import aggregator_inputs
from fx_cli.aggregator.memory import limit_malloc_arenas, release_free_memory
from fx_cli.aggregator.metrics import MetricsSink, RoundReport
from fx_cli.aggregator.modelstore import RoundModel, import_model
from fx_cli.aggregator.round import Presence
from fx_cli.aggregator.roundend import BestTracker, Exports, RoundCloser, load_agg_state
from fx_cli.aggregator.servicer import Gate, Servicer
from fx_cli.aggregator.recovery import recover
from fx_cli.aggregator.reset import state_lock
from fx_cli.aggregator.state import Store
from fx_cli.errors import FxError
from fx_cli.faults import fault
from fx_cli.plan import Plan
from fx_cli.plan.loader import require_initialized

if TYPE_CHECKING:
    import grpc

log = logging.getLogger("fx.aggregator")
LOOPBACK = ("localhost", "127.0.0.1", "::1", "[::1]")
# Longest time a finished or failed run waits to tell connected collaborators.
ABORT_GRACE = 15.0


@dataclass(frozen=True)
class AggregatorRun:
    plan_path: Path = Path("plan/plan.yaml")
    cols_path: Path = Path("plan/cols.yaml")
    task_group: str | None = None
    resume: bool = False  # continue a saved run even though the plan changed since


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


def run_aggregator(run: AggregatorRun, on_round: Callable[[RoundReport], None] = lambda r: None,
                   on_ready: Callable[[str], None] = lambda a: None) -> RunResult:
    """Serve the federation until every round is done; raise ``FxError`` when it cannot complete."""
    plan, cols = aggregator_inputs(run.plan_path, run.cols_path)
    if plan.aggregator.secure_aggregation:
        raise FxError("aggregator.settings.secure_aggregation: true is not supported by fx",
                      "set it to false in plan/plan.yaml; updates are protected in transit by mutual TLS")
    evaluation = run.task_group == "evaluation"
    # Evaluation runs, and plans with persist_checkpoint: false, keep their state in memory and a temporary folder.
    ephemeral = evaluation or not plan.aggregator.persist_checkpoint
    limit_malloc_arenas()
    db_path = plan.resolve_path(plan.aggregator.persistent_db_path)
    with contextlib.nullcontext() if ephemeral else state_lock(db_path):
        state_dir = _state_dir(plan, ephemeral)
        try:
            store = Store(None if ephemeral else db_path)
            try:
                changed = store.bind(plan.hash, plan.config, run.task_group, resume=run.resume)
                if changed:
                    log.warning("--resume: continuing the saved run under a changed plan (differing keys: %s); "
                                "results already received for the current round are asked for again",
                                ", ".join(changed[:10]))
                return _run(plan, cols, run, store, state_dir, evaluation, on_round, on_ready)
            finally:
                store.close()
        finally:
            if ephemeral:
                shutil.rmtree(state_dir, ignore_errors=True)


def _state_dir(plan: Plan, ephemeral: bool) -> Path:
    base = plan.resolve_path(plan.aggregator.persistent_db_path).parent
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="run-", dir=base)) if ephemeral else base


def _run(plan: Plan, cols: list[str], run: AggregatorRun, store: Store, state_dir: Path, evaluation: bool,
         on_round: Callable[[RoundReport], None], on_ready: Callable[[str], None]) -> RunResult:
    settings = plan.aggregator
    rounds = 1 if evaluation else settings.rounds_to_train
    parts = build_parts(plan, cols, run.task_group, rounds)
    snap = store.load()
    exports = None if evaluation else Exports(plan.resolve_path(settings.last_state_path),
                                              plan.resolve_path(settings.best_state_path))
    if snap.finished and run.resume and snap.round < rounds:
        log.warning("--resume: the finished run continues to %d rounds", rounds)
        store.unfinish()
        snap.finished = False
    if snap.finished:
        log.info("this plan's run already finished all %d rounds; nothing to do", rounds)
        return RunResult(snap.round, rounds, exports.last if exports else None, exports.best if exports else None,
                         snap.best_score, already_finished=True, reports=[])
    snap = recover(snap, store, state_dir / "models", state_dir / "updates", exports)
    model = snap.model or _first_model(plan, store, state_dir / "models")
    load_agg_state(parts.functions, snap.agg_state)
    best = BestTracker([f"{t}/{settings.best_metric}" for t in global_validation_tasks(plan, parts.task_order)],
                       settings.best_metric_higher_is_better, snap.best_score, snap.best_model)
    sink = MetricsSink(None if evaluation else plan.workspace / "logs" / "aggregator_metrics.jsonl",
                       plan.workspace / "logs" / "aggregator_tensorboard" if settings.write_logs else None)
    # After the last round every collaborator validates the final model (not in evaluation mode: nothing changed).
    final_tasks = () if evaluation or not settings.final_evaluation else tuple(
        global_validation_tasks(plan, parts.task_order))
    closer = RoundCloser(store=store, functions=parts.functions, tasks=plan.tasks, task_order=parts.task_order,
                         models_dir=state_dir / "models", spill_root=state_dir / "updates", exports=exports,
                         best=best, sink=sink, rounds_to_train=rounds, final_evaluation=bool(final_tasks))
    if model.round > 0:
        closer.export(model, snap.best_model)  # a crash may have come between commit and export
        sink.catch_up(store.history())  # ... or between commit and the metrics line
        log.info("resuming at %s with %d result(s) already received",
                 f"round {model.round + 1}/{rounds}" if model.round < rounds else "the final evaluation",
                 len(snap.updates))
    presence = Presence(cols, settings.join_deadline, settings.heartbeat_timeout, time.monotonic())
    coord = Coordinator(cols=cols, rounds_to_train=rounds, assigner=parts.assigner, policy=parts.policy,
                        presence=presence, store=store, model=model, saved=snap,
                        spill_root=state_dir / "updates", round_deadline=settings.round_deadline,
                        final_tasks=final_tasks)
    fault(f"aggregator:before_round_{model.round + 1}")
    try:
        reports, not_told = _serve(plan, cols, run.cols_path, coord, closer, parts.pipelines, on_round, on_ready)
    finally:
        sink.close()
    return RunResult(coord.model.round, rounds, exports.last if exports else None,
                     exports.best if exports and best.model else None, best.score, reports=reports, not_told=not_told)


def _first_model(plan: Plan, store: Store, models_dir: Path) -> RoundModel:
    init = require_initialized(plan)
    model = import_model(init, models_dir / "round_0.pbuf", 0)
    store.start(model)
    return model


def _serve(plan: Plan, cols: list[str], cols_path: Path, coord: Coordinator, closer: RoundCloser, pipelines: set[str],
           on_round: Callable[[RoundReport], None], on_ready: Callable[[str], None]) -> tuple[list[RoundReport], list[str]]:
    from fx_cli.transport.chunks import chunk_bytes
    from fx_cli.transport.methods import generic_handler
    from fx_cli.transport.server import serve

    net, settings = plan.network, plan.aggregator
    credentials, tls_identity = _server_security(plan)
    chunk = chunk_bytes(net.chunk_size_mib)
    poll = min(30.0, max(0.5, settings.heartbeat_timeout / 3))
    gate = Gate(cols, plan.hash, tls_identity, settings.single_col_cert_common_name, cols_path)
    servicer = Servicer(coord, gate, plan.config, plan.federation_id, chunk, poll, pipelines,
                        stall_timeout=settings.heartbeat_timeout, max_transfers=net.max_concurrent_transfers)
    host = net.agg_addr if net.agg_addr in LOOPBACK else "[::]"
    with serve(generic_handler(servicer), f"{host}:{int(net.agg_port)}", credentials, chunk=chunk,
               max_workers=2 * len(cols) + 8) as port:
        on_ready(f"{net.agg_addr}:{port}")
        log.info("aggregator of %s listening on %s:%d (%s); round %d/%d; collaborators: %s", plan.federation_id,
                 host, port, "mutual TLS" if tls_identity else ("TLS" if credentials else "PLAIN TCP"),
                 min(coord.model.round + 1, coord.rounds_to_train), coord.rounds_to_train, ", ".join(cols))
        try:
            reports = _drive(coord, closer, on_round)
        except FxError as err:
            coord.abort(err.message)
            log.error("run ended: %s", err.message)
            coord.await_farewell(min(settings.heartbeat_timeout, ABORT_GRACE))
            raise
        not_told = coord.await_farewell(settings.heartbeat_timeout)
        log.info("model transfers: at most %d at once (network.settings.max_concurrent_transfers: %d)",
                 servicer.transfers.peak, servicer.transfers.limit)
        if not_told:
            log.warning("collaborators %s were not told the run finished (no contact)", ", ".join(not_told))
    return reports, not_told


def _drive(coord: Coordinator, closer: RoundCloser, on_round: Callable[[RoundReport], None]) -> list[RoundReport]:
    reports: list[RoundReport] = []
    opened = time.monotonic()
    while True:
        verdict = coord.await_verdict()
        if verdict is None:
            return reports
        if verdict.fail:
            raise FxError(verdict.fail, "start the missing collaborators, remove them from plan/cols.yaml, or use a "
                                        "straggler policy that tolerates absentees (PercentagePolicy, "
                                        "CutoffTimePolicy); deadlines: aggregator.settings.join_deadline, "
                                        "heartbeat_timeout, round_deadline")
        closed = coord.close_round()
        if closed.note:
            log.warning(closed.note)
        bytes_in, bytes_out = coord.take_bytes()
        try:
            model, report = closer.close(closed, bytes_in, bytes_out, opened)
            opened = time.monotonic()  # before opening: collaborators may get tasks the instant it opens
            if closed.final:
                coord.finish()
            else:
                fault(f"aggregator:before_round_{model.round + 1}")
                coord.open_next(model)
        except OSError as err:
            raise FxError(f"round {closed.round + 1}: saving the round failed: {err}; the last saved state is kept",
                          "free disk space (or fix permissions) under local_state/ and save/, then run `fx aggregator "
                          "start` again: the run resumes from its last saved round with the results already "
                          "received") from None
        release_free_memory()
        reports.append(report)
        on_round(report)


def _server_security(plan: Plan) -> tuple[grpc.ServerCredentials | None, bool]:
    """(server credentials or None for plain TCP, whether callers are identified by certificate)."""
    net = plan.network
    if not net.use_tls:
        log.warning("network.settings.use_tls is false: collaborators connect over PLAIN TCP, unencrypted and "
                    "without certificates; use this only on a trusted network")
        return None, False
    from fx_cli.pki.tls import server_credentials

    creds = server_credentials(plan.workspace, net.agg_addr, net.require_client_auth, cert_folder=net.cert_folder)
    return creds, net.require_client_auth
