"""``fx workspace export``: a deterministic zip of what every site of a federation needs."""
from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from fx_cli.archive.safezip import Limits
from fx_cli.errors import FxError
from fx_cli.plan.freeze import freeze
from fx_cli.plan.loader import Plan, load_plan, require_initialized
from fx_cli.workspace import requirements
from fx_cli.workspace.archive import (ARCHIVE_DIRS, DEFAULT_MARKER, FROZEN_PLAN, MARKER_FILE, SITE_DIRS,
                                      holds_private_key, never_shipped)
from fx_cli.workspace.import_ import import_limits

# Fixed timestamp and modes: the same workspace always gives the same bytes.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o644
READ_ONLY_MODE = 0o444
CHUNK = 1024 * 1024


@dataclass
class Exported:
    """What ``export_workspace`` wrote and what it left behind."""

    archive: Path
    federation_id: str
    plan_hash: str
    included: list[str]
    left_out: list[tuple[str, str]]
    pins: list[str]
    notes: list[str] = field(default_factory=list)
    size: int = 0


def export_workspace(workspace: Path, output: Path | None = None, force: bool = False) -> Exported:
    """Freeze the plan and write ``<workspace>.zip`` holding plan/, src/, the init model and requirements."""
    workspace = workspace.resolve()
    if not (workspace / "plan" / "plan.yaml").is_file():
        raise FxError(f"{workspace} is not a workspace: plan/plan.yaml not found",
                      "run `fx workspace export` in the workspace root (the folder holding plan/)")
    plan = load_plan(workspace / "plan" / "plan.yaml", workspace=workspace, check_classes=False)
    init = require_initialized(plan)
    target = (output or Path(f"{workspace.name}.zip")).resolve()
    if target.exists() and not force:
        raise FxError(f"{target} already exists", "pass --force to replace it, or choose another --output")
    frozen, _ = freeze(plan)
    files, left_out = _select(workspace, plan, init, frozen, target)
    captured = requirements.capture(workspace, [plan.template("task_runner"), plan.template("data_loader")])
    generated = {"requirements.txt": captured.text.encode("utf-8")}
    if MARKER_FILE not in files:
        generated[MARKER_FILE] = DEFAULT_MARKER.encode("utf-8")
        captured.notes.append(f"{MARKER_FILE} was missing; the archive holds a default one")
    members: dict[str, Path | bytes] = {**files, **generated}
    read_only = {frozen.relative_to(workspace).as_posix()}
    size = _write_zip(target, members, read_only)
    captured.notes += size_notes(members)
    return Exported(target, plan.federation_id, plan.hash, sorted(members), left_out, captured.pins,
                    captured.notes, size)


def size_notes(members: dict[str, Path | bytes], limits: Limits | None = None) -> list[str]:
    """Tell the exporter when the sites need ``--max-gib`` to import this archive."""
    limits = limits or import_limits()
    sizes = {n: len(m) if isinstance(m, bytes) else m.stat().st_size for n, m in members.items()}
    name, biggest = max(sizes.items(), key=lambda item: item[1])
    total = sum(sizes.values())
    if biggest <= limits.max_member_bytes and total <= limits.max_total_bytes:
        return []
    need = math.ceil(max(biggest, total) / 1024 ** 3)
    return [f"{name} is {biggest:,} bytes ({total:,} in all), over the default size limits of "
            f"`fx workspace import`; the sites must import it with --max-gib {need}"]


