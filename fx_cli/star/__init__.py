"""The STAR pattern (FLAME): analyzers at the data, one aggregator, optional iteration until convergence.

``from fx_cli.star import StarModelTester, StarAnalyzer, StarAggregator`` replaces FLAME's
``from flame.star import ...``; user classes need no other change.
"""
from fx_cli.star.loop import StarIterationBound, StarOutcome, run_star
from fx_cli.star.nodes import StarAggregator, StarAnalyzer
from fx_cli.star.tester import StarModelTester

__all__ = ["StarAggregator", "StarAnalyzer", "StarIterationBound", "StarModelTester", "StarOutcome", "run_star"]
