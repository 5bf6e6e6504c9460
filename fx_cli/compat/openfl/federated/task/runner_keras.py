"""``openfl.federated.task.runner_keras.KerasTaskRunner`` (Keras 3, TensorFlow backend).

As in OpenFL 1.9, the subclass builds a compiled model in ``__init__``
(``self.model = self.build_model(...)``) and calls
``initialize_tensorkeys_for_functions()``.  Tensor names are
``<layer.name>/<weight.name>``; optimizer variables keep their Keras names.
``train_`` (one ``fit`` epoch) and ``validate_`` are the hooks to override.
Unlike OpenFL, ``reset_opt_vars`` really restores the optimizer's initial state.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from fx_cli.runners.keras_runner import assign_in_steps, import_keras, start_value

from ...utilities.types import Metric
from .runner import TaskRunner, TensorDict


class KerasTaskRunner(TaskRunner):
    """Subclass it and set ``self.model`` to a compiled ``keras.Model`` (usually from ``build_model``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        import_keras()
        self.model: Any = None
        self.model_tensor_names: list[str] = []
        self._opt_initial: dict[str, Any] | None = None

    def build_model(self, *args: Any, **kwargs: Any) -> Any:
        """Return a compiled ``keras.Model``; subclasses implement it."""
        raise NotImplementedError

    def update_tensorkeys_for_functions(self) -> None:
        """Declare the inputs again (optimizer variables included under CONTINUE_GLOBAL)."""
        self.initialize_tensorkeys_for_functions(with_opt_vars=self.opt_treatment == "CONTINUE_GLOBAL")

    def rebuild_model(self, round_num: int, input_tensor_dict: dict[str, Any], validation: bool = False) -> None:
        if self.opt_treatment == "RESET":
            self.reset_opt_vars()
            self.set_tensor_dict(input_tensor_dict, with_opt_vars=False)
        elif round_num > 0 and self.opt_treatment == "CONTINUE_GLOBAL" and not validation:
            self.set_tensor_dict(input_tensor_dict, with_opt_vars=True)
        else:
            self.set_tensor_dict(input_tensor_dict, with_opt_vars=False)

    def train_task(self, col_name: str, round_num: int, input_tensor_dict: dict[str, Any],
                   metrics: Sequence[str] | None = None, epochs: int = 1, batch_size: int = 1,
                   **kwargs: Any) -> tuple[TensorDict, TensorDict]:
        if metrics is None:
            raise KeyError("metrics must be defined")
        self.rebuild_model(round_num, input_tensor_dict)
        results: list[Metric] = []
        for _ in range(int(epochs)):
            results = self.train_(self.data_loader.get_train_loader(batch_size), metrics=list(metrics), **kwargs)
        outputs = self.training_outputs(col_name, round_num, {m.name: m.value for m in results},
                                        self.get_tensor_dict(with_opt_vars=True))
        if self.opt_treatment == "CONTINUE_GLOBAL":
            self.initialize_tensorkeys_for_functions(with_opt_vars=True)
        return outputs

    def train_(self, batch_generator: Any, metrics: list[str] | None = None, **kwargs: Any) -> list[Metric]:
        """One ``fit`` pass over the batches; each requested metric is the epoch's value from the history."""
        history = self.model.fit(batch_generator, verbose=0, **kwargs).history
        missing = [m for m in metrics or [] if m not in history]
        if missing:
            raise ValueError(f"KerasTaskRunner does not support specifying new metrics {missing}; the compiled "
                             f"model reports {sorted(history)}")
        return [Metric(m, np.array(np.mean(history[m]))) for m in metrics or []]

    def validate_task(self, col_name: str, round_num: int, input_tensor_dict: dict[str, Any],
                      **kwargs: Any) -> tuple[TensorDict, TensorDict]:
        self.rebuild_model(round_num, input_tensor_dict, validation=True)
        batch_size = int(kwargs.get("batch_size", 1))
        results = self.validate_(self.data_loader.get_valid_loader(batch_size), metrics=list(kwargs["metrics"]))
        return self.validation_outputs(col_name, round_num, {m.name: m.value for m in results}, str(kwargs["apply"]))

    def validate_(self, batch_generator: Any, metrics: list[str] | None = None) -> list[Metric]:
        """``evaluate`` over the batches; each requested metric from Keras' results."""
        scores = self.model.evaluate(batch_generator, verbose=0, return_dict=True)
        missing = [m for m in metrics or [] if m not in scores]
        if missing:
            raise ValueError(f"metric(s) {missing} are not computed by the model (it reports {sorted(scores)})")
        return [Metric(m, np.array(scores[m])) for m in metrics or []]

    # -- tensors ---------------------------------------------------------
    def _model_variables(self) -> dict[str, Any]:
        named: dict[str, Any] = {}
        for layer in self.model.layers:
            for weight in layer.weights:
                named[f"{layer.name}/{weight.name}"] = weight
        return named

    def _optimizer_variables(self) -> dict[str, Any]:
        optimizer = self.model.optimizer
        if not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        variables = {v.name: v for v in optimizer.variables}
        if self._opt_initial is None:  # None for a variable that starts all zeros (Adam's moments): no copy
            self._opt_initial = {name: start_value(v) for name, v in variables.items()}
        return variables

    def get_tensor_dict(self, with_opt_vars: bool = False) -> dict[str, Any]:
        chosen = {**self._model_variables(), **(self._optimizer_variables() if with_opt_vars else {})}
        return {name: np.asarray(v.numpy()) for name, v in chosen.items()}

    def set_tensor_dict(self, tensor_dict: dict[str, Any], with_opt_vars: bool = False) -> None:
        chosen = {**self._model_variables(), **(self._optimizer_variables() if with_opt_vars else {})}
        missing = [name for name in chosen if name not in tensor_dict]
        if missing:
            raise KeyError(f"tensors missing for the Keras model: {missing}")
        for name, variable in chosen.items():
            assign_in_steps(variable, np.asarray(tensor_dict[name], dtype=variable.dtype))

    def reset_opt_vars(self) -> None:
        keras = import_keras()
        variables = self._optimizer_variables()
        for name, variable in variables.items():
            start = (self._opt_initial or {})[name]
            variable.assign(keras.ops.zeros(variable.shape, dtype=variable.dtype) if start is None else start)

    # -- native files ----------------------------------------------------
    def save_native(self, filepath: str, **kwargs: Any) -> None:
        """A ``.keras`` file (``.keras`` is added when the name has no suffix) that plain Keras loads."""
        self.model.save(filepath if "." in filepath.rsplit("/", 1)[-1] else filepath + ".keras")

    def load_native(self, filepath: str, **kwargs: Any) -> None:
        keras = import_keras()
        loaded = keras.models.load_model(filepath, compile=False)
        weights = {f"{layer.name}/{w.name}": w.numpy() for layer in loaded.layers for w in layer.weights}
        self.set_tensor_dict(weights)
