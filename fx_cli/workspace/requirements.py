"""Capturing a workspace's requirements on export, and installing them on import.

Versions are read from package metadata and imports are found by parsing
source files, so no framework (TensorFlow above all) is ever imported here.
"""
from __future__ import annotations

import ast
import collections
import importlib.metadata
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from fx_cli import __version__
from fx_cli.errors import FxError
from fx_cli.workspace.reqlines import check_lines, describe

# fx's distribution name (setup.cfg). "fx" on PyPI is an unrelated project; archives made by fx
# before the rename pin "fx==", which is still recognised as fx's own pin and never reaches pip.
FX_DIST = "fx-federated"
FX_DISTS = (FX_DIST, "fx")
# Always pinned: fx moves every tensor as a numpy array.
ALWAYS_PINNED = ("numpy",)
_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?=$|[\[<>=!~;@\s])")
PIP_TAIL_LINES = 15


@dataclass
class Captured:
    """The requirements.txt an archive carries, and what was decided on the way."""

    text: str
    pins: list[str]
    notes: list[str] = field(default_factory=list)


def canonical_name(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(line: str) -> str | None:
    """The distribution a requirements line names, or None (comments, options, URLs)."""
    match = _NAME.match(line.strip())
    return canonical_name(match.group(1)) if match else None


def imported_top_levels(files: Iterable[Path]) -> set[str]:
    """Top-level absolute module names imported anywhere in ``files`` (function bodies included)."""
    names: set[str] = set()
    for path in files:
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError) as err:
            raise FxError(f"{path}: cannot be parsed as Python ({err})",
                          "fix the file or remove it from the workspace before exporting") from None
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def code_files(workspace: Path, templates: Iterable[str]) -> list[Path]:
    """The workspace's ``src`` sources plus the fx modules its plan templates name."""
    files = sorted(p for p in (workspace / "src").rglob("*.py") if "__pycache__" not in p.parts)
    package = Path(__file__).resolve().parent.parent
    for template in templates:
        module = template.rsplit(".", 1)[0].split(".")
        if module[0] != "fx_cli":
            continue
        base = package.joinpath(*module[1:])
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                files.append(candidate)
                break
    return files


def public_version(version: str) -> str:
    """``version`` without its local label (PEP 440): ``2.13.0+cpu`` -> ``2.13.0``.

    A local label names a build from a project's own index (PyTorch's ``+cpu``, ``+cu121``). PyPI serves no such
    build, so ``pip install torch==2.13.0+cpu`` fails at a site that installs from PyPI; ``torch==2.13.0`` is
    satisfied by any 2.13.0 build, the local one included.
    """
    return version.split("+", 1)[0]


def framework_pins(top_levels: set[str]) -> tuple[dict[str, str], list[str], dict[str, str]]:
    """Exact public versions of the installed distributions providing ``top_levels``; the unresolved names;
    and the installed version of each pinned distribution that is a local build (see ``public_version``)."""
    providers = importlib.metadata.packages_distributions()
    pins: dict[str, str] = {}
    local: dict[str, str] = {}
    missing: list[str] = []
    for top in sorted(top_levels | set(ALWAYS_PINNED)):
        if top in sys.stdlib_module_names or top in ("fx_cli", "src", "__future__"):
            continue
        dists = providers.get(top)
        if not dists:
            missing.append(top)
            continue
        for dist in dict.fromkeys(dists):
            installed = importlib.metadata.version(dist)
            pins[canonical_name(dist)] = public_version(installed)
            if public_version(installed) != installed:
                local[canonical_name(dist)] = installed
    for name in FX_DISTS:
        pins.pop(name, None)
        local.pop(name, None)
    return pins, missing, local


def merge_requirements(user_text: str, pins: dict[str, str]) -> tuple[str, list[str]]:
    """The workspace's own lines, then exact pins; a user line naming a pinned package is replaced."""
    notes: list[str] = []
    kept: list[str] = []
    for line in user_text.splitlines():
        name = requirement_name(line)
        if name in pins or name in FX_DISTS:
            pinned = f"{FX_DIST}=={__version__}" if name in FX_DISTS else f"{name}=={pins[name]}"
            notes.append(f"requirements.txt: '{line.strip()}' replaced by the exact pin '{pinned}'")
            continue
        if line.strip().startswith(("-r", "-c", "--requirement", "--constraint")):
            notes.append(f"requirements.txt: '{line.strip()}' names another file, which the archive does not "
                         f"carry; `fx workspace import --install` refuses such lines at the other sites")
        kept.append(line.rstrip())
    while kept and not kept[-1]:
        kept.pop()
    version = ".".join(map(str, sys.version_info[:3]))
    lines = kept + ([""] if kept else []) + [
        f"# Pinned by fx workspace export: the versions in use where it ran (Python {version}).",
        f"# {FX_DIST} is fx itself (installed from its source with `make install`, or",
        f"# `pip install -e '.[tensorflow]'` in it); `fx workspace import --install` never passes it to pip.",
        f"{FX_DIST}=={__version__}",
    ] + [f"{name}=={ver}" for name, ver in sorted(pins.items())]
    return "\n".join(lines) + "\n", notes


