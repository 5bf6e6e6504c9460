"""Building a plan's data loader and task runner."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fx_cli.errors import FxError
from fx_cli.plan import Plan, load_plan
from fx_cli.plan.templates import resolve_class, use_workspace_src
from fx_cli.runners.base import TaskRunner


def build_runner(plan: Plan, data_path: str | None = None) -> TaskRunner:
    """Data loader (``data_path`` None: no data, as for initialisation) plus task runner.

    A runner written against OpenFL's TaskRunner API is wrapped in
    ``fx_cli.compat.adapter.OpenFLRunner``.
    """
    from fx_cli.compat.adapter import OpenFLRunner, is_openfl_class, is_openfl_runner

    if (plan.workspace / "src").is_dir():
        use_workspace_src(plan.workspace)  # settings may name src classes (e.g. a PyTorch model)
    loader_cls = resolve_class(plan.template("data_loader"), plan.workspace, "data_loader.template")
    runner_cls = resolve_class(plan.template("task_runner"), plan.workspace, "task_runner.template")
    if data_path is None and is_openfl_class(loader_cls):
        data_path = _first_data_path(plan)  # as OpenFL does: its loaders need data to know the model's shape
    try:
        loader = loader_cls(data_path=data_path, **plan.settings("data_loader"))
        runner = runner_cls(data_loader=loader, **plan.settings("task_runner"))
    except FxError:
        raise
    except ImportError as err:
        raise FxError(f"the task runner needs a package that is not installed: {err}", _extra_hint(err)) from None
    if is_openfl_runner(runner):
        return OpenFLRunner(runner)
    if not isinstance(runner, TaskRunner):
        raise FxError(f"task_runner.template {plan.template('task_runner')} is not a fx_cli.runners.base.TaskRunner",
                      "derive your runner from fx_cli.runners.base.TaskRunner (see ARCHITECTURE.md), or from "
                      "OpenFL's openfl.federated.task.runner.TaskRunner")
    return runner


def _first_data_path(plan: Plan) -> str | None:
    from fx_cli.plan.participants import read_data

    path = plan.workspace / "plan" / "data.yaml"
    data = read_data(path) if path.is_file() else {}
    return next(iter(data.values()), None)


def _extra_hint(err: ImportError) -> str:
    if (getattr(err, "name", "") or "").split(".")[0] == "torch":
        return "install fx's torch extra: `make install`, or `pip install -e '.[torch]'` in the fx source folder"
    return ("install fx's tensorflow extra: `make install`, or `pip install -e '.[tensorflow]'` in "
            "the fx source folder")


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
