"""Round bookkeeping as pure logic: who must do what, who is done, who is gone, and when a round ends.

No locks, clocks or I/O here: callers pass ``now`` and hold the coordinator's
lock, which keeps every decision testable and deterministic.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from fx_cli.aggregator.stragglers import StragglerPolicy

# A finite 'eventually' for policies: an infinite cut-off must still compare as not yet reached.
FAR_FUTURE = 1e18


@dataclass(frozen=True)
class Verdict:
    """What the main loop should do now: ``end`` the round, ``fail`` the run, or wait until ``wake``."""

    end: bool = False
    fail: str | None = None
    wake: float = math.inf


class Presence:
    """When each collaborator was last heard from; who counts as gone."""

    def __init__(self, cols: list[str], join_deadline: float, heartbeat_timeout: float, started: float,
                 rejoin_deadline: float | None = None) -> None:
        self.cols = list(cols)
        self.join_deadline = join_deadline
        self.heartbeat_timeout = heartbeat_timeout
        # A silent collaborator is 'gone' (policies may leave it behind) after heartbeat_timeout, and 'lost'
        # (a run that needs it fails) only after the rejoin deadline: a paused site may come back until then.
        self.rejoin_deadline = max(heartbeat_timeout, rejoin_deadline or heartbeat_timeout)
        self.started = started
        self.last_seen: dict[str, float] = {}
        self.told_finish: set[str] = set()

    def seen(self, col: str, now: float) -> None:
        self.last_seen[col] = now

    def joined(self) -> list[str]:
        return sorted(self.last_seen)

    def gone_at(self, col: str) -> float:
        """The time at which ``col`` counts as gone unless heard from again."""
        if col not in self.last_seen:
            return self.started + self.join_deadline
        return self.last_seen[col] + self.heartbeat_timeout

    def gone(self, col: str, now: float) -> bool:
        return now >= self.gone_at(col)

    def lost_at(self, col: str) -> float:
        """The time after which a run that needs ``col`` gives up on it (its rejoin deadline)."""
        if col not in self.last_seen:
            return self.started + self.join_deadline
        return self.last_seen[col] + self.rejoin_deadline

    def lost(self, col: str, now: float) -> bool:
        return now >= self.lost_at(col)

    @property
    def everlasting(self) -> bool:
        """Nobody is ever gone (infinite deadlines, as for the simulator's virtual collaborators)."""
        return math.isinf(self.join_deadline) and math.isinf(self.heartbeat_timeout)

    def describe(self, col: str, now: float) -> str:
        if col not in self.last_seen:
            return f"'{col}' never connected (join_deadline {self.join_deadline:g} s)"
        limits = f"heartbeat_timeout {self.heartbeat_timeout:g} s"
        if self.rejoin_deadline > self.heartbeat_timeout:
            limits += f", rejoin_deadline {self.rejoin_deadline:g} s"
        return f"'{col}' last heard from {now - self.last_seen[col]:.0f} s ago ({limits})"


@dataclass
class RoundState:
    """One round: the tasks assigned to each collaborator and the results received so far."""

    round: int
    assigned: dict[str, tuple[str, ...]]
    policy: StragglerPolicy
    round_deadline: float | None = None
    received: dict[str, set[str]] = field(default_factory=dict)
    started: float | None = None

    def __post_init__(self) -> None:
        self.assigned = {c: tuple(t) for c, t in self.assigned.items() if t}
        self.received = {c: set(self.received.get(c, ())) for c in self.assigned}
        # Who has delivered every task, kept up to date by record() (verdicts run after every accepted result);
        # recomputed when ``received`` was changed behind record()'s back.
        self._finished: set[str] = set()
        self._counted = -1

    @property
    def expected(self) -> int:
        return len(self.assigned)

    def tasks_for(self, col: str) -> tuple[str, ...]:
        return self.assigned.get(col, ())

    def is_done(self, col: str) -> bool:
        return col in self.assigned and set(self.assigned[col]) <= self.received[col]

    def _done_set(self) -> set[str]:
        total = sum(map(len, self.received.values()))
        if total != self._counted:
            self._finished = {c for c in self.assigned if self.is_done(c)}
            self._counted = total
        return self._finished

    def done(self) -> list[str]:
        return sorted(self._done_set())

    def pending(self) -> list[str]:
        finished = self._done_set()
        return sorted(c for c in self.assigned if c not in finished)

    def dispatch(self, now: float) -> None:
        """A collaborator got its tasks: the first dispatch starts the policy's clock."""
        if self.started is None:
            self.started = now
            self.policy.start_round(now)

    def record(self, col: str, task: str) -> None:
        finished = self._done_set()
        if task not in self.received[col]:
            self.received[col].add(task)
            self._counted += 1
        if self.is_done(col):
            finished.add(col)

    def verdict(self, presence: Presence, now: float, tolerate_missing: bool = False) -> Verdict:
        """End the round, fail the run (the policy can never be met), or when to look again.

        ``tolerate_missing`` (a schedule that goes on without those who miss, e.g. a cyclic hop): instead of
        failing, the round ends once everyone still alive is done.
        """
        done = len(self._done_set())
        if self.policy.can_end(done, self.expected, now):
            return Verdict(end=True)
        overdue = self.round_deadline is not None and self.started is not None \
            and now >= self.started + self.round_deadline
        pending: list[str] | None
        rejoining: list[str] = []
        if presence.everlasting and not overdue:
            pending, alive, alive_count = None, [], self.expected - done  # nobody is ever gone: no pass over them
        else:
            pending = self.pending()
            alive = [] if overdue else [c for c in pending if not presence.gone(c, now)]
            # Silent past heartbeat_timeout but within the rejoin deadline: a run that needs them waits for them.
            rejoining = [] if overdue or tolerate_missing else [c for c in pending
                                                                if c not in alive and not presence.lost(c, now)]
            alive_count = len(alive)
        if not self.policy.can_end(done + alive_count + len(rejoining), self.expected, FAR_FUTURE):
            if pending is None:
                pending = alive = self.pending()
            if not tolerate_missing:
                return Verdict(fail=self._failure(presence, now, pending, alive + rejoining, overdue))
            if not alive:
                return Verdict(end=True)
        wakes = [presence.gone_at(c) for c in alive] + [presence.lost_at(c) for c in rejoining]
        check = self.policy.next_check()
        if check is not None and self.started is not None:
            wakes.append(check)
        if self.round_deadline is not None and self.started is not None:
            wakes.append(self.started + self.round_deadline)
        return Verdict(wake=min(wakes, default=math.inf))

    def waited(self, presence: Presence, now: float) -> float:
        """Seconds since the round's first dispatch (or since start-up when nothing was dispatched yet)."""
        return now - (self.started if self.started is not None else presence.started)

    def _failure(self, presence: Presence, now: float, pending: list[str], alive: list[str], overdue: bool) -> str:
        missing = [c for c in pending if c not in alive]
        why = "; ".join(presence.describe(c, now) for c in missing)
        if overdue:
            why = f"round_deadline {self.round_deadline:g} s passed; " + why
        return (f"round {self.round + 1}: waited {self.waited(presence, now):.0f} s for "
                f"{', '.join(repr(c) for c in missing)}; cannot complete under {self.policy.describe()} with "
                f"{len(self.done())}/{self.expected} collaborators done: {why}")

    def end_note(self, presence: Presence, now: float) -> str:
        """A log line for a round that ends without everyone."""
        pending = self.pending()
        if not pending:
            return ""
        who = "; ".join(presence.describe(c, now) if presence.gone(c, now) else f"'{c}' still working"
                        for c in pending)
        return (f"round {self.round + 1}: waited {self.waited(presence, now):.0f} s for "
                f"{', '.join(repr(c) for c in pending)}; ending with {len(self.done())}/{self.expected} under "
                f"{self.policy.describe()}; missed by {who}")
