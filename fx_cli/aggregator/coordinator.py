"""The thread-safe heart of a run: one lock and condition around the round, presence and received updates.

Transport threads (gRPC handlers, the simulator's dispatcher) call the
``collaborator side`` methods; the engine's drive loop calls the ``loop side``.
Answers are fx's own types (``outcomes``); refusals raise ``Refused`` with a
``Refusal`` reason. Long-polls wait on the condition, so a collaborator gets
its tasks the instant a round opens.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Mapping

from fx_cli.aggregator.assigners import Assigner
from fx_cli.aggregator.intake import Spilled
from fx_cli.aggregator.layout import StateLayout
from fx_cli.aggregator.modelstore import RoundModel
from fx_cli.aggregator.outcomes import (Action, Event, EventKind, Instruction, Liveness, Observer, Receipt, Refusal,
                                        Refused)
from fx_cli.aggregator.outcomes import ClosedRound as ClosedRound, Phase as Phase, Ticket as Ticket
from fx_cli.aggregator.round import Presence, RoundState, Verdict
from fx_cli.aggregator.state import Snapshot, Store, UpdateRecord
from fx_cli.aggregator.storage_trouble import StorageTrouble
from fx_cli.aggregator.stragglers import StragglerPolicy

log = logging.getLogger("fx.aggregator")
# Longest sleep of the main loop between re-checks, whatever the deadlines say.
MAX_TICK = 5.0


class Coordinator:
    def __init__(self, *, cols: list[str], rounds_to_train: int, assigner: Assigner, policy: StragglerPolicy,
                 presence: Presence, store: Store, model: RoundModel, saved: Snapshot,
                 layout: StateLayout, round_deadline: float | None, final_tasks: tuple[str, ...] = (),
                 clock: Callable[[], float] = time.monotonic, observer: Observer | None = None,
                 update_tasks: frozenset[str] = frozenset()) -> None:
        self.cols = cols
        self.update_tasks = update_tasks  # tasks whose result must carry the model (training)
        self.rounds_to_train = rounds_to_train
        self.assigner = assigner
        self.policy = policy
        self.presence = presence
        self.store = store
        self.layout = layout
        self.observer = observer
        self.round_deadline = round_deadline
        self.final_tasks = final_tasks
        self.clock = clock
        # One lock, two conditions: collaborators' long-polls wait on ``cond``, the engine's loop (verdicts, the
        # farewell) on ``loop``. A finished collaborator wakes only the loop, not every other long-poll.
        lock = threading.RLock()
        self.cond = threading.Condition(lock)
        self.loop = threading.Condition(lock)
        self.missed: dict[str, int] = dict(saved.missed)  # 'you missed round N' notices still to deliver
        self.abort_reason = ""
        self.storage = StorageTrouble(clock)  # results it could not store, named if a round then fails
        self.bytes_in = 0
        self.bytes_out = 0
        self._open(model, saved if saved.round == model.round else None)

    def _open(self, model: RoundModel, saved: Snapshot | None) -> None:
        """Open the round whose input is ``model``; after the last one, every collaborator validates it.

        A resumed round (``saved``) keeps its assignment, its received results and its straggler clock.
        """
        self.model = model
        self.final = model.round >= self.rounds_to_train
        if self.final and not self.final_tasks:
            self.phase = Phase.FINISHED
            return
        self.round = RoundState(model.round, self._assignment(model.round, saved), self.policy, self.round_deadline)
        updates = saved.updates if saved else []
        self.updates = {(u.collaborator, u.task): u for u in updates
                        if u.round == model.round and u.task in self.round.tasks_for(u.collaborator)}
        for col, task in self.updates:
            self.round.record(col, task)
        if saved and saved.round_started is not None:
            # Deadlines are wall-clock promises: time spent down counts, a restart grants no fresh cut-off.
            self.round.dispatch(self.clock() - max(0.0, time.time() - saved.round_started))
        self.phase = Phase.COLLECTING
        self._emit(Event(EventKind.ROUND_OPENED, model.round))

    def _wake_all(self) -> None:
        """The phase or the collaborators changed: every waiter looks again (call with the lock held)."""
        self.cond.notify_all()
        self.loop.notify_all()

    def _emit(self, event: Event) -> None:
        """Tell the observer (called with the lock held: observers must be quick and must not block)."""
        if self.observer is not None:
            self.observer(event)

    def _assignment(self, round_num: int, saved: Snapshot | None) -> dict[str, tuple[str, ...]]:
        """Who runs what in this round: as saved when resuming, else from the assigner (then saved)."""
        if saved and saved.assignment is not None:
            gone = sorted(set(saved.assignment) - set(self.cols))
            if gone:
                log.warning("round %d: %s no longer in cols.yaml; their tasks are dropped", round_num + 1,
                            ", ".join(gone))
            return {c: tuple(t) for c, t in saved.assignment.items() if c in self.cols}
        assigned = {c: self.final_tasks if self.final else tuple(self.assigner.tasks_for(c, round_num))
                    for c in self.cols}
        self.store.plan_round(round_num, assigned)
        return assigned

    def _remember(self, write: Callable[..., None], *args: object) -> None:
        """A bookkeeping write whose loss only costs precision after a restart: a failure is logged, not fatal."""
        try:
            write(*args)
        except OSError as err:
            log.warning("could not save %s (%s); a restart would not know it", write.__name__, err)

    # --- collaborator side ------------------------------------------------------------------

    def seen(self, col: str) -> None:
        with self.cond:
            if col not in self.presence.last_seen:
                self._emit(Event(EventKind.JOINED, self.model.round, col))
            self.presence.seen(col, self.clock())

    def has_work(self, col: str) -> bool:
        """Whether ``col`` has tasks it has not finished in the round now collecting."""
        with self.cond:
            return self.phase is Phase.COLLECTING and bool(self.round.tasks_for(col)) and not self.round.is_done(col)

    def round_size(self) -> int:
        """How many collaborators have tasks in the round now collecting (0 when none is)."""
        with self.cond:
            return self.round.expected if self.phase is Phase.COLLECTING else 0

    def progress(self) -> tuple[int, bool]:
        """(rounds completed, finished)."""
        with self.cond:
            return self.model.round, self.phase is Phase.FINISHED

    def next_tasks(self, col: str, timeout: float) -> Instruction:
        """The caller's next instruction, waiting up to ``timeout`` seconds for one."""
        deadline = self.clock() + timeout
        with self.cond:
            while True:
                reply = self._instruction(col)
                remaining = deadline - self.clock()
                if reply is not None or remaining <= 0:
                    return reply or Instruction(Action.WAIT, self.model.round, self.rounds_to_train)
                self.cond.wait(remaining)

    def _instruction(self, col: str) -> Instruction | None:
        n = self.rounds_to_train
        if self.phase in (Phase.ABORTED, Phase.FINISHED):
            self.presence.told_finish.add(col)
            self.loop.notify_all()
        if self.phase is Phase.ABORTED:
            return Instruction(Action.ABORTED, self.model.round, n, message=self.abort_reason)
        if self.phase is Phase.FINISHED:
            return Instruction(Action.FINISHED, self.model.round, n)
        if col in self.missed:
            missed = self.missed.pop(col)
            self._remember(self.store.clear_missed, col)
            return Instruction(Action.MISSED, missed, n,
                               message=f"round {missed + 1} ended without your results; you rejoin the next round")
        if self.phase is Phase.COLLECTING and self.round.tasks_for(col) and not self.round.is_done(col):
            if self.assigner.sequential and not self._turn_of(col):
                return None
            if self.round.started is None:
                self.round.dispatch(self.clock())
                self._remember(self.store.round_started, self.round.round, time.time())
            tasks = self.round.tasks_for(col)
            have = tuple(t for t in tasks if t in self.round.received[col])
            self._emit(Event(EventKind.TASKS_GIVEN, self.round.round, col, detail=",".join(tasks)))
            return Instruction(Action.RUN, self.round.round, n, tasks, have)
        return None

    def _turn_of(self, col: str) -> bool:
        """A sequential schedule: every collaborator before ``col`` (cols.yaml order) is done or gone."""
        now = self.clock()
        for earlier in self.cols[:self.cols.index(col)] if col in self.cols else []:
            if self.round.tasks_for(earlier) and not self.round.is_done(earlier) \
                    and not self.presence.gone(earlier, now):
                return False
        return True

    def heartbeat(self, col: str, round_num: int) -> Liveness:
        with self.cond:
            self.presence.seen(col, self.clock())
            if self.phase is Phase.ABORTED:
                raise Refused(Refusal.RUN_ENDED, f"the aggregator ended the run: {self.abort_reason}")
            open_ = (self.phase is Phase.COLLECTING and self.round.round == round_num
                     and bool(self.round.tasks_for(col)) and not self.round.is_done(col))
            return Liveness(open_, self.model.round)

    def model_for(self, round_num: int) -> RoundModel:
        """The global model that is the input of ``round_num``."""
        with self.cond:
            if self.phase is Phase.ABORTED:
                raise Refused(Refusal.RUN_ENDED, f"the aggregator ended the run: {self.abort_reason}")
            if round_num == self.model.round:
                return self.model
            if round_num < self.model.round:
                raise Refused(Refusal.ROUND_OVER, f"the model of round {round_num + 1} is no longer served; "
                                                  f"the federation is at round {self.model.round + 1}")
            raise Refused(Refusal.NOT_STARTED, f"round {round_num + 1} has not started "
                                               f"(the federation is at round {self.model.round + 1})")

    def holds(self, col: str, round_num: int, task: str) -> bool:
        """Whether ``col``'s result of ``task`` for ``round_num`` is already counted in the round now collecting."""
        with self.cond:
            return round_num == self.model.round and (col, task) in self.updates

    def open_upload(self, col: str, round_num: int, task: str) -> Ticket | Receipt:
        """A ticket to receive this result, a late ``Receipt`` (not counted), or ``Refused``."""
        with self.cond:
            try:
                return self._ticket(col, round_num, task)
            except Refused as err:
                self.refused(col, round_num, task, err)
                raise

    def _ticket(self, col: str, round_num: int, task: str) -> Ticket | Receipt:
        if self.phase is Phase.ABORTED:
            raise Refused(Refusal.RUN_ENDED, f"the aggregator ended the run: {self.abort_reason}")
        if round_num > self.model.round:
            raise Refused(Refusal.NOT_STARTED, f"round {round_num + 1} has not started "
                                               f"(the federation is at round {self.model.round + 1})")
        if round_num < self.model.round or self.phase is not Phase.COLLECTING:
            if self.missed.pop(col, None) is not None:
                self._remember(self.store.clear_missed, col)
            self._emit(Event(EventKind.UPDATE_LATE, round_num, col, task))
            return Receipt(False, 0, f"round {round_num + 1} ended before this result arrived; it was not counted")
        if task not in self.round.tasks_for(col):
            raise Refused(Refusal.NOT_ASSIGNED, f"task '{task}' is not assigned to '{col}' in round "
                                                f"{round_num + 1} (assigned: "
                                                f"{', '.join(self.round.tasks_for(col)) or 'nothing'})")
        if (col, task) in self.updates:
            raise Refused(Refusal.DUPLICATE, f"the result of '{task}' from '{col}' for round {round_num + 1} was "
                                             "already received; it is not counted twice")
        return Ticket(col, round_num, task, self.model, self.layout.new_update(round_num, col, task))

    def refused(self, col: str, round_num: int, task: str, err: Refused) -> None:
        """Tell observers that a result was refused (also for refusals found by the transport's checks)."""
        with self.cond:
            self._emit(Event(EventKind.UPDATE_REFUSED, round_num, col, task, err.reason.value, err.message))

    def accept(self, ticket: Ticket, data_size: int, metrics: Mapping[str, float], spilled: Spilled) -> Receipt:
        """Record a fully received result durably; duplicates and late arrivals are not counted."""
        rec = UpdateRecord(ticket.round, ticket.collaborator, ticket.task, data_size, dict(metrics),
                           str(spilled.path) if spilled.path else None, spilled.nbytes, spilled.crcs)
        if spilled.path is None and ticket.task in self.update_tasks:
            err = Refused(Refusal.INVALID, f"the '{ticket.task}' result of '{ticket.collaborator}' carries no model "
                                           "update (no tensors); a training task must return the trained tensors")
            self.refused(ticket.collaborator, ticket.round, ticket.task, err)
            raise err
        with self.cond:
            if self.phase is not Phase.COLLECTING or ticket.round != self.model.round:
                _discard(spilled)
                self._emit(Event(EventKind.UPDATE_LATE, ticket.round, ticket.collaborator, ticket.task))
                return Receipt(False, spilled.nbytes, f"round {ticket.round + 1} ended while the result was "
                                                      "arriving; it was not counted")
            try:
                added = (ticket.collaborator, ticket.task) not in self.updates and self.store.add_update(rec)
            except OSError:
                _discard(spilled)
                raise
            if not added:
                _discard(spilled)
                err = Refused(Refusal.DUPLICATE, f"the result of '{ticket.task}' from '{ticket.collaborator}' was "
                                                 "already received; it is not counted twice")
                self.refused(ticket.collaborator, ticket.round, ticket.task, err)
                raise err
            self.updates[(ticket.collaborator, ticket.task)] = rec
            self.round.record(ticket.collaborator, ticket.task)
            self.presence.seen(ticket.collaborator, self.clock())
            self.bytes_in += spilled.wire_bytes
            self._emit(Event(EventKind.UPDATE_ACCEPTED, ticket.round, ticket.collaborator, ticket.task,
                             metrics=dict(metrics), nbytes=spilled.wire_bytes, blake3=spilled.blake3))
            if self.round.is_done(ticket.collaborator):  # only then can a verdict change
                self.loop.notify_all()
                if self.assigner.sequential:  # ... or whose turn it is
                    self.cond.notify_all()
        return Receipt(True, spilled.wire_bytes)

    def count_out(self, nbytes: int) -> None:
        with self.cond:
            self.bytes_out += nbytes

    def count_in(self, nbytes: int) -> None:
        """Bytes received outside result uploads (secure aggregation's masked updates)."""
        with self.cond:
            self.bytes_in += nbytes

    # --- loop side --------------------------------------------------------------------------

    def await_verdict(self) -> Verdict | None:
        """Block until the round can end or the run must fail; None once the run is over."""
        with self.cond:
            while self.phase is Phase.COLLECTING:
                tolerate = self.assigner.may_close_without(self.round.round, self.round.pending())
                verdict = self.round.verdict(self.presence, self.clock(), tolerate)
                trouble = self.storage.note()
                if verdict.fail and trouble is not None:
                    verdict = Verdict(fail=f"{trouble}: {verdict.fail}")
                if verdict.end or verdict.fail:
                    return verdict
                self.loop.wait(min(max(verdict.wake - self.clock(), 0.01), MAX_TICK))
            return None

    def remove_collaborators(self, names: frozenset[str]) -> None:
        """Collaborators taken out of plan/cols.yaml during the run: the round goes on without them.

        A removed collaborator that had finished keeps its results; one that had not is no longer waited for
        and its partial results are not counted (the saved rows are ignored on a restart as well, since the
        assignment is filtered by cols.yaml).
        """
        with self.cond:
            gone = sorted(c for c in names if c in self.cols)
            if not gone:
                return
            self.cols = [c for c in self.cols if c not in gone]
            self.presence.cols = [c for c in self.presence.cols if c not in gone]
            dropped = []
            if self.phase is Phase.COLLECTING:
                for col in gone:
                    if col in self.round.assigned and not self.round.is_done(col):
                        del self.round.assigned[col]
                        self.round.received.pop(col, None)
                        self.updates = {k: v for k, v in self.updates.items() if k[0] != col}
                        dropped.append(col)
            log.warning("%s removed from plan/cols.yaml during the run; %s", ", ".join(repr(c) for c in gone),
                        f"round {self.round.round + 1} goes on without {', '.join(repr(c) for c in dropped)}"
                        if dropped else "they get no further tasks")
            self._wake_all()

    def take_bytes(self) -> tuple[int, int]:
        """Bytes received and sent since the last call."""
        with self.cond:
            counts = (self.bytes_in, self.bytes_out)
            self.bytes_in = self.bytes_out = 0
            return counts

    def close_round(self) -> ClosedRound:
        """Stop collecting: the results of collaborators that finished every task are the round's."""
        with self.cond:
            self.phase = Phase.AGGREGATING
            done = self.round.done()
            records = [self.updates[(c, t)] for c in done for t in self.round.tasks_for(c)]
            for col in self.round.pending():
                self.missed[col] = self.round.round
            note = self.round.end_note(self.presence, self.clock())
            self._wake_all()
            return ClosedRound(self.round.round, self.model, records, done, self.round.expected, note, self.final,
                               tuple(self.round.pending()))

    def open_next(self, model: RoundModel) -> None:
        """Start the round whose input is ``model`` (or finish when all rounds are done)."""
        with self.cond:
            self._open(model, None)
            self._wake_all()

    def finish(self) -> None:
        """The final model has been evaluated (or the run was stopped early): the run is over."""
        with self.cond:
            self.phase = Phase.FINISHED
            self._emit(Event(EventKind.RUN_FINISHED, self.model.round))
            self._wake_all()

    def abort(self, reason: str) -> None:
        with self.cond:
            self.phase = Phase.ABORTED
            self.abort_reason = reason
            self._emit(Event(EventKind.RUN_ABORTED, self.model.round, message=reason))
            self._wake_all()

    @property
    def is_over(self) -> bool:
        with self.cond:
            return self.phase in (Phase.FINISHED, Phase.ABORTED)

    def await_farewell(self, limit: float) -> list[str]:
        """Wait up to ``limit`` s until every connected collaborator was told the run is over; the others.

        Collaborators removed from plan/cols.yaml during the run are not waited for: they are refused anyway.
        """
        deadline = self.clock() + limit
        with self.cond:
            while True:
                now = self.clock()
                left = [c for c in self.presence.joined() if c in self.cols
                        and c not in self.presence.told_finish and not self.presence.gone(c, now)]
                if not left or now >= deadline:
                    return left
                wake = min([self.presence.gone_at(c) for c in left] + [deadline])
                self.loop.wait(min(max(wake - now, 0.01), MAX_TICK))


def _discard(spilled: Spilled) -> None:
    if spilled.path is not None:
        spilled.path.unlink(missing_ok=True)
