"""A middle aggregator's link to the level above: the parent's model in, the region's aggregate out.

The region runs the ordinary round engine for its own sites. Round ``r`` of the
region belongs to the parent's round ``g = r // L`` (``L`` =
``upstream.settings.local_rounds``): before round ``g * L`` opens, the engine
asks this link (its ``ModelSource``) for its input, and the link hands it the
parent's global model of round ``g``; after round ``(g + 1) * L - 1`` closes,
the link uploads the region's model and metrics for the parent's tasks, with
the summed data size of the sites. The parent's final evaluation is the
region's final evaluation round.

Nothing here is kept in memory only: what the link uploads is read back from
the region's saved state (the round records and the current model file), so a
region killed at any point and started again answers its parent's repeated
task from disk, and the parent never counts it twice (its own duplicate check).
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Mapping

from fx_cli.aggregator.layout import StateLayout
from fx_cli.aggregator.metrics import RoundReport
from fx_cli.aggregator.modelstore import RoundModel, write_round_model
from fx_cli.aggregator.state import Store
from fx_cli.collaborator.session import AggregatorClient, RoundGone, RunEnded
from fx_cli.collaborator.tasks import applies_local, is_training
from fx_cli.errors import FxError
from fx_cli.faults import fault
from fx_cli.plan import Plan
from fx_cli.transport import codec
from fx_cli.transport.serde import Action, Outcome, TaskReply, UploadMeta

log = logging.getLogger("fx.region")


class UpstreamLink:
    """``ModelSource`` of a region's engine, and the thread that plays the region's collaborator part above."""

    def __init__(self, parent_plan: Plan, name: str, local_rounds: int, client: AggregatorClient,
                 heartbeat_interval: float) -> None:
        from fx_cli.compression import resolve_pipeline

        self.parent_plan = parent_plan
        self.name = name
        self.local_rounds = local_rounds
        self.client = client
        self.heartbeat_interval = heartbeat_interval
        self.pipeline = resolve_pipeline(parent_plan.config.get("compression_pipeline", {}).get("template"),
                                         parent_plan.settings("compression_pipeline"), parent_plan.workspace)
        self.cond = threading.Condition()
        self.parent_rounds = 0  # the parent's rounds_to_train, from Join
        self.wanted: int | None = None  # the region round whose input the engine waits for
        self.given: RoundModel | None = None
        self.closed_upto = 0  # region rounds completed (and saved)
        self.final_closed = False
        self.parent_done = False  # the parent said FINISHED
        self.error: BaseException | None = None
        self.store: Store | None = None
        self.layout: StateLayout | None = None
        self._thread: threading.Thread | None = None
        self.on_error: Callable[[str], None] = lambda reason: None  # the engine's abort, once it runs

    # --- set-up -------------------------------------------------------------------------------

    def connect(self) -> int:
        """Join the parent; the region's own number of rounds (the parent's × local_rounds)."""
        joined = self.client.join()
        self.parent_rounds = joined.rounds_to_train
        log.info("joined the parent federation %s at %s as '%s' (its round %d/%d)", joined.federation_id,
                 self.client.target, self.name, min(joined.round + 1, joined.rounds_to_train), joined.rounds_to_train)
        if joined.finished:
            self.parent_done = True
        return joined.rounds_to_train * self.local_rounds

    def start(self) -> None:
        self._thread = threading.Thread(target=self._guarded, name="fx-upstream", daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        """Wait until the parent was answered for every round (it says FINISHED), then report any failure."""
        if self._thread is not None:
            self._thread.join(timeout)
        self.raise_error()

    def raise_error(self) -> None:
        with self.cond:
            if self.error is not None:
                raise self.error

    # --- ModelSource (called by the engine's thread) ------------------------------------------

    def bind(self, store: Store, layout: StateLayout, round_num: int) -> None:
        """The region's saved state; ``round_num`` rounds are complete (a restart may resume mid-round)."""
        with self.cond:
            self.store, self.layout = store, layout
            self.closed_upto = max(self.closed_upto, round_num)
            self.cond.notify_all()

    def input_model(self, model: RoundModel, store: Store, layout: StateLayout) -> RoundModel | None:
        """The parent's model for rounds that start a parent round; the region's own model otherwise."""
        with self.cond:
            self.store, self.layout = store, layout
            self.closed_upto = max(self.closed_upto, model.round)
            if model.round % self.local_rounds:
                return model
            self.wanted, self.given = model.round, None
            self.cond.notify_all()
            while self.given is None and self.error is None and not self.parent_done:
                self.cond.wait()
            self.wanted = None
            if self.error is not None:
                raise self.error
            given, self.given = self.given, None
            return given

    def round_closed(self, report: RoundReport) -> None:
        with self.cond:
            if report.final:
                self.final_closed = True
            else:
                self.closed_upto = report.round
            self.cond.notify_all()

    # --- the upstream thread ------------------------------------------------------------------

    def _guarded(self) -> None:
        try:
            self._serve_parent()
        except BaseException as err:  # handed to the engine's thread, which reports it
            with self.cond:
                self.error = err if isinstance(err, FxError) else FxError(
                    f"the link to the parent aggregator failed: {type(err).__name__}: {err}",
                    "run with --debug for the traceback; start the region again to resume")
                self.cond.notify_all()
            self.on_error(self.error.message if isinstance(self.error, FxError) else str(self.error))

    def _serve_parent(self) -> None:
        while True:
            reply = self.client.get_tasks()
            if reply.action is Action.RUN:
                self._parent_round(reply)
            elif reply.action is Action.MISSED:
                log.warning("the parent: %s", reply.message or f"round {reply.round + 1} ended without this region")
            elif reply.action is Action.FINISHED:
                log.info("the parent federation finished after %d rounds", reply.rounds_to_train)
                with self.cond:
                    self.parent_done = True
                    self.cond.notify_all()
                return
            elif reply.action is Action.ABORTED:
                raise RunEnded(f"the parent aggregator ended the run: {reply.message}",
                               "see the parent aggregator's log for the cause")

    def _parent_round(self, reply: TaskReply) -> None:
        from fx_cli.collaborator.heartbeat import Heartbeat

        g, final = reply.round, reply.round >= reply.rounds_to_train
        first = g * self.local_rounds
        task = reply.tasks[0] if reply.tasks else ""
        with Heartbeat(self.client, self.heartbeat_interval, g, task) as beat:
            while beat.fatal is None and not beat.round_closed:
                with self.cond:
                    if self.error is not None or self._answered(g, final):
                        break
                    waiting = self.wanted is not None and self.wanted <= first and self.given is None
                    if not waiting:
                        self.cond.wait(self.heartbeat_interval)
                        continue
                if not self._give(g, first):
                    return
        if beat.fatal is not None:
            raise beat.fatal
        if beat.round_closed:
            log.warning("the parent ended its round %d without this region", g + 1)
            return
        if self.error is None:
            self._upload(g, final, reply)

    def _answered(self, g: int, final: bool) -> bool:
        """Whether the region's rounds for the parent's round ``g`` are complete (the lock is held)."""
        return self.final_closed if final else self.closed_upto >= (g + 1) * self.local_rounds

    def _give(self, g: int, first: int) -> bool:
        """Download the parent's model of round ``g`` as the input of region round ``first``; False: too late."""
        layout = self.layout
        assert layout is not None
        try:
            tensors = self.client.download(g)
        except RoundGone as gone:
            log.warning("the parent's round %d is over before its model arrived (%s)", g + 1, gone)
            return False
        model = write_round_model(layout.sourced_model(first), tensors.items(), first)
        fault("region:after_parent_model")
        log.info("region round %d: input is the parent's model of round %d", first + 1, g + 1)
        with self.cond:
            self.given = model
            self.cond.notify_all()
        return True

    def _upload(self, g: int, final: bool, reply: TaskReply) -> None:
        store = self.store
        assert store is not None
        records = store.history()
        first = _record(records, g * self.local_rounds + 1, final)
        last = first if final else _record(records, (g + 1) * self.local_rounds, False)
        have = set(reply.already_received)
        for task in reply.tasks:
            if task in have:
                continue
            spec = self.parent_plan.tasks.get(task)
            if spec is None:
                raise FxError(f"the parent asked for task '{task}', which its plan does not define",
                              f"use the parent's current plan as {self.parent_plan.path}")
            training = is_training(spec)
            source = last if training or applies_local(spec) else first
            size = int(source.get("data_sizes", {}).get(task, 0))
            if size < 1:
                raise FxError(f"region round results hold no '{task}' result from any site, so there is nothing to "
                              f"report for the parent's round {g + 1}",
                              "check that the region's plan has the parent's tasks and its sites run them")
            metrics = {k.split("/", 1)[1]: float(v) for k, v in source["metrics"].items() if k.startswith(task + "/")}
            tensors = self._region_model(store, g) if training else {}
            encoded = [codec.encode(name, values, self.pipeline) for name, values in tensors.items()]
            meta = UploadMeta(self.client.caller, g, task, size, metrics, len(encoded))
            fault("region:before_upload")
            answer = self.client.upload(meta, encoded)
            if answer.outcome is Outcome.LATE:
                log.warning("the parent's round %d: '%s' not counted: %s", g + 1, task, answer.message)
                return
            log.info("sent '%s' of the parent's round %d (data size %d)", task, g + 1, size)

    def _region_model(self, store: Store, g: int) -> Mapping[str, Any]:
        """The region's aggregate after its rounds for the parent's round ``g``: its current model."""
        model = store.load().model
        expected = (g + 1) * self.local_rounds
        if model is None or model.round != expected:
            raise FxError(f"the region's model of round {expected + 1} is not its current one "
                          f"({'none' if model is None else model.round + 1})",
                          "run `fx aggregator reset` in the region if its state belongs to another run")
        return dict(model.tensors())


def _record(records: list[dict[str, Any]], round_1based: int, final: bool) -> dict[str, Any]:
    for record in records:
        if bool(record.get("final")) == final and (final or int(record.get("round", -1)) == round_1based):
            return record
    raise FxError(f"the region has no saved record of its {'final evaluation' if final else f'round {round_1based}'}",
                  "run `fx aggregator reset` in the region if its state belongs to another run")

