"""OpenFL 1.9 class paths in plans: the fx class each one means, or why fx refuses it.

Every ``template:`` OpenFL 1.9's shipped workspaces and packaged defaults name
is listed, under the module paths OpenFL exports it from.  A path that is
neither translated nor known is refused by the allow-list as any other class
outside fx and the workspace's ``src``.
"""
from __future__ import annotations

TRANSLATED: dict[str, str] = {}


def _add(fx_path: str, *openfl_paths: str) -> None:
    for path in openfl_paths:
        TRANSLATED[path] = fx_path


_add("fx_cli.aggregator.Aggregator", "openfl.component.Aggregator", "openfl.component.aggregator.Aggregator",
     "openfl.component.aggregator.aggregator.Aggregator")
_add("fx_cli.collaborator.Collaborator", "openfl.component.Collaborator",
     "openfl.component.collaborator.Collaborator", "openfl.component.collaborator.collaborator.Collaborator")
_add("fx_cli.transport.Network", "openfl.federation.Network")
for _name in ("RandomGroupedAssigner", "StaticGroupedAssigner"):
    _add(f"fx_cli.aggregator.assigners.{_name}", f"openfl.component.{_name}", f"openfl.component.assigner.{_name}")
_add("fx_cli.aggregator.assigners.RandomGroupedAssigner",
     "openfl.component.assigner.random_grouped_assigner.RandomGroupedAssigner")
_add("fx_cli.aggregator.assigners.StaticGroupedAssigner",
     "openfl.component.assigner.static_grouped_assigner.StaticGroupedAssigner")
for _name in ("WaitForAllPolicy", "PercentagePolicy", "CutoffTimePolicy"):
    _add(f"fx_cli.aggregator.stragglers.{_name}", f"openfl.component.{_name}",
         f"openfl.component.aggregator.straggler_handling.{_name}",
         f"openfl.component.straggler_handling_functions.{_name}")
_add("fx_cli.compression.NoCompressionPipeline", "openfl.pipelines.NoCompressionPipeline",
     "openfl.pipelines.no_compression_pipeline.NoCompressionPipeline")
for _name, _module in (("WeightedAverage", "weighted_average"), ("Median", "median"),
                       ("GeometricMedian", "geometric_median")):
    _add(f"fx_cli.aggregation.{_name}", f"openfl.interface.aggregation_functions.{_name}",
         f"openfl.interface.aggregation_functions.{_module}.{_name}")
for _openfl, _fx in (("AdamAdaptiveAggregation", "FedAdam"), ("YogiAdaptiveAggregation", "FedYogi"),
                     ("AdagradAdaptiveAggregation", "FedAdagrad")):
    _add(f"fx_cli.aggregation.{_fx}", f"openfl.interface.aggregation_functions.{_openfl}")

_FLOWER = "Flower interop needs a Flower SuperLink and its ServerApp/ClientApp processes, which fx does not run"
_GANDLF = "GaNDLF runs its own training loop and configuration files; fx does not host it"
_WORKFLOW = "OpenFL's workflow interface (FLSpec flows, experimental.component) is not part of fx"
_LOSSY = ("is a compression algorithm fx does not implement; use fx_cli.compression.Int8QuantizationPipeline "
          "(8-bit, lossy), Float16Pipeline or ZlibPipeline (lossless)")
_INTERACTIVE = "OpenFL's interactive (director/envoy) API is not part of fx; write a TaskRunner workspace"

REFUSED: dict[str, str] = {
    "openfl.component.ConnectorFlower": _FLOWER,
    "openfl.component.connector.ConnectorFlower": _FLOWER,
    "openfl.federated.task.runner_flower.FlowerTaskRunner": _FLOWER,
    "openfl.federated.task.FlowerTaskRunner": _FLOWER,
    "openfl.federated.data.loader_flower.FlowerDataLoader": _FLOWER,
    "openfl.federated.data.FlowerDataLoader": _FLOWER,
    "openfl.transport.grpc.interop.FlowerInteropServer": _FLOWER,
    "openfl.federated.task.runner_gandlf.GaNDLFTaskRunner": _GANDLF,
    "openfl.federated.task.GaNDLFTaskRunner": _GANDLF,
    "openfl.federated.data.loader_gandlf.GaNDLFDataLoaderWrapper": _GANDLF,
    "openfl.federated.data.GaNDLFDataLoaderWrapper": _GANDLF,
    "openfl.interface.aggregation_functions.FedBaggingXGBoost":
        "XGBoost bagging (trees appended to a JSON model held as bytes) is not implemented in fx",
    "openfl.interface.aggregation_functions.FedCurvWeightedAverage":
        "FedCurv needs OpenFL's FedCurv regulariser (openfl.utilities.fedcurv), which fx does not offer",
    "openfl.interface.aggregation_functions.SecureWeightedAverage":
        "OpenFL's secure aggregation protocol is not implemented in fx",
    "openfl.federated.task_runner.CoreTaskRunner": "CoreTaskRunner belongs to OpenFL's interactive API; name your "
                                                   "task runner class (src.<module>.<Class>) under task_runner.template",
    "openfl.federated.task.task_runner.CoreTaskRunner": "CoreTaskRunner belongs to OpenFL's interactive API; name "
                                                        "your task runner class under task_runner.template",
}
for _pipeline in ("EdenPipeline", "KCPipeline", "SKCPipeline", "STCPipeline", "RandomShiftPipeline", "GenericPipeline"):
    REFUSED[f"openfl.pipelines.{_pipeline}"] = f"{_pipeline} {_LOSSY}"

REFUSED_PREFIXES = {
    "openfl.experimental.": _WORKFLOW,
    "openfl.interface.workflow.": _WORKFLOW,
    "openfl.interface.interactive_api.": _INTERACTIVE,
    "openfl.component.director.": _INTERACTIVE,
    "openfl.component.envoy.": _INTERACTIVE,
}


def refusal(path: str) -> str | None:
    """Why fx does not run the OpenFL class ``path`` (None when it is translated or not OpenFL's)."""
    if path in REFUSED:
        return REFUSED[path]
    return next((why for prefix, why in REFUSED_PREFIXES.items() if path.startswith(prefix)), None)

REFUSED_SECTIONS = {"connector": _FLOWER}


def section_refusal(name: str, section: object) -> str | None:
    """Why fx refuses a whole OpenFL plan section (the Flower ``connector``), naming its class."""
    if name not in REFUSED_SECTIONS:
        return None
    template = section.get("template") if isinstance(section, dict) else None
    named = f" ({template})" if template else ""
    return f"{name}: OpenFL's Flower connector{named} is not supported by fx: {REFUSED_SECTIONS[name]}"
