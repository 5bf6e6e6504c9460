"""PyTorch model and optimizer state as named numpy arrays (torch is imported by the caller's runner only).

Model tensors are the ``state_dict`` keys (``conv1.weight``): they come from the
module's attribute names, so they are the same in every process.  Optimizer
tensors are ``optimizer/<parameter name>/<state key>`` (``optimizer/fc.weight/exp_avg``).
The optimizer is *primed* once (one zero-gradient step, step counters set back
to 0) so that its state, and therefore the list of names, exists before the
first training round, as the aggregator needs the full list from the start.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

OPT_PREFIX = "optimizer/"


def model_arrays(module: Any) -> dict[str, np.ndarray]:
    """``{state_dict key: float32 array}``, copied off the model."""
    return {name: t.detach().cpu().numpy().astype(np.float32, copy=True) for name, t in module.state_dict().items()}


def model_shapes(module: Any) -> dict[str, tuple[int, ...]]:
    """``{state_dict key: shape}``, without copying a tensor."""
    return {name: tuple(int(d) for d in t.shape) for name, t in module.state_dict().items()}


def model_views(module: Any) -> dict[str, np.ndarray]:
    """``{state_dict key: writable float32 array}`` sharing memory with the model: its parameters that are
    float32, C-contiguous and on the CPU.

    Buffers are left out (batch norm's running statistics, its step counter): a forward pass in training mode
    changes them, so a validation that runs one would otherwise carry its changes into the training that
    follows. Left out, they are downloaded into arrays of their own and loaded again at every task that starts
    from the global model, as the parameters were before they were shared. They are small.
    """
    import torch

    parameters = {name for name, _ in module.named_parameters()}
    views: dict[str, np.ndarray] = {}
    for name, t in module.state_dict().items():
        if (name in parameters and t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous()
                and not t.is_sparse):
            views[name] = t.detach().numpy()
    return views


def load_model_arrays(module: Any, arrays: Mapping[str, np.ndarray]) -> None:
    """Load every ``state_dict`` entry from ``arrays``, each cast to the entry's own dtype.

    An array that already is the entry's memory (one of ``model_views``, written in place by a download) is
    left as it is: nothing is copied for it.
    """
    import torch

    state = module.state_dict()
    new = {name: torch.as_tensor(np.asarray(arrays[name])).to(dtype=t.dtype) for name, t in state.items()
           if not _is_memory_of(arrays[name], t)}
    if new:
        module.load_state_dict(new, strict=False)


def _is_memory_of(array: Any, tensor: Any) -> bool:
    """``array`` is exactly ``tensor``'s memory: same start, dtype and shape, both contiguous."""
    if not isinstance(array, np.ndarray) or tensor.device.type != "cpu" or not tensor.is_contiguous():
        return False
    return (array.flags.c_contiguous and array.ctypes.data == tensor.data_ptr() and array.shape == tuple(tensor.shape)
            and array.dtype.itemsize == tensor.element_size() and str(array.dtype) == str(tensor.dtype).split(".")[-1])


def parameter_names(module: Any, optimizer: Any) -> dict[int, str]:
    """Optimizer parameter index (as in ``optimizer.state_dict()``) -> the parameter's ``state_dict`` name."""
    by_id = {id(p): name for name, p in module.named_parameters()}
    names: dict[int, str] = {}
    index = 0
    for group in optimizer.param_groups:
        for param in group["params"]:
            names[index] = by_id.get(id(param), f"param{index}")
            index += 1
    return names


@dataclass(frozen=True)
class Zero:
    """A state tensor that was all zeros when the optimizer was primed: its shape and dtype, not a copy."""
    shape: tuple[int, ...]
    dtype: Any


@dataclass
class FreshState:
    """An optimizer's state right after ``prime_optimizer``, kept small enough to hold for the whole run.

    ``values``: parameter position -> {state key: ``Zero`` for a tensor that was all zeros (Adam's moments and
    step counters, SGD's momentum buffers), a copy for any other tensor (the moments after a primed step with
    weight decay), or the number itself}. ``groups``: each parameter group's settings, without its parameters.
    A plain copy of the state would hold one to two more models' worth of memory (Adam: two) for the whole run.
    """
    values: dict[int, dict[str, Any]]
    groups: list[dict[str, Any]]


def _parameters(optimizer: Any) -> list[Any]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def prime_optimizer(module: Any, optimizer: Any) -> FreshState:
    """Create the optimizer's state without moving the weights; returns that fresh state (see ``FreshState``)."""
    import torch

    params = _parameters(optimizer)
    # A zero gradient moves nothing for SGD, Adam and AdamW (the update is an exact zero) unless weight decay is
    # set; any other optimizer may move the weights (ASGD decays them), so those are always put back.
    exact = type(optimizer) in (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW)
    moved = {id(p) for group in optimizer.param_groups if not exact or group.get("weight_decay")
             for p in group["params"]}
    # One parameter at a time (a step skips parameters without a gradient), so the zero gradient, the step's
    # temporaries and the copy below exist for one tensor at once, not the whole model.
    for p in params:
        p.grad = torch.zeros_like(p)
        before = p.detach().clone() if id(p) in moved else None
        optimizer.step()
        with torch.no_grad():
            if before is not None:
                p.copy_(before)
            p.grad = None
        del before
    for state in optimizer.state.values():
        if "step" in state:
            state["step"] = torch.zeros_like(state["step"]) if torch.is_tensor(state["step"]) else 0
    values: dict[int, dict[str, Any]] = {}
    for index, p in enumerate(params):
        for key, value in optimizer.state.get(p, {}).items():
            if not torch.is_tensor(value):
                saved = copy.deepcopy(value)
            elif bool(value.any()):
                saved = value.detach().clone()
            else:
                saved = Zero(tuple(value.shape), value.dtype)
            values.setdefault(index, {})[key] = saved
    groups = [{k: copy.deepcopy(v) for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    return FreshState(values, groups)


def reset_optimizer(optimizer: Any, fresh: FreshState) -> None:
    """Put the optimizer back to ``fresh``, in place: zeroed tensors are zeroed where they lie, nothing is copied
    for them, and state the fresh optimizer did not have is dropped."""
    import torch

    params = _parameters(optimizer)
    with torch.no_grad():
        for index, p in enumerate(params):
            state = optimizer.state.get(p)
            wanted = fresh.values.get(index, {})
            if state is None:
                if not wanted:
                    continue
                state = optimizer.state[p] = {}
            for key in [k for k in state if k not in wanted]:
                del state[key]
            for key, saved in wanted.items():
                current = state.get(key)
                if isinstance(saved, Zero):
                    if torch.is_tensor(current) and tuple(current.shape) == saved.shape and current.dtype == saved.dtype:
                        current.zero_()
                    else:
                        state[key] = torch.zeros(saved.shape, dtype=saved.dtype, device=p.device)
                elif torch.is_tensor(saved):
                    if torch.is_tensor(current) and current.shape == saved.shape and current.dtype == saved.dtype:
                        current.copy_(saved)
                    else:
                        state[key] = saved.clone()
                else:
                    state[key] = copy.deepcopy(saved)
    for group, saved_group in zip(optimizer.param_groups, fresh.groups):
        group.update(copy.deepcopy(saved_group))


def optimizer_arrays(module: Any, optimizer: Any) -> dict[str, np.ndarray]:
    """``{optimizer/<param>/<key>: float32 array}`` for every tensor or number in the optimizer state."""
    import torch

    names = parameter_names(module, optimizer)
    out: dict[str, np.ndarray] = {}
    for index, state in sorted(optimizer.state_dict()["state"].items()):
        for key, value in sorted(state.items()):
            array = value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)
            out[f"{OPT_PREFIX}{names[index]}/{key}"] = array.astype(np.float32)
    return out


def optimizer_shapes(module: Any, optimizer: Any) -> dict[str, tuple[int, ...]]:
    """The names ``optimizer_arrays`` gives, with their shapes, without copying a tensor."""
    import torch

    names = parameter_names(module, optimizer)
    out: dict[str, tuple[int, ...]] = {}
    for index, state in sorted(optimizer.state_dict()["state"].items()):
        for key, value in sorted(state.items()):
            shape = value.shape if torch.is_tensor(value) else np.shape(value)
            out[f"{OPT_PREFIX}{names[index]}/{key}"] = tuple(int(d) for d in shape)
    return out


def load_optimizer_arrays(module: Any, optimizer: Any, arrays: Mapping[str, np.ndarray]) -> None:
    """Put the named optimizer arrays into the optimizer's state (names as ``optimizer_arrays`` gives).

    Values are copied into the state's own tensors, so training never writes into the caller's arrays (the
    global model, which deltas, local privacy and ``fx simulate``'s next collaborator still read).
    """
    import torch

    names = parameter_names(module, optimizer)
    with torch.no_grad():
        for index, p in enumerate(_parameters(optimizer)):
            state = optimizer.state.get(p) or {}
            for key, value in list(state.items()):
                array = np.asarray(arrays[f"{OPT_PREFIX}{names[index]}/{key}"])
                if not torch.is_tensor(value):
                    state[key] = type(value)(array)
                elif tuple(value.shape) == array.shape:
                    value.copy_(torch.as_tensor(array))  # cast to the state's dtype, into its own memory
                else:
                    state[key] = torch.tensor(array, dtype=value.dtype, device=value.device)
