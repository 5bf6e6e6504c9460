"""The collaborator: running tasks through a runner (weights, optimizer treatment, metrics) and failing clearly."""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pytest

from fx_cli.collaborator.loop import CollaboratorRun, run_collaborator
from fx_cli.collaborator.tasks import TaskExecutor
from fx_cli.errors import FxError
from fx_cli.plan.loader import TaskSpec
from fx_cli.runners.base import TaskResult, TaskRunner
from tests.runtime_helpers import make_workspace

TASKS = {
    "aggregated_model_validation": TaskSpec("aggregated_model_validation", "validate_task",
                                            {"apply": "global", "metrics": ["accuracy"]}, None),
    "train": TaskSpec("train", "train_task", {"epochs": 2, "metrics": ["loss"]}, None),
    "locally_tuned_model_validation": TaskSpec("locally_tuned_model_validation", "validate_task",
                                               {"apply": "local", "metrics": ["accuracy"]}, None),
}
GLOBAL = {"w": np.full(3, 10.0, np.float32)}


class Recorder(TaskRunner):
    """A tiny runner with one weight and one optimizer slot that records what the collaborator did to it."""

    def __init__(self) -> None:
        super().__init__(None)
        self.w = np.zeros(3, np.float32)
        self.slot = np.zeros(3, np.float32)
        self.calls: list[tuple[Any, ...]] = []

    def get_tensors(self, with_opt_vars: bool = False) -> dict[str, np.ndarray]:
        return {"w": self.w, **({"optimizer/slot": self.slot} if with_opt_vars else {})}

    def set_tensors(self, tensors: Mapping[str, np.ndarray], with_opt_vars: bool = False) -> None:
        self.calls.append(("set", sorted(tensors), with_opt_vars))
        self.w = np.array(tensors["w"])
        if with_opt_vars:
            self.slot = np.array(tensors["optimizer/slot"])

    def optimizer_tensor_names(self) -> list[str]:
        return ["optimizer/slot"]

    def reset_optimizer(self) -> None:
        self.calls.append(("reset",))
        self.slot = np.zeros(3, np.float32)

    def train_task(self, round_num: int, epochs: int = 1, **kwargs: Any) -> TaskResult:
        self.calls.append(("train", epochs, sorted(kwargs)))
        self.w = self.w + epochs
        self.slot = self.slot + 1
        return TaskResult({"loss": 0.5, "extra": 1.0}, {"w": self.w})

    def validate_task(self, round_num: int, **kwargs: Any) -> TaskResult:
        return TaskResult({"accuracy": float(self.w.mean()), "loss": 0.1})

    def train_data_size(self) -> int:
        return 100

    def valid_data_size(self) -> int:
        return 40


def test_a_round_loads_the_global_model_trains_and_validates_the_local_one() -> None:
    runner = Recorder()
    executor = TaskExecutor(runner, TASKS, "CONTINUE_LOCAL")
    agg = executor.run("aggregated_model_validation", 0, GLOBAL)
    train = executor.run("train", 0, GLOBAL)
    local = executor.run("locally_tuned_model_validation", 0, GLOBAL)
    assert agg.metrics == {"accuracy": 10.0} and agg.data_size == 40 and agg.tensors == {}
    assert train.metrics == {"loss": 0.5} and train.data_size == 100  # only the metrics the plan names
    np.testing.assert_array_equal(train.tensors["w"], np.full(3, 12.0))
    assert local.metrics == {"accuracy": 12.0}  # apply: local keeps the trained weights
    assert ("train", 2, ["metrics"]) in runner.calls and ("reset",) not in runner.calls


def test_reset_clears_the_optimizer_before_training() -> None:
    runner = Recorder()
    runner.slot[:] = 7
    TaskExecutor(runner, TASKS, "RESET").run("train", 0, GLOBAL)
    assert runner.calls[:2] == [("set", ["w"], False), ("reset",)]
    np.testing.assert_array_equal(runner.slot, np.ones(3))


