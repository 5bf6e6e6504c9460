# mypy: allow-untyped-defs
"""The FLAME guide's complete iterative STAR example; only the import line differs from FLAME."""
from typing import Any, Optional
from fx_cli.star import StarModelTester, StarAnalyzer, StarAggregator
class MyAnalyzer(StarAnalyzer):
    """Analyzer that computes local statistics and incorporates global feedback."""
    def __init__(self, flame):
        super().__init__(flame)
    def analysis_method(self, data, aggregator_results):
        """Compute local average, adjusted by previous global average."""
        self.flame.flame_log(
            f"\tAggregator results in MyAnalyzer: {aggregator_results}",
            log_type='debug'
        )
        # Compute local average
        local_avg = sum(data) / len(data)
        # Adjust with global feedback if available
        if aggregator_results is None:
            analysis_result = local_avg
        else:
            # Move towards global average
            analysis_result = (local_avg + aggregator_results) / 2 + 0.5
        self.flame.flame_log(
            f"MyAnalysis result ({self.id}): {analysis_result}",
            log_type='notice'
        )
        return analysis_result
class MyAggregator(StarAggregator):
    """Aggregator that computes global average and checks convergence."""
    def __init__(self, flame):
        super().__init__(flame)
    def aggregation_method(self, analysis_results: list[Any]) -> Any:
        """Compute average of all analyzer results."""
        self.flame.flame_log(
            f"\tAnalysis results in MyAggregator: {analysis_results}",
            log_type='notice'
        )
        result = sum(analysis_results) / len(analysis_results)
        self.flame.flame_log(
            f"MyAggregator result ({self.id}): {result}",
            log_type='notice'
        )
        return result
    def has_converged(self, result: Any, last_result: Optional[Any]) -> bool:
        """Check if training should stop."""
        self.flame.flame_log(
            f"\tLast result: {last_result}, Current result: {result}",
            log_type="notice"
        )
        self.flame.flame_log(
            f"\tChecking convergence at iteration {self.num_iterations}",
            log_type="notice"
        )
        # Stop after 5 iterations for this example
        return self.num_iterations >= 5
