"""``fx plan region``: turn a copy of the parent's workspace into a middle (regional) aggregator's workspace.

The region operator imports the parent's exported archive (``fx workspace
import``) and runs this inside it: the parent's plan is kept, unchanged, as
``plan/upstream.yaml`` (its hash is what the parent checks when the region joins),
and ``plan/plan.yaml`` becomes the region's own plan: an ``upstream`` section,
the region's own address (and so a federation id and derived port of its own),
and an empty ``plan/cols.yaml`` for its sites. Nothing is written until every
input is checked.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fx_cli.errors import FxError
from fx_cli.names import check_address, check_collaborator_name
from fx_cli.plan.loader import load_plan
from fx_cli.plan.participants import write_cols
from fx_cli.plan.yamlio import dump_yaml, read_yaml, write_text_atomic

UPSTREAM_PLAN = "plan/upstream.yaml"


@dataclass(frozen=True)
class Region:
    name: str
    agg_addr: str
    agg_port: int
    parent_hash: str
    plan_hash: str
    local_rounds: int


def make_region(workspace: Path, name: str, agg_addr: str, local_rounds: int = 1, port: int | str = "auto") -> Region:
    """Make ``workspace`` (a copy of the parent's) the workspace of region ``name`` serving at ``agg_addr``."""
    name = check_collaborator_name(name)
    agg_addr = check_address(agg_addr)
    if local_rounds < 1:
        raise FxError(f"--local-rounds must be at least 1, got {local_rounds}",
                      "the region runs this many rounds with its sites for each round of its parent")
    plan_path, upstream = workspace / "plan" / "plan.yaml", workspace / UPSTREAM_PLAN
    parent = load_plan(plan_path)  # the parent's plan must be valid as it is
    if parent.upstream is not None and parent.upstream.name == name:
        raise FxError(f"this workspace is already region '{name}' (its parent's plan is {upstream})",
                      "edit upstream.settings in plan/plan.yaml to change it, or start again from the parent's "
                      "archive")
    raw = read_yaml(plan_path)
    if not isinstance(raw, dict):
        raise FxError(f"{plan_path}: expected a mapping of sections")
    text = plan_path.read_text(encoding="utf-8")
    region_raw: dict[str, Any] = dict(raw)
    region_raw.pop("upstream", None)
    network = region_raw.setdefault("network", {}).setdefault("settings", {})
    network["agg_addr"], network["agg_port"] = agg_addr, port
    region_raw["upstream"] = {"settings": {"plan": UPSTREAM_PLAN, "name": name, "local_rounds": local_rounds}}
    write_text_atomic(upstream, text)
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))[:2000]
    write_text_atomic(plan_path, header + f"# Region '{name}': its parent's plan is {UPSTREAM_PLAN}.\n"
                      + dump_yaml(region_raw))
    write_cols(workspace / "plan" / "cols.yaml", [])
    region = load_plan(plan_path)
    return Region(name, agg_addr, int(region.network.agg_port), parent.hash, region.hash, local_rounds)
