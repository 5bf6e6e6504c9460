"""STAR nodes: ``StarAnalyzer`` runs at the data, ``StarAggregator`` combines their results.

Semantics (FLAME's STAR pattern): in each iteration every analyzer runs
``analysis_method(data, aggregator_results)`` (``aggregator_results`` is None in the first iteration),
the aggregator runs ``aggregation_method(analysis_results)`` and then
``has_converged(result, last_result)`` with ``num_iterations`` still counting the iterations *before*
this one; a True in the first iteration is ignored. Then ``latest_result`` becomes the result and
``num_iterations`` grows by one.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from fx_cli.errors import FxError
from fx_cli.star.flame import AGGREGATOR_ROLE, ANALYZER_ROLE, Flame

_INIT_MARK = "_fx_star_initialised"


class _StarNode(ABC):
    """State every STAR node has: its flame handle, iteration count and latest result."""

    expected_role = ""

    def __init__(self, flame: Flame) -> None:
        if not isinstance(flame, Flame):
            raise FxError(f"{type(self).__name__} was built with {type(flame).__name__}, not fx's flame handle",
                          "pass the classes to StarModelTester (or name them in the plan); fx builds them")
        if flame.role != self.expected_role:
            raise FxError(f"{type(self).__name__} built for role {flame.role!r}, expected {self.expected_role!r}")
        self.flame = flame
        self.num_iterations = 0
        self.latest_result: Any = None
        setattr(self, _INIT_MARK, True)

    @property
    def id(self) -> str:
        """This node's id (a site name, or 'aggregator')."""
        return self.flame.node_id

    @property
    def role(self) -> str:
        """'default' for an analyzer, 'aggregator' for the aggregator."""
        return self.flame.role


def check_initialised(node: object) -> None:
    """Raise when a subclass's ``__init__`` did not call ``super().__init__(flame)``."""
    if not getattr(node, _INIT_MARK, False):
        name = type(node).__name__
        raise FxError(f"{name}.__init__ did not call super().__init__(flame)",
                      f"add `super().__init__(flame)` as the first line of {name}.__init__")


class StarAnalyzer(_StarNode):
    """Runs at a data site: subclass it and implement ``analysis_method``."""

    expected_role = ANALYZER_ROLE

    def analyze(self, data: Any, aggregator_results: Any) -> Any:
        """One iteration at this site."""
        result = self.analysis_method(data, aggregator_results)
        self.latest_result = result
        self.num_iterations += 1
        return result

    @abstractmethod
    def analysis_method(self, data: Any, aggregator_results: Any) -> Any:
        """Analyse local data; ``aggregator_results`` is the previous aggregate (None at first)."""


class StarAggregator(_StarNode):
    """Runs at the aggregator: subclass it and implement ``aggregation_method`` and ``has_converged``."""

    expected_role = AGGREGATOR_ROLE
    # Attributes saved with each round across real sites, so a restarted aggregator has them back;
    # None: every attribute that can travel (JSON-compatible values, numpy arrays).
    saved_attributes: tuple[str, ...] | None = None

    def aggregate(self, analysis_results: list[Any], simple_analysis: bool = True) -> tuple[Any, bool]:
        """One iteration's aggregation; returns the result and whether to stop."""
        result = self.aggregation_method(analysis_results)
        if simple_analysis:
            converged = True
        else:
            said = bool(self.has_converged(result, self.latest_result))
            converged = said if self.num_iterations != 0 else False
        self.latest_result = result
        self.num_iterations += 1
        return result, converged

    @abstractmethod
    def aggregation_method(self, analysis_results: list[Any]) -> Any:
        """Combine one result per analyzer (in site order) into one result."""

    def has_converged(self, result: Any, last_result: Any) -> bool:
        """Whether iterating can stop (only asked when ``simple_analysis`` is False)."""
        return True
