"""Results on the wire: JSON-compatible values and numpy arrays, never pickle.

``encode(value)`` gives ``b"FXA1" + u32 header length + JSON header + raw array bytes``. The header holds
the value with arrays replaced by ``{"$array": i}`` (and tuples, non-finite floats and non-string dict keys
tagged), plus each array's dtype, shape and byte range. ``decode`` checks everything it reads: a peer
that lies about sizes or dtypes gets a ``WireError``, never a crash or code execution.
"""
from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np

from fx_cli.errors import FxError

MAGIC = b"FXA1"
# Plain numeric and boolean dtypes only: no object, string or structured arrays.
ALLOWED_DTYPES = frozenset({"|b1", "|i1", "|u1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8",
                            "<f2", "<f4", "<f8", "<c8", "<c16"})
MAX_DEPTH = 64


class WireError(FxError):
    """A result that cannot travel, or bytes that are not a well-formed result."""


def _tag(value: Any, arrays: list[np.ndarray], path: str, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise WireError(f"result is nested deeper than {MAX_DEPTH} levels at {path}")
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, np.bool_):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else {"$float": repr(f)}
    if isinstance(value, np.ndarray):
        return _tag_array(value, arrays, path)
    if isinstance(value, (list, tuple)):
        items = [_tag(v, arrays, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
        return items if isinstance(value, list) else {"$tuple": items}
    if isinstance(value, dict):
        return _tag_dict(value, arrays, path, depth)
    raise WireError(f"result at {path} is a {type(value).__module__}.{type(value).__qualname__}, which cannot "
                    "travel between sites",
                    "return JSON-compatible values (None, bool, int, float, str, list, tuple, dict) and numpy "
                    "arrays of numbers; convert other objects (e.g. DataFrame.to_dict(), float(x)) first")


def _tag_array(value: np.ndarray, arrays: list[np.ndarray], path: str) -> dict[str, int]:
    arr = np.ascontiguousarray(value)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    if arr.dtype.str not in ALLOWED_DTYPES:
        raise WireError(f"result at {path} is a numpy array of dtype {arr.dtype}, which cannot travel",
                        "use numeric or boolean arrays; send strings as lists of str")
    arrays.append(arr)
    return {"$array": len(arrays) - 1}


def _tag_dict(value: dict[Any, Any], arrays: list[np.ndarray], path: str, depth: int) -> Any:
    if all(isinstance(k, str) for k in value) and not any(k.startswith("$") for k in value):
        return {k: _tag(v, arrays, f"{path}[{k!r}]", depth + 1) for k, v in value.items()}
    pairs = [[_tag(k, arrays, f"{path} key", depth + 1), _tag(v, arrays, f"{path}[{k!r}]", depth + 1)]
             for k, v in value.items()]
    return {"$dict": pairs}


def encode(value: Any) -> bytes:
    """Serialise a result; raises ``WireError`` naming the type of anything that cannot travel."""
    arrays: list[np.ndarray] = []
    tagged = _tag(value, arrays, "result", 0)
    specs, offset = [], 0
    for arr in arrays:
        specs.append({"dtype": arr.dtype.str, "shape": list(arr.shape), "offset": offset, "nbytes": arr.nbytes})
        offset += arr.nbytes
    header = json.dumps({"value": tagged, "arrays": specs}, allow_nan=False, separators=(",", ":")).encode()
    return b"".join([MAGIC, struct.pack("<I", len(header)), header, *(a.tobytes() for a in arrays)])


def decode(blob: bytes, max_bytes: int = 1 << 30) -> Any:
    """Parse bytes made by ``encode``; anything malformed raises ``WireError``."""
    if len(blob) > max_bytes:
        raise WireError(f"result of {len(blob)} bytes is over the limit of {max_bytes}")
    if len(blob) < 8 or blob[:4] != MAGIC:
        raise WireError("result bytes do not start with the fx analytics header (FXA1)")
    (hlen,) = struct.unpack("<I", blob[4:8])
    if 8 + hlen > len(blob):
        raise WireError("result header runs past the end of the data")
    try:
        header = json.loads(blob[8:8 + hlen])
        body = memoryview(blob)[8 + hlen:]
        arrays = [_read_array(spec, body) for spec in header["arrays"]]
        return _untag(header["value"], arrays, 0)
    except WireError:
        raise
    except (ValueError, KeyError, TypeError, IndexError, RecursionError) as exc:
        raise WireError(f"malformed result: {type(exc).__name__}: {exc}") from None


def _read_array(spec: dict[str, Any], body: memoryview) -> np.ndarray:
    dtype, shape, offset, nbytes = spec["dtype"], spec["shape"], spec["offset"], spec["nbytes"]
    if dtype not in ALLOWED_DTYPES:
        raise WireError(f"result carries an array of dtype {dtype!r}, which is not allowed")
    if not all(isinstance(d, int) and d >= 0 for d in shape) or not isinstance(offset, int):
        raise WireError("result carries an array with a malformed shape or offset")
    size = math.prod(shape) * np.dtype(dtype).itemsize
    if size != nbytes or offset < 0 or offset + size > len(body):
        raise WireError("result carries an array whose size does not match its shape or the data")
    out: np.ndarray = np.frombuffer(body[offset:offset + size], dtype=dtype).reshape(shape).copy()
    return out


def _untag(value: Any, arrays: list[np.ndarray], depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise WireError(f"result is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, list):
        return [_untag(v, arrays, depth + 1) for v in value]
    if not isinstance(value, dict):
        return value
    if "$array" in value:
        found: np.ndarray = arrays[int(value["$array"])]
        return found
    if "$float" in value:
        if value["$float"] not in ("nan", "inf", "-inf"):
            raise WireError(f"malformed non-finite float {value['$float']!r}")
        return float(value["$float"])
    if "$tuple" in value:
        return tuple(_untag(v, arrays, depth + 1) for v in value["$tuple"])
    if "$dict" in value:
        return {_hashable(_untag(k, arrays, depth + 1)): _untag(v, arrays, depth + 1) for k, v in value["$dict"]}
    return {k: _untag(v, arrays, depth + 1) for k, v in value.items()}


def _hashable(key: Any) -> Any:
    if isinstance(key, (list, dict, np.ndarray)):
        raise WireError("result has a dict key that is a list, dict or array")
    return key


def roundtrip(value: Any) -> Any:
    """What the receiving side will see (used by local runs so they behave like a federation)."""
    return decode(encode(value))
