"""``openfl.utilities``: the named tuples and helpers workspace code uses."""
from .split import split_tensor_dict_for_holdouts
from .types import LocalTensor, Metric, TaskResultKey, TensorKey
from .utils import change_tags

__all__ = ["LocalTensor", "Metric", "TaskResultKey", "TensorKey", "change_tags", "split_tensor_dict_for_holdouts"]
