"""Running one plan task through the task runner: which weights to load, what to call, what to report."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from fx_cli.errors import FxError
from fx_cli.faults import fault
from fx_cli.plan.loader import TaskSpec
from fx_cli.privacy.local import LocalPrivacy
from fx_cli.runners.base import TaskResult, TaskRunner
from fx_cli.transport.serde import TensorMeta

TRAIN_FUNCTION = "train_task"


@dataclass(frozen=True)
class TaskOutput:
    task: str
    metrics: dict[str, float]
    tensors: dict[str, np.ndarray]  # the model update (empty for validation)
    data_size: int
    seconds: float
    cpu_seconds: float = 0.0  # this process's CPU during the task (all its threads: a framework's own included)


class GlobalModel(Mapping[str, np.ndarray]):
    """The round's global model; once released (after its last load into the runner) only its names remain.

    Releasing lets the runner's copy be the only one in memory while it trains.
    """

    def __init__(self, tensors: dict[str, np.ndarray]) -> None:
        self.names = tuple(tensors)
        self._tensors: dict[str, np.ndarray] | None = tensors

    def release(self) -> None:
        self._tensors = None

    def __getitem__(self, name: str) -> np.ndarray:
        if self._tensors is None:
            raise RuntimeError("the global model was released after its last use in this round")
        return self._tensors[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


def is_training(spec: TaskSpec) -> bool:
    return spec.function == TRAIN_FUNCTION


def applies_local(spec: TaskSpec) -> bool:
    return spec.kwargs.get("apply") == "local"


class TaskExecutor:
    """Runs tasks as the plan defines them; ``opt_treatment`` decides what happens to optimizer state."""

    def __init__(self, runner: TaskRunner, tasks: Mapping[str, TaskSpec], opt_treatment: str,
                 collaborator: str = "collaborator", privacy: LocalPrivacy | None = None) -> None:
        self.runner = runner
        self.tasks = dict(tasks)
        self.opt_treatment = opt_treatment
        self.privacy = privacy  # local DP: clip and noise the update before it leaves the site
        runner.bind(collaborator, opt_treatment)

    def spec(self, task: str) -> TaskSpec:
        if task not in self.tasks:
            raise FxError(f"the aggregator asked for task '{task}', which this plan's tasks section does not define",
                          "use the same plan/plan.yaml as the aggregator")
        return self.tasks[task]

    def loads_global(self, task: str) -> bool:
        """Whether ``task`` starts from the global model (training always does)."""
        spec = self.spec(task)
        return is_training(spec) or spec.kwargs.get("apply") != "local"

    def keeps_global(self, tasks: Sequence[str]) -> bool:
        """Whether a round running ``tasks`` in this order needs the global model apart from the runner's weights:
        a task that loads it after training (the runner's weights are then the trained ones), or a task on the
        local model before the first load (a download into the runner's arrays would overwrite that model)."""
        loads = [i for i, t in enumerate(tasks) if self.loads_global(t)]
        trained = next((i for i, t in enumerate(tasks) if is_training(self.spec(t))), len(tasks))
        first = loads[0] if loads else len(tasks)
        return any(i > trained for i in loads) or first > 0

    def run(self, task: str, round_num: int, global_model: Mapping[str, np.ndarray],
            release_global: bool = False) -> TaskOutput:
        """Run ``task`` for round ``round_num`` (0-based) starting from ``global_model`` where the task says so.

        ``release_global``: this is the round's last task that loads the global model; a ``GlobalModel``
        is released once loaded, before the runner works.
        """
        spec = self.spec(task)
        kwargs = dict(spec.kwargs)
        apply = kwargs.pop("apply", None)
        training = is_training(spec)
        if training or apply != "local":
            self._load_global(global_model, training)
            if release_global and isinstance(global_model, GlobalModel):
                global_model.release()
        function = getattr(self.runner, spec.function, None)
        if not callable(function):
            raise FxError(f"tasks.{task}.function: the task runner {type(self.runner).__name__} has no method "
                          f"'{spec.function}'", "fix the function name in plan/plan.yaml")
        started, started_cpu = time.monotonic(), time.process_time()
        if training:
            fault("collaborator:mid_train")
        try:
            result = function(round_num, **(dict(spec.kwargs) if self.runner.receives_apply else kwargs))
        except FxError:
            raise
        except Exception as err:  # the runner's own failure: say which task, keep the cause for --debug
            raise FxError(f"task '{task}' failed in {type(self.runner).__name__}.{spec.function}: "
                          f"{type(err).__name__}: {err}",
                          "run `fx --debug collaborator start ...` for the full traceback") from err
        if not isinstance(result, TaskResult):
            raise FxError(f"{type(self.runner).__name__}.{spec.function} returned {type(result).__name__}, "
                          "not a TaskResult", "return fx_cli.runners.base.TaskResult(metrics, tensors)")
        seconds, cpu_seconds = time.monotonic() - started, time.process_time() - started_cpu
        tensors = self._update(result, global_model, task) if (training or result.tensors) else {}
        if tensors and self.privacy is not None:
            tensors = self.privacy.apply(tensors, global_model)
        size = self.runner.train_data_size() if tensors else self.runner.valid_data_size()
        wanted = kwargs.get("metrics") if self.runner.metrics_follow_plan else None
        return TaskOutput(task, _metrics(result, wanted, task), tensors, int(size), seconds, cpu_seconds)

    def _load_global(self, model: Mapping[str, np.ndarray], training: bool) -> None:
        opt_names = set(self.runner.optimizer_tensor_names())
        with_opt = (training and self.opt_treatment == "CONTINUE_GLOBAL" and bool(opt_names)
                    and opt_names <= set(model))
        weights = {k: v for k, v in model.items() if with_opt or k not in opt_names}
        self.runner.set_tensors(weights, with_opt_vars=with_opt)
        if training and self.opt_treatment == "RESET":
            self.runner.reset_optimizer()

    def _update(self, result: TaskResult, model: Mapping[str, np.ndarray], task: str) -> dict[str, np.ndarray]:
        """The trained tensors the aggregator expects: exactly the global model's names."""
        produced = dict(result.tensors)
        if self.opt_treatment == "CONTINUE_GLOBAL":
            produced.update(self.runner.get_tensors(with_opt_vars=True))
        missing = [name for name in model if name not in produced]
        if missing:
            raise FxError(f"task '{task}' returned {len(model) - len(missing)} of the global model's {len(model)} "
                          f"tensors; missing {', '.join(missing[:5])}",
                          "the task runner's tensor names must match the model in save/init.pbuf")
        return {name: np.asarray(produced[name]) for name in model}


def encode_update(out: TaskOutput, model: Mapping[str, np.ndarray], pipeline: Any,
                  delta: bool) -> list[tuple[TensorMeta, memoryview]]:
    """A task's tensors as they are sent: float32 (or float32 deltas from ``model``), through ``pipeline``."""
    return list(iter_update(out, model, pipeline, delta))


def iter_update(out: TaskOutput, model: Mapping[str, np.ndarray], pipeline: Any,
                delta: bool) -> Iterator[tuple[TensorMeta, memoryview]]:
    """``encode_update`` one tensor at a time."""
    from fx_cli.transport import codec

    for name, array in out.tensors.items():
        # The global model is float32; so is every update, whatever the runner computed in.
        values = np.subtract(array, model[name], dtype=np.float32) if delta else np.asarray(array, np.float32)
        yield codec.encode(name, values, pipeline, delta=delta)


def _metrics(result: TaskResult, wanted: Any, task: str) -> dict[str, float]:
    """The task's metrics, limited to ``kwargs.metrics`` when the plan lists them."""
    got = {str(k): float(v) for k, v in result.metrics.items()}
    if wanted:
        missing = [m for m in wanted if m not in got]
        if missing:
            raise FxError(f"task '{task}' did not report metric(s) {', '.join(missing)} (it reported: "
                          f"{', '.join(got) or 'none'})", f"fix tasks.{task}.kwargs.metrics in plan/plan.yaml")
        got = {m: got[m] for m in wanted}
    bad = [f"{k}={v}" for k, v in got.items() if not math.isfinite(v)]
    if bad:
        raise FxError(f"task '{task}' produced non-finite metrics: {', '.join(bad)}",
                      "training diverged; lower the learning rate or check the data")
    return got
