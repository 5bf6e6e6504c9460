"""``openfl.interface.aggregation_functions``: OpenFL's interface for custom aggregation, and WeightedAverage.

A workspace's ``src`` may subclass ``AggregationFunction`` and implement
``call(local_tensors, db_iterator, tensor_name, fl_round, tags)``; fx calls it
through ``fx_cli/compat/aggregation.py`` once per tensor per round.
"""
from .core import AggregationFunction, WeightedAverage

__all__ = ["AggregationFunction", "WeightedAverage"]
