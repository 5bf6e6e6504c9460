"""Aggregation functions: how collaborator updates become the next global model (one algorithm per module)."""
from __future__ import annotations

from fx_cli.aggregation.base import AggregationFunction, Contribution
from fx_cli.aggregation.fedavg import WeightedAverage
from fx_cli.aggregation.fedavgm import FedAvgM
from fx_cli.aggregation.fedopt import FedAdagrad, FedAdam, FedYogi
from fx_cli.aggregation.geomedian import GeometricMedian
from fx_cli.aggregation.krum import Krum
from fx_cli.aggregation.median import Median
from fx_cli.aggregation.normbound import NormBoundedAverage
from fx_cli.aggregation.resolve import resolve_aggregation
from fx_cli.aggregation.trimmed import TrimmedMean

__all__ = ["AggregationFunction", "Contribution", "WeightedAverage", "Median", "GeometricMedian", "FedAvgM",
           "FedAdam", "FedYogi", "FedAdagrad", "TrimmedMean", "Krum", "NormBoundedAverage", "resolve_aggregation"]
