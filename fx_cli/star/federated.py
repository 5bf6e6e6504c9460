"""STAR across real sites, on the round engine: one round per iteration.

- ``StarRunner`` (the plan's ``task_runner``) runs the user's analyzer at a site. The round's model is the
  previous aggregate (empty in round 1); its ``analyze`` task returns the analysis result as the
  ``star/payload`` tensor (``tensorblob``). A result that cannot travel is refused at the site naming its type.
- ``StarAggregation`` (the task's ``aggregation_type``) runs the user's aggregator over the sites' results in
  collaborator-name order and packs the aggregate as the next round's model. Its iteration count, latest
  result, done flag and the aggregator's own attributes that can travel (JSON values, arrays) are saved
  with each round (``state``), so a killed aggregator resumes where it was;
  ``finished()`` ends the run once ``has_converged`` says so or ``max_iterations`` is reached.

User classes are named by class path (``src.analysis.MyAnalyzer``) and resolved through fx's allow-list.
"""
from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from fx_cli.aggregation.base import AggregationFunction, Contribution
from fx_cli.atomic import atomic_write
from fx_cli.errors import FxError
from fx_cli.plan.templates import resolve_class
from fx_cli.runners.base import TaskResult, TaskRunner
from fx_cli.star import engine_run, tensorblob, wire
from fx_cli.star.flame import AGGREGATOR_ROLE, ANALYZER_ROLE, Flame
from fx_cli.star.loop import DEFAULT_MAX_ITERATIONS, StarIterationBound, check_bound
from fx_cli.star.nodes import StarAggregator, StarAnalyzer
from fx_cli.star.release import add_laplace, check_privacy
from fx_cli.star.tester import build_node, check_node_class

LOG = logging.getLogger("fx.star")
STATE_KEY = "star_state"
NODE_FIELDS = frozenset({"flame", "num_iterations", "latest_result", "_fx_star_initialised"})


def node_class(path: str, base: type, where: str) -> type:
    """A user STAR class from the plan (allow-listed: fx_cli or the workspace's src; or a tester's own)."""
    if path.startswith(engine_run.PREFIX):
        cls = engine_run.recall(path, where)
    else:
        cls = resolve_class(path, Path.cwd(), where)
    check_node_class(cls, base, where)
    return cls  # type: ignore[no-any-return]


class StarData:
    """A site's data for STAR: a JSON file (any JSON value) or a CSV (a dict of column lists)."""

    def __init__(self, data_path: str | None = None) -> None:
        self.path = data_path

    def load(self) -> Any:
        """The site's data, read when the first task runs."""
        if self.path is None:
            return None
        if self.path.startswith(engine_run.PREFIX):
            return engine_run.recall(self.path, "data path")
        path = Path(self.path)
        if path.suffix.lower() == ".csv":
            from fx_cli.analytics.table import read_csv

            table = read_csv(path)
            return {k: v.tolist() for k, v in table.columns.items()}
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise FxError(f"cannot read the site's data {path}: {exc}",
                          "check this collaborator's line in plan/data.yaml (a .json or .csv file)") from None

    def train_size(self) -> int:
        return 1


