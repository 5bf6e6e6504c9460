"""``StarModelTester`` on the round engine: a throw-away workspace, one virtual site per data split.

The user's classes and data stay in this process: the plan names them as ``memory:<token>`` entries of
``MEMORY`` (they cannot be named in a real plan, where only fx_cli and the workspace's ``src`` are allowed),
and the simulator's dispatcher plays the sites, running each turn in this thread through the same
collaborator task code, intake, aggregation and round closing as ``fx simulate`` and ``fx aggregator start``.
"""
from __future__ import annotations

import math
import secrets
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from fx_cli.errors import FxError

MEMORY: dict[str, Any] = {}
PREFIX = "memory:"


def remember(obj: Any) -> str:
    """A ``memory:`` name for ``obj`` (a class or a data split) in this process."""
    token = f"{PREFIX}{secrets.token_hex(8)}"
    MEMORY[token] = obj
    return token


def recall(name: str, where: str) -> Any:
    """The object behind a ``memory:`` name; anywhere but the tester's own process it does not exist."""
    if name not in MEMORY:
        raise FxError(f"{where}: {name!r} names an object of a StarModelTester run that is not in this process",
                      "name a class in the workspace's src/ (e.g. src.analysis.MyAnalyzer) in a real plan")
    return MEMORY[name]


@dataclass
class EngineOutcome:
    result: Any
    iterations: int
    converged: bool
    aggregator: Any = None  # the aggregator node the engine ran (this process built it)


class InlinePool:
    """The simulator's pool protocol with one worker that runs each turn at once, in this thread."""

    size = 1
    batch = 1

    def __init__(self, plan_path: Path) -> None:
        from fx_cli.simulate.worker import Worker, WorkerSetup

        self.worker = Worker(WorkerSetup(str(plan_path)))
        self.worker.start()
        self.done: list[tuple[int, Any]] = []

    def submit(self, worker: int, turns: list[Any]) -> None:
        self.done.extend((worker, self.worker.run(turn)) for turn in turns)

    def wait(self, timeout: float) -> list[tuple[int, Any]]:
        out, self.done = self.done, []
        return out

    def close(self) -> None:
        """Nothing to stop."""


def _workspace(root: Path, names: list[str], analyzer: str, aggregator: str, simple_analysis: bool,
               max_iterations: int, analyzer_kwargs: dict[str, Any] | None,
               aggregator_kwargs: dict[str, Any] | None) -> Path:
    from fx_cli.plan.initialize import initialize
    from fx_cli.workspace.create import create_workspace

    ws = root / "ws"
    create_workspace(ws, "star/mean")
    plan_path = ws / "plan" / "plan.yaml"
    plan = yaml.safe_load(plan_path.read_text())
    plan["aggregator"]["settings"]["rounds_to_train"] = max_iterations
    plan["task_runner"]["settings"].update(analyzer=analyzer, analyzer_kwargs=analyzer_kwargs or {})
    plan["tasks"]["analyze"]["aggregation_type"]["settings"].update(
        aggregator=aggregator, aggregator_kwargs=aggregator_kwargs or {}, simple_analysis=simple_analysis,
        max_iterations=max_iterations, result_path=str(ws / "save" / "analytics.json"))
    plan_path.write_text(yaml.safe_dump(plan))
    (ws / "plan" / "data.yaml").write_text("".join(f"{n},{remember(None)}\n" for n in names))
    initialize(plan_path, None, ws / "plan" / "data.yaml", "localhost", None)
    return ws


def run_on_engine(data_splits: Sequence[Any], analyzer: type, aggregator: type, simple_analysis: bool,
                  max_iterations: int, analyzer_kwargs: dict[str, Any] | None = None,
                  aggregator_kwargs: dict[str, Any] | None = None) -> EngineOutcome:
    """Run a STAR analysis through the round engine with one virtual site per split."""
    from fx_cli.aggregator.engine import EngineOptions, RunResult, open_engine
    from fx_cli.plan import load_plan
    from fx_cli.simulate.dispatch import Dispatcher, NoProgress, Roster
    from fx_cli.star.federated import StarAggregation

    names = [f"site-{i + 1}" for i in range(len(data_splits))]
    tokens = [remember(analyzer), remember(aggregator)]
    with tempfile.TemporaryDirectory(prefix="fx-star-") as tmp:
        ws = _workspace(Path(tmp), names, tokens[0], tokens[1], simple_analysis, max_iterations,
                        analyzer_kwargs, aggregator_kwargs)
        data = {n: remember(split) for n, split in zip(names, data_splits)}
        tokens += list(data.values())
        plan = load_plan(ws / "plan" / "plan.yaml")
        wake = threading.Event()
        options = EngineOptions(liveness=(math.inf, math.inf), observers=[lambda event: wake.set()])
        try:
            with open_engine(plan, names, options) as engine:
                assert not isinstance(engine, RunResult)
                pool = InlinePool(ws / "plan" / "plan.yaml")
                Dispatcher(engine, pool, Roster(data, "StarModelTester"), NoProgress(), wake).run(lambda r: None)
                function = engine.parts.functions["analyze"]
                assert isinstance(function, StarAggregation)
                saved, node = function.saved, function.node
        finally:
            for token in tokens:
                MEMORY.pop(token, None)
    return EngineOutcome(saved["latest_result"], int(saved["num_iterations"]), bool(saved.get("converged")), node)
