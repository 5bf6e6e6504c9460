"""Fault injection for the reliability tests: crash or fail a process at a named point.

``FX_FAULT`` holds comma-separated rules ``POINT[#N][=ACTION]``:

- ``POINT`` is a name such as ``aggregator:mid_upload`` (see ``POINTS``);
- ``#N`` fires on the N-th time this process reaches the point (default: the first);
- ``ACTION`` is ``kill`` (SIGKILL this process, the default: no clean-up of any kind),
  ``enospc`` (raise ``OSError(ENOSPC)`` as a full disk would) or ``eio``.

Unset, :func:`fault` costs one dictionary lookup. Never set it outside tests.
"""
from __future__ import annotations

import errno
import os
import signal
import threading

ENV = "FX_FAULT"
POINTS = (
    "aggregator:before_round_<N>",  # round N (1-based) is about to open; its input model is committed
    "aggregator:after_round_<N>",  # round N's best/last copies are refreshed, its spills deleted (in the background)
    "aggregator:sending_model",  # a model download is part-way through its tensors
    "aggregator:mid_upload",  # an update is part-way through being received (its .part file half written)
    "aggregator:aggregating",  # the next model file is part-way through being computed and written
    "aggregator:saving_model",  # between the steps of saving a round (model file, commit, best/last copies)
    "aggregator:committing",  # inside the SQLite transaction that moves the round forward, before COMMIT
    "aggregator:writing_file",  # inside an atomic file write, after the data, before fsync and rename
    "aggregator:secagg_unmasking",  # secure aggregation: every masked update is in, no unmask share yet
    "collaborator:mid_train",  # a training task is running
    "collaborator:secagg_advertised",  # secure aggregation: keys advertised, none shared yet
    "collaborator:secagg_shared",  # secure aggregation: key shares sent, the masked update not yet
    "region:after_parent_model",  # a middle aggregator saved its parent's model, before its engine recorded it
    "region:before_upload",  # a middle aggregator is about to send a result of its parent's round
)
_hits: dict[str, int] = {}
_lock = threading.Lock()


def fault(point: str) -> None:
    """Act on ``point`` when ``FX_FAULT`` names it; otherwise do nothing."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    with _lock:
        count = _hits[point] = _hits.get(point, 0) + 1
    for rule in spec.split(","):
        name, _, action = rule.strip().partition("=")
        name, _, nth = name.partition("#")
        if name == point and count == int(nth or 1):
            _act(point, action or "kill")


def _act(point: str, action: str) -> None:
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "enospc":
        raise OSError(errno.ENOSPC, f"No space left on device (fault injected at {point})")
    if action == "eio":
        raise OSError(errno.EIO, f"Input/output error (fault injected at {point})")
    raise ValueError(f"{ENV}: unknown action {action!r} for {point} (kill, enospc, eio)")
