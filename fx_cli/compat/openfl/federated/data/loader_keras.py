"""``openfl.federated.data.loader_keras.KerasDataLoader``."""
from __future__ import annotations

from .arrays import ArrayDataLoader


class KerasDataLoader(ArrayDataLoader):
    """In-memory arrays for Keras runners; the subclass fills ``X_train``, ``y_train``, ``X_valid``, ``y_valid``."""