def test_continue_global_loads_and_sends_optimizer_state_when_the_model_has_it() -> None:
    runner = Recorder()
    with_slot = dict(GLOBAL, **{"optimizer/slot": np.full(3, 5.0, np.float32)})
    out = TaskExecutor(runner, TASKS, "CONTINUE_GLOBAL").run("train", 1, with_slot)
    assert runner.calls[0] == ("set", ["optimizer/slot", "w"], True)
    assert sorted(out.tensors) == ["optimizer/slot", "w"]
    np.testing.assert_array_equal(out.tensors["optimizer/slot"], np.full(3, 6.0))
    plain = TaskExecutor(Recorder(), TASKS, "CONTINUE_GLOBAL").run("train", 1, GLOBAL)
    assert sorted(plain.tensors) == ["w"]  # the global model has no optimizer tensors: none are sent


class Spender(Recorder):
    """Training burns CPU in a thread of its own, as a framework's worker threads do; validation only waits."""

    def __init__(self, cpu: float) -> None:
        super().__init__()
        self.cpu = cpu
        self.waited = threading.Event()

    def train_task(self, round_num: int, epochs: int = 1, **kwargs: Any) -> TaskResult:
        def burn() -> None:
            until = time.thread_time() + self.cpu
            while time.thread_time() < until:
                pass
        worker = threading.Thread(target=burn)
        worker.start()
        worker.join()
        return super().train_task(round_num, epochs, **kwargs)

    def validate_task(self, round_num: int, **kwargs: Any) -> TaskResult:
        self.waited.wait(0.3)  # never set: a task that takes wall time and no CPU
        return super().validate_task(round_num, **kwargs)


def test_a_task_reports_the_cpu_it_used_with_its_threads_and_not_the_time_it_waited() -> None:
    executor = TaskExecutor(Spender(cpu=0.3), TASKS, "CONTINUE_LOCAL")
    train = executor.run("train", 0, GLOBAL)
    assert train.cpu_seconds >= 0.3 and train.seconds >= 0.3  # the worker thread's CPU is counted
    validate = executor.run("aggregated_model_validation", 0, GLOBAL)
    assert validate.seconds >= 0.3 and validate.cpu_seconds < validate.seconds - 0.15


def test_task_problems_are_named() -> None:
    executor = TaskExecutor(Recorder(), dict(TASKS, odd=TaskSpec("odd", "fly", {}, None),
                                             strict=TaskSpec("strict", "validate_task", {"metrics": ["f1"]}, None)),
                            "RESET")
    with pytest.raises(FxError, match="does not define"):
        executor.run("unknown", 0, GLOBAL)
    with pytest.raises(FxError, match="tasks.odd.function: the task runner Recorder has no method 'fly'"):
        executor.run("odd", 0, GLOBAL)
    with pytest.raises(FxError, match=r"did not report metric\(s\) f1 \(it reported: accuracy, loss\)"):
        executor.run("strict", 0, GLOBAL)
    with pytest.raises(FxError, match="returned 1 of the global model's 2 tensors; missing v"):
        executor.run("train", 0, {"w": GLOBAL["w"], "v": GLOBAL["w"]})


