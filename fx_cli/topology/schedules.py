"""Schedules beyond "everyone at once": cyclic (one model travels the ring) and sequential (one after another).

Both are assigners (``assigner.template`` in the plan), so they run on the one
round engine and survive ``kill -9`` like any run: every engine round's
assignment is saved, and the engine replays the closed rounds' participants
into the assigner after a restart (``Assigner.round_done``).

- ``CyclicAssigner``: each engine round is one *hop*: one collaborator runs the
  task group on the current model, and its trained model is the next one (FedAvg
  of a single update is that update, bit for bit). A plan round is one trip
  around the ring, so a run has ``rounds_to_train × N`` hops. ``order``: fixed
  (cols.yaml order), random (a new seeded permutation each trip), or
  random_no_repeat (as random, but a trip never starts with the collaborator that
  ended the previous one). A hop whose collaborator is gone (``heartbeat_timeout``)
  or late (``aggregator.settings.round_deadline``, the hop deadline) is, by
  ``on_miss``: ``skip`` (the model goes on to the next collaborator), ``retry``
  (the next hop goes to the same collaborator, up to ``max_retries`` times, then
  skip) or ``end`` (the run fails, naming who missed; completed hops are kept).
- ``SequentialAssigner``: every collaborator runs every round, but each starts
  only after the collaborators before it in cols.yaml finished (or are gone):
  for chains where each step must follow the previous one (Ferdelance's
  sequential estimators). Aggregation is unchanged.
"""
from __future__ import annotations

import random
from typing import Any, Literal

from fx_cli.aggregator.assigners import Assigner
from fx_cli.errors import FxError
from fx_cli.plan.ranges import count

Order = Literal["fixed", "random", "random_no_repeat"]
OnMiss = Literal["skip", "retry", "end"]


class CyclicAssigner(Assigner):
    SETTING_RANGES = {"max_retries": count(1_000, low=0), "seed": count(2**63 - 1, low=0)}

    def __init__(self, task_groups: list[dict[str, Any]], authorized_cols: list[str], rounds_to_train: int = 1,
                 selected_task_group: str | None = None, order: Order = "fixed", on_miss: OnMiss = "skip",
                 max_retries: int = 1, seed: int = 0) -> None:
        super().__init__(task_groups, authorized_cols, rounds_to_train, selected_task_group)
        if len(self.authorized_cols) < 2:
            raise FxError(f"assigner: a cyclic schedule needs at least 2 collaborators in plan/cols.yaml, got "
                          f"{len(self.authorized_cols)}", "add collaborators, or use the default RandomGroupedAssigner")
        if len(self.task_groups) != 1:
            raise FxError("assigner: a cyclic schedule runs one task group on each hop; "
                          f"assigner.settings.task_groups has {len(self.task_groups)}", "keep one task group")
        if order not in ("fixed", "random", "random_no_repeat"):
            raise FxError(f"assigner.settings.order: {order!r} is not fixed, random or random_no_repeat",
                          "choose one of them")
        if on_miss not in ("skip", "retry", "end"):
            raise FxError(f"assigner.settings.on_miss: {on_miss!r} is not skip, retry or end", "choose one of them")
        self.order, self.on_miss, self.max_retries, self.seed = order, on_miss, max_retries, seed
        self._trips: list[list[str]] = []
        self._past: list[str] = []  # the collaborator of each closed hop
        self._position = (0, 0)  # (trip, index in the trip) of the next hop's collaborator
        self._retries = 0

    def hops_per_round(self) -> int:
        return len(self.authorized_cols)

    def _trip(self, t: int) -> list[str]:
        while len(self._trips) <= t:
            k = len(self._trips)
            ring = list(self.authorized_cols)
            if self.order != "fixed":
                rng = random.Random(self.seed * 1_000_003 + k)
                rng.shuffle(ring)
                if self.order == "random_no_repeat" and self._trips and ring[0] == self._trips[-1][-1]:
                    ring[0], ring[-1] = ring[-1], ring[0]
            self._trips.append(ring)
        return self._trips[t]

    def holder(self, hop: int) -> str:
        """Who trains on hop ``hop``: as it was for a closed hop, else the next in the ring (later hops depend
        on who misses, so asking about them ahead, as the privacy accountant does, gets this same guess)."""
        if hop < len(self._past):
            return self._past[hop]
        trip, index = self._position
        return self._trip(trip)[index]

    def group_of(self, collaborator: str, round_num: int) -> dict[str, Any] | None:
        return self.task_groups[0] if collaborator == self.holder(round_num) else None

    def round_done(self, round_num: int, participants: list[str]) -> None:
        holder = self.holder(round_num)
        if round_num == len(self._past):
            self._past.append(holder)
        missed = holder not in participants
        if missed and self.on_miss == "retry" and self._retries < self.max_retries:
            self._retries += 1
            return  # the same collaborator has the next hop
        self._retries = 0
        trip, index = self._position
        index += 1
        if index == len(self.authorized_cols):
            trip, index = trip + 1, 0
        self._position = (trip, index)

    def may_close_without(self, round_num: int, missing: list[str]) -> bool:
        return self.on_miss != "end"


class SequentialAssigner(Assigner):
    """Everyone runs the (single) task group each round, one after another in cols.yaml order."""

    sequential = True

    def __init__(self, task_groups: list[dict[str, Any]], authorized_cols: list[str], rounds_to_train: int = 1,
                 selected_task_group: str | None = None) -> None:
        super().__init__(task_groups, authorized_cols, rounds_to_train, selected_task_group)
        if len(self.task_groups) != 1:
            raise FxError("assigner: a sequential schedule runs one task group; "
                          f"assigner.settings.task_groups has {len(self.task_groups)}", "keep one task group")

    def group_of(self, collaborator: str, round_num: int) -> dict[str, Any] | None:
        return self.task_groups[0] if collaborator in self.authorized_cols else None
