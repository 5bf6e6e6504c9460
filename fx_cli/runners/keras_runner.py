"""The Keras task runner: a small CNN with stable tensor names and real optimizer handling.

Tensor names never depend on Keras auto-naming (which numbers layers and
optimizers per process): every layer is built with an explicit name, model
tensors are ``<layer>/<weight>`` (``conv1/kernel``) and optimizer tensors are
``optimizer/<variable>`` (``optimizer/conv1_kernel_momentum``).  Keras and
TensorFlow are imported inside methods only, so validating a plan that names
this runner stays free of TensorFlow.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from fx_cli.errors import FxError
from fx_cli.runners.base import TaskResult, TaskRunner, fit_problems

log = logging.getLogger(__name__)

OPT_PREFIX = "optimizer/"
# Keras reports these; "acc" is the name PyTorch-style OpenFL plans use.
METRIC_KEYS = {"accuracy": "accuracy", "acc": "accuracy", "loss": "loss"}
ASSIGN_STEP_BYTES = 16 << 20  # see assign_in_steps
FIT_HINT = ("the model file was made for another plan or model; check task_runner.settings "
            "(conv_filters, dense_units) and the data loader (input shape) in plan/plan.yaml")


def import_keras() -> Any:
    """Keras on the TensorFlow backend, imported on first use."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    import keras

    return keras


def build_cnn(input_shape: Sequence[int], num_classes: int, conv_filters: Sequence[int],
              dense_units: int, seed: int) -> Any:
    """Conv2D/MaxPool blocks, then Dense layers; explicitly named, seeded, standard layers only."""
    keras = import_keras()
    layers = keras.layers

    def init(offset: int) -> Any:
        return keras.initializers.GlorotUniform(seed=seed + offset)

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    h = inputs
    for i, filters in enumerate(conv_filters, 1):
        h = layers.Conv2D(filters, 3, padding="same", activation="relu", kernel_initializer=init(i),
                          name=f"conv{i}")(h)
        h = layers.MaxPooling2D(2, name=f"pool{i}")(h)
    h = layers.Flatten(name="flatten")(h)
    h = layers.Dense(dense_units, activation="relu", kernel_initializer=init(100), name="dense1")(h)
    outputs = layers.Dense(num_classes, activation="softmax", kernel_initializer=init(101), name="output")(h)
    return keras.Model(inputs, outputs, name="fx_cnn")


def named_weights(model: Any) -> dict[str, Any]:
    """``{"<layer>/<weight>": variable}`` in layer order; names must be unique."""
    named: dict[str, Any] = {}
    for layer in model.layers:
        for index, weight in enumerate(layer.weights):
            name = f"{layer.name}/{weight.name}"
            named[name if name not in named else f"{layer.name}/{index}"] = weight
    return named


def _shapes(variables: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(int(d) for d in v.shape) for name, v in variables.items()}


