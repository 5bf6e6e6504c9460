"""``fx model save``: turn a ``.pbuf`` into the framework's native file or a ``.npz`` of named arrays.

The plan's task runner is built without data, the ``.pbuf`` is loaded into it
(so a file that does not fit the model is refused, tensor by tensor), and the
output is written under a temporary name and renamed, so a failed save never
leaves half a file behind.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from fx_cli.errors import FxError
from fx_cli.runners.base import TaskRunner

FORMATS = ("keras", "pt", "npz")
SUFFIXES = {"keras": ".keras", "pt": ".pt", "npz": ".npz"}


@dataclass
class SavedModel:
    path: Path
    format: str
    tensor_count: int
    round_number: int


def output_target(output: Path, fmt: str | None) -> tuple[Path, str]:
    """The output path and format: ``fmt`` wins, else the suffix says, else the native (keras) format."""
    if fmt is None:
        fmt = next((f for f, suffix in SUFFIXES.items() if output.suffix == suffix), "keras")
    if fmt not in FORMATS:
        raise FxError(f"unknown model format '{fmt}'", f"use one of: {', '.join(FORMATS)}")
    suffix = SUFFIXES[fmt]
    if not output.suffix:
        output = output.with_name(output.name + suffix)
    if output.suffix != suffix:
        raise FxError(f"{output}: a {fmt} model file must end in {suffix}",
                      f"name the output MODEL{suffix}, or choose the format that matches with --format")
    return output, fmt


def load_pbuf_into(runner: TaskRunner, model_path: Path) -> tuple[int, int]:
    """Load a ``.pbuf`` (optimizer tensors too, when present); returns (tensor count, round)."""
    from fx_cli.tensors.pbuf import read_model

    model = read_model(model_path)
    try:
        runner.set_tensors(model.tensors, with_opt_vars=True)
    except FxError as err:
        raise FxError(f"{model_path} does not fit the plan's model: {err.message}", err.hint) from None
    return len(model.tensors), model.round_number


def save_model(plan_path: Path, model_path: Path, output: Path, fmt: str | None = None,
               force: bool = False, progress: Callable[[str], None] = lambda step: None) -> SavedModel:
    """Build the plan's runner without data, load ``model_path`` and write ``output``.

    ``progress`` is told each slow step before it starts.
    """
    from fx_cli.plan import load_plan
    from fx_cli.runners.build import build_runner

    target, fmt = output_target(output, fmt)
    if target.is_dir():
        raise FxError(f"{target} is a directory", "give a file name with -o, e.g. -o final.keras")
    if target.exists() and not force:
        raise FxError(f"{target} already exists", "pass --force to overwrite it, or choose another -o")
    if not model_path.is_file():
        raise FxError(f"model file not found: {model_path}", "pass the .pbuf to convert with -i, e.g. save/last.pbuf")
    if not plan_path.is_file():
        raise FxError(f"plan not found: {plan_path}",
                      "run `fx model save` inside the workspace, or name its plan with -p WORKSPACE/plan/plan.yaml")
    plan = load_plan(plan_path)
    progress(f"building the model of {plan.template('task_runner')} (a framework such as TensorFlow takes "
             f"seconds to load)")
    runner = build_runner(plan)
    progress(f"loading the weights of {model_path}")
    count, round_number = load_pbuf_into(runner, model_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.tmp-{os.getpid()}{target.suffix}")
    progress(f"writing {target} ({fmt})")
    try:
        _write(runner, tmp, fmt, with_opt_vars=count > len(runner.get_tensors()))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return SavedModel(target, fmt, count, round_number)


def _write(runner: TaskRunner, path: Path, fmt: str, with_opt_vars: bool) -> None:
    if fmt == "npz":
        write_npz(path, runner.get_tensors(with_opt_vars=with_opt_vars))
        return
    try:
        runner.save_native(str(path))
    except NotImplementedError as err:
        raise FxError(f"{err}, so it cannot be saved as '{fmt}'",
                      "use --format npz to get the named arrays instead") from None


def write_npz(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """Named arrays, readable with ``numpy.load(path)`` (no pickle)."""
    with open(path, "wb") as fh:
        np.savez(fh, allow_pickle=False, **tensors)