class StarRunner(TaskRunner):
    """Runs the plan's ``StarAnalyzer`` on this site's data, one iteration per round."""

    def __init__(self, data_loader: Any = None, analyzer: str = "", analyzer_kwargs: dict[str, Any] | None = None,
                 max_result_kib: int = 64) -> None:
        super().__init__(data_loader)
        self.analyzer_path, self.analyzer_kwargs = analyzer, dict(analyzer_kwargs or {})
        self.capacity = tensorblob.capacity_for(max_result_kib)
        self.payload = tensorblob.pack(None, self.capacity)
        self.site = "site"
        # One analyzer per site name, and the data of the loader in use: ``fx simulate`` runs several
        # virtual sites through one runner, binding each turn's site and giving it that site's loader.
        self._nodes: dict[str, StarAnalyzer] = {}
        self._loaded: tuple[Any, Any] = (None, None)

    def bind(self, collaborator: str, opt_treatment: str) -> None:
        self.site = collaborator

    def get_tensors(self, with_opt_vars: bool = False) -> dict[str, np.ndarray]:
        return {tensorblob.TENSOR: self.payload}

    def set_tensors(self, tensors: Mapping[str, np.ndarray], with_opt_vars: bool = False) -> None:
        payload = tensorblob.check_payload(dict(tensors), "the global model")
        if payload.shape != (self.capacity,):
            raise FxError(f"{tensorblob.TENSOR}: the global model has {payload.size} elements, this plan "
                          f"{self.capacity}", "use the same max_result_kib in task_runner and aggregation settings")
        self.payload = payload

    def make_node(self) -> StarAnalyzer:
        """The site's analyzer (kept across rounds, as FLAME keeps its nodes)."""
        cls = node_class(self.analyzer_path, StarAnalyzer, "task_runner.settings.analyzer")
        node: StarAnalyzer = build_node(cls, Flame(self.site, ANALYZER_ROLE), self.analyzer_kwargs)
        return node

    def train_task(self, round_num: int, **kwargs: Any) -> TaskResult:
        """One STAR iteration at this site."""
        aggregate = tensorblob.unpack(self.payload)
        if aggregate is not None and aggregate.get("done"):
            return TaskResult({}, {tensorblob.TENSOR: tensorblob.pack(None, self.capacity)})
        node = self._nodes.get(self.site)
        if node is None:
            node = self._nodes[self.site] = self.make_node()
        if self._loaded[0] is not self.data_loader:
            self._loaded = (self.data_loader, self.data_loader.load() if self.data_loader is not None else None)
        node.num_iterations = 0 if aggregate is None else int(aggregate["iteration"])
        result = node.analyze(self._loaded[1], None if aggregate is None else aggregate["result"])
        wire.encode(result)  # refused here, at the site, naming the type and where in the result it is
        return TaskResult({"iteration": float(node.num_iterations)},
                          {tensorblob.TENSOR: tensorblob.pack({"result": result}, self.capacity)})

    def validate_task(self, round_num: int, **kwargs: Any) -> TaskResult:
        return TaskResult({})

    def train_data_size(self) -> int:
        return 1


