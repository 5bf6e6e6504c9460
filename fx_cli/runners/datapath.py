"""Checking a collaborator's data path when it is registered (``fx collaborator create``), cheaply.

A data loader class may define two class methods. Both get the plan's ``data_loader.settings`` as keyword
arguments; neither may load data or import a framework (registration must stay fast and TensorFlow-free):

- ``check_data_path(data_path, workspace, **settings)``: raise ``FxError`` saying what is wrong;
- ``suggest_data_path(taken, **settings)``: a data path the loader accepts that no one has yet (for ``-s``).

Only fx's own loaders are imported here: a workspace's ``src/`` loader is code from the archive, which runs
when the collaborator starts, not when it is registered.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fx_cli.errors import FxError
from fx_cli.plan import Plan


@dataclass(frozen=True)
class DataCheck:
    loader: str  # the data_loader.template
    checked: bool  # False: the loader offers no check (or is the workspace's own code)


def _loader(plan: Plan) -> Any | None:
    template = plan.template("data_loader")
    if not template.startswith("fx_cli."):
        return None
    from fx_cli.plan.templates import resolve_class

    return resolve_class(template, plan.workspace, "data_loader.template")


def suggest_data_path(plan: Plan, name: str, taken: list[str]) -> str:
    """The default data path for ``name``: the loader's suggestion, else ``data/<name>``."""
    loader = _loader(plan)
    suggest = getattr(loader, "suggest_data_path", None)
    if suggest is not None:
        return str(suggest(taken, **plan.settings("data_loader")))
    return f"data/{name}"


def check_data_path(plan: Plan, data_path: str) -> DataCheck:
    """Raise ``FxError`` when the plan's data loader cannot use ``data_path``."""
    template = plan.template("data_loader")
    loader = _loader(plan)
    check = getattr(loader, "check_data_path", None)
    if check is None:
        return DataCheck(template, False)
    try:
        check(data_path, plan.workspace, **plan.settings("data_loader"))
    except FxError as err:
        raise FxError(f"data path {data_path!r} cannot be used by {template}: {err.message}", err.hint) from None
    return DataCheck(template, True)


def next_free_number(taken: list[str], limit: int | None = None) -> str:
    """The smallest shard number 1, 2, ... not in ``taken`` (``1`` again once all ``limit`` are taken)."""
    used = {t.strip() for t in taken}
    number = 1
    while str(number) in used and (limit is None or number < limit):
        number += 1
    return str(number if limit is None or str(number) not in used else 1)


def resolve_in(workspace: Path, path: str) -> Path:
    """``path`` as the collaborator will open it (relative to the workspace it starts in)."""
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else workspace / candidate
