"""Make ``import openfl`` find fx's compatibility package when OpenFL itself is not installed.

The finder is appended to ``sys.meta_path`` when fx loads a workspace's code,
so every other finder is asked first: an installed OpenFL is never shadowed.
It answers only for the top-level name ``openfl``, loading
``fx_cli/compat/openfl/__init__.py`` under that name; submodules are then found
the ordinary way inside that package, so each class exists exactly once.
Parts of OpenFL fx cannot run (the workflow and interactive APIs, Flower
interop, GaNDLF) are refused on import with the reason.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Sequence

PACKAGE_DIR = Path(__file__).resolve().parent / "openfl"

# module prefix -> why fx cannot offer it
UNSUPPORTED_MODULES = {
    "openfl.experimental": "OpenFL's workflow interface (FLSpec flows) is not part of fx; fx runs TaskRunner plans",
    "openfl.interface.interactive_api": "OpenFL's interactive (director/envoy) API is not part of fx",
    "openfl.interface.workflow": "OpenFL's workflow interface is not part of fx",
    "openfl.component.director": "OpenFL's director/envoy mode is not part of fx",
    "openfl.component.envoy": "OpenFL's director/envoy mode is not part of fx",
    "openfl.federated.task.runner_flower": "Flower interop needs a Flower SuperLink, which fx does not run",
    "openfl.federated.data.loader_flower": "Flower interop needs a Flower SuperLink, which fx does not run",
    "openfl.transport.grpc.interop": "Flower interop needs a Flower SuperLink, which fx does not run",
    "openfl.component.connector": "Flower interop needs a Flower SuperLink, which fx does not run",
    "openfl.federated.task.runner_gandlf": "GaNDLF runs its own training loop and configuration; fx does not host it",
    "openfl.federated.data.loader_gandlf": "GaNDLF runs its own training loop and configuration; fx does not host it",
    "openfl.federated.task.runner_xgb": "XGBoost bagging (FedBaggingXGBoost) is not implemented in fx",
    "openfl.federated.data.loader_xgb": "XGBoost bagging (FedBaggingXGBoost) is not implemented in fx",
}


def unsupported_reason(module: str) -> str | None:
    """Why fx cannot offer OpenFL module ``module`` (None when it can, or does not know it)."""
    for prefix, reason in UNSUPPORTED_MODULES.items():
        if module == prefix or module.startswith(prefix + "."):
            return reason
    return None


class OpenFLCompatFinder(importlib.abc.MetaPathFinder):
    """Finds ``openfl`` (fx's compatibility package) when nothing earlier on ``sys.meta_path`` does."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        reason = unsupported_reason(fullname)
        if reason is not None and fullname.split(".")[0] == "openfl" and "openfl" in sys.modules \
                and getattr(sys.modules["openfl"], "FX_COMPAT", False):
            raise ImportError(f"{fullname} cannot be used with fx: {reason}", name=fullname)
        if fullname != "openfl":
            return None
        return importlib.util.spec_from_file_location(
            "openfl", PACKAGE_DIR / "__init__.py", submodule_search_locations=[str(PACKAGE_DIR)])


def install_openfl_finder() -> None:
    """Append the finder once (last, so a real OpenFL installation is always found first)."""
    if not any(isinstance(f, OpenFLCompatFinder) for f in sys.meta_path):
        sys.meta_path.append(OpenFLCompatFinder())
