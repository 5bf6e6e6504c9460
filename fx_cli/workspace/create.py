"""``fx workspace create``: a new workspace from a template, with its plan merged and resolved."""
from __future__ import annotations

import copy
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fx_cli.errors import FxError
from fx_cli.plan.loader import load_plan, resolve_auto
from fx_cli.plan.yamlio import dump_yaml, write_text_atomic
from fx_cli.workspace.templates import template_dir

WORKSPACE_DIRS = ("plan", "src", "save", "logs", "data", "cert", "local_state")
_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


@dataclass
class CreatedWorkspace:
    path: Path
    template: str
    plan_hash: str


def create_workspace(prefix: Path, template: str, force: bool = False) -> CreatedWorkspace:
    """Copy ``template`` into ``prefix`` and write its merged plan."""
    source = template_dir(template)
    if prefix.exists() and (not prefix.is_dir() or any(prefix.iterdir())) and not force:
        raise FxError(f"{prefix} already exists and is not empty",
                      "choose another --prefix, or pass --force to create the workspace over it")
    prefix.mkdir(parents=True, exist_ok=True)
    for name in WORKSPACE_DIRS:
        (prefix / name).mkdir(exist_ok=True)
    shutil.copytree(source, prefix, dirs_exist_ok=True, ignore=_IGNORE)
    (prefix / "cert").chmod(0o700)
    if not (prefix / "requirements.txt").exists():
        (prefix / "requirements.txt").write_text("")
    plan_file = prefix / "plan" / "plan.yaml"
    config = resolve_auto(salted(load_plan(plan_file, workspace=prefix, resolve=False).config))
    write_text_atomic(plan_file, _leading_comments(plan_file) +
                      f"# Merged from template '{template}' by fx workspace create.\n" + dump_yaml(config))
    return CreatedWorkspace(prefix, template, load_plan(prefix / "plan" / "plan.yaml").hash)


def salted(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with a random ``network.settings.hash_salt`` in place of ``auto``.

    Two workspaces made from one template would otherwise have the same plan hash, so the same federation
    id and derived port, and collide on one host. The salt is part of the plan, so export/import keep it.
    """
    config = copy.deepcopy(config)
    net = config.setdefault("network", {}).setdefault("settings", {})
    if net.get("hash_salt", "auto") == "auto":
        net["hash_salt"] = secrets.token_hex(8)
    return config


def _leading_comments(path: Path) -> str:
    """The template plan's opening comment block (what the template is), kept above the merged plan."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line + "\n")
    return "".join(lines)
