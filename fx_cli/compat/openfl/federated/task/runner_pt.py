"""``openfl.federated.task.runner_pt.PyTorchTaskRunner``: an ``nn.Module`` that is also a task runner.

As in OpenFL 1.9, the subclass defines its layers, ``forward``, ``self.optimizer``
and ``self.loss_fn`` in ``__init__``, then calls ``initialize_tensorkeys_for_functions()``;
``train_`` (one epoch) and ``validate_`` are the hooks to override.  Tensor names
are the ``state_dict`` keys; optimizer state uses fx's names
(``optimizer/<parameter>/<key>``, see ``fx_cli/runners/torch_state.py``).
Unlike OpenFL, ``reset_opt_vars`` really forgets the optimizer state, so
``opt_treatment: RESET`` does what it says.
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from fx_cli.runners import torch_state as ts

from ...utilities.types import Metric
from .runner import TaskRunner, TensorDict


class PyTorchTaskRunner(nn.Module, TaskRunner):
    """Subclass it: layers and ``forward`` as any ``nn.Module``, plus ``optimizer`` and ``loss_fn``."""

    def __init__(self, device: str | None = None, loss_fn: Any = None, optimizer: Any = None, **kwargs: Any) -> None:
        nn.Module.__init__(self)
        TaskRunner.__init__(self, **kwargs)
        self.device = device or "cpu"
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.training_round_completed = False

    def rebuild_model(self, round_num: int, input_tensor_dict: dict[str, Any], validation: bool = False) -> None:
        """Load the inputs; optimizer state too under CONTINUE_GLOBAL once a round has been trained."""
        if self.opt_treatment == "RESET":
            self.reset_opt_vars()
            self.set_tensor_dict(input_tensor_dict, with_opt_vars=False)
        elif self.training_round_completed and self.opt_treatment == "CONTINUE_GLOBAL" and not validation:
            self.set_tensor_dict(input_tensor_dict, with_opt_vars=True)
        else:
            self.set_tensor_dict(input_tensor_dict, with_opt_vars=False)

    def train_task(self, col_name: str, round_num: int, input_tensor_dict: dict[str, Any], use_tqdm: bool = False,
                   epochs: int = 1, **kwargs: Any) -> tuple[TensorDict, TensorDict]:
        self.rebuild_model(round_num, input_tensor_dict)
        self.train()
        self.to(self.device)
        metric = Metric("loss", np.array(0.0))
        for _ in range(int(epochs)):
            metric = self.train_(self.data_loader.get_train_loader())
        outputs = self.training_outputs(col_name, round_num, {metric.name: metric.value},
                                        self.get_tensor_dict(with_opt_vars=self.opt_treatment == "CONTINUE_GLOBAL"))
        if self.opt_treatment == "CONTINUE_GLOBAL":
            self.initialize_tensorkeys_for_functions(with_opt_vars=True)
        self.training_round_completed = True
        return outputs

    def validate_task(self, col_name: str, round_num: int, input_tensor_dict: dict[str, Any], use_tqdm: bool = False,
                      **kwargs: Any) -> tuple[TensorDict, TensorDict]:
        self.rebuild_model(round_num, input_tensor_dict, validation=True)
        self.eval()
        self.to(self.device)
        metric = self.validate_(self.data_loader.get_valid_loader())
        return self.validation_outputs(col_name, round_num, {metric.name: metric.value}, str(kwargs["apply"]))

    def train_(self, train_dataloader: Iterable[tuple[Any, Any]]) -> Metric:
        """One epoch over ``(samples, targets)`` batches; returns the mean loss."""
        losses = []
        for data, target in train_dataloader:
            data, target = torch.as_tensor(data).to(self.device), torch.as_tensor(target).to(self.device)
            self.optimizer.zero_grad()
            loss = self.loss_fn(self(data), target)
            loss.backward()
            self.optimizer.step()
            losses.append(float(loss.detach().cpu()))
        name = getattr(self.loss_fn, "__name__", "loss")
        return Metric(name=name, value=np.array(np.mean(losses) if losses else 0.0))

    def validate_(self, validation_dataloader: Iterable[tuple[Any, Any]]) -> Metric:
        """Accuracy of ``argmax(self(samples))`` over the validation batches."""
        total, correct = 0, 0
        with torch.no_grad():
            for data, target in validation_dataloader:
                output = self(torch.as_tensor(data).to(self.device))
                target_t = torch.as_tensor(target).to(self.device, dtype=torch.int64)
                correct += int((output.argmax(dim=1) == target_t).sum())
                total += int(target_t.shape[0])
        return Metric(name="accuracy", value=np.array(correct / max(total, 1)))

    def get_tensor_dict(self, with_opt_vars: bool = False) -> dict[str, Any]:
        state = {name: t.detach().cpu().numpy().copy() for name, t in self.state_dict().items()}
        if with_opt_vars and self.optimizer is not None:
            state.update(ts.optimizer_arrays(self, self.optimizer))
        return state

    def set_tensor_dict(self, tensor_dict: dict[str, Any], with_opt_vars: bool = False) -> None:
        current = self.state_dict()
        missing = [name for name in current if name not in tensor_dict]
        if missing:
            raise KeyError(f"tensors missing for the model: {missing}")
        self.load_state_dict({name: torch.as_tensor(np.asarray(tensor_dict[name])).to(self.device, dtype=t.dtype)
                              for name, t in current.items()})
        if with_opt_vars and self.optimizer is not None:
            wanted = ts.optimizer_arrays(self, self.optimizer)
            if wanted and all(name in tensor_dict for name in wanted):
                ts.load_optimizer_arrays(self, self.optimizer, tensor_dict)

    def get_optimizer(self) -> Any:
        return self.optimizer

    def reset_opt_vars(self) -> None:
        """Forget the optimizer's state (moments, step counts); its settings stay."""
        if self.optimizer is not None:
            self.optimizer.state.clear()

    def save_native(self, filepath: str, model_state_dict_key: str = "model_state_dict",
                    optimizer_state_dict_key: str = "optimizer_state_dict", **kwargs: Any) -> str:
        """OpenFL's file: ``{model_state_dict_key: ..., optimizer_state_dict_key: ...}`` (``.pt`` added if no suffix)."""
        if "." not in str(filepath).rsplit("/", 1)[-1]:
            filepath = str(filepath) + ".pt"
        optimizer_state = self.optimizer.state_dict() if self.optimizer is not None else {}
        torch.save({model_state_dict_key: self.state_dict(), optimizer_state_dict_key: optimizer_state}, filepath)
        return str(filepath)

    def load_native(self, filepath: str, model_state_dict_key: str = "model_state_dict",
                    optimizer_state_dict_key: str = "optimizer_state_dict", **kwargs: Any) -> None:
        saved = torch.load(filepath, map_location="cpu", weights_only=True)
        self.load_state_dict(saved[model_state_dict_key])
        if self.optimizer is not None and saved.get(optimizer_state_dict_key):
            self.optimizer.load_state_dict(saved[optimizer_state_dict_key])
