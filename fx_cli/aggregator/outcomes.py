"""What the round engine answers, in fx's own terms: no transport classes, no gRPC status names.

A transport maps these to its wire: the gRPC servicer turns ``Refusal`` into
status codes and ``Instruction`` into ``TaskReply``; the simulator reads them
directly. Engine events (``Event``) go to observers registered on the engine.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping

if TYPE_CHECKING:
    from pathlib import Path

    from fx_cli.aggregator.metrics import RoundReport
    from fx_cli.aggregator.modelstore import RoundModel
    from fx_cli.aggregator.state import UpdateRecord


class Refusal(enum.Enum):
    """Why the engine refused a request."""

    RUN_ENDED = "the run was ended"  # aborted: the caller should stop
    NOT_STARTED = "round not started"  # asked about a round after the current one
    ROUND_OVER = "round over"  # asked for the model of a round that has ended
    NOT_ASSIGNED = "task not assigned"
    DUPLICATE = "already received"
    INVALID = "invalid result"  # the result itself is unusable (bad sizes, metrics, tensors)
    STORAGE = "cannot store"  # the aggregator's disk failed; the sender may retry


class Refused(Exception):
    """A request the engine refuses, with the reason and a message for the sender."""

    def __init__(self, reason: Refusal, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Action(enum.Enum):
    """What a collaborator is told to do next."""

    RUN = "run"  # granted: run ``tasks`` of ``round``
    WAIT = "wait"  # nothing for you now; ask again
    MISSED = "missed"  # ``round`` ended without your results
    FINISHED = "finished"  # the run is complete
    ABORTED = "aborted"  # the run was ended (``message`` says why)


@dataclass(frozen=True)
class Instruction:
    action: Action
    round: int
    rounds_to_train: int
    tasks: tuple[str, ...] = ()
    already_received: tuple[str, ...] = ()  # tasks of this round whose results the engine holds
    message: str = ""


@dataclass(frozen=True)
class Receipt:
    """The engine's answer to a fully received result: counted, or arrived too late to count."""

    accepted: bool
    wire_bytes: int
    message: str = ""


@dataclass(frozen=True)
class Liveness:
    """Answer to a heartbeat: whether the caller's round is still open for it."""

    round_open: bool
    round: int


class EventKind(enum.Enum):
    JOINED = "joined"  # a collaborator was heard from for the first time in this process
    ROUND_OPENED = "round_opened"  # ``round``: 0-based index of the round now collecting
    TASKS_GIVEN = "tasks_given"  # a collaborator was told to run ``detail`` (comma-separated tasks) of ``round``
    UPDATE_ACCEPTED = "update_accepted"
    UPDATE_REFUSED = "update_refused"  # ``detail``: the Refusal's value; ``message``: why
    UPDATE_LATE = "update_late"
    ROUND_CLOSED = "round_closed"  # ``report`` set; after the round is durably saved
    RUN_FINISHED = "run_finished"
    RUN_ABORTED = "run_aborted"  # ``message``: the reason
    CLAIM_ADJUSTED = "claim_adjusted"  # ``detail``: audit kind (data_size_clipped, metric_dropped); ``message``: why


@dataclass(frozen=True)
class Event:
    kind: EventKind
    round: int
    collaborator: str = ""
    task: str = ""
    detail: str = ""
    message: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)
    report: "RoundReport | None" = None
    nbytes: int = 0  # UPDATE_ACCEPTED: payload bytes as received
    blake3: str = ""  # UPDATE_ACCEPTED: BLAKE3 digest of the update as received (``intake.UpdateIntake``)


Observer = Callable[[Event], None]


# --- what the coordinator hands out and hands over (used by transports and the round closer) -----------

class Phase(enum.Enum):
    COLLECTING = "collecting"
    AGGREGATING = "aggregating"
    FINISHED = "finished"
    ABORTED = "aborted"


@dataclass(frozen=True)
class Ticket:
    """Permission to stream one task result into ``target``."""

    collaborator: str
    round: int
    task: str
    model: RoundModel
    target: Path


@dataclass(frozen=True)
class ClosedRound:
    round: int
    model: RoundModel
    records: list[UpdateRecord]  # results of the collaborators that finished every task
    participants: list[str]
    expected: int
    note: str
    final: bool = False  # the evaluation of the final model, after the last training round
    missed: tuple[str, ...] = ()  # collaborators to tell that they missed this round
