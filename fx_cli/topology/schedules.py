"""Schedules beyond "everyone at once": cyclic (one model travels the ring), round robin (N models rotate) and
sequential (one after another).

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
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np

from fx_cli.aggregator.assigners import Assigner
from fx_cli.aggregator.layout import StateLayout
from fx_cli.aggregator.metrics import RoundReport
from fx_cli.aggregator.modelstore import RoundModel, export_copy, write_round_model
from fx_cli.aggregator.state import Store
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


class RoundRobinAssigner(Assigner):
    """Ferdelance's round robin: N resources (models) rotate over the N collaborators.

    On hop ``h`` collaborator ``i`` (cols.yaml order) trains resource ``(i + h) mod N``, so after the N hops of
    a plan round every resource has been trained by every collaborator, each time on that resource's latest
    model. fx runs the N trainings of a hop one after another, as N engine rounds (round ``r`` trains resource
    ``r mod N``): the resulting models are exactly those of the parallel rotation, at N times its wall time.
    The resources live in ``local_state/models/resource_<K>.pbuf`` (saved before each round's input is chosen,
    so a restart finds them) and are copied to ``<workspace>/<export_folder>/resource_<K>.pbuf``; the final
    evaluation validates resource 0.
    """

    def __init__(self, task_groups: list[dict[str, Any]], authorized_cols: list[str], rounds_to_train: int = 1,
                 selected_task_group: str | None = None, export_folder: str = "save/resources") -> None:
        super().__init__(task_groups, authorized_cols, rounds_to_train, selected_task_group)
        if len(self.authorized_cols) < 2:
            raise FxError(f"assigner: a round-robin schedule needs at least 2 collaborators in plan/cols.yaml, got "
                          f"{len(self.authorized_cols)}", "add collaborators, or use the default RandomGroupedAssigner")
        if len(self.task_groups) != 1:
            raise FxError("assigner: a round-robin schedule runs one task group; "
                          f"assigner.settings.task_groups has {len(self.task_groups)}", "keep one task group")
        self.export_folder = export_folder

    @property
    def n(self) -> int:
        return len(self.authorized_cols)

    def hops_per_round(self) -> int:
        return self.n * self.n

    def trainer(self, round_num: int) -> str:
        hop, resource = divmod(round_num, self.n)
        return self.authorized_cols[(resource - hop) % self.n]

    def group_of(self, collaborator: str, round_num: int) -> dict[str, Any] | None:
        return self.task_groups[0] if collaborator == self.trainer(round_num) else None

    def model_source(self) -> "RoundRobinAssigner":
        return self

    # --- engine.ModelSource ---------------------------------------------------------------------

    def bind(self, store: Store, layout: StateLayout, round_num: int) -> None:
        pass

    def input_model(self, model: RoundModel, store: Store, layout: StateLayout) -> RoundModel | None:
        """Keep the model just trained as its resource's latest; give the next resource's as the input."""
        m = model.round
        if model.path == layout.sourced_model(m):
            return model  # already the chosen input (a restart after it was recorded)
        if m == 0:
            for k in range(self.n):
                self._keep(model, k, layout)
        else:
            self._keep(model, (m - 1) % self.n, layout)
        source = layout.resource_model(m % self.n)
        return write_round_model(layout.sourced_model(m), iter_model_tensors(source), m)

    def round_closed(self, report: RoundReport) -> None:
        pass

    def _keep(self, model: RoundModel, resource: int, layout: StateLayout) -> None:
        target = layout.resource_model(resource)
        write_round_model(target, model.tensors(), model.round)
        export_copy(target, layout.root.parent / self.export_folder / target.name)


def iter_model_tensors(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    from fx_cli.tensors.pbuf import iter_model

    return ((h.name, a) for h, a in iter_model(path) if a is not None)
