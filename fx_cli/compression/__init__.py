"""Compression pipelines for tensors on the wire (chosen in the plan)."""
from __future__ import annotations


class NoCompressionPipeline:
    """Tensors travel as raw little-endian bytes (the default)."""

    lossless = True

    def __init__(self) -> None:
        pass
