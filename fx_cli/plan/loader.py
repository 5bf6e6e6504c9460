"""Loading a plan: read, merge defaults, validate everything, resolve ``auto`` values."""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from fx_cli.errors import FxError, NotAWorkspace, PlanError
from fx_cli.plan import identity
from fx_cli.plan.defaults_files import load_defaults
from fx_cli.plan.merge import deep_merge
from fx_cli.plan.settings import (AggregatorSettings, CollaboratorSettings, CORE_SETTINGS, UpstreamSettings,
                                  NetworkSettings, settings_from)
from fx_cli.plan.validate import SECTIONS, validate_config
from fx_cli.plan.yamlio import read_yaml

SECTION_KEYS = ("template", "settings", "defaults")
DEFAULT_TEMPLATES = {
    "aggregator": "fx_cli.aggregator.Aggregator",
    "collaborator": "fx_cli.collaborator.Collaborator",
    "network": "fx_cli.transport.Network",
    "assigner": "fx_cli.aggregator.assigners.RandomGroupedAssigner",
    "compression_pipeline": "fx_cli.compression.NoCompressionPipeline",
    "straggler_handling_policy": "fx_cli.aggregator.stragglers.WaitForAllPolicy",
}


@dataclass(frozen=True)
class TaskSpec:
    name: str
    function: str
    kwargs: dict[str, Any]
    aggregation_type: dict[str, Any] | None


@dataclass(frozen=True)
class Plan:
    """A merged, validated plan. ``config`` must be treated as read-only."""

    path: Path
    workspace: Path
    config: dict[str, Any] = field(repr=False)

    @cached_property
    def hash(self) -> str:
        return identity.plan_hash(self.config)

    @property
    def federation_id(self) -> str:
        return identity.federation_id(self.hash)

    def section(self, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.config.get(name) or {})

    def settings(self, name: str) -> dict[str, Any]:
        return copy.deepcopy((self.config.get(name) or {}).get("settings") or {})

    def template(self, name: str) -> str:
        return (self.config.get(name) or {}).get("template") or DEFAULT_TEMPLATES[name]

    @property
    def aggregator(self) -> AggregatorSettings:
        return settings_from(AggregatorSettings, self.settings("aggregator"))

    @property
    def collaborator(self) -> CollaboratorSettings:
        return settings_from(CollaboratorSettings, self.settings("collaborator"))

    @property
    def network(self) -> NetworkSettings:
        return settings_from(NetworkSettings, self.settings("network"))

    @property
    def upstream(self) -> UpstreamSettings | None:
        """The level above when this workspace is a middle (regional) aggregator; None for a top or flat one."""
        return settings_from(UpstreamSettings, self.settings("upstream")) if "upstream" in self.config else None

    @property
    def tasks(self) -> dict[str, TaskSpec]:
        tasks = self.section("tasks")
        return {name: TaskSpec(name, spec["function"], dict(spec.get("kwargs") or {}),
                               spec.get("aggregation_type"))
                for name, spec in tasks.items() if name not in SECTION_KEYS}

    def resolve_path(self, relative: str) -> Path:
        """A plan path setting made absolute against the workspace root."""
        p = Path(relative)
        return p if p.is_absolute() else self.workspace / p


def workspace_of(plan_path: Path) -> Path:
    """The workspace root of ``<ws>/plan/plan.yaml`` (its grandparent)."""
    return plan_path.resolve().parent.parent


def require_workspace(plan_path: Path) -> Path:
    """The workspace root of ``plan_path``; ``NotAWorkspace`` when the plan file is not there."""
    if not plan_path.is_file():
        raise NotAWorkspace(str(workspace_of(plan_path)),
                            str(plan_path) if plan_path.is_absolute() else "plan/plan.yaml")
    return workspace_of(plan_path)


def merge_defaults(raw: dict[str, Any], plan_path: Path, workspace: Path) -> tuple[dict[str, Any], list[str]]:
    """Merge each section's ``defaults`` file under it; returns (config, problems)."""
    problems: list[str] = []
    merged: dict[str, Any] = {}
    for name in [s for s in SECTIONS if s in raw] + [s for s in raw if s not in SECTIONS]:
        section = raw[name]
        if section is None:
            section = {}
        if not isinstance(section, dict):
            problems.append(f"{plan_path}: {name}: expected a mapping, got {type(section).__name__}")
            continue
        body = {k: v for k, v in section.items() if k != "defaults"}
        if section.get("defaults"):
            try:
                base = load_defaults(str(section["defaults"]), workspace, f"{plan_path}: {name}.defaults")
                body = deep_merge(base, body)
            except PlanError as err:
                problems.extend(err.problems)
        if body.get("settings") is None:
            body["settings"] = {}
        merged[name] = body
    return merged, problems


def resolve_auto(config: dict[str, Any]) -> dict[str, Any]:
    """Replace ``agg_addr: auto`` by the FQDN and ``agg_port: auto`` by the hash-derived port."""
    config = copy.deepcopy(config)
    net = config.setdefault("network", {}).setdefault("settings", {})
    if net.get("agg_addr", "auto") == "auto":
        net["agg_addr"] = identity.local_fqdn()
    if net.get("agg_port", "auto") == "auto":
        net["agg_port"] = "auto"
        net["agg_port"] = identity.derived_port(identity.plan_hash(config))
    return config


def load_plan(plan_path: str | Path = "plan/plan.yaml", *, workspace: str | Path | None = None,
              resolve: bool = True, check_classes: bool = True) -> Plan:
    """Load, merge and validate a plan; raise ``PlanError`` listing every problem."""
    path = Path(plan_path)
    ws = Path(workspace).resolve() if workspace else workspace_of(path)
    if not path.exists() and not path.parent.is_dir():
        raise NotAWorkspace(str(ws), str(path) if path.is_absolute() else "plan/plan.yaml")
    raw = read_yaml(path, what="plan file")
    if not isinstance(raw, dict):
        raise PlanError([f"{path}: expected a mapping of sections at the top level"])
    config, problems = merge_defaults(raw, path, ws)
    problems += validate_config(config, str(path), ws, check_classes=check_classes)
    if problems:
        raise PlanError(problems)
    if resolve:
        config = resolve_auto(config)
    return Plan(path=path, workspace=ws, config=config)


def require_initialized(plan: Plan) -> Path:
    """The init model path; raise when ``fx plan initialize`` has not run."""
    init = plan.resolve_path(plan.aggregator.init_state_path)
    if not init.is_file():
        raise FxError(f"the plan is not initialised: {init} does not exist",
                      "run `fx plan initialize` in the workspace first")
    from fx_cli.plan.modelspec import check_init_model

    check_init_model(plan, init)
    return init


__all__ = ["Plan", "TaskSpec", "load_plan", "SECTIONS", "CORE_SETTINGS", "require_initialized"]
