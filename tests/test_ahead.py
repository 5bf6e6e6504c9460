"""``one_ahead``: the next tensor of a round's model is computed while the last one is written, in order,
with at most two held, none ahead of a big one, errors at their place, and no thread left behind."""
from __future__ import annotations

import threading
from typing import Iterator

import numpy as np
import pytest

from fx_cli.aggregator.ahead import one_ahead


class Tracked:
    """Items whose computing is recorded, and which count how many are alive at once."""

    def __init__(self, sizes: list[int], fail_at: int | None = None) -> None:
        self.sizes = sizes
        self.fail_at = fail_at
        self.started: list[int] = []
        self.alive = 0
        self.most_alive = 0
        self.lock = threading.Lock()
        self.thread: set[str] = set()

    def items(self) -> Iterator[tuple[str, np.ndarray]]:
        for i, size in enumerate(self.sizes):
            self.thread.add(threading.current_thread().name)
            with self.lock:
                self.started.append(i)
                self.alive += 1
                self.most_alive = max(self.most_alive, self.alive)
            if i == self.fail_at:
                raise OSError(f"spill of tensor {i} unreadable")
            yield f"t{i}", np.full(size, i, np.uint8)

    def written(self) -> None:
        with self.lock:
            self.alive -= 1


def test_items_come_in_order_computed_in_another_thread_at_most_two_held() -> None:
    t = Tracked([10] * 6)
    got = []
    for name, array in one_ahead(t.items(), limit=100):
        got.append((name, int(array[0])))
        # The one after it is (or will be) computed meanwhile, never the one after that.
        assert max(t.started) <= int(array[0]) + 1
        t.written()
    assert got == [(f"t{i}", i) for i in range(6)]
    assert t.most_alive <= 2 and t.thread == {"fx-fold"}


def test_nothing_is_computed_ahead_of_a_tensor_bigger_than_the_limit() -> None:
    t = Tracked([10, 500, 10, 10])
    seen_while_big = []
    for name, array in one_ahead(t.items(), limit=100):
        if name == "t1":
            seen_while_big = list(t.started)  # while the big one is held, the next has not started
        t.written()
    assert seen_while_big == [0, 1]


def test_an_error_while_computing_comes_at_its_place_after_the_items_before_it() -> None:
    t = Tracked([10] * 5, fail_at=3)
    got = []
    with pytest.raises(OSError, match="tensor 3 unreadable"):
        for name, _ in one_ahead(t.items(), limit=100):
            got.append(name)
            t.written()
    assert got == ["t0", "t1", "t2"]


def test_a_caller_that_stops_early_stops_the_thread() -> None:
    t = Tracked([10] * 50)
    before = {th.name for th in threading.enumerate()}
    gen = one_ahead(t.items(), limit=100)
    assert next(gen)[0] == "t0"
    gen.close()  # as when writing the model file failed
    assert max(t.started) <= 1
    assert "fx-fold" not in {th.name for th in threading.enumerate()} - before
