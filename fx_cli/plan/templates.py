"""Resolving ``template:`` class paths against an allow-list.

A ``template`` names code to run, so it may only point into the fx package or
the workspace's own ``src`` package.  OpenFL class paths that have an fx
equivalent are translated, so OpenFL plans keep working.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from typing import Any, Mapping, TypeVar

from fx_cli.compat.plan_names import TRANSLATED, refusal
from fx_cli.errors import FxError

ALLOWED_ROOTS = ("fx_cli", "src")

OPENFL_ALIASES: dict[str, str] = dict(TRANSLATED)


def canonical(path: str) -> str:
    """The fx class path for ``path`` (OpenFL aliases translated)."""
    return OPENFL_ALIASES.get(path, path)


def check_allowed(path: str, where: str) -> str | None:
    """A problem string when ``path`` is not an allowed class path, else None."""
    if not isinstance(path, str) or "." not in path:
        return f"{where}: expected a dotted class path like 'src.taskrunner.MyRunner', got {path!r}"
    why = refusal(path)
    if why is not None:
        return f"{where}: OpenFL's {path} is not supported by fx: {why}"
    root = canonical(path).split(".", 1)[0]
    if root not in ALLOWED_ROOTS:
        return (f"{where}: '{path}' is outside the allowed packages; templates may only name "
                f"classes in fx_cli or the workspace's src package")
    return None


def use_workspace_src(workspace: Path) -> None:
    """Make ``import src.x`` load from ``<workspace>/src`` (and nowhere else); ``import openfl`` works there too."""
    from fx_cli.compat.finder import install_openfl_finder

    install_openfl_finder()
    src_dir = (workspace / "src").resolve()
    current = sys.modules.get("src")
    if current is not None and list(getattr(current, "__path__", [])) == [str(src_dir)]:
        return
    for name in [m for m in sys.modules if m == "src" or m.startswith("src.")]:
        del sys.modules[name]
    init = src_dir / "__init__.py"
    if init.exists():
        spec = importlib.util.spec_from_file_location("src", init, submodule_search_locations=[str(src_dir)])
    else:  # a plain folder of modules: an empty package rooted there
        spec = importlib.machinery.ModuleSpec("src", None, is_package=True)
        spec.submodule_search_locations = [str(src_dir)]
    if spec is None:  # pragma: no cover
        raise FxError(f"cannot load the workspace package at {src_dir}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["src"] = module
    if spec.loader is not None:
        spec.loader.exec_module(module)


def resolve_class(path: str, workspace: Path, where: str) -> Any:
    """Import and return the class named by an allowed ``template`` path."""
    problem = check_allowed(path, where)
    if problem:
        raise FxError(problem, "use a class from fx_cli or put your class in the workspace's src/ folder")
    target = canonical(path)
    module_name, _, attr = target.rpartition(".")
    if target.startswith("src."):
        use_workspace_src(workspace)
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise FxError(f"{where}: cannot import module '{module_name}' for template '{path}': {err}",
                      _import_hint(err)) from None
    obj = getattr(module, attr, None)
    if obj is None:
        raise FxError(f"{where}: module '{module_name}' has no class '{attr}'",
                      "check the spelling of the template's class name")
    return _checked_class(obj, path, where)


def _checked_class(obj: Any, path: str, where: str) -> type:
    """Refuse non-classes and classes merely imported into an allowed module from elsewhere."""
    # `fx_cli.some_module.Popen` would otherwise reach any class some fx module happens to import.
    if not isinstance(obj, type):
        raise FxError(f"{where}: '{path}' is a {type(obj).__name__}, not a class",
                      "name a class defined in fx_cli or in the workspace's src/ folder")
    if obj.__module__.split(".")[0] not in ALLOWED_ROOTS:
        raise FxError(f"{where}: '{path}' is {obj.__module__}.{obj.__qualname__}, a class from outside the "
                      "allowed packages; templates may only name classes in fx_cli or the workspace's src package",
                      "name a class defined in fx_cli or in the workspace's src/ folder")
    return obj


def _import_hint(err: ImportError) -> str:
    missing = getattr(err, "name", "") or ""
    if missing.split(".")[0] in ("tensorflow", "keras", "sklearn"):
        return ("this plan needs fx's tensorflow extra: `make install`, or `pip install -e '.[tensorflow]'` "
                "in the fx source folder")
    return "check the template path and that the workspace's src/ folder holds the module"


_T = TypeVar("_T")


def build_component(template: str, settings: Mapping[str, Any] | None, workspace: Path, base: type[_T],
                    where: str, hint: str, base_name: str | None = None) -> _T:
    """Resolve ``template`` (allow-listed), check it derives from ``base``, and build it with ``settings``."""
    cls = resolve_class(template, workspace, f"{where}.template")
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise FxError(f"{where}.template: {template} is not a {base_name or base.__qualname__}", hint)
    values = dict(settings or {})
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise FxError(f"{where}.settings: cannot build {template} with {values}: {err}",
                      "check the setting names and values against the class's constructor") from None
