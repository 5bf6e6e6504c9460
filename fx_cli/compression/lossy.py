"""Lossy pipelines for float tensors: half precision (fp16) and 8-bit affine quantisation (int8).

Both send a tensor unchanged (raw bytes, metadata ``encoding: raw``) when
compressing it would be wrong or pointless: non-float dtypes (integer
counters stay exact), empty tensors, and, for fp16, values beyond its range.
Work is done in slices so encoding needs little memory beyond the payload.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from fx_cli.compression.base import (Payload, Pipeline, check_length, element_count, from_raw, meta_value,
                                     raw_bytes, wire_dtype)
from fx_cli.errors import FxError

SLICE = 1 << 20  # elements converted at a time
RAW = {"encoding": "raw"}
HALF = np.dtype("<f2")


def _float_source(array: np.ndarray) -> np.ndarray | None:
    """The tensor flattened in C order when a lossy encoding applies to it, else None."""
    if array.dtype.kind != "f" or array.size == 0:
        return None
    return np.ascontiguousarray(array).reshape(-1)


def _encoding(metadata: Mapping[str, str], pipeline: str, lossy: str) -> str:
    encoding = meta_value(metadata, "encoding", pipeline)
    if encoding not in ("raw", lossy):
        raise FxError(f"'{pipeline}' tensor metadata has unknown encoding '{encoding}'",
                      "the sender runs an incompatible fx version; use the same version on both sides")
    return encoding


class Float16Pipeline(Pipeline):
    """float32/float64 sent as IEEE half precision: half the bytes of float32.

    Error: |decoded - x| <= max(2**-11 * |x|, 2**-25) (round to nearest; values
    below 2**-24 become 0). NaN and +-inf are kept. A tensor with a finite value
    beyond the fp16 range (|x| > 65504) is sent raw instead of turning into inf.
    """

    name = "fp16"
    lossless = False

    def encode(self, array: np.ndarray) -> tuple[Payload, dict[str, str]]:
        arr = np.asarray(array)
        flat = _float_source(arr)
        if flat is None or arr.dtype.itemsize <= 2:
            return raw_bytes(arr), dict(RAW)
        half = np.empty(flat.size, dtype=HALF)
        with np.errstate(over="ignore"):
            for start in range(0, flat.size, SLICE):
                part = flat[start:start + SLICE]
                half[start:start + SLICE] = part
                if np.any(np.isinf(half[start:start + SLICE]) & np.isfinite(part)):
                    return raw_bytes(arr), {"encoding": "raw", "reason": "beyond fp16 range"}
        return half.view(np.uint8).data, {"encoding": "fp16"}

    def decode(self, payload: Payload, metadata: Mapping[str, str], dtype: np.dtype | str,
               shape: tuple[int, ...]) -> np.ndarray:
        if _encoding(metadata, self.name, "fp16") == "raw":
            return from_raw(payload, dtype, shape, self.name)
        out_dtype = wire_dtype(dtype).newbyteorder("=")
        check_length(payload, element_count(shape) * HALF.itemsize, f"{out_dtype}{list(shape)}", self.name)
        return from_raw(payload, HALF, shape, self.name).astype(out_dtype)


class Int8QuantizationPipeline(Pipeline):
    """Per-tensor affine 8-bit quantisation: code = round((x - min) / scale), scale = (max - min) / 255.

    One byte per element (a quarter of float32). Error: |decoded - x| <=
    (max - min) / 510, plus the rounding of the output dtype; a constant
    tensor is exact. ``min`` and ``scale`` travel as exact hex floats. A
    tensor holding NaN or +-inf is sent raw (its range is undefined).
    """

    name = "int8"
    lossless = False

    def encode(self, array: np.ndarray) -> tuple[Payload, dict[str, str]]:
        arr = np.asarray(array)
        flat = _float_source(arr)
        if flat is None:
            return raw_bytes(arr), dict(RAW)
        low, high = float(np.min(flat)), float(np.max(flat))  # NaN propagates into both
        scale = (high - low) / 255.0
        if not np.isfinite(scale):
            return raw_bytes(arr), {"encoding": "raw", "reason": "non-finite values"}
        codes = np.zeros(flat.size, dtype=np.uint8)
        if scale > 0:
            for start in range(0, flat.size, SLICE):
                part = (flat[start:start + SLICE].astype(np.float64) - low) / scale
                np.clip(np.rint(part, out=part), 0, 255, out=part)
                codes[start:start + SLICE] = part
        return codes.data, {"encoding": "int8", "min": low.hex(), "scale": scale.hex()}

    def decode(self, payload: Payload, metadata: Mapping[str, str], dtype: np.dtype | str,
               shape: tuple[int, ...]) -> np.ndarray:
        if _encoding(metadata, self.name, "int8") == "raw":
            return from_raw(payload, dtype, shape, self.name)
        low, scale = (_hex_float(metadata, key) for key in ("min", "scale"))
        out_dtype = wire_dtype(dtype).newbyteorder("=")
        if out_dtype.kind != "f":
            raise FxError(f"'int8' quantised payload declared as {out_dtype}, but only float tensors are quantised",
                          "the sender's message is corrupt or from an incompatible fx version")
        check_length(payload, element_count(shape), f"{out_dtype}{list(shape)}", self.name)
        codes = np.frombuffer(payload, dtype=np.uint8)
        out = np.empty(codes.size, dtype=out_dtype)
        for start in range(0, codes.size, SLICE):
            out[start:start + SLICE] = codes[start:start + SLICE] * scale + low
        return out.reshape(shape)


def _hex_float(metadata: Mapping[str, str], key: str) -> float:
    text = meta_value(metadata, key, "int8")
    try:
        value = float.fromhex(text)
    except ValueError:
        raise FxError(f"'int8' tensor metadata '{key}' is not a hex float: {text!r}",
                      "the sender's message is corrupt or from an incompatible fx version") from None
    if not np.isfinite(value):
        raise FxError(f"'int8' tensor metadata '{key}' is not finite: {text!r}",
                      "the sender's message is corrupt or from an incompatible fx version")
    return value
