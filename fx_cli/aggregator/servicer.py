"""The aggregator's gRPC servicer: authorize, validate, delegate to the round engine, answer with real codes.

Every call passes through :meth:`Gate.admit` (certificate CN == claimed name,
name in cols.yaml, same plan hash). The engine answers in fx's own types
(``aggregator.outcomes``); this is the only place that maps them to the wire:
``Refusal`` reasons to status codes (``STATUS``), instructions and receipts to
serde replies. Refusals are ``context.abort`` with a precise status code and a
message naming the collaborator, never an assert.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn

import grpc

from fx_cli.aggregator import outcomes
from fx_cli.aggregator.coordinator import Coordinator, Ticket
from fx_cli.aggregator.eligibility import Eligibility, discard_spill, refusal_of
from fx_cli.aggregator.intake import Spilled, UpdateIntake, check_result, check_results
from fx_cli.aggregator.outcomes import Refusal, Refused
from fx_cli.aggregator.peers import GateWatch, peer_of, refusal_reason
from fx_cli.aggregator.transfers import SlotLost, Transfers
from fx_cli.errors import FxError
from fx_cli.faults import fault
from fx_cli.plan.identity import differing_keys
from fx_cli.plan.participants import read_cols
from fx_cli.secagg.rounds import SecAggRounds
from fx_cli.transport.chunks import StreamError
from fx_cli.transport.serde import (BATCHES, Action, Batch, Caller, Capabilities, DownloadRequest, Frame,
                                    HeartbeatReply, HeartbeatRequest, JoinReply, JoinRequest, Outcome, PingReply,
                                    PingRequest, TaskReply, TasksRequest, Trailer, UploadMeta, UploadReply)
from fx_cli.transport.batches import batched

log = logging.getLogger("fx.aggregator")
MAX_PLAN_JSON = 4 << 20
# Model streams (downloads, tensor uploads) moved at once; the others wait their turn. Each in-flight stream
# holds a few chunks in gRPC and Python buffers, so this bounds memory whatever the number of collaborators,
# and two streams already keep both cores of a small server busy.
MAX_TRANSFERS = 2  # default of network.settings.max_concurrent_transfers
READY_KEY = "fx-transfer"
# The wire status of each reason the engine refuses something.
STATUS: dict[Refusal, grpc.StatusCode] = {
    Refusal.RUN_ENDED: grpc.StatusCode.ABORTED,
    Refusal.NOT_STARTED: grpc.StatusCode.FAILED_PRECONDITION,
    Refusal.ROUND_OVER: grpc.StatusCode.OUT_OF_RANGE,
    Refusal.NOT_ASSIGNED: grpc.StatusCode.FAILED_PRECONDITION,
    Refusal.DUPLICATE: grpc.StatusCode.ALREADY_EXISTS,
    Refusal.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Refusal.STORAGE: grpc.StatusCode.UNAVAILABLE,
}
_ACTIONS = {outcomes.Action.RUN: Action.RUN, outcomes.Action.WAIT: Action.WAIT, outcomes.Action.MISSED: Action.MISSED,
            outcomes.Action.FINISHED: Action.FINISHED, outcomes.Action.ABORTED: Action.ABORTED}


def refuse(context: grpc.ServicerContext, err: Refused) -> NoReturn:
    """Abort the call with the status code of ``err.reason``."""
    context.abort(STATUS[err.reason], err.message)


def task_reply(ins: outcomes.Instruction) -> TaskReply:
    return TaskReply(_ACTIONS[ins.action], ins.round, ins.tasks, ins.already_received, ins.rounds_to_train,
                     ins.message)


def upload_reply(receipt: outcomes.Receipt) -> UploadReply:
    return UploadReply(Outcome.ACCEPTED if receipt.accepted else Outcome.LATE, receipt.wire_bytes, receipt.message)


class Gate:
    """The one place where a call's caller is authenticated and authorized.

    ``plan/cols.yaml`` is re-read when it changes, so removing a collaborator shuts it out at once (there is
    no certificate revocation); names added after start-up are not admitted, since rounds were planned without them.
    """

    def __init__(self, cols: list[str], plan_hash: str, tls_identity: bool, single_cert_cn: str | None,
                 cols_path: Path | None = None, watch: GateWatch | None = None) -> None:
        self.watch = watch  # told of admissions and refusals (audit log, status page)
        self.cols = frozenset(cols)
        self.plan_hash = plan_hash
        self.tls_identity = tls_identity
        self.single_cert_cn = single_cert_cn
        self.cols_path = cols_path
        self.on_removed: Callable[[frozenset[str]], None] | None = None  # the engine lets the round go on
        self._lock = threading.Lock()
        self._stamp = self._mtime()
        self._last_refusal: dict[str, tuple[str | None, str]] = {}

    def _mtime(self) -> int | None:
        try:
            return self.cols_path.stat().st_mtime_ns if self.cols_path else None
        except OSError:
            return None

    def authorized(self) -> frozenset[str]:
        """The collaborators admitted now."""
        removed: frozenset[str] = frozenset()
        with self._lock:
            stamp = self._mtime()
            if stamp != self._stamp and self.cols_path is not None:
                self._stamp = stamp
                try:
                    now = self.cols & frozenset(read_cols(self.cols_path))
                    removed, self.cols = self.cols - now, now
                except (FxError, OSError) as err:
                    log.warning("kept the authorized collaborators: %s cannot be read (%s)", self.cols_path, err)
            cols = self.cols
        if removed and self.on_removed is not None:
            self.on_removed(removed)
        return cols

    def admit(self, context: grpc.ServicerContext, caller: Caller, check_plan: bool = True) -> str:
        """The caller's name, or the call is aborted (UNAUTHENTICATED, PERMISSION_DENIED, FAILED_PRECONDITION)."""
        from fx_cli.pki.authz import authorize

        try:
            authorize(context, caller.name, self.authorized(), tls=self.tls_identity,
                      single_cert_cn=self.single_cert_cn)
            if check_plan and caller.plan_hash != self.plan_hash:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                              f"collaborator '{caller.name}' uses plan {caller.plan_hash[:12] or '(none)'}, the "
                              f"aggregator plan {self.plan_hash[:12]}; restart the collaborator with the aggregator's "
                              "plan")
        except Exception as err:
            self.refused(context, caller.name, err)
            raise
        if self.watch is not None and check_plan:
            self.watch.admitted(caller.name)  # no certificate parsing on every call: only Join records the peer
        return caller.name

    def refused(self, context: grpc.ServicerContext, claimed: str, err: BaseException) -> None:
        """Log who was refused, with which certificate and why (once per change), and tell the watch."""
        peer, reason = peer_of(context), refusal_reason(context, err)
        key = (peer.cert_fingerprint, reason)
        with self._lock:
            repeated = self._last_refusal.get(claimed) == key
            self._last_refusal[claimed] = key
        if not repeated:
            log.warning("refused a call claiming to be '%s' from %s (certificate %s): %s", claimed[:64], peer.address,
                        peer.cert_fingerprint or "none", reason)
        if self.watch is not None:
            self.watch.refused(claimed, peer, reason)

    def joined(self, context: grpc.ServicerContext, name: str) -> None:
        if self.watch is not None:
            self.watch.joined(name, peer_of(context))


