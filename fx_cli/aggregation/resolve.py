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
    from fx_cli.compat.adapter import is_openfl_class
    from fx_cli.plan.templates import resolve_class

    cls = resolve_class(spec["template"], Path(workspace), f"{where}.template")
    if isinstance(cls, type) and is_openfl_class(cls):  # OpenFL's call(local_tensors, db_iterator, ...) interface
        from fx_cli.compat.aggregation import OpenFLAggregation

        try:
            return OpenFLAggregation(cls(**dict(spec.get("settings") or {})))
        except (TypeError, ValueError) as err:
            raise FxError(f"{where}.settings: cannot build {spec['template']}: {err}",
                          "check the setting names and values against the class's constructor") from None
    return build_component(spec["template"], spec.get("settings"), Path(workspace),
                           AggregationFunction, where,  # type: ignore[type-abstract]
                           "derive your class from fx_cli.aggregation.AggregationFunction "
                           "(see the docstring of fx_cli/aggregation/base.py)",
                           base_name="fx_cli.aggregation.AggregationFunction")