def test_an_unreachable_aggregator_ends_the_collaborator_after_the_reconnect_deadline(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one"], tls=False, network={"reconnect_deadline": 1.0})
    started = time.monotonic()
    with pytest.raises(FxError, match="cannot reach the aggregator at localhost:.*gave up after") as err:
        run_collaborator(CollaboratorRun("one", ws / "plan" / "plan.yaml", ws / "plan" / "data.yaml"))
    assert time.monotonic() - started > 0.9  # bounded from below only: a busy machine is slower, never faster
    assert "reconnect_deadline" in (err.value.hint or "")


def test_start_problems_are_reported_before_connecting(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one"], tls=False)
    plan, data = ws / "plan" / "plan.yaml", ws / "plan" / "data.yaml"
    with pytest.raises(FxError, match="invalid collaborator name 'One_1'"):
        run_collaborator(CollaboratorRun("One_1", plan, data))
    with pytest.raises(FxError, match=f"collaborator 'two' has no line in {data}"):
        run_collaborator(CollaboratorRun("two", plan, data))
    tls_plan = plan.parent / "tls.yaml"  # TLS on, but this workspace was never certified
    tls_plan.write_text(plan.read_text().replace("use_tls: false", "use_tls: true"))
    with pytest.raises(FxError, match="cert_chain.crt not found") as err:
        run_collaborator(CollaboratorRun("one", tls_plan, data))
    assert "fx collaborator certify --import" in (err.value.hint or "")


def test_tls_failures_are_not_retried_and_say_what_is_wrong(tmp_path: Path) -> None:
    import shutil

    from tests.runtime_helpers import aggregator_thread, edit_plan

    # A long reconnect deadline: a failure that were retried would run into it, far beyond the bound below.
    ws = make_workspace(tmp_path / "fed", ["one"], rounds=1, network={"reconnect_deadline": 600})
    wrong_name = tmp_path / "wrong_name"  # dials 127.0.0.1, which the server certificate does not cover
    shutil.copytree(ws, wrong_name)
    edit_plan(wrong_name, network={"agg_addr": "127.0.0.1"})
    foreign = tmp_path / "foreign"  # a whole other federation's CA and certificate for 'one'
    shutil.copytree(ws, foreign)
    shutil.rmtree(foreign / "cert")
    shutil.copytree(make_workspace(tmp_path / "elsewhere", ["one"], rounds=1) / "cert", foreign / "cert")
    with aggregator_thread(ws):
        for copy, message in ((wrong_name, "the server certificate does not cover '127.0.0.1'"),
                              (foreign, "is from a different CA")):
            started = time.monotonic()
            with pytest.raises(FxError, match=message):
                run_collaborator(CollaboratorRun("one", copy / "plan" / "plan.yaml", copy / "plan" / "data.yaml"))
            assert time.monotonic() - started < 60, "a TLS failure must not be retried until the deadline"
        run_collaborator(CollaboratorRun("one", ws / "plan" / "plan.yaml", ws / "plan" / "data.yaml"))


def test_the_global_model_is_released_after_its_last_load_so_only_the_runner_holds_a_model() -> None:
    from fx_cli.collaborator.tasks import GlobalModel

    runner = Recorder()
    executor = TaskExecutor(runner, TASKS, "CONTINUE_LOCAL")
    model = GlobalModel({"w": np.full(3, 10.0, np.float32)})
    executor.run("aggregated_model_validation", 0, model)
    assert model["w"][0] == 10.0  # still held: training loads it again
    train = executor.run("train", 0, model, release_global=True)
    with pytest.raises(RuntimeError, match="released"):
        model["w"]
    assert list(model) == ["w"] and len(model) == 1  # the names remain for checking the update
    np.testing.assert_array_equal(train.tensors["w"], np.full(3, 12.0))


@pytest.mark.parametrize(("order", "keeps"), [
    (["aggregated_model_validation", "train", "locally_tuned_model_validation"], False),  # OpenFL's order
    (["train", "locally_tuned_model_validation"], False),
    (["train", "aggregated_model_validation"], True),  # a global task after training: the runner is trained
    (["locally_tuned_model_validation", "aggregated_model_validation", "train"], True),  # the local model first
    (["locally_tuned_model_validation"], True),  # nothing loads the global model: the local one must stay
])
def test_the_download_goes_into_the_runner_only_where_no_task_needs_another_model(order: list[str],
                                                                                   keeps: bool) -> None:
    assert TaskExecutor(Recorder(), TASKS, "RESET").keeps_global(order) is keeps


def test_the_synthetic_runner_trains_in_its_own_arrays_and_takes_them_back_without_a_copy() -> None:
    from fx_cli.runners.synthetic import SyntheticData, SyntheticRunner

    runner = SyntheticRunner(SyntheticData("2"), num_params=10, num_tensors=2, learning_rate=0.5)
    own = runner.tensor_buffers()
    reference = {k: v + np.float32(0.5) * (np.float32(0.3 + 0.01 * i) - v) for i, (k, v) in enumerate(own.items())}
    runner.set_tensors(own)  # its own arrays back: nothing to copy
    out = runner.train_task(0)
    for name, array in out.tensors.items():
        assert array is own[name]  # trained in place
        np.testing.assert_array_equal(array, reference[name])  # bit-identical to w + lr * (target - w)
    runner.set_tensors({k: np.zeros_like(v) for k, v in own.items()})
    assert all(a is own[k] and not a.any() for k, a in runner.get_tensors().items())  # copied into its arrays
