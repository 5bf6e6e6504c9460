"""Building the aggregator's pluggable parts from the plan: assigner, straggler policy, aggregation, compression."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fx_cli.aggregation import AggregationFunction, resolve_aggregation
from fx_cli.aggregator.assigners import Assigner
from fx_cli.aggregator.stragglers import StragglerPolicy
from fx_cli.errors import FxError
from fx_cli.plan import Plan
from fx_cli.plan.templates import resolve_class


@dataclass
class Parts:
    assigner: Assigner
    policy: StragglerPolicy
    functions: dict[str, AggregationFunction]
    task_order: list[str]
    pipelines: set[str]


def _construct(plan: Plan, section: str, **injected: Any) -> Any:
    cls = resolve_class(plan.template(section), plan.workspace, f"{section}.template")
    settings = plan.settings(section)
    try:
        return cls(**settings, **injected)
    except FxError:
        raise
    except (TypeError, ValueError) as err:
        raise FxError(f"plan {section}.settings: cannot build {plan.template(section)}: {err}",
                      f"fix {section}.settings in plan/plan.yaml") from None


def _with_selection(plan: Plan, assigner: Assigner) -> Assigner:
    """The assigner restricted to each round's selected cohort (aggregator.settings.selection)."""
    from fx_cli.aggregator.selection import SelectingAssigner, check_rule

    rule = check_rule(plan.aggregator.selection)
    if rule is None:
        return assigner
    metric = str(rule.get("metric", plan.aggregator.best_metric))
    order = list(dict.fromkeys(t for g in assigner.task_groups for t in g["tasks"]))
    keys = (metric,) if "/" in metric else tuple(f"{t}/{metric}" for t in global_validation_tasks(plan, order))
    return SelectingAssigner(assigner, rule, keys, capabilities_path(plan))


def capabilities_path(plan: Plan) -> Path:
    """Where the collaborators' reported capabilities are kept (for resource-based selection)."""
    return Path(plan.resolve_path(plan.aggregator.persistent_db_path)).parent / "capabilities.json"


def build_parts(plan: Plan, cols: list[str], task_group: str | None, rounds_to_train: int) -> Parts:
    """Every plan-defined component of the aggregator, with all task names checked."""
    from fx_cli.compression import resolve_pipeline

    assigner = _construct(plan, "assigner", authorized_cols=cols, rounds_to_train=rounds_to_train,
                          selected_task_group=task_group)
    if not isinstance(assigner, Assigner):
        raise FxError(f"assigner.template {plan.template('assigner')} is not an fx_cli.aggregator.assigners.Assigner",
                      "derive it from fx_cli.aggregator.assigners.Assigner")
    assigner = _with_selection(plan, assigner)
    policy = _construct(plan, "straggler_handling_policy")
    if not isinstance(policy, StragglerPolicy):
        raise FxError(f"straggler_handling_policy.template {plan.template('straggler_handling_policy')} is not a "
                      "StragglerPolicy", "derive it from fx_cli.aggregator.stragglers.StragglerPolicy")
    tasks = plan.tasks
    order = list(dict.fromkeys(t for g in assigner.task_groups for t in g["tasks"]))
    unknown = [t for t in order if t not in tasks]
    if unknown:
        raise FxError(f"assigner.settings.task_groups name tasks that plan tasks does not define: {', '.join(unknown)}",
                      "add them under tasks: in plan/plan.yaml or fix the task group")
    functions = {name: resolve_aggregation(spec.aggregation_type, plan.workspace,
                                           where=f"tasks.{name}.aggregation_type")
                 for name, spec in tasks.items()}
    pipeline = resolve_pipeline(plan.config.get("compression_pipeline", {}).get("template"),
                                plan.settings("compression_pipeline"), plan.workspace)
    return Parts(assigner, policy, functions, order, {pipeline.name})


def global_validation_tasks(plan: Plan, order: list[str]) -> list[str]:
    """Tasks that validate the global model (``apply: global``), whose metrics pick the best model."""
    tasks = plan.tasks
    return [t for t in order if t in tasks and tasks[t].kwargs.get("apply") == "global"]
