"""``fx aggregator start`` as operators see it: the run, plus its audit log and its status server.

Wraps ``run_aggregator`` (the engine is untouched): the audit log records the plan at start, every closed
round (participants, model SHA-256), changes of ``cols.yaml``, and the end of the run, and the aggregator
signs the chain head after each round; the status server serves the saved state plus a live board.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from fx_cli import __version__
from fx_cli.aggregator.inputs import aggregator_inputs
from fx_cli.aggregator.metrics import RoundReport
from fx_cli.aggregator.modelstore import file_sha256
from fx_cli.aggregator.opswatch import OpsWatch
from fx_cli.aggregator.service import AggregatorRun, RunResult, run_aggregator
from fx_cli.audit.log import Audit, AuditLog, NullAudit
from fx_cli.errors import FxError
from fx_cli.status.board import LiveBoard

log = logging.getLogger("fx.aggregator")


@dataclass
class Operations:
    """The audit log, the live board and what they watch, for one aggregator run."""

    plan: Any
    cols_path: Path | None  # None: no cols.yaml to watch (fx simulate)
    audit: Audit
    board: LiveBoard
    cols_sha256: str | None = None
    status_url: str | None = None
    extra_round: list[Callable[[RoundReport], None]] = field(default_factory=list)

    def started(self, cols: list[str]) -> None:
        self.cols_sha256 = file_sha256(self.cols_path) if self.cols_path is not None else None
        self.audit.record("run_started", plan_hash=self.plan.hash, federation=self.plan.federation_id,
                          fx_version=__version__, collaborators=cols, cols_sha256=self.cols_sha256)
        self._catch_up()
        self.audit.sign_head()

    def _catch_up(self) -> None:
        """Record rounds a crash closed (durably) before their audit record was written."""
        if not isinstance(self.audit, AuditLog):
            return
        from fx_cli.status.saved import read_saved

        audited = {(r.get("round"), r.get("final", False)) for r in audited_rounds(self.audit.path)}
        saved = read_saved(self.plan.resolve_path(self.plan.aggregator.persistent_db_path))
        for rec in saved.history:
            final = bool(rec.get("final"))
            if (rec["round"], final) not in audited:
                self.audit.record("final_evaluation" if final else "round_closed", round=rec["round"],
                                  participants=sorted(rec.get("participants", [])), expected=rec.get("expected"),
                                  metrics=rec.get("metrics", {}), model_sha256=None, recovered=True)

    def ready(self, address: str) -> None:
        self.board.set_phase("running")
        self.audit.record("listening", address=address)

    def round_closed(self, report: RoundReport) -> None:
        self._check_cols()
        last = self.plan.resolve_path(self.plan.aggregator.last_state_path)
        kind = "final_evaluation" if report.final else "round_closed"
        self.audit.record(kind, round=report.round, participants=sorted(report.participants),
                          expected=report.expected, metrics=report.metrics,
                          model_sha256=None if report.final else report.model_sha256 or file_sha256(last),
                          final=report.final)
        self.audit.sign_head()
        from fx_cli.status.views import metrics_doc
        from fx_cli.status.saved import Saved

        self.board.publish({"type": "round", "record": metrics_doc(Saved(history=[report.record()]))[0]})
        for hook in self.extra_round:
            hook(report)

    def _check_cols(self) -> None:
        if self.cols_path is None:
            return
        now = file_sha256(self.cols_path)
        if now != self.cols_sha256:
            from fx_cli.plan.participants import read_cols

            names = read_cols(self.cols_path) if now is not None else []
            self.audit.record("cols_changed", before_sha256=self.cols_sha256, after_sha256=now, collaborators=names)
            self.cols_sha256 = now

    def ended(self, result: RunResult | None, error: BaseException | None) -> None:
        self._check_cols()
        if error is not None:
            reason = error.message if isinstance(error, FxError) else type(error).__name__
            self.audit.record("run_failed", reason=reason)
            self.board.set_phase("failed", reason)
        elif result is not None:
            self.audit.record("run_finished", rounds_done=result.rounds_done, stop_reason=result.stop_reason,
                              already_finished=result.already_finished,
                              last_model_sha256=file_sha256(result.last_path) if result.last_path else None)
            self.board.set_phase("finished")
        self.audit.sign_head()


def audited_rounds(path: Path) -> list[dict[str, Any]]:
    """The data of the round records already in an audit log."""
    import json

    out: list[dict[str, Any]] = []
    if not path.exists():
        return out
    for line in path.read_bytes().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("kind") in ("round_closed", "final_evaluation"):
            out.append(dict(record.get("data", {}), final=record["kind"] == "final_evaluation"))
    return out


@contextlib.contextmanager
def operations(plan: Any, cols: list[str], cols_path: Path | None, evaluation: bool,
               on_status: Callable[[str, str | None], None], need_signer: bool = True
               ) -> Iterator[tuple[Operations, OpsWatch]]:
    """The audit log and the status server of one run (``fx aggregator start`` or ``fx simulate``)."""
    from fx_cli.aggregator.build import capabilities_path

    with _audit(plan, evaluation, need_signer) as audit:
        ops = Operations(plan, cols_path, audit, LiveBoard(plan.aggregator.heartbeat_timeout))
        ops.started(cols)
        watch = OpsWatch(audit, ops.board, ops.round_closed, capabilities_path(plan))
        with _status(plan, cols, ops, on_status):
            yield ops, watch


def run_operated(run: AggregatorRun, on_round: Callable[[RoundReport], None] = lambda r: None,
                 on_ready: Callable[[str], None] = lambda a: None,
                 on_status: Callable[[str, str | None], None] = lambda url, token: None) -> RunResult:
    """``run_aggregator`` with the audit log and the status server around it."""
    plan, cols = aggregator_inputs(run.plan_path, run.cols_path)
    with operations(plan, cols, run.cols_path, run.task_group == "evaluation", on_status) as (ops, watch):
        def ready(address: str) -> None:
            ops.ready(address)
            on_ready(address)

        try:
            result = run_aggregator(run, on_round=on_round, on_ready=ready, observers=[watch], watch=watch)
        except BaseException as err:
            ops.ended(None, err)
            raise
        ops.ended(result, None)
        return result


@contextlib.contextmanager
def _audit(plan: Any, evaluation: bool, need_signer: bool = True) -> Iterator[Audit]:
    if not plan.aggregator.audit_log or evaluation:
        yield NullAudit()
        return
    signer = None
    if plan.network.use_tls:
        from fx_cli.audit.signing import HeadSigner

        try:
            signer = HeadSigner.from_workspace(plan.workspace, str(plan.network.agg_addr),
                                               plan.network.cert_folder)
        except FxError as err:
            if need_signer:
                raise
            log.warning("the audit log is hash-chained but not signed (no aggregator key: %s)", err.message)
    else:
        log.warning("network.settings.use_tls is false: the audit log is hash-chained but not signed")
    audit = AuditLog(plan.workspace / "logs" / "audit.jsonl", signer)
    try:
        yield audit
    finally:
        audit.close()


def pointer_path(plan: Any) -> Path:
    return Path(plan.resolve_path(plan.aggregator.persistent_db_path)).parent / "status_server.json"


@contextlib.contextmanager
def _status(plan: Any, cols: list[str], ops: Operations,
            on_status: Callable[[str, str | None], None]) -> Iterator[None]:
    from fx_cli.status.binding import new_token, parse_address, tls_context, write_pointer
    from fx_cli.status.server import StatusSource, serve_status
    from fx_cli.status.views import Facts

    binding = parse_address(plan.aggregator.status_address)
    if binding is None:
        yield
        return
    tls, token = None, None
    if not binding.loopback:
        if not plan.network.use_tls:
            raise FxError(f"aggregator.settings.status_address {plan.aggregator.status_address!r} is beyond "
                          "loopback, which needs TLS, but network.settings.use_tls is false",
                          'use "127.0.0.1:PORT" (reach it through an SSH tunnel), or turn TLS on')
        tls = tls_context(plan.workspace, str(plan.network.agg_addr), plan.network.cert_folder)
        token = new_token()
    source = StatusSource(Facts.from_plan(plan, cols), plan.resolve_path(plan.aggregator.persistent_db_path),
                          plan.workspace / "logs" / "audit.jsonl" if plan.aggregator.audit_log else None, ops.board)
    pointer = pointer_path(plan)
    with serve_status(source, binding.host, binding.port, tls, token) as url:
        ops.status_url = url
        write_pointer(pointer, url, token)
        on_status(url, token)
        try:
            yield
        finally:
            pointer.unlink(missing_ok=True)
