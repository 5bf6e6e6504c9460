"""Which tensors travel to the aggregator and which stay local (OpenFL's holdout split)."""
from __future__ import annotations

import logging
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


def split_tensor_dict_for_holdouts(logger: logging.Logger | None, tensor_dict: Mapping[str, Any],
                                   keep_types: Iterable[type] = DEFAULT_KEEP,
                                   holdout_tensor_names: Iterable[str] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(to send, held out)``: named holdouts and tensors of other types stay with the collaborator."""
    to_send = dict(tensor_dict)
    holdout = {name: to_send.pop(name) for name in holdout_tensor_names if name in to_send}
    to_send, other = split_tensor_dict_by_types(to_send, keep_types)
    if logger is not None and other:
        logger.debug("tensors kept local (not float or integer): %s", sorted(other))
    return to_send, {**holdout, **other}
