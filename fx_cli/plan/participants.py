"""``plan/cols.yaml`` (authorized collaborators) and ``plan/data.yaml`` (name,data_path lines).

Both are edited as text so users' comments survive.
"""
from __future__ import annotations

import re
from pathlib import Path

from fx_cli.errors import PlanError
from fx_cli.names import LABEL, NAME_RULE
from fx_cli.plan.yamlio import read_text, read_yaml, write_text_atomic

_LIST_KEY = re.compile(r"^collaborators\s*:")
_ITEM = re.compile(r"^\s*-\s*")


def read_cols(path: str | Path) -> list[str]:
    """The authorized collaborator names; problems are listed with the file name."""
    data = read_yaml(path, what="collaborator list")
    if data is None:
        data = {}
    if not isinstance(data, dict) or not isinstance(data.get("collaborators", []) or [], list):
        raise PlanError([f"{path}: expected 'collaborators: [name, ...]'"])
    names = [str(n) for n in (data.get("collaborators") or [])]
    problems = [f"{path}: collaborators[{i}]: {n!r} is not a valid name ({NAME_RULE})"
                for i, n in enumerate(names) if not LABEL.match(n)]
    if len(set(names)) != len(names):
        problems.append(f"{path}: collaborators: a name is listed twice")
    if problems:
        raise PlanError(problems)
    return names


def write_cols(path: str | Path, names: list[str]) -> None:
    """Rewrite the ``collaborators:`` list, keeping every comment line."""
    p = Path(path)
    lines = read_text(p, "collaborator list").splitlines() if p.exists() else []
    kept: list[str] = []
    in_list = False
    for line in lines:
        if _LIST_KEY.match(line):
            in_list = True
            continue
        if in_list and (_ITEM.match(line) or not line.strip()):
            continue
        in_list = False
        kept.append(line)
    body = "collaborators:" + ("".join(f"\n  - {n}" for n in names) if names else " []")
    write_text_atomic(p, "\n".join(kept + [body]) + "\n")


def add_col(path: str | Path, name: str) -> bool:
    """Add ``name`` to cols.yaml; False when it was already there."""
    names = read_cols(path) if Path(path).exists() else []
    if name in names:
        return False
    write_cols(path, names + [name])
    return True


def remove_col(path: str | Path, name: str) -> bool:
    """Remove ``name`` from cols.yaml; False when it was not there."""
    names = read_cols(path)
    if name not in names:
        return False
    write_cols(path, [n for n in names if n != name])
    return True


def read_data(path: str | Path) -> dict[str, str]:
    """``name -> data_path`` from data.yaml (``#`` comments and blank lines skipped)."""
    p = Path(path)
    if not p.is_file():
        raise PlanError([f"{p}: data file not found"])
    result: dict[str, str] = {}
    problems: list[str] = []
    for number, line in enumerate(read_text(p, "data file").splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        name, sep, value = text.partition(",")
        if not sep:
            problems.append(f"{p}: line {number}: expected 'name,data_path', got {text!r}")
        elif name.strip() in result:
            problems.append(f"{p}: line {number}: collaborator '{name.strip()}' is listed twice")
        else:
            result[name.strip()] = value.strip()
    if problems:
        raise PlanError(problems)
    return result


def set_data(path: str | Path, name: str, data_path: str) -> None:
    """Set ``name,data_path`` in data.yaml, keeping comments and other lines."""
    p = Path(path)
    if not data_path.strip() or "\n" in data_path or "\r" in data_path:
        raise PlanError([f"{p}: data path {data_path!r} for collaborator '{name}' is empty or spans lines"],
                        "give one non-empty data path (for the shipped templates, the shard number: 1, 2, ...)")
    lines = read_text(p, "data file").splitlines() if p.exists() else []
    out, replaced = [], False
    for line in lines:
        text = line.strip()
        if text and not text.startswith("#") and text.partition(",")[0].strip() == name:
            if not replaced:
                out.append(f"{name},{data_path}")
                replaced = True
            continue
        out.append(line)
    if not replaced:
        out.append(f"{name},{data_path}")
    write_text_atomic(p, "\n".join(out) + "\n")
