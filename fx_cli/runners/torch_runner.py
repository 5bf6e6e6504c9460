"""The PyTorch task runner: your ``nn.Module``, an optimizer, per-epoch training and validation.

The plan names the model class (``task_runner.settings.model: src.model.Net``,
allow-listed like every template) and its constructor settings; the runner
owns the optimizer, the loss (cross-entropy on the model's logits) and the
loops.  Tensor names and optimizer handling are in ``torch_state.py``.  PyTorch
is imported inside methods only, so nothing else in fx imports it.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from fx_cli.errors import FxError
from fx_cli.runners import torch_state as ts
from fx_cli.runners.base import TaskResult, TaskRunner, fit_problems

log = logging.getLogger(__name__)

OPTIMIZERS = ("adam", "sgd")
METRIC_KEYS = {"accuracy": "accuracy", "acc": "accuracy", "loss": "loss"}
FIT_HINT = "the model file was made for another plan or model; check task_runner.settings.model in plan/plan.yaml"


def import_torch() -> Any:
    try:
        import torch
    except ImportError:
        raise FxError("this plan's task runner needs PyTorch, which is not installed",
                      "install fx's torch extra: `make install`, or `pip install -e '.[torch]'` in the "
                      "fx source folder") from None
    return torch


def _workspace() -> Path:
    """The workspace whose ``src`` package fx loaded (build_runner loads it), else the current folder."""
    src = sys.modules.get("src")
    paths = list(getattr(src, "__path__", []))
    return Path(paths[0]).parent if paths else Path.cwd()


class PyTorchRunner(TaskRunner):
    """Trains ``model`` (an ``nn.Module`` class path) with Adam or SGD; ``.model`` is the native module.

    The data loader gives ``arrays()`` (``x_train, y_train, x_valid, y_valid``)
    as ``keras_data.ArrayData`` does; samples go to the model as they are.
    """

    def __init__(self, data_loader: Any = None, model: str = "", model_settings: Mapping[str, Any] | None = None,
                 optimizer: str = "adam", learning_rate: float = 0.001, momentum: float = 0.0,
                 weight_decay: float = 0.0, seed: int = 0) -> None:
        super().__init__(data_loader)
        from fx_cli.plan.templates import resolve_class

        torch = import_torch()
        if not model:
            raise FxError("task_runner.settings.model is missing (the nn.Module class to train)",
                          "name your model class, e.g. model: src.model.Net, in plan/plan.yaml")
        if optimizer not in OPTIMIZERS:
            raise FxError(f"task_runner.settings.optimizer: unknown optimizer '{optimizer}'",
                          f"use one of: {', '.join(OPTIMIZERS)}")
        model_cls = resolve_class(model, _workspace(), "task_runner.settings.model")
        torch.manual_seed(seed)
        self.model = model_cls(**dict(model_settings or {}))
        if not isinstance(self.model, torch.nn.Module):
            raise FxError(f"task_runner.settings.model: {model} is not a torch.nn.Module",
                          "derive the model class from torch.nn.Module")
        self.seed = seed
        params = self.model.parameters()
        self.optimizer = (torch.optim.Adam(params, lr=learning_rate, weight_decay=weight_decay)
                          if optimizer == "adam" else
                          torch.optim.SGD(params, lr=learning_rate, momentum=momentum, weight_decay=weight_decay))
        self._fresh = ts.prime_optimizer(self.model, self.optimizer)

    # -- tensors ---------------------------------------------------------
    def get_tensors(self, with_opt_vars: bool = False) -> dict[str, np.ndarray]:
        tensors = ts.model_arrays(self.model)
        if with_opt_vars:
            tensors.update(ts.optimizer_arrays(self.model, self.optimizer))
        return tensors

    def set_tensors(self, tensors: Mapping[str, np.ndarray], with_opt_vars: bool = False) -> None:
        """Load model tensors; optimizer tensors too when asked and present (all or none)."""
        opt = ts.optimizer_shapes(self.model, self.optimizer)
        problems = fit_problems(ts.model_shapes(self.model), opt, tensors)
        given = [name for name in opt if name in tensors]
        if with_opt_vars and given and len(given) != len(opt):
            problems += [f"tensor '{name}': missing (optimizer state is loaded all or nothing)"
                         for name in opt if name not in tensors]
        if problems:
            raise FxError("the tensors do not fit the PyTorch model:\n" + "\n".join(f"  - {p}" for p in problems),
                          FIT_HINT)
        ts.load_model_arrays(self.model, tensors)
        if with_opt_vars and given:
            ts.load_optimizer_arrays(self.model, self.optimizer, tensors)

    def tensor_buffers(self) -> dict[str, np.ndarray]:
        """The model's own float32 parameters as numpy arrays: a download writes the next global model straight
        into the model, so the collaborator does not hold a second copy of it (buffers are loaded as before: see
        ``torch_state.model_views``)."""
        return ts.model_views(self.model)

    def optimizer_tensor_names(self) -> list[str]:
        return list(ts.optimizer_shapes(self.model, self.optimizer))

    def reset_optimizer(self) -> None:
        """Back to the optimizer's fresh state: step counters and moments as before the first round."""
        ts.reset_optimizer(self.optimizer, self._fresh)

    # -- tasks -----------------------------------------------------------
    def train_task(self, round_num: int, epochs: int = 1, batch_size: int = 32,
                   metrics: Sequence[str] | str = ("loss",), with_opt_vars: bool = False, **_: Any) -> TaskResult:
        """``epochs`` passes over the local shard, reshuffled (seeded) each epoch; reports the last epoch's mean loss."""
        torch = import_torch()
        x, y, _x, _y = self.data_loader.arrays()
        keys = _metric_keys(metrics, "train")
        rng = np.random.default_rng([self.seed, int(round_num), int(getattr(self.data_loader, "shard", 0))])
        xt, yt = torch.as_tensor(x), torch.as_tensor(y)
        self.model.train()
        loss_fn = torch.nn.CrossEntropyLoss()
        losses: list[float] = []
        for _epoch in range(int(epochs)):
            order = torch.as_tensor(rng.permutation(len(x)))
            losses = []
            for start in range(0, len(x), int(batch_size)):
                chosen = order[start:start + int(batch_size)]
                self.optimizer.zero_grad()
                loss = loss_fn(self.model(xt[chosen]), yt[chosen])
                loss.backward()
                self.optimizer.step()
                losses.append(float(loss.detach()) * len(chosen))
        self.optimizer.zero_grad(set_to_none=True)  # the gradients (a model's worth) are not needed past training
        values = {"loss": sum(losses) / len(x) if losses else 0.0}
        return TaskResult({name: values[key] for name, key in keys.items() if key in values},
                          self.get_tensors(with_opt_vars=with_opt_vars))

    def validate_task(self, round_num: int, batch_size: int = 256,
                      metrics: Sequence[str] | str = ("accuracy",), **_: Any) -> TaskResult:
        """Accuracy and mean cross-entropy on this shard of the held-out split."""
        _x, _y, x, y = self.data_loader.arrays()
        keys = _metric_keys(metrics, "validation")
        scores = self.evaluate(x, y, int(batch_size))
        return TaskResult({name: scores[key] for name, key in keys.items()})

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> dict[str, float]:
        torch = import_torch()
        self.model.eval()
        correct, total_loss = 0, 0.0
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                logits = self.model(torch.as_tensor(x[start:start + batch_size]))
                target = torch.as_tensor(y[start:start + batch_size])
                total_loss += float(torch.nn.functional.cross_entropy(logits, target, reduction="sum"))
                correct += int((logits.argmax(dim=1) == target).sum())
        return {"accuracy": correct / max(len(x), 1), "loss": total_loss / max(len(x), 1)}

    # -- native files ----------------------------------------------------
    def save_native(self, path: str) -> str:
        """Write the model's ``state_dict`` to a ``.pt`` file; ``torch.load`` (weights only) reads it back."""
        torch = import_torch()
        target = Path(path)
        if not target.suffix:
            target = target.with_name(target.name + ".pt")
        if target.suffix not in (".pt", ".pth"):
            raise FxError(f"{target}: a PyTorch model file must end in .pt",
                          "name the output file MODEL.pt (or use --format npz for named arrays)")
        torch.save(self.model.state_dict(), str(target))
        return str(target)

    def load_native(self, path: str) -> None:
        """Take the weights of a ``.pt`` state_dict (or an OpenFL ``{'model_state_dict': ...}`` file)."""
        torch = import_torch()
        source = Path(path)
        if not source.is_file():
            raise FxError(f"PyTorch model file not found: {source}", "check the path given with -i")
        try:
            loaded = torch.load(str(source), map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises pickle, zip and runtime errors alike
            raise FxError(f"{source}: cannot read it as a PyTorch weights file: {err}",
                          "pass a .pt written by torch.save(model.state_dict()) or `fx model save`") from None
        state = loaded.get("model_state_dict", loaded) if isinstance(loaded, dict) else None
        if not isinstance(state, dict):
            raise FxError(f"{source}: holds a {type(loaded).__name__}, not a state_dict",
                          "save the weights with torch.save(model.state_dict(), path)")
        try:
            self.set_tensors({k: v.detach().cpu().numpy() for k, v in state.items()})
        except FxError as err:
            raise FxError(f"{source} does not fit the plan's model: {err.message}", err.hint) from None


def _metric_keys(metrics: Sequence[str] | str, task: str) -> dict[str, str]:
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [m for m in names if m not in METRIC_KEYS]
    if unknown:
        raise FxError(f"the PyTorch runner does not compute the {task} metric(s) {unknown}",
                      f"use metrics from {sorted(METRIC_KEYS)} in the task's kwargs in plan/plan.yaml")
    return {m: METRIC_KEYS[m] for m in names}
