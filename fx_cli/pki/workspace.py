"""The workspace a PKI command runs in, and the plan facts the PKI needs from it."""
from __future__ import annotations

from pathlib import Path

from fx_cli.errors import FxError, NotAWorkspace
from fx_cli.pki.store import Layout


def current_layout(workspace: Path | None = None) -> Layout:
    """The certificate layout of ``workspace`` (default: the current folder), which must hold a plan."""
    root = (workspace or Path.cwd()).resolve()
    if not (root / "plan" / "plan.yaml").is_file():
        raise NotAWorkspace(str(root), plan_option=False)
    return Layout(root)


def cols_path(layout: Layout) -> Path:
    """``plan/cols.yaml``, the aggregator's list of authorized collaborators."""
    return layout.workspace / "plan" / "cols.yaml"


def data_path(layout: Layout) -> Path:
    """``plan/data.yaml``, ``name,data_path`` lines."""
    return layout.workspace / "plan" / "data.yaml"
