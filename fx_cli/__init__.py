"""fx: federated-learning workspaces with an OpenFL-compatible workflow.

The public Python API is small and lazy: importing ``fx_cli`` imports neither
gRPC nor TensorFlow.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np


def load_tensors(path: str) -> "dict[str, np.ndarray]":
    """Read a ``.pbuf`` model file into a dict of named numpy arrays."""
    from fx_cli.tensors.pbuf import read_model

    return read_model(path).tensors


def save_tensors(path: str, tensors: "dict[str, np.ndarray]", round_number: int = 0) -> None:
    """Write named numpy arrays to a ``.pbuf`` model file (atomically)."""
    from fx_cli.tensors.pbuf import write_model

    write_model(path, tensors, round_number=round_number)


def get_model(plan: str = "plan/plan.yaml", model: str = "save/last.pbuf") -> Any:
    """Build the plan's task runner and load the weights from ``model``.

    For Keras plans, ``get_model(...).model`` is the native Keras model.
    """
    from fx_cli.runners.build import runner_with_weights

    return runner_with_weights(plan, model)