def capture(workspace: Path, templates: Iterable[str]) -> Captured:
    """Build the archive's requirements.txt for ``workspace``."""
    req = workspace / "requirements.txt"
    user_text = req.read_text(encoding="utf-8") if req.is_file() else ""
    pins, missing, local = framework_pins(imported_top_levels(code_files(workspace, templates)))
    text, notes = merge_requirements(user_text, pins)
    notes += [f"{name} {installed} is a local build ('+{installed.split('+', 1)[1]}', from its project's own index, "
              f"not PyPI): pinned as '{name}=={pins[name]}', which any {pins[name]} build satisfies; a site that "
              f"needs this very build installs it from that index before `fx workspace import --install`"
              for name, installed in sorted(local.items())]
    if not req.is_file():
        notes.append("the workspace has no requirements.txt; the archive's holds only the pins")
    notes += [f"module '{m}' is imported by the workspace code but not installed here, so it is not pinned"
              + (" (fx provides OpenFL's TaskRunner API in its place)" if m == "openfl" else "")
              for m in missing]
    return Captured(text, [f"{FX_DIST}=={__version__}"] + [f"{n}=={v}" for n, v in sorted(pins.items())], notes)


def fx_pin(requirements_text: str) -> str | None:
    """The fx version an archive's requirements pin, if any."""
    for line in requirements_text.splitlines():
        if requirement_name(line) in FX_DISTS and "==" in line:
            return line.split("==", 1)[1].split(";")[0].strip()
    return None


def manual_install(requirements: Path) -> str:
    """The pip command a user can run later; fx's own pin must not reach pip (see ``pip_install``)."""
    return (f"{sys.executable} -m pip install -r {requirements} after deleting its '{FX_DIST}==' line "
            f"(fx is already this program; it is not installed from PyPI, where 'fx' is another project)")


def pip_install(requirements: Path, extra_args: Sequence[str] = (),
                on_line: Callable[[str], None] = lambda line: None) -> None:
    """``python -m pip install -r requirements`` into this environment, streaming pip's output.

    Only plain requirement lines reach pip (see ``reqlines``): a file with a local path, URL or pip
    option is refused before pip runs.  pip runs in an empty temporary folder, so a bare name can
    never resolve to a folder of the workspace.
    """
    accepted, refused = check_lines(requirements.read_text(encoding="utf-8"))
    if refused:
        raise FxError(f"{requirements}: refused to install: these lines are not plain package requirements, "
                      f"and pip would run or fetch code they name:\n{describe(refused)}",
                      "nothing was installed; the workspace itself was imported. Ask the aggregator's owner "
                      "to remove those lines, or install what they name yourself if you trust it")
    # fx itself is the running program: pip must never swap it, nor fetch a same-named project.
    kept = "".join(line + "\n" for line in accepted if requirement_name(line) not in FX_DISTS)
    with tempfile.TemporaryDirectory(prefix="fx-pip-") as tmp:
        filtered = Path(tmp, "requirements.txt")
        filtered.write_text(kept, encoding="utf-8")
        _run_pip([sys.executable, "-m", "pip", "install", "--disable-pip-version-check",
                  "-r", str(filtered), *extra_args], requirements, on_line, Path(tmp))


def _run_pip(cmd: list[str], requirements: Path, on_line: Callable[[str], None], cwd: Path) -> None:
    tail: collections.deque[str] = collections.deque(maxlen=PIP_TAIL_LINES)
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                cwd=cwd)
    except OSError as err:
        raise FxError(f"could not run pip for {requirements}: {err}",
                      f"install them yourself: {manual_install(requirements)}") from None
    assert proc.stdout is not None
    with proc:
        for raw in proc.stdout:
            line = raw.rstrip()
            tail.append(line)
            on_line(line)
    if proc.returncode:
        shown = "\n".join(f"    {line}" for line in tail if line.strip())
        raise FxError(f"pip could not install the requirements in {requirements} "
                      f"(exit code {proc.returncode}); pip said:\n{shown}",
                      f"fix or remove the requirement pip names above, then run "
                      f"{manual_install(requirements)}; the workspace itself was imported")
