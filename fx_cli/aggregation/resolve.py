"""Building a task's aggregation function from its plan entry ``tasks.<task>.aggregation_type``."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from fx_cli.aggregation.base import AggregationFunction
from fx_cli.aggregation.fedavg import WeightedAverage
from fx_cli.errors import FxError
from fx_cli.plan.templates import resolve_class


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
    template = spec["template"]
    settings = dict(spec.get("settings") or {})
    cls = resolve_class(template, Path(workspace), f"{where}.template")
    if not (isinstance(cls, type) and issubclass(cls, AggregationFunction)):
        raise FxError(f"{where}.template: {template} is not a fx_cli.aggregation.AggregationFunction",
                      "derive your class from fx_cli.aggregation.AggregationFunction "
                      "(see the docstring of fx_cli/aggregation/base.py)")
    try:
        return cls(**settings)
    except (TypeError, ValueError) as err:
        raise FxError(f"{where}.settings: cannot build {template} with {settings}: {err}",
                      "check the setting names and values against the class's constructor") from None
