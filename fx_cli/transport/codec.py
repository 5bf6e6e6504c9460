"""Tensor payloads on the wire: raw bytes, or a compression pipeline's encoding named in the header."""
from __future__ import annotations

from typing import Any

import numpy as np

from fx_cli.checksum import crc32
from fx_cli.errors import FxError
from fx_cli.transport.chunks import StreamError, as_payload, raw_array, raw_meta
from fx_cli.transport.serde import TensorMeta

RAW = "none"


def pipeline_name(pipeline: Any) -> str:
    """The wire name of a pipeline object (``none`` for no compression)."""
    return str(getattr(pipeline, "name", RAW) or RAW) if pipeline is not None else RAW


def encode(name: str, array: np.ndarray, pipeline: Any = None, delta: bool = False) -> tuple[TensorMeta, memoryview]:
    """Header and payload of one tensor, through ``pipeline`` unless it is the raw one."""
    array = np.asarray(array)
    if pipeline_name(pipeline) == RAW:
        payload = as_payload(array)
        meta = raw_meta(name, array, payload)
        return (TensorMeta(meta.name, meta.dtype, meta.shape, meta.nbytes, meta.crc32, delta=delta), payload)
    data, metadata = pipeline.encode(array)
    payload = memoryview(data).cast("B") if not isinstance(data, memoryview) else data.cast("B")
    meta = TensorMeta(name=name, dtype=np.dtype(array.dtype).newbyteorder("<").str, shape=tuple(array.shape),
                      nbytes=payload.nbytes, crc32=crc32(payload), pipeline=pipeline_name(pipeline),
                      metadata={str(k): str(v) for k, v in metadata.items()}, delta=delta)
    return meta, payload


def decode(meta: TensorMeta, payload: np.ndarray) -> np.ndarray:
    """The tensor a verified payload encodes; raises ``StreamError`` when it cannot be decoded."""
    if meta.pipeline == RAW:
        return raw_array(meta, payload)
    pipeline = _pipeline(meta)
    try:
        array = np.asarray(pipeline.decode(payload.tobytes(), dict(meta.metadata), np.dtype(meta.dtype), meta.shape))
    except (ValueError, TypeError, KeyError, FxError) as err:
        raise StreamError(f"tensor '{meta.name}': cannot decode its {meta.pipeline} payload: {err}") from None
    if array.shape != tuple(meta.shape):
        raise StreamError(f"tensor '{meta.name}': {meta.pipeline} decoded shape {array.shape}, header says {meta.shape}")
    return array.astype(np.dtype(meta.dtype), copy=False)


def _pipeline(meta: TensorMeta) -> Any:
    from fx_cli.compression import pipeline_by_name

    try:
        return pipeline_by_name(meta.pipeline)
    except (FxError, KeyError, ValueError) as err:
        raise StreamError(f"tensor '{meta.name}': unknown compression pipeline {meta.pipeline!r} ({err})") from None
