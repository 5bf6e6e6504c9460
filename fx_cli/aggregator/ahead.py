"""Compute the next tensor of a model while the last one is being written.

Closing a round is two stages per tensor: the fold of the updates (numpy, reading spills) and the write of the
result (SHA-256, CRC, the kernel's copy into the file). Both release the GIL, and while a round closes the
collaborators wait, so running the fold of tensor k+1 in a thread while tensor k is written uses the second
core. Memory stays bounded: at most two tensors are held (the one being written and the one being computed),
and only when the one being written is at most ``limit`` bytes; a larger one is written before the next is
started, as without this module.
"""
from __future__ import annotations

import threading
from typing import Iterator, TypeVar, cast

import numpy as np

T = TypeVar("T", bound=tuple[str, np.ndarray])

AHEAD_LIMIT = 64 << 20  # the most extra memory the overlap may hold: one tensor of this size


class _Handover:
    """The state the computing thread and the caller share, under one condition."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.box: list[object] = []  # the one computed item not yet taken
        self.held = False  # the caller holds an item (it asks for the next one when done with it)
        self.done = False
        self.stop = False
        self.error: BaseException | None = None


def one_ahead(items: Iterator[T], limit: int = AHEAD_LIMIT) -> Iterator[T]:
    """The items of ``items`` in order, each next one computed in a thread while the caller uses the last.

    An exception raised while computing an item is raised here at that item's place. When the caller stops
    early (an error while writing), the thread stops before the next item.
    """
    h = _Handover()

    def produce() -> None:
        try:
            for item in items:
                big = item[1].nbytes > limit
                with h.cond:
                    h.box.append(item)
                    h.cond.notify_all()
                    # The next one is computed once this one is taken and, when this one is big, written.
                    h.cond.wait_for(lambda: h.stop or (not h.box and not (big and h.held)))
                    if h.stop:
                        return
                del item
        except BaseException as err:  # raised to the caller at this place in the sequence
            h.error = err
        finally:
            with h.cond:
                h.done = True
                h.cond.notify_all()

    worker = threading.Thread(target=produce, name="fx-fold", daemon=True)
    worker.start()
    try:
        while True:
            with h.cond:
                h.held = False  # asking for the next one: done with the last
                h.cond.notify_all()
                h.cond.wait_for(lambda: bool(h.box) or h.done)
                if not h.box:
                    if h.error is not None:
                        raise h.error
                    return
                item = cast(T, h.box.pop())
                h.held = True
                h.cond.notify_all()
            yield item
            del item
    finally:
        with h.cond:
            h.stop = True
            h.cond.notify_all()
        worker.join()
