"""``openfl.federated.data``."""
from .loader import DataLoader
from .loader_keras import KerasDataLoader
from .loader_pt import PyTorchDataLoader

__all__ = ["DataLoader", "KerasDataLoader", "PyTorchDataLoader"]