def plan_differences(own: dict[str, Any], plan_json: bytes) -> list[str]:
    """Key paths where a caller's plan JSON differs from ours."""
    if len(plan_json) > MAX_PLAN_JSON:
        return ["(the collaborator's plan is too large to compare)"]
    try:
        theirs = json.loads(plan_json.decode("utf-8")) if plan_json else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        return ["(the collaborator's plan could not be read)"]
    return differing_keys(own, theirs)


class Servicer:
    """Implements ``FederationServicer`` (see ``fx_cli.transport.methods``)."""

    def __init__(self, coordinator: Coordinator, gate: Gate, plan_config: dict[str, Any], federation_id: str,
                 chunk: int, poll_timeout: float, pipelines: set[str], stall_timeout: float = 120.0,
                 max_transfers: int = MAX_TRANSFERS, clock: Callable[[], float] = time.monotonic,
                 eligibility: Eligibility | None = None, secagg: SecAggRounds | None = None,
                 upload_digest: bool = True) -> None:
        self.secagg_rounds = secagg
        self.upload_digest = upload_digest  # BLAKE3 digest of each upload for the audit log (off with the audit log)
        self.eligibility = eligibility
        self.coord = coordinator
        self.gate = gate
        self.plan_config = plan_config
        self.federation_id = federation_id
        self.chunk = chunk
        self.poll_timeout = poll_timeout
        self.pipelines = pipelines
        self.transfers = Transfers(max(1, max_transfers), stall_timeout, clock)

    def _admit(self, context: grpc.ServicerContext, caller: Caller) -> str:
        """Admit a federation call; the caller then counts as connected (it must be told when the run ends)."""
        name = self.gate.admit(context, caller)
        self.coord.seen(name)
        return name

    def _alive(self, name: str, context: grpc.ServicerContext) -> Callable[[], bool]:
        """For a long transfer: note that ``name`` is there, unless its call is gone."""
        def alive() -> bool:
            if not context.is_active():
                return False
            self.coord.seen(name)
            return True
        return alive

    def join(self, request: JoinRequest, context: grpc.ServicerContext) -> JoinReply:
        name = self.gate.admit(context, request.caller, check_plan=False)
        if request.caller.plan_hash != self.gate.plan_hash:
            keys = plan_differences(self.plan_config, request.plan_json)
            log.warning("refused '%s': its plan differs (keys: %s)", name, ", ".join(keys[:10]) or "unknown")
            try:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                              f"plan mismatch: collaborator '{name}' has plan hash {request.caller.plan_hash[:16]}, "
                              f"the aggregator has {self.gate.plan_hash[:16]}; differing keys: "
                              f"{', '.join(keys[:20]) or 'unknown'}")
            except Exception as err:
                self.gate.refused(context, name, err)
                raise
        if request.capabilities is not None:
            self._capabilities(context, name, request.capabilities)
        else:
            self.gate.joined(context, name)
        self.coord.seen(name)
        done, finished = self.coord.progress()
        log.info("collaborator '%s' joined", name)
        return JoinReply(self.federation_id, done, self.coord.rounds_to_train, finished)

    def _capabilities(self, context: grpc.ServicerContext, name: str, caps: Capabilities) -> None:
        """A collaborator's report of itself (second Join): eligible, or refused naming the rule."""
        problem = self.eligibility.check_join(caps.train_samples, caps.fx_version) if self.eligibility else ""
        if problem:
            log.warning("refused '%s': %s", name, problem)
            try:
                context.abort(grpc.StatusCode.PERMISSION_DENIED, f"collaborator '{name}' {problem}")
            except Exception as err:
                self.gate.refused(context, name, err)
                raise
        if self.gate.watch is not None:
            self.gate.watch.capabilities(name, caps)

    def get_tasks(self, request: TasksRequest, context: grpc.ServicerContext) -> TaskReply:
        name = self._admit(context, request.caller)
        late = self._results_with_request(name, request, context) if request.results else ()
        ins = self.coord.next_tasks(name, self.poll_timeout)
        if ins.action is outcomes.Action.RUN:
            log.debug("round %d: '%s' runs %s", ins.round + 1, name, ", ".join(ins.tasks))
        elif ins.action is outcomes.Action.FINISHED:
            log.info("told '%s' the federation is finished", name)
        return replace(task_reply(ins), not_counted=late)

    def _results_with_request(self, name: str, request: TasksRequest,
                              context: grpc.ServicerContext) -> tuple[str, ...]:
        """Count the metrics-only results a task request carries (protocol 3) as if each had been uploaded
        alone; returns the tasks of those that came after their round ended. All are checked before any counts;
        one already counted is skipped (the request is a retry)."""
        r = request.results_round
        late: list[str] = []
        try:
            try:
                check_results(request.results)
            except Refused as err:
                self.coord.refused(name, r, request.results[0].task, err)
                raise
            for result in request.results:
                if self.coord.holds(name, r, result.task):
                    continue
                ticket = self.coord.open_upload(name, r, result.task)
                if isinstance(ticket, outcomes.Receipt):
                    log.info("round %d: late result of '%s' from '%s' not counted", r + 1, result.task, name)
                    late.append(result.task)
                    continue
                intake = UpdateIntake(ticket.model, ticket.target, self.pipelines, 0, digest=self.upload_digest)
                spilled = intake.receive(iter([Trailer(0, 0)]))  # no tensors: the same record as uploaded alone
                self.coord.accept(ticket, result.data_size, result.metrics, spilled)
                log.info("%s: received '%s' from '%s' (data size %d, with its task request)", self._round_name(r),
                         result.task, name, result.data_size)
            fault("aggregator:results_counted")  # counted and durable; the caller has no answer yet
        except Refused as err:
            log.warning("rejected a result of '%s' for round %d sent with its task request: %s", name, r + 1,
                        err.message)
            refuse(context, err)
        return tuple(late)

    def download_model(self, request: DownloadRequest, context: grpc.ServicerContext) -> Iterator[Frame | Batch]:
        name = self._admit(context, request.caller)
        try:
            model = self.coord.model_for(request.round)
        except Refused as err:
            refuse(context, err)
        self.coord.count_out(model.nbytes)
        what = f"the round {request.round + 1} model download of '{name}'"

        def frames() -> Iterator[Frame]:
            for i, frame in enumerate(model.frames(self.chunk)):
                if i == 2:  # the model header and a tensor header are on their way, its data is not
                    fault("aggregator:sending_model")
                yield frame
        try:
            with self.transfers.slot(what, self._alive(name, context)) as lease:
                # A caller of protocol 2 takes small frames together: one message (one hand-off between the
                # server's threads) instead of one per header and chunk.
                for message in batched(frames()) if request.protocol >= BATCHES else frames():
                    lease.touch(self.transfers.clock())
                    yield message
        except SlotLost as err:
            context.abort(err.code, err.message)

    def upload_results(self, frames: Iterator[Frame | None], context: grpc.ServicerContext) -> UploadReply:
        header = next(frames, None)
        if not isinstance(header, UploadMeta):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "an upload must start with its header (round, task)")
        name = self._admit(context, header.caller)
        if self.secagg_rounds is not None and header.tensor_count:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"'{name}' sent its '{header.task}' result with plain "
                          "tensors; with secure aggregation only masked updates are accepted (SecAggUploadMasked)")
        try:
            try:
                check_result(header.task, header.data_size, header.metrics)
            except Refused as err:
                self.coord.refused(name, header.round, header.task, err)
                raise
            ticket = self.coord.open_upload(name, header.round, header.task)
            if isinstance(ticket, outcomes.Receipt):
                log.info("round %d: late result of '%s' from '%s' not counted", header.round + 1, header.task, name)
                return upload_reply(ticket)
            return self._receive(ticket, header, frames, context)
        except Refused as err:
            log.warning("rejected the '%s' result of '%s' for round %d: %s", header.task, name, header.round + 1,
                        err.message)
            refuse(context, err)
        except SlotLost as err:
            log.warning("the '%s' result of '%s' for round %d: %s", header.task, name, header.round + 1, err.message)
            context.abort(err.code, err.message)

    def _receive(self, ticket: Ticket, header: UploadMeta, frames: Iterator[Frame | None],
                 context: grpc.ServicerContext) -> UploadReply:
        intake = UpdateIntake(ticket.model, ticket.target, self.pipelines, header.tensor_count,
                              digest=self.upload_digest)
        try:
            if header.tensor_count:
                what = f"the round {ticket.round + 1} '{ticket.task}' upload of '{ticket.collaborator}'"
                with self.transfers.slot(what, self._alive(ticket.collaborator, context)) as lease:
                    if not header.eager:  # a small upload is all here already; a large one streams only now
                        context.send_initial_metadata(((READY_KEY, "go"),))
                    spilled = intake.receive(self.transfers.moving(lease, frames))
            else:
                spilled = intake.receive(frames)
            self._check_eligible(ticket, header.data_size, spilled)
            receipt = self.coord.accept(ticket, header.data_size, header.metrics, spilled)
        except StreamError as err:
            refused = Refused(Refusal.INVALID, f"update from '{ticket.collaborator}' rejected: {err}")
            self.coord.refused(ticket.collaborator, ticket.round, ticket.task, refused)
            raise refused from None
        except OSError as err:  # disk full or similar: the sender retries UNAVAILABLE within its deadline
            log.error("cannot store the '%s' result of '%s': %s", ticket.task, ticket.collaborator, err)
            self.coord.storage.record(f"{err.strerror or err}" + (f" ({err.filename})" if err.filename else ""))
            raise Refused(Refusal.STORAGE, f"the aggregator cannot store updates right now "
                                           f"({err.strerror or err}); retrying") from None
        except grpc.RpcError:
            log.warning("round %d: the upload of '%s' from '%s' was cut off; nothing kept", ticket.round + 1,
                        ticket.task, ticket.collaborator)
            raise
        log.info("%s: received '%s' from '%s' (data size %d%s)", self._round_name(ticket.round), ticket.task,
                 ticket.collaborator, header.data_size,
                 f", {spilled.wire_bytes / 2**20:.1f} MiB" if spilled.path else "")
        return upload_reply(receipt)

    def _round_name(self, index: int) -> str:
        """How logs name round ``index`` (0-based): the one after the last is the final model's evaluation."""
        return "final model" if index >= self.coord.rounds_to_train else f"round {index + 1}"

    def _check_eligible(self, ticket: Ticket, data_size: int, spilled: Spilled) -> None:
        """Apply the eligibility rules to a received training result (its spill is dropped when refused)."""
        problem = refusal_of(self.eligibility, ticket.model, data_size, spilled)
        if problem:
            discard_spill(spilled)
            refused = Refused(Refusal.INVALID, f"the '{ticket.task}' result of '{ticket.collaborator}': {problem}")
            self.coord.refused(ticket.collaborator, ticket.round, ticket.task, refused)
            raise refused

    def heartbeat(self, request: HeartbeatRequest, context: grpc.ServicerContext) -> HeartbeatReply:
        name = self._admit(context, request.caller)
        try:
            alive = self.coord.heartbeat(name, request.round)
        except Refused as err:
            refuse(context, err)
        return HeartbeatReply(alive.round_open, alive.round)

    def secagg(self, stage: str, request: Any, context: grpc.ServicerContext) -> Any:
        """The secure-aggregation stages (``secagg_calls.py``)."""
        from fx_cli.aggregator.secagg_calls import answer

        wait = self.secagg_rounds.stage_timeout * 2 if self.secagg_rounds else 0.0
        return answer(stage, request, context, self.secagg_rounds, self.coord, self._admit, wait)

    def ping(self, request: PingRequest, context: grpc.ServicerContext) -> PingReply:
        name = self.gate.admit(context, request.caller, check_plan=False)
        matches = request.caller.plan_hash == self.gate.plan_hash
        keys = () if matches else tuple(plan_differences(self.plan_config, request.plan_json)[:50])
        done, finished = self.coord.progress()
        log.info("ping from '%s' (plan %s)", name, "matches" if matches else "differs")
        return PingReply(self.federation_id, self.gate.plan_hash, matches, keys, done,
                         self.coord.rounds_to_train, finished)
