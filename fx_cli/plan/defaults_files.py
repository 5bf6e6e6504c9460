"""Finding section defaults files: the workspace's copy wins over the packaged one."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fx_cli.errors import PlanError
from fx_cli.plan.yamlio import read_yaml

PACKAGED = Path(__file__).parent / "defaults"


def candidates(reference: str, workspace: Path) -> list[Path]:
    """Where ``defaults: plan/defaults/x.yaml`` may live, in order of precedence."""
    name = Path(reference).name
    return [workspace / "plan" / "defaults" / name, PACKAGED / name]


def load_defaults(reference: str, workspace: Path, where: str) -> dict[str, Any]:
    """Load a defaults file; a missing file is an error, never ``{}``."""
    for path in candidates(reference, workspace):
        if path.is_file():
            data = read_yaml(path, what="defaults file")
            if data is None:
                return {}
            if not isinstance(data, dict):
                raise PlanError([f"{path}: expected a mapping at the top level"])
            return data
    looked = ", ".join(str(p) for p in candidates(reference, workspace))
    raise PlanError([f"{where}: defaults file '{reference}' not found (looked in {looked})"])
