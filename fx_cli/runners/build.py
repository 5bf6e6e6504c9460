"""Building a plan's data loader and task runner."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fx_cli.errors import FxError
from fx_cli.plan import Plan, load_plan
from fx_cli.plan.templates import resolve_class
from fx_cli.runners.base import TaskRunner


def build_runner(plan: Plan, data_path: str | None = None) -> TaskRunner:
    """Data loader (``data_path`` None: no data, as for initialisation) plus task runner."""
    loader_cls = resolve_class(plan.template("data_loader"), plan.workspace, "data_loader.template")
    runner_cls = resolve_class(plan.template("task_runner"), plan.workspace, "task_runner.template")
    try:
        loader = loader_cls(data_path=data_path, **plan.settings("data_loader"))
        runner = runner_cls(data_loader=loader, **plan.settings("task_runner"))
    except FxError:
        raise
    except ImportError as err:
        raise FxError(f"the task runner needs a package that is not installed: {err}",
                      "install fx's tensorflow extra: `make install`, or `pip install -e '.[tensorflow]'` in "
                      "the fx source folder") from None
    if not isinstance(runner, TaskRunner):
        raise FxError(f"task_runner.template {plan.template('task_runner')} is not a fx_cli.runners.base.TaskRunner",
                      "derive your runner from fx_cli.runners.base.TaskRunner (see ARCHITECTURE.md)")
    return runner


def runner_with_weights(plan_path: str | Path, model_path: str | Path) -> Any:
    """The plan's task runner with the weights of a ``.pbuf`` loaded (Python API)."""
    from fx_cli.runners.export import load_pbuf_into

    plan = load_plan(plan_path)
    runner = build_runner(plan)
    model = Path(model_path)
    if not model.is_absolute() and not model.exists():
        model = plan.workspace / model
    load_pbuf_into(runner, model)
    return runner
