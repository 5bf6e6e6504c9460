"""Importing a workspace archive that OpenFL 1.9 exported (its ``fx workspace export``).

OpenFL's archive has the same layout as fx's (``plan/``, ``src/``, ``save/``,
``requirements.txt``, ``.workspace``) plus empty ``data/``, ``logs/`` and
``local_state/`` folders.  Its frozen plan is named after OpenFL's plan hash,
which fx does not compute; it is checked to hold the same plan as
``plan/plan.yaml`` instead, and fx's own frozen copy is added.  Nothing is
executed: what fx will translate is reported, and the one step that needs
the code (re-writing ``save/init.pbuf`` with fx's integrity record) is left
to the aggregator's owner, as a command to run.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from fx_cli.compat.plan_names import TRANSLATED
from fx_cli.errors import FxError
from fx_cli.workspace.archive import FROZEN_PLAN, PLAN_FILE

OPENFL_IMPORT = re.compile(rb"^\s*(from|import)\s+openfl\b", re.MULTILINE)
OPENFL_REQUIREMENT = re.compile(r"^\s*openfl(\s*[\[<>=!~;@].*)?\s*$", re.IGNORECASE)


def _parse(text: bytes) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return None


def is_openfl_plan(text: bytes) -> bool:
    """True when a section of the plan names an OpenFL class (``template: openfl....``)."""
    plan = _parse(text)
    return isinstance(plan, dict) and any(isinstance(s, dict) and str(s.get("template", "")).startswith("openfl.")
                                          for s in plan.values())


def check_frozen(archive: Path, small: dict[str, bytes]) -> str:
    """OpenFL's frozen plan (named by OpenFL's hash) must hold the same plan as plan/plan.yaml; returns its name."""
    frozen = sorted(n for n in small if FROZEN_PLAN.match(n))
    if not frozen:
        raise FxError(f"{archive}: has no frozen plan (plan/plan_<hash8>.yaml), so its plan cannot be verified",
                      "run `fx workspace export` in the OpenFL workspace again and import that archive")
    plan = _parse(small[PLAN_FILE])
    same = [n for n in frozen if _parse(small[n]) == plan]
    if not same:
        raise FxError(f"{archive}: plan/plan.yaml differs from OpenFL's frozen plan {', '.join(frozen)}",
                      "the plan was changed after OpenFL exported it; nothing was extracted")
    return same[-1]


def translations(small: dict[str, bytes], src_files: dict[str, bytes], files: list[str], frozen: str,
                 fx_frozen: str) -> list[str]:
    """What fx does differently from OpenFL with this workspace, one line each."""
    plan = _parse(small[PLAN_FILE])
    notes = [f"plan: OpenFL's frozen {frozen} holds the same plan; fx's own frozen copy is {fx_frozen} "
             "(fx hashes plans its own way, so the federation id differs from OpenFL's)"]
    for where, template in _templates(plan):
        if template in TRANSLATED:
            notes.append(f"plan: {where}.template {template} -> {TRANSLATED[template]}")
    users = sorted(n for n, data in src_files.items() if OPENFL_IMPORT.search(data))
    if users:
        notes.append(f"src: {', '.join(users)} import openfl: fx provides OpenFL 1.9's TaskRunner API for them "
                     "(fx_cli/compat/openfl), used only while OpenFL itself is not installed")
    if any(OPENFL_REQUIREMENT.match(line) for line in small.get("requirements.txt", b"").decode(errors="replace")
           .splitlines()):
        notes.append("requirements.txt: the openfl line is commented out (installing OpenFL would replace "
                     "fx's TaskRunner API with OpenFL's own)")
    if "save/init.pbuf" in files:
        notes.append("save/init.pbuf: OpenFL's model file has no fx integrity record; on the aggregator run "
                     "`fx plan initialize -i save/init.pbuf` (the weights stay) before `fx aggregator start`")
    return notes


def _templates(plan: Any) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if not isinstance(plan, dict):
        return found
    for name, section in plan.items():
        if isinstance(section, dict) and isinstance(section.get("template"), str):
            found.append((name, section["template"]))
        if name == "tasks" and isinstance(section, dict):
            for task, spec in section.items():
                agg = spec.get("aggregation_type") if isinstance(spec, dict) else None
                if isinstance(agg, dict) and isinstance(agg.get("template"), str):
                    found.append((f"tasks.{task}.aggregation_type", agg["template"]))
    return found


def finish(target: Path) -> None:
    """Comment out the openfl requirement in the extracted workspace (fx's frozen plan is written by import)."""
    requirements = target / "requirements.txt"
    if requirements.is_file():
        lines = requirements.read_text(errors="replace").splitlines()
        fixed = [f"# {line}  (fx provides OpenFL's TaskRunner API)" if OPENFL_REQUIREMENT.match(line) else line
                 for line in lines]
        if fixed != lines:
            requirements.write_text("\n".join(fixed) + "\n")
