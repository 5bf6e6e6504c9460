"""A background heartbeat while a task runs, so a long local epoch never looks like a dead collaborator."""
from __future__ import annotations

import logging
import threading
from types import TracebackType

from fx_cli.collaborator.session import AggregatorClient, RunEnded
from fx_cli.errors import FxError

log = logging.getLogger("fx.collaborator")


class Heartbeat:
    """Context manager: beats every ``interval`` s for (round, task) until the block ends."""

    def __init__(self, client: AggregatorClient, interval: float, round_num: int, task: str) -> None:
        self.client = client
        self.interval = max(interval, 0.05)
        self.round = round_num
        self.task = task
        self.round_closed = False  # the aggregator ended the round without us
        self.fatal: FxError | None = None  # the aggregator ended the run, or refused us
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"fx-heartbeat-{task}", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                reply = self.client.heartbeat(self.round, self.task)
            except RunEnded as err:
                self.fatal = err
                return
            except FxError as err:
                log.warning("heartbeat failed (the task goes on): %s", err.message)
                continue
            if not reply.round_open and not self.round_closed:
                self.round_closed = True
                log.warning("round %d ended without this collaborator; its results will not be sent",
                            self.round + 1)
