"""The simulator's collaborator side: virtual collaborators played against the engine with a pool's workers.

``Dispatcher`` asks the coordinator for each virtual collaborator's instruction, has a pool worker run the
turn, and hands the spilled results back to ``accept`` (``run.py`` checks the inputs and wires it up).
"""
from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from fx_cli.aggregator.eligibility import Eligibility, discard_spill, refusal_of
from fx_cli.aggregator.coordinator import Coordinator, Ticket
from fx_cli.aggregator.engine import Engine
from fx_cli.aggregator.metrics import RoundReport
from fx_cli.aggregator.outcomes import Action, Event, EventKind, Receipt, Refusal, Refused
from fx_cli.errors import FxError
from fx_cli.simulate.pool import Died, Pool
from fx_cli.simulate.secagg import SimulatedSecAgg
from fx_cli.simulate.worker import Turn, TurnDone

log = logging.getLogger("fx.simulate")
RESUME_HINT = "run `fx simulate` again with the same options: it resumes from the saved state"

@dataclass(frozen=True)
class Roster:
    """The virtual collaborators and each one's data path (as a data.yaml line would give it)."""

    data_paths: dict[str, str]
    source: str

    @property
    def names(self) -> list[str]:
        return list(self.data_paths)


class Progress(Protocol):
    def round_started(self, label: str, total: int) -> None: ...

    def advance(self) -> None: ...

    def round_ended(self) -> None: ...


class NoProgress:
    def round_started(self, label: str, total: int) -> None:
        pass

    def advance(self) -> None:
        pass

    def round_ended(self) -> None:
        pass



def _wake_on(event: Event, wake: threading.Event) -> None:
    if event.kind in (EventKind.ROUND_OPENED, EventKind.RUN_FINISHED, EventKind.RUN_ABORTED):
        wake.set()


