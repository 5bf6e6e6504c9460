"""Compression pipelines for tensors on the wire, chosen in the plan's ``compression_pipeline`` section.

``none`` (default) and ``zlib`` are lossless; ``fp16`` and ``int8`` are lossy
for float tensors and pass every other tensor through unchanged.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from fx_cli.compression.base import Pipeline
from fx_cli.compression.lossless import NoCompressionPipeline, ZlibPipeline
from fx_cli.compression.lossy import Float16Pipeline, Int8QuantizationPipeline
from fx_cli.errors import FxError

PIPELINES: dict[str, type[Pipeline]] = {
    cls.name: cls for cls in (NoCompressionPipeline, ZlibPipeline, Float16Pipeline, Int8QuantizationPipeline)}


def pipeline_by_name(name: str) -> Pipeline:
    """The decoder for a wire id (decoding needs no settings)."""
    cls = PIPELINES.get(name)
    if cls is None:
        raise FxError(f"tensor compressed with unknown pipeline '{name}' (this fx knows: {', '.join(PIPELINES)})",
                      "the sender runs a newer or different fx; use the same fx version on every node")
    return cls()


def resolve_pipeline(template: str | None, settings: Mapping[str, Any] | None, workspace: Path | str,
                     where: str = "compression_pipeline") -> Pipeline:
    """The plan's pipeline from ``compression_pipeline.template`` and ``settings`` (None: no compression)."""
    from fx_cli.plan.templates import build_component

    if template is None:
        return NoCompressionPipeline()
    return build_component(template, settings, Path(workspace), Pipeline,  # type: ignore[type-abstract]
                           where,
                           "use one of fx_cli.compression.NoCompressionPipeline, ZlibPipeline, Float16Pipeline "
                           "or Int8QuantizationPipeline",
                           base_name="fx_cli.compression.Pipeline")


__all__ = ["Pipeline", "NoCompressionPipeline", "ZlibPipeline", "Float16Pipeline", "Int8QuantizationPipeline",
           "PIPELINES", "pipeline_by_name", "resolve_pipeline"]
