"""Building a task's aggregation function from its plan entry ``tasks.<task>.aggregation_type``."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from fx_cli.aggregation.base import AggregationFunction
from fx_cli.aggregation.fedavg import WeightedAverage
from fx_cli.errors import FxError
from fx_cli.plan.templates import build_component


def resolve_aggregation(spec: Mapping[str, Any] | str | None, workspace: Path | str,
                        where: str = "aggregation_type") -> AggregationFunction:
    """The function named by ``{template, settings}`` (a bare class path works too); None gives FedAvg."""
    if spec is None:
        return WeightedAverage()
    if isinstance(spec, str):
        spec = {"template": spec}
    if not isinstance(spec, Mapping) or not isinstance(spec.get("template"), str):
        raise FxError(f"{where}: expected a mapping with 'template' (and optional 'settings'), got {spec!r}",
                      "write e.g. aggregation_type: {template: fx_cli.aggregation.Median}")
    return build_component(spec["template"], spec.get("settings"), Path(workspace),
                           AggregationFunction, where,  # type: ignore[type-abstract]
                           "derive your class from fx_cli.aggregation.AggregationFunction "
                           "(see the docstring of fx_cli/aggregation/base.py)",
                           base_name="fx_cli.aggregation.AggregationFunction")