def _select(workspace: Path, plan: Plan, init: Path, frozen: Path, target: Path
            ) -> tuple[dict[str, Path], list[tuple[str, str]]]:
    """Walk the workspace: the files that go in (by member name) and (path, reason) for the rest."""
    init_name = _inside(workspace, init, "the initial model (aggregator.settings.init_state_path)")
    files: dict[str, Path] = {init_name: init}
    left_out: list[tuple[str, str]] = []
    for entry in sorted(workspace.iterdir()):
        name = entry.name
        if entry == target or (name == "requirements.txt" and entry.is_file()):
            continue  # the previous archive; requirements.txt is regenerated with pins
        if name == MARKER_FILE and entry.is_file() and not entry.is_symlink():
            files[name] = entry
        elif entry.is_symlink():
            left_out.append((name, "symbolic link"))
        elif entry.is_dir() and name in SITE_DIRS:
            count = sum(len(f) for _, _, f in os.walk(entry))
            left_out.append((f"{name}/ ({count} file{'s' if count != 1 else ''})", SITE_DIRS[name]))
        elif entry.is_dir() and name in ARCHIVE_DIRS:
            _select_tree(workspace, entry, plan, init_name, frozen, files, left_out)
        else:
            left_out.append((name + ("/" if entry.is_dir() else ""), "not part of a workspace archive"))
    return files, left_out


def _select_tree(workspace: Path, top: Path, plan: Plan, init_name: str, frozen: Path,
                 files: dict[str, Path], left_out: list[tuple[str, str]]) -> None:
    """Sort the files under plan/, src/ or save/ into ``files`` and ``left_out``."""
    for root, dirs, names in os.walk(top):
        dirs.sort()
        for name in sorted(dirs + names):
            path = Path(root) / name
            rel = path.relative_to(workspace).as_posix()
            reason = _reason(rel, path, plan, init_name, frozen)
            if reason == "" and path.is_file():
                files[rel] = path
            elif reason:
                left_out.append((rel + ("/" if path.is_dir() and not path.is_symlink() else ""), reason))
                if name in dirs:
                    dirs.remove(name)


def _reason(rel: str, path: Path, plan: Plan, init_name: str, frozen: Path) -> str:
    """Why a file below plan/, src/ or save/ stays out ('' when it goes in)."""
    if path.is_symlink():
        return "symbolic link (it could point at anything on this machine)"
    shipped = never_shipped(rel)
    if shipped:
        return shipped
    if path.is_dir():
        return ""
    match = FROZEN_PLAN.match(rel)
    if match and path != frozen:
        return f"frozen copy of an older plan (the current plan is {plan.federation_id})"
    if rel.startswith("save/") and rel != init_name:
        return "trained or other model file (only the initial model is shared)"
    if not path.is_file():
        return "not a regular file"
    if not rel.startswith("save/") and holds_private_key(path):
        return "holds a private key (-----BEGIN ... PRIVATE KEY), whatever its name"
    return ""


def _inside(workspace: Path, path: Path, what: str) -> str:
    """``path`` as a member name; it must lie in save/ inside the workspace."""
    try:
        rel = PurePosixPath(path.resolve().relative_to(workspace).as_posix())
    except ValueError:
        raise FxError(f"{what} {path} is outside the workspace {workspace}",
                      "point init_state_path at save/init.pbuf and run `fx plan initialize` again") from None
    if rel.parts[0] != "save" or len(rel.parts) != 2:
        raise FxError(f"{what} {path} is not directly in {workspace / 'save'}",
                      "point init_state_path at save/init.pbuf and run `fx plan initialize` again")
    return str(rel)


def _write_zip(target: Path, members: dict[str, Path | bytes], read_only: set[str]) -> int:
    """Write members in sorted order with fixed metadata, through a temporary file; returns its size."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            for name in sorted(members):
                info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
                info.create_system = 3  # unix, so the mode bits below mean what they say
                info.external_attr = (0o100000 | (READ_ONLY_MODE if name in read_only else FILE_MODE)) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                _write_member(zf, info, members[name])
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target.stat().st_size


def _write_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, source: Path | bytes) -> None:
    """Stream one member in (models can be large)."""
    if isinstance(source, bytes):
        zf.writestr(info, source)
        return
    info.file_size = source.stat().st_size  # lets zipfile pick zip64 up front for huge models
    with open(source, "rb") as src, zf.open(info, "w") as out:
        while chunk := src.read(CHUNK):
            out.write(chunk)