class Dispatcher:
    """Plays every virtual collaborator against the engine, using the pool's workers."""

    def __init__(self, engine: Engine, pool: Pool, roster: Roster, progress: Progress, wake: threading.Event,
                 secagg: SimulatedSecAgg | None = None) -> None:
        self.engine = engine
        self.secagg = secagg
        self.coord: Coordinator = engine.coord
        self.pool = pool
        self.roster = roster
        self.progress = progress
        self.wake = wake
        # Turns sent to each worker and not yet reported, oldest first (the first is the one it is running).
        self.inflight: dict[int, collections.deque[tuple[Turn, dict[str, Ticket]]]] = {
            w: collections.deque() for w in range(pool.size)}
        self.queue: collections.deque[str] = collections.deque()
        self.deferred: list[str] = []  # asked, told to wait although they have tasks in this round
        self.round: int | None = None
        self.outcome: dict[str, Any] = {}
        self.rules = Eligibility.from_settings(engine.plan.aggregator.eligibility)

    def run(self, on_round: Callable[[RoundReport], None]) -> list[RoundReport]:
        thread = threading.Thread(target=self._drive, args=(on_round,), name="fx-engine", daemon=True)
        thread.start()
        try:
            self._dispatch()
        except BaseException as err:
            self.engine.abort(err.message if isinstance(err, FxError) else f"simulation stopped ({err!r})")
            thread.join()
            raise
        thread.join()
        if "error" in self.outcome:
            raise self.outcome["error"]
        reports: list[RoundReport] = self.outcome["reports"]
        return reports

    def _drive(self, on_round: Callable[[RoundReport], None]) -> None:
        def reported(report: RoundReport) -> None:
            self.progress.round_ended()
            on_round(report)

        try:
            self.outcome["reports"] = self.engine.drive(reported)
        except BaseException as err:  # noqa: BLE001 - handed to the main thread
            self.outcome["error"] = err
            self.engine.abort(err.message if isinstance(err, FxError) else repr(err))
        finally:
            self.wake.set()

    @property
    def busy(self) -> bool:
        return any(self.inflight.values())

    def _dispatch(self) -> None:
        while True:
            if self.coord.is_over and not self.busy:
                return
            self._follow_round()
            self._fill()
            if self.busy:
                for worker, report in self.pool.wait(0.5):
                    self._handle(worker, report)
            elif not self.coord.is_over:
                self.wake.wait(1.0)
                self.wake.clear()

    def _follow_round(self) -> None:
        current, _ = self.coord.progress()
        if current != self.round and not self.coord.is_over:
            size = self.coord.round_size()
            if size == 0:
                return  # the round is being closed; the next one opens shortly
            self.round = current
            self.queue = collections.deque(self.roster.names)
            self.deferred = []
            total = self.engine.rounds_to_train
            label = "final model" if current >= total else f"round {current + 1}/{total}"
            self.progress.round_started(label, size)
            if self.secagg is not None and current < total:
                self.secagg.open_round(current)  # keys advertised and shared before any training turn

    def _fill(self) -> None:
        """Keep every worker fed: a batch of turns per message (fewer round trips), refilled at half."""
        for worker, inflight in self.inflight.items():
            if len(inflight) > self.pool.batch // 2:
                continue
            share = -(-len(self.queue) // self.pool.size)  # the round's tail is split evenly
            batch: list[tuple[Turn, dict[str, Ticket]]] = []
            while self.queue and len(inflight) + len(batch) < min(self.pool.batch, max(share, 1)):
                if self.coord.is_over:
                    return
                item = self._next_turn(self.queue.popleft())
                if item is not None:
                    batch.append(item)
            if batch:
                inflight.extend(batch)
                self.pool.submit(worker, [turn for turn, _ in batch])

    def _next_turn(self, col: str) -> tuple[Turn, dict[str, Ticket]] | None:
        self.coord.seen(col)
        ins = self.coord.next_tasks(col, 0)
        if ins.action is Action.MISSED:
            self.queue.appendleft(col)  # the notice is delivered; ask again
        elif ins.action is Action.WAIT and self.coord.has_work(col):
            self.deferred.append(col)  # a sequential schedule: its turn comes when another one is done
        elif ins.action is Action.RUN:
            tickets = self._tickets(col, ins.round, ins.tasks, ins.already_received)
            model = self.coord.model_for(ins.round)
            turn = Turn(col, self.roster.data_paths[col], ins.round, ins.rounds_to_train, ins.tasks,
                        ins.already_received, model, {t: str(k.target) for t, k in tickets.items()},
                        str(self.engine.layout.opt_state(col)))
            return turn, tickets
        return None

    def _tickets(self, col: str, round_num: int, tasks: tuple[str, ...], have: tuple[str, ...]) -> dict[str, Ticket]:
        tickets = {}
        for task in tasks:
            if task in have:
                continue
            granted = self.coord.open_upload(col, round_num, task)
            if isinstance(granted, Ticket):
                tickets[task] = granted
        return tickets

    def _handle(self, worker: int, report: TurnDone | Died) -> None:
        if isinstance(report, Died):
            turn = self.inflight[worker][0][0]
            raise FxError(f"simulation worker {worker + 1} died ({report.how}) while running collaborator "
                          f"'{turn.collaborator}' ({_what(turn)}); the run stopped and its state is saved",
                          f"{RESUME_HINT}; if it ran out of memory, use fewer --workers "
                          "(or a smaller simulation.settings.worker_memory_mb budget per worker)")
        turn, tickets = self.inflight[worker].popleft()
        if (turn.collaborator, turn.round) != (report.collaborator, report.round):
            raise FxError(f"simulation worker {worker + 1} reported '{report.collaborator}', expected "
                          f"'{turn.collaborator}'", "report this as a bug in fx simulate")
        self.queue.extend(self.deferred)  # a turn ended: those told to wait may go now
        self.deferred = []
        if report.error:
            raise FxError(f"collaborator '{turn.collaborator}' ({_what(turn)}): {report.error}; the run stopped "
                          "and its state is saved", report.hint or RESUME_HINT)
        for done in report.results:
            ticket = tickets[done.task]
            if done.refused:
                err = Refused(Refusal.INVALID, done.refused)
                self.coord.refused(turn.collaborator, turn.round, done.task, err)
                raise FxError(f"the '{done.task}' result of '{turn.collaborator}' ({_what(turn)}) was refused: "
                              f"{done.refused}", "fix the task runner so that it returns the global model's tensors "
                                                 "(finite values, same names and shapes)")
            problem = refusal_of(self.rules, ticket.model, done.data_size, done.spilled)
            if problem:  # aggregator.settings.eligibility, as over the network
                discard_spill(done.spilled)
                self.coord.refused(turn.collaborator, turn.round, done.task, Refused(Refusal.INVALID, problem))
                raise FxError(f"the '{done.task}' result of '{turn.collaborator}' ({_what(turn)}) was refused: "
                              f"{problem}; the run stopped and its state is saved",
                              "a simulated collaborator never leaves, so the round could not complete without it: "
                              "change aggregator.settings.eligibility or the data, then " + RESUME_HINT)
            if done.delta is not None:
                if self.secagg is None:
                    raise FxError("a simulation worker sent an update delta without secure aggregation",
                                  "report this as a bug in fx simulate")
                self.coord.count_in(self.secagg.mask(turn.round, turn.collaborator, done.delta, done.data_size))
            try:
                receipt: Receipt = self.coord.accept(ticket, done.data_size, done.metrics, done.spilled)
            except Refused as err:
                log.warning("%s: '%s' of '%s' not counted: %s", _what(turn), done.task, turn.collaborator,
                            err.message)
                continue
            except OSError as err:
                raise FxError(f"cannot store the '{done.task}' result of '{turn.collaborator}': {err}",
                              "free disk space under local_state/, then " + RESUME_HINT) from None
            if not receipt.accepted:
                log.info("%s: '%s' of '%s' not counted: %s", _what(turn), done.task, turn.collaborator,
                         receipt.message)
        self.progress.advance()


def _what(turn: Turn) -> str:
    return "final model" if turn.round >= turn.rounds_to_train else f"round {turn.round + 1}"
