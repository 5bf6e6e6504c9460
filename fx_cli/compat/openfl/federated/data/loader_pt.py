"""``openfl.federated.data.loader_pt.PyTorchDataLoader``."""
from __future__ import annotations

from .arrays import ArrayDataLoader


class PyTorchDataLoader(ArrayDataLoader):
    """In-memory arrays for PyTorch runners; batches are numpy arrays (the runner converts them)."""
