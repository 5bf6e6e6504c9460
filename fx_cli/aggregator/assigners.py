"""Assigners: which collaborator runs which tasks in a round."""
from __future__ import annotations

import random
from abc import ABC, abstractmethod
from typing import Any, Mapping

from fx_cli.errors import FxError


class Assigner(ABC):
    """Maps (collaborator, round) to an ordered list of task names."""

    def __init__(self, task_groups: list[dict[str, Any]], authorized_cols: list[str], rounds_to_train: int = 1,
                 selected_task_group: str | None = None) -> None:
        self.authorized_cols = list(authorized_cols)
        self.rounds_to_train = rounds_to_train
        groups = [dict(g) for g in task_groups]
        names = [g.get("name") for g in groups]
        if selected_task_group is not None:
            if selected_task_group not in names:
                raise FxError(f"task group '{selected_task_group}' is not in assigner.settings.task_groups",
                              "choose one of: " + ", ".join(map(str, names)))
            groups = [dict(g, percentage=1.0) for g in groups if g["name"] == selected_task_group]
        for i, g in enumerate(groups):
            if not isinstance(g.get("name"), str) or not isinstance(g.get("tasks"), list) or not g["tasks"]:
                raise FxError(f"assigner.settings.task_groups[{i}]: needs 'name' and a non-empty 'tasks' list",
                              "see plan/defaults/assigner.yaml for the format")
        self.task_groups = groups

    @abstractmethod
    def group_of(self, collaborator: str, round_num: int) -> dict[str, Any] | None:
        """The task group a collaborator belongs to in a round (None: no tasks)."""

    # Schedules (fx_cli/topology/schedules.py) refine these; a plain assigner runs everyone at once each round.
    sequential = False  # True: within a round, each collaborator starts after the ones before it finished

    def hops_per_round(self) -> int:
        """Engine rounds per plan round (a cyclic ring of N collaborators takes N hops)."""
        return 1

    def round_done(self, round_num: int, participants: list[str]) -> None:
        """Round ``round_num`` closed with these participants (replayed from the saved history after a restart)."""

    def round_record(self, round_num: int, record: Mapping[str, Any]) -> None:
        """Round ``round_num`` closed with this saved record (selection reads per-collaborator metrics)."""
        self.round_done(round_num, list(record.get("participants", [])))

    def model_source(self) -> Any:
        """An ``engine.ModelSource`` when the schedule chooses each round's input model (round robin), else None."""
        return None

    def may_close_without(self, round_num: int, missing: list[str]) -> bool:
        """Whether a round whose ``missing`` collaborators are gone may close without them (else the run fails)."""
        return False

    def tasks_for(self, collaborator: str, round_num: int) -> list[str]:
        group = self.group_of(collaborator, round_num)
        return list(group["tasks"]) if group else []

    def participants(self, round_num: int) -> list[str]:
        """Collaborators with at least one task in the round."""
        return [c for c in self.authorized_cols if self.tasks_for(c, round_num)]


class RandomGroupedAssigner(Assigner):
    """Each round, shuffle collaborators (seeded by the round) and split them by group percentage.

    Group sizes are ``floor(percentage * N)``; leftover collaborators go to the
    group with the largest percentage, so any N works (OpenFL asserts instead).
    """

    def __init__(self, task_groups: list[dict[str, Any]], authorized_cols: list[str], rounds_to_train: int = 1,
                 selected_task_group: str | None = None, seed: int = 0) -> None:
        super().__init__(task_groups, authorized_cols, rounds_to_train, selected_task_group)
        total = sum(float(g.get("percentage", 0)) for g in self.task_groups)
        if abs(total - 1.0) > 0.01:
            raise FxError(f"assigner.settings.task_groups: percentages add up to {total:g}, not 1.0",
                          "make the group percentages sum to 1.0")
        self.seed = seed
        self._last: tuple[int, dict[str, dict[str, Any]]] | None = None

    def _split(self, round_num: int) -> dict[str, dict[str, Any]]:
        if self._last is not None and self._last[0] == round_num:
            return self._last[1]  # asked once per collaborator: shuffle once per round
        cols = sorted(self.authorized_cols)
        random.Random(self.seed * 1_000_003 + round_num).shuffle(cols)
        sizes = [int(float(g.get("percentage", 0)) * len(cols)) for g in self.task_groups]
        largest = max(range(len(sizes)), key=lambda i: float(self.task_groups[i].get("percentage", 0)))
        sizes[largest] += len(cols) - sum(sizes)
        out: dict[str, dict[str, Any]] = {}
        start = 0
        for group, size in zip(self.task_groups, sizes):
            for c in cols[start:start + size]:
                out[c] = group
            start += size
        self._last = (round_num, out)
        return out

    def group_of(self, collaborator: str, round_num: int) -> dict[str, Any] | None:
        return self._split(round_num).get(collaborator)


class StaticGroupedAssigner(Assigner):
    """Each group names its collaborators; groups must cover cols.yaml exactly once."""

    def __init__(self, task_groups: list[dict[str, Any]], authorized_cols: list[str], rounds_to_train: int = 1,
                 selected_task_group: str | None = None) -> None:
        super().__init__(task_groups, authorized_cols, rounds_to_train, selected_task_group)
        seen: dict[str, str] = {}
        for g in self.task_groups:
            for c in g.get("collaborators") or []:
                if c in seen:
                    raise FxError(f"assigner: collaborator '{c}' is in task groups '{seen[c]}' and '{g['name']}'",
                                  "list each collaborator in one group only")
                seen[c] = g["name"]
        unknown = sorted(set(seen) - set(self.authorized_cols))
        missing = sorted(set(self.authorized_cols) - set(seen)) if selected_task_group is None else []
        if unknown or missing:
            raise FxError(f"assigner: task groups do not match plan/cols.yaml (unknown: {unknown}, unassigned: {missing})",
                          "make the groups' collaborators lists match plan/cols.yaml")
        self._by_col = {c: g for g in self.task_groups for c in g.get("collaborators") or []}

    def group_of(self, collaborator: str, round_num: int) -> dict[str, Any] | None:
        return self._by_col.get(collaborator)
