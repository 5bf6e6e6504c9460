"""The STAR iteration loop, independent of where the sites run.

A site is a callable taking the previous aggregate (None at first) and returning its analysis result as
it arrives at the aggregator. The loop stops when the aggregator says it has converged, after one
iteration for a simple analysis, or at ``max_iterations`` with a ``StarIterationBound`` warning.
"""
from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from fx_cli.errors import FxError
from fx_cli.star import wire
from fx_cli.star.nodes import StarAggregator

LOG = logging.getLogger("fx.star")
DEFAULT_MAX_ITERATIONS = 100

Site = Callable[[Any], Any]


class StarIterationBound(UserWarning):
    """``has_converged`` never returned True within ``max_iterations``."""


@dataclass
class StarOutcome:
    """The final aggregate, how many iterations ran, and whether ``has_converged`` ended them."""

    result: Any
    iterations: int
    converged: bool


def check_bound(max_iterations: int) -> int:
    """Validate ``max_iterations``."""
    if isinstance(max_iterations, bool) or not isinstance(max_iterations, int) or max_iterations < 1:
        raise FxError(f"max_iterations must be a whole number >= 1, got {max_iterations!r}")
    return max_iterations


def run_star(sites: Sequence[Site], aggregator: StarAggregator, simple_analysis: bool = True,
             max_iterations: int = DEFAULT_MAX_ITERATIONS) -> StarOutcome:
    """Iterate analyse → aggregate until converged or the bound; aggregates travel as on the wire."""
    check_bound(max_iterations)
    broadcast: Any = None
    result: Any = None
    for _ in range(max_iterations):
        analysis_results = [site(broadcast) for site in sites]
        result, converged = aggregator.aggregate(analysis_results, simple_analysis)
        if converged:
            return StarOutcome(result, aggregator.num_iterations, True)
        broadcast = wire.roundtrip(result)
    message = (f"has_converged did not return True within max_iterations={max_iterations}; "
               f"stopped with the result of iteration {max_iterations}")
    LOG.warning("%s", message)
    warnings.warn(message, StarIterationBound, stacklevel=3)
    return StarOutcome(result, aggregator.num_iterations, False)
