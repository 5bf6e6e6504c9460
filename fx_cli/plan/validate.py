"""Validation of a merged plan: every problem, each with its file and key path."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fx_cli.compat.plan_names import section_refusal
from fx_cli.errors import FxError
from fx_cli.names import check_address
from fx_cli.plan.ranges import check_ranges, class_problems
from fx_cli.plan.schema import check_settings, suggest
from fx_cli.plan.settings import CORE_SETTINGS
from fx_cli.plan.templates import check_allowed, resolve_class
from fx_cli.privacy.settings import check_privacy
from fx_cli.secagg.settings import check_secagg
from fx_cli.simulate.settings import check_simulation
from fx_cli.plan.ops_rules import check_ops_rules

SECTIONS = ("aggregator", "collaborator", "data_loader", "task_runner", "network", "assigner",
            "tasks", "compression_pipeline", "straggler_handling_policy", "privacy", "upstream",
            "secure_aggregation",
            "simulation")
REQUIRED = ("data_loader", "task_runner")
# Keys fx passes to constructors itself; a plan must not set them.
INJECTED = {
    "data_loader": ("data_path",),
    "task_runner": ("data_loader",),
    "assigner": ("authorized_cols", "rounds_to_train", "selected_task_group"),
}
TASK_KEYS = ("function", "kwargs", "aggregation_type", "description")


def validate_config(config: dict[str, Any], file: str, workspace: Path, *, check_classes: bool = True) -> list[str]:
    """All problems in a merged plan (empty when valid)."""
    problems: list[str] = []
    for name in config:
        if name not in SECTIONS:
            refused = section_refusal(name, config[name])
            problems.append(f"{file}: {refused}" if refused else f"{file}: {name}: unknown section"
                            f"{suggest(name, SECTIONS)}")
    for name in REQUIRED:
        if not (config.get(name) or {}).get("template"):
            problems.append(f"{file}: {name}.template: required key missing")
    for name, section in config.items():
        if name not in SECTIONS or not isinstance(section, dict):
            continue
        problems += _check_section(name, section, file, workspace, check_classes)
    if check_classes:
        problems += _check_task_functions(config, file, workspace)
    if not any(f"{file}: privacy" in p for p in problems):  # values once their types are right
        problems += check_privacy(config, file)
    if not any(f"{file}: secure_aggregation" in p for p in problems):
        problems += check_secagg(config, file)
    problems += check_ranges(config, file)
    problems += check_simulation(config, file)
    problems += check_ops_rules(config, file)
    return problems


def _check_task_functions(config: dict[str, Any], file: str, ws: Path) -> list[str]:
    """Each task's ``function`` must be a method of the task runner (else it fails mid-federation)."""
    template, tasks = (config.get("task_runner") or {}).get("template"), config.get("tasks")
    if not isinstance(template, str) or check_allowed(template, "") or not isinstance(tasks, dict):
        return []
    try:
        cls = resolve_class(template, ws, "task_runner.template")
    except FxError:
        return []  # already reported against task_runner.template
    methods = [m for m in dir(cls) if not m.startswith("_") and callable(getattr(cls, m))]
    return [f"{file}: tasks.{task}.function: the task runner {cls.__name__} has no method "
            f"'{spec['function']}'{suggest(spec['function'], methods)}"
            for task, spec in tasks.items()
            if isinstance(spec, dict) and isinstance(spec.get("function"), str)
            and not callable(getattr(cls, spec["function"], None))]


def _check_section(name: str, section: dict[str, Any], file: str, ws: Path, check_classes: bool) -> list[str]:
    problems: list[str] = []
    allowed_keys = ("template", "settings") if name != "tasks" else None
    if allowed_keys:
        for key in section:
            if key not in allowed_keys:
                problems.append(f"{file}: {name}.{key}: unknown key{suggest(key, allowed_keys)}")
    settings = section.get("settings")
    if not isinstance(settings, dict):
        return problems + [f"{file}: {name}.settings: expected a mapping, got {type(settings).__name__}"]
    if name == "tasks":
        return problems + _check_tasks(section, file, ws, check_classes)
    template = section.get("template")
    if template is not None:
        problem = check_allowed(template, f"{file}: {name}.template")
        if problem:
            return problems + [problem]
    if name in CORE_SETTINGS:
        problems += check_settings(settings, CORE_SETTINGS[name], f"{file}: {name}.settings")
        return problems + (_check_address(settings, f"{file}: network.settings") if name == "network" else [])
    if template and check_classes:
        problems += _check_class(template, settings, f"{file}: {name}", ws, INJECTED.get(name, ()))
    return problems


def _check_address(settings: dict[str, Any], where: str) -> list[str]:
    """Values (not just types) of agg_addr and agg_port: they become a socket address and a certificate name."""
    problems = []
    port = settings.get("agg_port", "auto")
    if port != "auto" and not (isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536):
        problems.append(f"{where}.agg_port: expected 'auto' or a port number from 1 to 65535, got {port!r}")
    addr = settings.get("agg_addr", "auto")
    if isinstance(addr, str) and addr != "auto":
        try:
            check_address(addr)
        except FxError as err:
            problems.append(f"{where}.agg_addr: {err.message}")
    return problems


def _check_class(template: str, settings: dict[str, Any], where: str, ws: Path,
                 injected: tuple[str, ...]) -> list[str]:
    try:
        cls = resolve_class(template, ws, f"{where}.template")
    except FxError as err:
        return [err.message]
    problems = check_settings(settings, cls, f"{where}.settings", injected)
    return problems or class_problems(cls, settings, f"{where}.settings")


def _check_tasks(section: dict[str, Any], file: str, ws: Path, check_classes: bool) -> list[str]:
    problems: list[str] = []
    for task, spec in section.items():
        if task in ("settings", "template"):
            continue
        where = f"{file}: tasks.{task}"
        if not isinstance(spec, dict):
            problems.append(f"{where}: expected a mapping with 'function' and 'kwargs'")
            continue
        for key in spec:
            if key not in TASK_KEYS:
                problems.append(f"{where}.{key}: unknown key{suggest(key, TASK_KEYS)}")
        if not isinstance(spec.get("function"), str):
            problems.append(f"{where}.function: required key missing (the task runner method to call)")
        if not isinstance(spec.get("kwargs", {}) or {}, dict):
            problems.append(f"{where}.kwargs: expected a mapping")
        agg = spec.get("aggregation_type")
        if agg is not None:
            problems += _check_aggregation(agg, f"{where}.aggregation_type", ws, check_classes)
    return problems


def _check_aggregation(agg: Any, where: str, ws: Path, check_classes: bool) -> list[str]:
    if isinstance(agg, str):
        agg = {"template": agg}
    if not isinstance(agg, dict) or "template" not in agg:
        return [f"{where}: expected a mapping with 'template' (and optional 'settings')"]
    problems = [f"{where}.{k}: unknown key{suggest(k, ('template', 'settings'))}"
                for k in agg if k not in ("template", "settings")]
    problem = check_allowed(agg["template"], f"{where}.template")
    if problem:
        return problems + [problem]
    if check_classes:
        problems += _check_class(agg["template"], agg.get("settings") or {}, where, ws, ())
    return problems
