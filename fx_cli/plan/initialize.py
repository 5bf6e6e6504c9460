"""``fx plan initialize``: write the initial weights and the resolved aggregator address."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fx_cli.errors import FxError
from fx_cli.plan.loader import load_plan
from fx_cli.plan.participants import read_cols, read_data
from fx_cli.plan.yamlio import dump_yaml, read_yaml, write_text_atomic


@dataclass
class Initialized:
    init_path: Path
    tensor_count: int
    total_bytes: int
    agg_addr: str
    agg_port: int
    plan_hash: str


def initialize(plan_path: Path, cols_path: Path | None, data_path: Path | None,
               agg_addr: str | None, init_model: Path | None) -> Initialized:
    """Build the runner with no data, write the init model, patch ``agg_addr`` into the plan."""
    from fx_cli.runners.build import build_runner
    from fx_cli.runners.export import load_pbuf_into
    from fx_cli.tensors.pbuf import write_model

    if agg_addr:
        _write_agg_addr(plan_path, agg_addr)
    plan = load_plan(plan_path)
    for path, reader in ((cols_path, read_cols), (data_path, read_data)):
        if path is not None and path.exists():
            reader(path)
    if _unresolved_addr(plan_path):
        _write_agg_addr(plan_path, plan.network.agg_addr)
        plan = load_plan(plan_path)
    runner = build_runner(plan)
    round_number = 0
    if init_model is None:
        tensors = runner.get_tensors()
    elif init_model.suffix == ".pbuf":
        _, round_number = load_pbuf_into(runner, init_model)
        tensors = runner.get_tensors()
    else:
        try:
            runner.load_native(str(init_model))
        except NotImplementedError as err:
            raise FxError(str(err), "pass a .pbuf file with -i instead") from None
        tensors = runner.get_tensors()
    target = plan.resolve_path(plan.aggregator.init_state_path)
    size = write_model(target, tensors, round_number=round_number)
    net = plan.network
    return Initialized(target, len(tensors), size, net.agg_addr, int(net.agg_port), plan.hash)


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
