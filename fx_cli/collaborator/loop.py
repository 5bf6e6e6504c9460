"""``fx collaborator start``: join, then run every round's tasks until the aggregator says the run is over."""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

import numpy as np

from fx_cli.aggregator.inputs import gather
from fx_cli.aggregator.memory import limit_malloc_arenas, release_free_memory
from fx_cli.aggregator.metrics import append_jsonl
from fx_cli.collaborator.heartbeat import Heartbeat
from fx_cli.collaborator.secagg_stages import SecAggStages, secagg_params
from fx_cli.collaborator.session import AggregatorClient, RoundGone, RunEnded
from fx_cli.privacy.local import local_privacy
from fx_cli.collaborator.tasks import (GlobalModel, TaskExecutor, TaskOutput, applies_local, is_training,
                                      iter_update)
from fx_cli.errors import FxError, PlanError
from fx_cli.secagg.keys import SecAggError
from fx_cli.names import check_collaborator_name
from fx_cli.plan import Plan, load_plan
from fx_cli.plan.participants import read_data
from fx_cli.transport.serde import Action, MetricsResult, Outcome, TaskReply, UploadMeta

log = logging.getLogger("fx.collaborator")
T = TypeVar("T")


@dataclass(frozen=True)
class CollaboratorRun:
    name: str
    plan_path: Path = Path("plan/plan.yaml")
    data_path: Path = Path("plan/data.yaml")


@dataclass(frozen=True)
class Held:
    """Results of round ``round`` that go with the next task request (protocol 3)."""
    round: int
    results: tuple[MetricsResult, ...]


@dataclass
class CollaboratorResult:
    rounds: list[int] = field(default_factory=list)  # 1-based rounds whose results were accepted
    missed: list[int] = field(default_factory=list)
    already_finished: bool = False


def client_credentials_for(plan: Plan, name: str) -> Any:
    """TLS credentials of ``name`` (None, with a warning, when the plan says plain TCP)."""
    net = plan.network
    if not net.use_tls:
        log.warning("network.settings.use_tls is false: talking to the aggregator over PLAIN TCP, unencrypted")
        return None
    from fx_cli.pki.tls import client_credentials

    return client_credentials(plan.workspace, name if net.require_client_auth else None, cert_folder=net.cert_folder)


def run_collaborator(run: CollaboratorRun) -> CollaboratorResult:
    """Take part in the federation until it finishes; raise ``FxError`` when it cannot."""
    from fx_cli.runners.build import build_runner

    name = check_collaborator_name(run.name)
    limit_malloc_arenas()  # chunk buffers from gRPC's threads go back to the OS, not into per-thread heaps
    plan, data_path = gather(lambda: load_plan(run.plan_path), lambda: _data_path(run.data_path, name))
    from fx_cli.runners.datapath import check_data_path

    check_data_path(plan, data_path)  # cheap and framework-free: a wrong path fails before connecting
    with AggregatorClient(plan, name, client_credentials_for(plan, name)) as client:
        joined = client.join()
        log.info("joined %s at %s as '%s' (round %d/%d)", joined.federation_id, client.target, name,
                 min(joined.round + 1, joined.rounds_to_train), joined.rounds_to_train)
        if joined.finished:
            log.info("the federation has already finished")
            return CollaboratorResult(already_finished=True)
        # The data loader is built only after the aggregator accepted us: a refused collaborator fails fast.
        log.info("loading the data (%s) and building the model of %s (a framework such as TensorFlow takes "
                 "seconds to load)", data_path, plan.template("task_runner"))
        runner = build_runner(plan, data_path)
        from fx_cli.collaborator.capabilities import capabilities_of

        caps = capabilities_of(runner)
        client.join(caps)  # the aggregator checks its eligibility rules against what we report
        log.info("reported %d training / %d validation samples, %d CPUs, GPU %s", caps.train_samples,
                 caps.valid_samples, caps.cpu_count, "yes" if caps.gpu else "no")
        executor = TaskExecutor(runner, plan.tasks, plan.collaborator.opt_treatment, name, local_privacy(plan.config))
        return CollaboratorLoop(plan, name, client, executor).run()


def _data_path(path: Path, name: str) -> str:
    data = read_data(path)
    if name not in data:
        raise PlanError([f"collaborator '{name}' has no line in {path}: add '{name},<data path>' "
                         "(fx collaborator create does this)"])
    return data[name]


