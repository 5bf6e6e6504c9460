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
from typing import Any, Mapping

import numpy as np

OPT_PREFIX = "optimizer/"


def model_arrays(module: Any) -> dict[str, np.ndarray]:
    """``{state_dict key: float32 array}``, copied off the model."""
    return {name: t.detach().cpu().numpy().astype(np.float32, copy=True) for name, t in module.state_dict().items()}


def load_model_arrays(module: Any, arrays: Mapping[str, np.ndarray]) -> None:
    """Load every ``state_dict`` entry from ``arrays``, each cast to the entry's own dtype."""
    import torch

    state = module.state_dict()
    new = {name: torch.as_tensor(np.asarray(arrays[name])).to(dtype=t.dtype) for name, t in state.items()}
    module.load_state_dict(new)


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


def prime_optimizer(module: Any, optimizer: Any) -> Any:
    """Create the optimizer's state without moving the weights; returns a copy of that fresh state."""
    import torch

    params = [p for group in optimizer.param_groups for p in group["params"]]
    for p in params:
        p.grad = torch.zeros_like(p)
    before = {id(p): p.detach().clone() for p in params}
    optimizer.step()
    with torch.no_grad():  # a zero gradient moves nothing for SGD/Adam, but weight decay would
        for p in params:
            p.copy_(before[id(p)])
            p.grad = None
    for state in optimizer.state.values():
        if "step" in state:
            state["step"] = torch.zeros_like(state["step"]) if torch.is_tensor(state["step"]) else 0
    return copy.deepcopy(optimizer.state_dict())


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


def load_optimizer_arrays(module: Any, optimizer: Any, arrays: Mapping[str, np.ndarray]) -> None:
    """Put the named optimizer arrays back into the optimizer's state (names as ``optimizer_arrays`` gives)."""
    import torch

    names = parameter_names(module, optimizer)
    state_dict = optimizer.state_dict()
    for index, state in state_dict["state"].items():
        for key, value in list(state.items()):
            array = np.asarray(arrays[f"{OPT_PREFIX}{names[index]}/{key}"])
            state[key] = torch.as_tensor(array).to(dtype=value.dtype) if torch.is_tensor(value) else type(value)(array)
    optimizer.load_state_dict(state_dict)


def array_shapes(arrays: Mapping[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(int(d) for d in np.shape(a)) for name, a in arrays.items()}
