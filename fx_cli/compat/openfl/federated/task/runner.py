"""``openfl.federated.task.runner.TaskRunner``: OpenFL 1.9's task-runner base class.

A task function is called as ``fn(col_name, round_num, input_tensor_dict, **kwargs)``
and returns ``(global_dict, local_dict)`` keyed by ``TensorKey``: the global
dict goes to the aggregator, the local one stays with the collaborator.  The
inputs a function needs are declared by ``get_required_tensorkeys_for_function``
with relative keys (origin ``GLOBAL`` or ``LOCAL``, round offset 0).
``fx_cli/compat/adapter.py`` drives such a runner from fx's collaborator.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping

import numpy as np

from ...utilities.split import split_tensor_dict_for_holdouts
from ...utilities.types import TensorKey

OPT_TREATMENTS = ("RESET", "CONTINUE_LOCAL", "CONTINUE_GLOBAL")
TensorDict = dict[TensorKey, Any]


class TaskRunner:
    """Holds the model and the data loader; subclasses implement the tasks and tensor exchange."""

    def __init__(self, data_loader: Any, tensor_dict_split_fn_kwargs: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        self.data_loader = data_loader
        try:
            self.feature_shape = data_loader.get_feature_shape()
        except Exception:  # a loader built without data (plan initialize, model save) has no shape yet
            self.feature_shape = None
        self.tensor_dict_split_fn_kwargs: dict[str, Any] = dict(tensor_dict_split_fn_kwargs or {})
        self.opt_treatment = "RESET"
        self.required_tensorkeys_for_function: dict[str, Any] = {}
        self.logger = logging.getLogger(type(self).__module__)

    def set_logger(self) -> None:
        self.logger = logging.getLogger(type(self).__module__)

    def set_optimizer_treatment(self, opt_treatment: str) -> None:
        """``RESET``, ``CONTINUE_LOCAL`` or ``CONTINUE_GLOBAL`` (from ``collaborator.settings``)."""
        if opt_treatment not in OPT_TREATMENTS:
            raise ValueError(f"opt_treatment must be one of {OPT_TREATMENTS}, got {opt_treatment!r}")
        self.opt_treatment = opt_treatment

    def get_data_loader(self) -> Any:
        return self.data_loader

    def set_data_loader(self, data_loader: Any) -> None:
        self.data_loader = data_loader

    def get_train_data_size(self) -> int:
        return int(self.data_loader.get_train_data_size())

    def get_valid_data_size(self) -> int:
        return int(self.data_loader.get_valid_data_size())

    def get_required_tensorkeys_for_function(self, func_name: str, **kwargs: Any) -> list[TensorKey]:
        """The relative TensorKeys ``func_name`` needs; validation is looked up by ``apply=<global|local>``."""
        required = self.required_tensorkeys_for_function.get(func_name)
        if isinstance(required, dict):
            return list(required["apply=" + str(kwargs.get("apply"))])
        if required is None:
            raise NotImplementedError(f"{type(self).__name__} declares no inputs for {func_name}; call "
                                      "initialize_tensorkeys_for_functions() or override "
                                      "get_required_tensorkeys_for_function")
        return list(required)

    def initialize_tensorkeys_for_functions(self, with_opt_vars: bool = False) -> None:
        """Declare the usual inputs: the global model to train and to validate it, the trained one for ``apply=local``."""
        to_send, local = self.split_holdouts(self.get_tensor_dict(with_opt_vars=with_opt_vars))
        to_send_val, local_val = self.split_holdouts(self.get_tensor_dict(with_opt_vars=False))
        self.required_tensorkeys_for_function["train_task"] = (
            [TensorKey(n, "GLOBAL", 0, False, ("model",)) for n in to_send]
            + [TensorKey(n, "LOCAL", 0, False, ("model",)) for n in local])
        self.required_tensorkeys_for_function["validate_task"] = {
            "apply=local": [TensorKey(n, "LOCAL", 0, False, ("trained",)) for n in {**to_send_val, **local_val}],
            "apply=global": ([TensorKey(n, "GLOBAL", 0, False, ("model",)) for n in to_send_val]
                             + [TensorKey(n, "LOCAL", 0, False, ("model",)) for n in local_val]),
        }

    def split_holdouts(self, tensors: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        return split_tensor_dict_for_holdouts(tensors, **self.tensor_dict_split_fn_kwargs)

    def training_outputs(self, col_name: str, round_num: int, metrics: Mapping[str, Any],
                         tensors: Mapping[str, Any]) -> tuple[TensorDict, TensorDict]:
        """OpenFL's train result: metrics and ``trained`` tensors to send; holdouts kept, also as next round's model."""
        to_send, local = self.split_holdouts(tensors)
        global_dict: TensorDict = {TensorKey(m, col_name, round_num, True, ("metric",)): np.asarray(v)
                                   for m, v in metrics.items()}
        global_dict.update({TensorKey(n, col_name, round_num, False, ("trained",)): v for n, v in to_send.items()})
        local_dict: TensorDict = {TensorKey(n, col_name, round_num, False, ("trained",)): v for n, v in local.items()}
        local_dict.update({TensorKey(n, col_name, round_num + 1, False, ("model",)): v for n, v in local.items()})
        return global_dict, local_dict

    @staticmethod
    def validation_outputs(col_name: str, round_num: int, metrics: Mapping[str, Any],
                           apply: str) -> tuple[TensorDict, TensorDict]:
        """OpenFL's validation result: each metric tagged ``validate_agg`` or ``validate_local``."""
        suffix = "validate_local" if apply == "local" else "validate_agg"
        return {TensorKey(m, col_name, round_num, True, ("metric", suffix)): np.asarray(v)
                for m, v in metrics.items()}, {}

    def get_tensor_dict(self, with_opt_vars: bool = False) -> dict[str, Any]:
        """``{name: array}`` of the model (plus optimizer state when asked)."""
        raise NotImplementedError

    def set_tensor_dict(self, tensor_dict: dict[str, Any], with_opt_vars: bool = False) -> None:
        """Load ``{name: array}`` into the model (plus optimizer state when asked)."""
        raise NotImplementedError

    def reset_opt_vars(self) -> None:
        """Forget optimizer state (opt_treatment ``RESET``)."""

    def initialize_globals(self) -> None:
        """Initialise framework globals (kept for API compatibility)."""

    def load_native(self, filepath: str, **kwargs: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no native model format")

    def save_native(self, filepath: str, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no native model format")
