"""Running an OpenFL 1.9-style task runner under fx's collaborator.

fx's collaborator loads the global model with ``set_tensors`` and calls
``train_task(round_num, **kwargs)``; an OpenFL runner instead declares the
tensors a function needs (``get_required_tensorkeys_for_function``), receives
them as ``input_tensor_dict`` and returns ``(global, local)`` dicts keyed by
``TensorKey``.  ``OpenFLRunner`` translates between the two, keeping what
OpenFL's collaborator would keep in its tensor database: the last global model
(origin ``GLOBAL``) and the runner's own outputs (origin ``LOCAL``), so
``apply: local`` validation sees the locally trained tensors and holdout
tensors (optimizer flags, non-numeric state) never leave the collaborator.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from fx_cli.errors import FxError
from fx_cli.runners.base import TaskResult, TaskRunner, fit_problems

OPENFL_HINT = "check the task runner's get_required_tensorkeys_for_function and what its tasks return"


def is_openfl_runner(obj: object) -> bool:
    """True for objects with OpenFL's task-runner methods (and not fx's own interface)."""
    return (not isinstance(obj, TaskRunner) and callable(getattr(obj, "get_tensor_dict", None))
            and callable(getattr(obj, "get_required_tensorkeys_for_function", None)))


def is_openfl_class(cls: type) -> bool:
    """True when ``cls`` derives from a class of the ``openfl`` package (real or fx's stand-in)."""
    return any(base.__module__.split(".")[0] == "openfl" for base in cls.__mro__)


def _to_send(tensors: Mapping[str, Any], split: Mapping[str, Any] | None) -> dict[str, np.ndarray]:
    """The tensors that travel: not a named holdout, and float or integer arrays (OpenFL's holdout split)."""
    held = set((split or {}).get("holdout_tensor_names") or ())
    out = {}
    for name, value in tensors.items():
        if name in held:
            continue
        dtype = getattr(value, "dtype", None)
        if dtype is not None and (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
            out[name] = np.asarray(value)
    return out


class OpenFLRunner(TaskRunner):
    """fx's task-runner interface over an OpenFL ``TaskRunner`` (``inner``)."""

    receives_apply = True        # OpenFL's validate_task reads kwargs["apply"]
    metrics_follow_plan = False  # OpenFL runners name their own metrics (``Metric.name``)

    def __init__(self, inner: Any, collaborator: str = "collaborator") -> None:
        self.inner = inner
        super().__init__(getattr(inner, "data_loader", None))
        declare = getattr(inner, "initialize_tensorkeys_for_functions", None)
        if callable(declare):  # as OpenFL's plan does once the runner is built (templates rely on it)
            declare()
        self.collaborator = collaborator
        self._global: dict[str, np.ndarray] = {}
        self._local: dict[tuple[str, tuple[str, ...]], Any] = {}  # (name, tags) -> latest own output
        self._kept: dict[str, dict[tuple[str, tuple[str, ...]], Any]] = {}  # other collaborators' holdouts
        self._initial = dict(inner.get_tensor_dict(with_opt_vars=True))  # a first round's local inputs

    @property
    def data_loader(self) -> Any:
        """The OpenFL runner's own loader (``fx simulate`` swaps it per virtual collaborator)."""
        return getattr(self.inner, "data_loader", None)

    @data_loader.setter
    def data_loader(self, loader: Any) -> None:
        self.inner.data_loader = loader

    def bind(self, collaborator: str, opt_treatment: str) -> None:
        """Switch to ``collaborator``: ``fx simulate`` runs several through one runner, each with its own holdouts."""
        if collaborator != self.collaborator:
            sent = set(self.get_tensors(with_opt_vars=True))
            self._kept[self.collaborator] = {k: v for k, v in self._local.items() if k[0] not in sent}
            self._local = self._kept.pop(collaborator, {})
            self.collaborator = collaborator
        setter = getattr(self.inner, "set_optimizer_treatment", None)
        if callable(setter):
            setter(opt_treatment)
        else:
            self.inner.opt_treatment = opt_treatment

    # -- tensors ---------------------------------------------------------
    def get_tensors(self, with_opt_vars: bool = False) -> dict[str, np.ndarray]:
        split = getattr(self.inner, "tensor_dict_split_fn_kwargs", None)
        return _to_send(self.inner.get_tensor_dict(with_opt_vars=with_opt_vars), split)

    def set_tensors(self, tensors: Mapping[str, np.ndarray], with_opt_vars: bool = False) -> None:
        model = self.get_tensors(with_opt_vars=False)
        known = self.get_tensors(with_opt_vars=True)
        shapes = {n: tuple(np.shape(a)) for n, a in model.items()}
        extra = {n: tuple(np.shape(a)) for n, a in known.items() if n not in model}
        problems = fit_problems(shapes, extra, tensors)
        if problems:
            raise FxError("the tensors do not fit the task runner's model:\n"
                          + "\n".join(f"  - {p}" for p in problems), OPENFL_HINT)
        self._global = {n: np.asarray(a) for n, a in tensors.items()}
        full = {**self.inner.get_tensor_dict(with_opt_vars=with_opt_vars), **self._global}
        self.inner.set_tensor_dict(dict(full), with_opt_vars=with_opt_vars)

    def optimizer_tensor_names(self) -> list[str]:
        model = self.get_tensors(with_opt_vars=False)
        return [n for n in self.get_tensors(with_opt_vars=True) if n not in model]

    def reset_optimizer(self) -> None:
        self.inner.reset_opt_vars()

    def train_data_size(self) -> int:
        return int(self.inner.get_train_data_size())

    def valid_data_size(self) -> int:
        return int(self.inner.get_valid_data_size())

    # -- tasks -----------------------------------------------------------
    def train_task(self, round_num: int, **kwargs: Any) -> TaskResult:
        return self.call("train_task", round_num, **kwargs)

    def validate_task(self, round_num: int, **kwargs: Any) -> TaskResult:
        return self.call("validate_task", round_num, **kwargs)

    def __getattr__(self, name: str) -> Callable[..., TaskResult]:
        """Any other task function the plan names is called the OpenFL way."""
        if name.startswith("_") or not callable(getattr(self.__dict__.get("inner"), name, None)):
            raise AttributeError(name)
        return lambda round_num, **kwargs: self.call(name, round_num, **kwargs)

    def call(self, function: str, round_num: int, **kwargs: Any) -> TaskResult:
        """Resolve the inputs ``function`` declares, call it, and turn its TensorKey dicts into a TaskResult."""
        inputs = {key.tensor_name: self._resolve(key, round_num)
                  for key in self.inner.get_required_tensorkeys_for_function(function, **kwargs)}
        result = getattr(self.inner, function)(col_name=self.collaborator, round_num=round_num,
                                               input_tensor_dict=inputs, **kwargs)
        if not (isinstance(result, tuple) and len(result) == 2 and all(isinstance(d, dict) for d in result)):
            raise FxError(f"{type(self.inner).__name__}.{function} returned {type(result).__name__}, not a "
                          "(global_dict, local_dict) pair", "return two dicts keyed by openfl.utilities.TensorKey")
        global_dict, local_dict = result
        self._remember(local_dict, round_num)
        self._remember(global_dict, round_num)
        metrics: dict[str, float] = {}
        tensors: dict[str, np.ndarray] = {}
        for key, value in global_dict.items():
            name, report, tags = _parts(key, function)
            if report or "metric" in tags:
                metrics[name] = _scalar(value, name, function)
            elif "trained" in tags:
                tensors[name] = np.asarray(value)
        return TaskResult(metrics, tensors)

    def _remember(self, tensors: Mapping[Any, Any], round_num: int) -> None:
        for key, value in tensors.items():
            name, _report, tags = _parts(key, "task")
            offset = int(getattr(key, "round_number", round_num)) - round_num
            self._local[(name, tuple(sorted(tags)) + (("next",) if offset > 0 else ()))] = value

    def _resolve(self, key: Any, round_num: int) -> Any:
        name, _report, tags = _parts(key, "required tensor")
        origin = str(getattr(key, "origin", "GLOBAL"))
        if origin == "GLOBAL" and name in self._global:
            return self._global[name]
        wanted = tuple(sorted(tags))
        for candidate in ((name, wanted + ("next",)), (name, wanted)) if "model" in tags else ((name, wanted),):
            if candidate in self._local:
                return self._local[candidate]
        if name in self._initial:  # nothing of this collaborator's yet: the runner's initial value
            return self._initial[name]
        raise FxError(f"the task runner needs tensor '{name}' ({origin}, tags {list(tags)}) in round {round_num + 1}, "
                      "which neither the global model nor its own earlier results hold", OPENFL_HINT)

    # -- native files ----------------------------------------------------
    def save_native(self, path: str) -> str:
        written = self.inner.save_native(path)
        return str(written) if isinstance(written, str) else path

    def load_native(self, path: str) -> None:
        self.inner.load_native(path)


def _parts(key: Any, where: str) -> tuple[str, bool, tuple[str, ...]]:
    """``(tensor_name, report, tags)`` of a TensorKey (or any 5-tuple with those fields)."""
    try:
        name, _origin, _round, report, tags = key
    except (TypeError, ValueError):
        raise FxError(f"{where}: expected a TensorKey (tensor_name, origin, round_number, report, tags), got {key!r}",
                      "key result dicts with openfl.utilities.TensorKey") from None
    return str(name), bool(report), tuple(str(t) for t in (tags or ()))


def _scalar(value: Any, name: str, function: str) -> float:
    array = np.asarray(value)
    if array.size != 1:
        raise FxError(f"{function}: metric '{name}' has shape {array.shape}, not a single number",
                      "report metrics as scalars (0-d arrays)")
    return float(array.reshape(()))
