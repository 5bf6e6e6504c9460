"""``fx plan initialize``: write the initial weights and the resolved aggregator address."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from fx_cli.errors import FxError
from fx_cli.names import check_address
from fx_cli.plan.loader import load_plan
from fx_cli.plan.participants import read_cols, read_data
from fx_cli.plan.yamlio import dump_yaml, read_yaml, write_text_atomic
from fx_cli.runners.base import TaskRunner


@dataclass
class Initialized:
    init_path: Path
    tensor_count: int
    total_bytes: int
    agg_addr: str
    agg_port: int
    plan_hash: str
    address_written: bool = False
    warnings: list[str] = field(default_factory=list)


def initialize(plan_path: Path, cols_path: Path | None, data_path: Path | None,
               agg_addr: str | None, init_model: Path | None,
               progress: Callable[[str], None] = lambda step: None) -> Initialized:
    """Build the runner with no data, write the init model, patch ``agg_addr`` into the plan.

    Everything is checked (plan, participants, address, initial weights) before plan.yaml is touched.
    ``progress`` is told each slow step before it starts.
    """
    from fx_cli.runners.build import build_runner
    from fx_cli.tensors.pbuf import write_model

    address = check_address(agg_addr) if agg_addr else None
    plan = load_plan(plan_path)
    before = plan.federation_id
    for path, reader in ((cols_path, read_cols), (data_path, read_data)):
        if path is not None and path.exists():
            reader(path)
    # Under CONTINUE_GLOBAL the optimizer state is part of the global model from round 1 on.
    with_opt = plan.collaborator.opt_treatment == "CONTINUE_GLOBAL"
    progress(f"building the model of {plan.template('task_runner')} (a framework such as TensorFlow takes "
             f"seconds to load)")
    runner = build_runner(plan)
    progress("reading the initial weights from " + str(init_model) if init_model else "taking its initial weights")
    tensors, round_number = _initial_tensors(runner, init_model, with_opt)
    if address is None and _unresolved_addr(plan_path):
        address = plan.network.agg_addr
    if address is not None:
        _write_agg_addr(plan_path, address)
        plan = load_plan(plan_path)
    from fx_cli.plan.modelspec import model_spec

    target = plan.resolve_path(plan.aggregator.init_state_path)
    progress(f"writing {target}")
    size = write_model(target, tensors, round_number=round_number, spec=model_spec(plan))
    net = plan.network
    return Initialized(target, len(tensors), size, net.agg_addr, int(net.agg_port), plan.hash, address is not None,
                       identity_warnings(plan_path, before, plan.federation_id, net.agg_addr))


def identity_warnings(plan_path: Path, before: str, after: str, agg_addr: str) -> list[str]:
    """A warning when the federation id changed in a workspace that was exported or imported as another one."""
    frozen = plan_path.parent / f"{before}.yaml"
    if before == after or not frozen.is_file():
        return []
    return [f"the federation id changed from {before} to {after} (network.settings.agg_addr is now {agg_addr}), "
            f"but this workspace was exported or imported as {before} ({frozen.name}): the aggregator and the "
            f"sites will no longer match and will refuse each other. At a site, keep the address the archive "
            f"came with (`fx plan initialize -a` with the old address restores it); on the aggregator, export "
            f"again and give the new archive to every site"]


def _initial_tensors(runner: TaskRunner, init_model: Path | None,
                     with_opt_vars: bool = False) -> tuple[dict[str, np.ndarray], int]:
    """The runner's fresh weights, or those of ``init_model`` (a .pbuf or a native model file)."""
    from fx_cli.runners.export import load_pbuf_into

    round_number = 0
    if init_model is not None and init_model.suffix == ".pbuf":
        _, round_number = load_pbuf_into(runner, init_model)
    elif init_model is not None:
        try:
            runner.load_native(str(init_model))
        except NotImplementedError as err:
            raise FxError(str(err), "pass a .pbuf file with -i instead") from None
    return runner.get_tensors(with_opt_vars=with_opt_vars), round_number


def _unresolved_addr(plan_path: Path) -> bool:
    return load_plan(plan_path, resolve=False, check_classes=False).network.agg_addr == "auto"


def _write_agg_addr(plan_path: Path, agg_addr: str) -> None:
    """Set ``network.settings.agg_addr`` in plan.yaml, keeping the leading comment block."""
    raw = read_yaml(plan_path)
    if not isinstance(raw, dict):
        raise FxError(f"{plan_path}: expected a mapping of sections")
    raw.setdefault("network", {}).setdefault("settings", {})["agg_addr"] = agg_addr
    text = plan_path.read_text(encoding="utf-8")
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))[:2000]
    write_text_atomic(plan_path, header + dump_yaml(raw))
