"""Which tensors travel to the aggregator and which stay local (OpenFL's holdout split)."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

DEFAULT_KEEP = (np.floating, np.integer)


def split_tensor_dict_by_types(tensor_dict: Mapping[str, Any], keep_types: Iterable[type]
                               ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(kept, held out)``: arrays whose dtype is one of ``keep_types`` are kept."""
    kinds = tuple(keep_types)
    keep: dict[str, Any] = {}
    holdout: dict[str, Any] = {}
    for name, value in tensor_dict.items():
        dtype = getattr(value, "dtype", None)
        kept = dtype is not None and any(np.issubdtype(dtype, kind) for kind in kinds)
        (keep if kept else holdout)[name] = value
    return keep, holdout


def split_tensor_dict_for_holdouts(*args: Any, keep_types: Iterable[type] = DEFAULT_KEEP,
                                   holdout_tensor_names: Iterable[str] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(to send, held out)``: named holdouts and tensors of other types stay with the collaborator.

    Called as ``(tensor_dict, ...)`` (OpenFL 1.9) or ``(logger, tensor_dict, ...)`` (earlier releases).
    """
    if len(args) == 1 and isinstance(args[0], Mapping):
        tensor_dict = args[0]
    elif len(args) == 2 and isinstance(args[1], Mapping):
        tensor_dict = args[1]
    else:
        raise TypeError("split_tensor_dict_for_holdouts(tensor_dict, keep_types=..., holdout_tensor_names=...)")
    to_send = dict(tensor_dict)
    holdout = {name: to_send.pop(name) for name in holdout_tensor_names if name in to_send}
    to_send, other = split_tensor_dict_by_types(to_send, keep_types)
    return to_send, {**holdout, **other}
