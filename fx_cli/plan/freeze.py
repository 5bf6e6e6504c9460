"""``fx plan freeze``: a read-only copy of the plan named by its hash."""
from __future__ import annotations

from pathlib import Path

from fx_cli.plan.loader import Plan, require_initialized
from fx_cli.plan.yamlio import write_text_atomic


def freeze(plan: Plan) -> tuple[Path, bool]:
    """Write ``plan/plan_<hash8>.yaml`` (mode 0444); returns (path, newly written)."""
    require_initialized(plan)
    target = plan.path.parent / f"{plan.path.stem}_{plan.hash[:8]}.yaml"
    if target.exists():
        return target, False
    write_text_atomic(target, plan.path.read_text(encoding="utf-8"), mode=0o444)
    return target, True
