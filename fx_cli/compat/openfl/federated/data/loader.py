"""``openfl.federated.data.loader.DataLoader``: what a task runner asks of a collaborator's data."""
from __future__ import annotations

from typing import Any


class DataLoader:
    """Base class of OpenFL data loaders: train/valid loaders, their sizes and the feature shape.

    Subclasses are built as ``Loader(data_path=<data.yaml value>, **data_loader.settings)``.
    """

    def __init__(self, **kwargs: Any) -> None:
        pass

    def get_feature_shape(self) -> Any:
        """The shape of one sample."""
        raise NotImplementedError

    def get_train_loader(self, **kwargs: Any) -> Any:
        """An iterable of ``(samples, targets)`` training batches."""
        raise NotImplementedError

    def get_valid_loader(self) -> Any:
        """An iterable of ``(samples, targets)`` validation batches."""
        raise NotImplementedError

    def get_infer_loader(self) -> Any:
        return NotImplementedError

    def get_train_data_size(self) -> int:
        """Number of training samples (the weight of this collaborator's update)."""
        raise NotImplementedError

    def get_valid_data_size(self) -> int:
        """Number of validation samples (the weight of this collaborator's metrics)."""
        raise NotImplementedError
