"""Reading YAML files with errors that name the file (never a silent ``{}``)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from fx_cli.atomic import atomic_write
from fx_cli.errors import PlanError

MAX_VALUES = 200_000  # keys, values and items together; real plans hold a few hundred


def read_yaml(path: str | os.PathLike[str], *, what: str = "file") -> Any:
    """Parse a YAML file; a missing or malformed file raises ``PlanError``."""
    p = Path(path)
    if not p.is_file():
        raise PlanError([f"{p}: {what} not found"])
    text = read_text(p, what)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise PlanError([f"{p}{where}: not valid YAML: {problem}"]) from None
    _check_expansion(data, p)
    return data


def _check_expansion(data: Any, path: Path) -> None:
    """Refuse documents whose aliases expand past MAX_VALUES (or into a cycle) before anything walks them."""
    # A few hundred bytes of nested YAML aliases expand to billions of values when hashed or printed.
    stack, count = [data], 0
    while stack:
        item = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise PlanError([f"{path}: expands to over {MAX_VALUES:,} values (nested or recursive YAML aliases?)"],
                            "write the plan out without '&anchor'/'*alias' tricks")
        if isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def read_text(path: Path, what: str = "file") -> str:
    """A UTF-8 text file's content; unreadable or non-UTF-8 files raise ``PlanError`` naming the file."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise PlanError([f"{path}: {what} is not UTF-8 text (byte {err.start}: {err.reason})"]) from None
    except OSError as err:
        raise PlanError([f"{path}: cannot read the {what}: {err.strerror or err}"]) from None


def dump_yaml(data: Any) -> str:
    """Serialise plan data in a stable, readable block style (insertion order kept)."""
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


def write_text_atomic(path: str | os.PathLike[str], text: str, mode: int | None = None) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    with atomic_write(path, mode=mode) as fh:
        fh.write(text.encode("utf-8"))