class StarAggregation(AggregationFunction):
    """Runs the plan's ``StarAggregator`` at round end; the aggregate is the next round's model."""

    def __init__(self, aggregator: str = "", aggregator_kwargs: dict[str, Any] | None = None,
                 simple_analysis: bool = False, max_iterations: int = DEFAULT_MAX_ITERATIONS,
                 max_result_kib: int = 64, result_path: str = "save/analytics.json",
                 epsilon: float | None = None, sensitivity: float | None = None) -> None:
        check_privacy(epsilon, sensitivity)
        self.epsilon, self.sensitivity = epsilon, sensitivity
        self.aggregator_path, self.aggregator_kwargs = aggregator, dict(aggregator_kwargs or {})
        self.simple_analysis, self.max_iterations = simple_analysis, check_bound(max_iterations)
        self.capacity = tensorblob.capacity_for(max_result_kib)
        self.result_path = result_path
        self.done = False
        self.saved: dict[str, Any] = {"num_iterations": 0, "latest_result": None, "done": False}
        self._node: StarAggregator | None = None
        self._unsaved: set[str] = set()

    def _aggregator(self, sites: list[str]) -> StarAggregator:
        if self._node is None:
            cls = node_class(self.aggregator_path, StarAggregator, "aggregation_type.settings.aggregator")
            self._node = build_node(cls, Flame("aggregator", AGGREGATOR_ROLE, sites), self.aggregator_kwargs)
            for name, value in (self.saved.get("attrs") or {}).items():
                setattr(self._node, name, value)  # a restarted aggregator gets its attributes back
        node = self._node
        node.num_iterations, node.latest_result = self.saved["num_iterations"], self.saved["latest_result"]
        return node

    def _attributes(self, node: StarAggregator) -> dict[str, Any]:
        """The aggregator's own attributes that can be saved (JSON-compatible values and arrays)."""
        kept: dict[str, Any] = {}
        wanted = getattr(node, "saved_attributes", None)
        for name, value in vars(node).items():
            if name in NODE_FIELDS or (wanted is not None and name not in wanted):
                continue
            try:
                wire.encode(value)
            except FxError:
                if name not in self._unsaved:
                    self._unsaved.add(name)
                    LOG.warning("%s.%s (a %s) is not saved with the round: after a restart it is as __init__ "
                                "sets it", type(node).__name__, name, type(value).__name__)
                continue
            kept[name] = value
        return kept

    def aggregate(self, tensor_name: str, base: np.ndarray, contributions: Sequence[Contribution],
                  round_num: int) -> np.ndarray:
        if tensor_name != tensorblob.TENSOR or self.done:
            return base
        results = []
        for c in contributions:
            try:
                payload = tensorblob.unpack(c.load())
            except FxError as exc:
                raise FxError(f"the analysis result of '{c.collaborator}' is unusable: {exc.message}",
                              "that site sent a malformed payload; check its fx version and its analyzer") from None
            if payload is None:
                raise FxError(f"collaborator '{c.collaborator}' sent no analysis result in iteration "
                              f"{self.saved['num_iterations'] + 1}")
            results.append(payload["result"])
        node = self._aggregator([c.collaborator for c in contributions])
        node.flame.participant_ids = [c.collaborator for c in contributions]  # who sent each result, in order
        try:
            result, converged = node.aggregate(results, self.simple_analysis)
        except FxError:
            raise
        except Exception as exc:  # the user's code: name it, keep the traceback in the log
            LOG.exception("the aggregator failed")
            raise FxError(f"{type(node).__name__}.aggregation_method or has_converged raised "
                          f"{type(exc).__name__}: {exc}", "fix the aggregator in src/; the saved run resumes at "
                          "this iteration when the aggregator starts again") from None
        bound = not converged and node.num_iterations >= self.max_iterations
        if bound:
            message = (f"has_converged did not return True within max_iterations={self.max_iterations}; "
                       f"stopped with the result of iteration {node.num_iterations}")
            LOG.warning("%s", message)
            warnings.warn(message, StarIterationBound, stacklevel=2)
        self.done = converged or bound
        self.saved = {"num_iterations": node.num_iterations, "latest_result": result, "done": self.done,
                      "converged": converged, "attrs": self._attributes(node)}
        packed = tensorblob.pack({"iteration": node.num_iterations, "result": result, "done": self.done},
                                 self.capacity)
        if self.done:
            self.write_result(result, converged)
        return packed

    def write_result(self, result: Any, converged: bool) -> None:
        """save/analytics.json: the final result (JSON; arrays as lists) and how the run ended."""
        doc: dict[str, Any] = {"iterations": self.saved["num_iterations"], "converged": converged}
        if self.epsilon is not None and self.sensitivity is not None:
            result = add_laplace(result, self.epsilon, self.sensitivity)
            doc["privacy"] = {"mechanism": "laplace", "epsilon": self.epsilon, "sensitivity": self.sensitivity,
                              "covers": "the released result only, not the iterations before it"}
            LOG.info("result released with Laplace noise: epsilon=%g, sensitivity=%g", self.epsilon,
                     self.sensitivity)
        doc["result"] = to_json(result)
        with atomic_write(self.result_path) as fh:
            fh.write(json.dumps(doc, indent=2, allow_nan=True).encode())
        LOG.info("STAR analysis: %d iteration(s), %s; result written to %s", self.saved["num_iterations"],
                 "converged" if converged else "stopped at max_iterations", self.result_path)

    def finished(self) -> bool:
        return self.done

    @property
    def node(self) -> StarAggregator | None:
        """The user's aggregator, once built."""
        return self._node

    def state(self) -> dict[str, np.ndarray]:
        blob = wire.encode(self.saved)
        return {STATE_KEY: np.frombuffer(blob, dtype=np.uint8).copy()}

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        if STATE_KEY in state:
            self.saved = wire.decode(np.asarray(state[STATE_KEY], dtype=np.uint8).tobytes())
            self.done = bool(self.saved.get("done"))

    def describe(self) -> str:
        return f"STAR({self.aggregator_path})"


def to_json(value: Any) -> Any:
    """A wire value as plain JSON (arrays become lists, tuples lists)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    return value