def assign_in_steps(variable: Any, value: np.ndarray) -> None:
    """``variable.assign(value)``, a block of rows of about ``ASSIGN_STEP_BYTES`` at a time on TensorFlow.

    TensorFlow first copies a numpy array it is given into a tensor of its own, so assigning a large tensor
    whole holds one more copy of it for a moment: a model's worth at the peak of a collaborator's round,
    every time the global model is loaded. In steps, that copy is one block.
    """
    rows = value.shape[0] if value.ndim else 0
    if (value.nbytes <= ASSIGN_STEP_BYTES or rows < 2 or value.shape != tuple(variable.shape)
            or import_keras().backend.backend() != "tensorflow"):  # a wrong shape: assign's own error
        variable.assign(value)
        return
    target = variable.value  # the tf.Variable behind the Keras variable: its slices can be assigned
    step = max(1, ASSIGN_STEP_BYTES // (value.nbytes // rows))
    for start in range(0, rows, step):
        target[start:start + step].assign(value[start:start + step])


def start_value(variable: Any) -> np.ndarray | None:
    """None when ``variable`` holds only zeros, else a copy of its value."""
    value = np.asarray(variable.numpy())
    return None if not value.any() else value


class KerasRunner(TaskRunner):
    """A Keras CNN trained with Adam; ``.model`` is the native ``keras.Model``.

    The data loader gives ``input_shape``, ``num_classes`` and ``arrays()``
    (``x_train, y_train, x_valid, y_valid``), as ``keras_data.ArrayData`` does.
    """

    def __init__(self, data_loader: Any = None, learning_rate: float = 0.005,
                 conv_filters: list[int] | None = None, dense_units: int = 64, seed: int = 0) -> None:
        super().__init__(data_loader)
        if data_loader is not None and not callable(getattr(data_loader, "arrays", None)):
            raise FxError(f"data loader {type(data_loader).__name__} has no arrays() method, which KerasRunner needs",
                          "derive the loader from fx_cli.runners.keras_data.ArrayData, or return "
                          "(x_train, y_train, x_valid, y_valid) from an arrays() method")
        keras = import_keras()
        self.seed = seed
        self.model = build_cnn(getattr(data_loader, "input_shape", (8, 8, 1)),
                               int(getattr(data_loader, "num_classes", 10)),
                               conv_filters or [16], dense_units, seed)
        optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
        # jit_compile off: XLA compilation costs more than it saves on a model this small
        self.model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                           metrics=["accuracy"], jit_compile=False)
        optimizer.build(self.model.trainable_variables)  # slots exist before the first fit
        self._weights = named_weights(self.model)
        self._opt_vars = {OPT_PREFIX + v.name: v for v in optimizer.variables}
        # The optimizer's start values, for reset_optimizer: None for a variable that starts all zeros (Adam's
        # moments: two models' worth that would otherwise be held for the whole run), a copy for the others.
        self._opt_initial = {name: start_value(v) for name, v in self._opt_vars.items()}

    # -- tensors ---------------------------------------------------------
    def get_tensors(self, with_opt_vars: bool = False) -> dict[str, np.ndarray]:
        chosen = {**self._weights, **(self._opt_vars if with_opt_vars else {})}
        return {name: np.asarray(v.numpy(), dtype=np.float32) for name, v in chosen.items()}

    def set_tensors(self, tensors: Mapping[str, np.ndarray], with_opt_vars: bool = False) -> None:
        """Load model tensors; optimizer tensors too when asked and present (all or none)."""
        problems = fit_problems(_shapes(self._weights), _shapes(self._opt_vars), tensors)
        given = [name for name in self._opt_vars if name in tensors]
        if with_opt_vars and given and len(given) != len(self._opt_vars):
            problems += [f"tensor '{name}': missing (optimizer state is loaded all or nothing)"
                         for name in self._opt_vars if name not in tensors]
        if problems:
            raise FxError("the tensors do not fit the Keras model:\n" + "\n".join(f"  - {p}" for p in problems),
                          FIT_HINT)
        self._assign(self._weights, tensors)
        if with_opt_vars and given:
            self._assign(self._opt_vars, tensors)

    @staticmethod
    def _assign(variables: Mapping[str, Any], tensors: Mapping[str, np.ndarray]) -> None:
        for name, variable in variables.items():
            # pbuf tensors are float32 (taken as they are, not copied first); Adam's step counter is int64
            assign_in_steps(variable, np.asarray(tensors[name], dtype=variable.dtype))

    def optimizer_tensor_names(self) -> list[str]:
        return list(self._opt_vars)

    def reset_optimizer(self) -> None:
        """Really forget the optimizer state: step counter and moments back to their start values."""
        keras = import_keras()
        for name, variable in self._opt_vars.items():
            start = self._opt_initial[name]
            variable.assign(keras.ops.zeros(variable.shape, dtype=variable.dtype) if start is None
                            else np.asarray(start, dtype=variable.dtype))

    # -- tasks -----------------------------------------------------------
    def train_task(self, round_num: int, epochs: int = 1, batch_size: int = 32,
                   metrics: Sequence[str] = ("loss",), with_opt_vars: bool = False, **_: Any) -> TaskResult:
        """``epochs`` passes over the local shard, reshuffled (seeded) each epoch."""
        x, y, _x, _y = self.data_loader.arrays()
        keys = self._metric_keys(metrics, "train")
        rng = np.random.default_rng([self.seed, int(round_num), int(getattr(self.data_loader, "shard", 0))])
        history: dict[str, list[float]] = {}
        for _epoch in range(int(epochs)):
            order = rng.permutation(len(x))
            history = self.model.fit(x[order], y[order], batch_size=int(batch_size), epochs=1,
                                     shuffle=False, verbose=0).history
        values = {name: float(history[key][-1]) for name, key in keys.items()} if history else {}
        log.debug("round %s: trained %s epoch(s) on %s samples: %s", round_num, epochs, len(x), values)
        return TaskResult(values, self.get_tensors(with_opt_vars=with_opt_vars))

    def validate_task(self, round_num: int, batch_size: int = 32,
                      metrics: Sequence[str] = ("accuracy",), **_: Any) -> TaskResult:
        """Evaluate on this shard of the held-out split."""
        _x, _y, x, y = self.data_loader.arrays()
        keys = self._metric_keys(metrics, "validation")
        scores = self.model.evaluate(x, y, batch_size=int(batch_size), verbose=0, return_dict=True)
        return TaskResult({name: float(scores[key]) for name, key in keys.items()})

    @staticmethod
    def _metric_keys(metrics: Sequence[str] | str, task: str) -> dict[str, str]:
        names = [metrics] if isinstance(metrics, str) else list(metrics)
        unknown = [m for m in names if m not in METRIC_KEYS]
        if unknown:
            raise FxError(f"the Keras runner does not compute the {task} metric(s) {unknown}",
                          f"use metrics from {sorted(METRIC_KEYS)} in the task's kwargs in plan/plan.yaml")
        return {m: METRIC_KEYS[m] for m in names}

    # -- native files ----------------------------------------------------
    def save_native(self, path: str) -> str:
        """Write a ``.keras`` file that plain ``keras.models.load_model`` opens (no fx objects inside)."""
        target = Path(path)
        if not target.suffix:
            target = target.with_name(target.name + ".keras")
        if target.suffix != ".keras":
            raise FxError(f"{target}: a Keras model file must end in .keras",
                          "name the output file MODEL.keras (or use --format npz for named arrays)")
        self.model.save(str(target))
        return str(target)

    def load_native(self, path: str) -> None:
        """Take the weights of a ``.keras`` file whose layers match this model's names and shapes."""
        source = Path(path)
        if not source.is_file():
            raise FxError(f"Keras model file not found: {source}", "check the path given with -i")
        keras = import_keras()
        try:
            loaded = keras.models.load_model(str(source), compile=False)
        except Exception as err:  # Keras raises ValueError, OSError, zip and TF errors alike
            raise FxError(f"{source}: cannot read it as a Keras model: {err}",
                          "pass a .keras file written by keras Model.save or `fx model save`") from None
        tensors = {name: v.numpy() for name, v in named_weights(loaded).items()}
        try:
            self.set_tensors(tensors)
        except FxError as err:
            raise FxError(f"{source} does not fit the plan's model: {err.message}", err.hint) from None