class CollaboratorLoop:
    def __init__(self, plan: Plan, name: str, client: AggregatorClient, executor: TaskExecutor) -> None:
        from fx_cli.compression import resolve_pipeline

        self.plan = plan
        self.name = name
        self.client = client
        self.executor = executor
        self.settings = plan.collaborator
        self.pipeline = resolve_pipeline(plan.config.get("compression_pipeline", {}).get("template"),
                                         plan.settings("compression_pipeline"), plan.workspace)
        self.metrics_path = plan.workspace / "logs" / f"{name}_metrics.jsonl"
        self.result = CollaboratorResult()
        params = secagg_params(plan)
        self.secagg = SecAggStages(plan, name, client, params) if params is not None else None
        self.downloaded = False  # the first download is announced: it follows a quiet start-up

    def run(self) -> CollaboratorResult:
        held: Held | None = None  # results that go with the next task request
        while True:
            reply = self.client.get_tasks(held.round, held.results) if held else self.client.get_tasks()
            if held is not None and reply.not_counted:
                log.warning("round %d: %s result(s) not counted: the round ended before they arrived",
                            held.round + 1, ", ".join(f"'{t}'" for t in reply.not_counted))
                self._missed(held.round)
            held = None
            if reply.action is Action.RUN:
                held = self._round(reply)
            elif reply.action is Action.MISSED:
                log.warning("%s", reply.message or f"missed round {reply.round + 1}")
                self._missed(reply.round)
            elif reply.action is Action.FINISHED:
                log.info("the federation finished after %d rounds; exiting", reply.rounds_to_train)
                return self.result
            elif reply.action is Action.ABORTED:
                raise RunEnded(f"the aggregator ended the run: {reply.message}",
                               "see the aggregator's log for the cause")

    def _round(self, reply: TaskReply) -> Held | None:
        """Run the round's tasks and send their results; a metrics-only result that ends the round is returned
        instead, for the next task request to carry (protocol 3): the request follows at once, so nothing
        waits on it, and it saves the aggregator a call per collaborator and round."""
        r = reply.round
        received = set(reply.already_received)
        needs_local = any(t not in received and applies_local(self.executor.spec(t)) for t in reply.tasks)
        todo = [t for t in reply.tasks
                if t not in received or (is_training(self.executor.spec(t)) and needs_local)]
        loads = [i for i, t in enumerate(todo) if self.executor.loads_global(t)]
        # The global model outlives its loads into the runner for deltas, local privacy, secure aggregation
        # (all subtract it from the update) and where the task order needs it (see ``keeps_global``); otherwise
        # it is downloaded straight into the runner's own arrays when the runner offers them.
        keep = (self.settings.use_delta_updates or self.executor.privacy is not None or self.secagg is not None
                or self.executor.keeps_global(todo))
        if not self.downloaded:
            log.info("downloading the %s model", "final" if r >= reply.rounds_to_train else f"round {r + 1}")
        try:
            model = GlobalModel(self.client.download(r, {} if keep else self.executor.runner.tensor_buffers()))
            self.downloaded = True
        except RoundGone as gone:
            log.warning("round %d is over before its model arrived (%s)", r + 1, gone)
            return None
        finally:
            release_free_memory()  # the stream's chunk buffers go back to the OS before the runner works
        final = r >= reply.rounds_to_train
        what = "final model" if final else f"round {r + 1}/{reply.rounds_to_train}"
        log.info("%s: running %s", what, ", ".join(reply.tasks))
        held: Held | None = None
        for i, task in enumerate(todo):
            masked = self.secagg is not None and is_training(self.executor.spec(task)) and not final \
                and task not in received
            if masked and self.secagg is not None and not self._secagg(self.secagg.before_training, r):
                # The round's key exchange went on without us (we restarted, or came late): finish the round's
                # tasks without a model update, so the round is not held up waiting for one.
                self.secagg.state, masked = None, False
            with Heartbeat(self.client, self.settings.heartbeat_interval, r, task) as beat:
                out = self.executor.run(task, r, model, release_global=not keep and bool(loads) and i == loads[-1])
            if beat.fatal is not None:
                raise beat.fatal
            self._log(r, out, final)
            if task in received:
                continue
            if masked and self.secagg is not None:
                sent = self._secagg(lambda r: self.secagg.send_masked(r, out, model) if self.secagg else out, r)
                if not sent:
                    return None
                out = sent
            elif self.secagg is not None and out.tensors:
                out = dataclasses.replace(out, tensors={})  # under secure aggregation no plain update leaves
            if beat.round_closed:
                self._missed(r)
                return None
            if i == len(todo) - 1 and not out.tensors and self.client.results_with_requests and self.secagg is None:
                held = Held(r, (MetricsResult(out.task, out.data_size, out.metrics),))
            elif not self._send(r, out, model):
                self._missed(r)
                return None
        if self.secagg is not None and not final and not self._secagg(self.secagg.unmask, r):
            return None
        if not final:
            self.result.rounds.append(r + 1)
        return held

    def _secagg(self, stage: Callable[[int], T], r: int) -> T | None:
        """A secure-aggregation stage; None when the aggregator could not complete it (it redoes the round)."""
        try:
            return stage(r)
        except (SecAggError, RunEnded):
            raise  # a peer's key that does not verify, or the end of the run: stop here
        except FxError as err:
            log.warning("round %d: secure aggregation went on without this collaborator (%s)", r + 1, err.message)
            return None

    def _missed(self, r: int) -> None:
        if r + 1 not in self.result.missed:
            self.result.missed.append(r + 1)

    def _send(self, r: int, out: TaskOutput, model: Mapping[str, np.ndarray]) -> bool:
        """Upload one task's result; False when the round ended before it arrived."""
        delta = self.settings.use_delta_updates
        # One tensor encoded at a time, as it is sent: a delta or a compressed copy never exists for the whole
        # model at once.
        tensors = lambda: iter_update(out, model, self.pipeline, delta)  # noqa: E731
        meta = UploadMeta(self.client.caller, r, out.task, out.data_size, out.metrics, len(out.tensors))
        try:
            reply = self.client.upload(meta, tensors, nbytes=sum(t.nbytes for t in out.tensors.values()))
        finally:
            release_free_memory()
        if reply.outcome is Outcome.LATE:
            log.warning("round %d: '%s' result not counted: %s", r + 1, out.task, reply.message)
            return False
        return True

    def _log(self, r: int, out: TaskOutput, final: bool) -> None:
        shown = " ".join(f"{k}={v:.4f}" for k, v in out.metrics.items())
        log.info("%s: %s  %s  (%d samples, %.2f s)", "final model" if final else f"round {r + 1}", out.task, shown,
                 out.data_size, out.seconds)
        # The final model's evaluation is recorded as the aggregator records it: the last round's number, final.
        append_jsonl(self.metrics_path, {"round": r if final else r + 1, "final": final, "task": out.task,
                                         "metrics": out.metrics,
                                         "data_size": out.data_size, "seconds": round(out.seconds, 4),
                                         "cpu_s": round(out.cpu_seconds, 4)})
