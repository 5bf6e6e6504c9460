"""``StarModelTester``: run a STAR analysis on local data splits, one virtual site per split.

Same signature and behaviour as FLAME's tester, so classes written for FLAME run with only the import
changed: ``from fx_cli.star import StarModelTester, StarAnalyzer, StarAggregator``. By default the analysis
runs on fx's round engine (``engine_run.py``: the code of ``fx simulate`` and ``fx aggregator start``);
``backend='local'`` runs the same iteration semantics as a plain loop (``loop.py``), which is faster.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from fx_cli.errors import FxError
from fx_cli.star import wire
from fx_cli.star.flame import AGGREGATOR_ROLE, ANALYZER_ROLE, Flame
from fx_cli.star.loop import DEFAULT_MAX_ITERATIONS, Site, StarOutcome, check_bound, run_star
from fx_cli.star.nodes import StarAggregator, StarAnalyzer, check_initialised
from fx_cli.star.release import OUTPUT_TYPES, add_laplace, check_privacy, write_result

LOG = logging.getLogger("fx.star")
DATA_TYPES = ("fhir", "s3")
BACKENDS = ("engine", "local")
AGGREGATOR_ID = "aggregator"


def site_ids(count: int) -> list[str]:
    """Virtual site names of a local run: site-1, site-2, ..."""
    return [f"site-{i + 1}" for i in range(count)]


def check_node_class(value: object, base: type, argument: str) -> None:
    """The seed's first pitfall: an instance (or something else) where a class is expected."""
    if isinstance(value, base):
        name = type(value).__name__
        raise FxError(f"{argument}= got an instance of {name}, not the class",
                      f"pass the class itself: {argument}={name} (not {name}())")
    if not (isinstance(value, type) and issubclass(value, base)):
        raise FxError(f"{argument}= must be a subclass of {base.__name__}, got {value!r}",
                      f"define `class My{base.__name__[4:]}({base.__name__})` and pass it")


def build_node(cls: type, flame: Flame, kwargs: dict[str, Any] | None) -> Any:
    """Instantiate a user node class and check it called ``super().__init__(flame)``."""
    try:
        node = cls(flame, **(kwargs or {}))
    except TypeError as exc:
        if "abstract" in str(exc):
            raise FxError(f"{cls.__name__} cannot be built: {exc}",
                          "implement the methods named above in your class") from None
        raise FxError(f"{cls.__name__}(flame, **kwargs) failed: {exc}",
                      "check analyzer_kwargs / aggregator_kwargs against the class's __init__") from None
    check_initialised(node)
    return node


def local_site(analyzer: StarAnalyzer, data: Any) -> Site:
    """A virtual site: runs the analyzer on its split; the result crosses the wire encoding."""

    def run(aggregator_results: Any) -> Any:
        return wire.roundtrip(analyzer.analyze(data, aggregator_results))

    return run


class StarModelTester:
    """Run analyzers on ``data_splits`` and the aggregator over their results; print the final result."""

    def __init__(self, data_splits: Sequence[Any], analyzer: type[StarAnalyzer], aggregator: type[StarAggregator],
                 data_type: str, query: str | list[str] | None = None, simple_analysis: bool = True,
                 output_type: str = "str", analyzer_kwargs: dict[str, Any] | None = None,
                 aggregator_kwargs: dict[str, Any] | None = None, epsilon: float | None = None,
                 sensitivity: float | None = None, result_filepath: str | Path | None = None,
                 max_iterations: int = DEFAULT_MAX_ITERATIONS, backend: str = "engine") -> None:
        self._check(data_splits, analyzer, aggregator, data_type, output_type, epsilon, sensitivity, max_iterations)
        if backend not in BACKENDS:
            raise FxError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}",
                          "'engine': fx's round engine, as fx simulate runs it; 'local': a plain loop, faster")
        self.query = query
        ids = site_ids(len(data_splits))
        # Built here in both cases, so the seed's pitfalls are reported before any run starts.
        analyzers = [build_node(analyzer, Flame(sid, ANALYZER_ROLE, ids), analyzer_kwargs) for sid in ids]
        self.aggregator: StarAggregator = build_node(aggregator, Flame(AGGREGATOR_ID, AGGREGATOR_ROLE, ids),
                                                     aggregator_kwargs)
        if backend == "engine":
            from fx_cli.star.engine_run import run_on_engine

            ran = run_on_engine(data_splits, analyzer, aggregator, simple_analysis, max_iterations, analyzer_kwargs,
                                aggregator_kwargs)
            self.aggregator = ran.aggregator or self.aggregator
            outcome = StarOutcome(ran.result, ran.iterations, ran.converged)
        else:
            sites = [local_site(node, data) for node, data in zip(analyzers, data_splits)]
            outcome = run_star(sites, self.aggregator, simple_analysis, max_iterations)
        self.iterations, self.converged = outcome.iterations, outcome.converged
        self.privacy_note = ""
        self.result = outcome.result
        if epsilon is not None and sensitivity is not None:
            self.result = add_laplace(outcome.result, epsilon, sensitivity)
            self.privacy_note = (f"released with Laplace noise: epsilon={epsilon}, sensitivity={sensitivity} "
                                 f"(scale {sensitivity / epsilon:g}); one release, no accounting across runs")
        self.result_path = write_result(result_filepath, self.result, output_type) if result_filepath else None
        self._report(output_type)

    @staticmethod
    def _check(data_splits: Sequence[Any], analyzer: object, aggregator: object, data_type: str, output_type: str,
               epsilon: float | None, sensitivity: float | None, max_iterations: int) -> None:
        check_node_class(analyzer, StarAnalyzer, "analyzer")
        check_node_class(aggregator, StarAggregator, "aggregator")
        if data_type not in DATA_TYPES:
            raise FxError(f"data_type must be 'fhir' or 's3', got {data_type!r}",
                          "use 's3' for plain Python objects (lists, arrays, tables), 'fhir' for FHIR bundles")
        if output_type not in OUTPUT_TYPES:
            raise FxError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
        if isinstance(data_splits, (str, bytes)) or not isinstance(data_splits, Sequence) or not data_splits:
            raise FxError("data_splits must be a non-empty list with one data fragment per site")
        check_privacy(epsilon, sensitivity)
        check_bound(max_iterations)

    def _report(self, output_type: str) -> None:
        state = "converged" if self.converged else "stopped at max_iterations"
        print(f"STAR analysis: {self.iterations} iteration(s), {state}")
        if self.privacy_note:
            print(self.privacy_note)
        print(f"Final result: {self.result}")
        if self.result_path is not None:
            print(f"Result written to {self.result_path} ({output_type})")
