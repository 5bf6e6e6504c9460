"""``fx workspace import``: unpack a workspace archive that is treated as hostile.

Every check runs before anything is written: the member list (via safezip),
the workspace layout, and the plan hash, which is verified from the archive's
plan files in a private temporary folder.  Only then is the archive extracted
through a staging folder renamed into place.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from fx_cli import __version__
from fx_cli.archive.safezip import Limits, UnsafeArchive, check_members, extract, open_zip
from fx_cli.errors import FxError, PlanError
from fx_cli.plan.loader import Plan, load_plan
from fx_cli.workspace import openfl_import
from fx_cli.workspace.archive import (FROZEN_PLAN, MARKER_FILE, PLAN_FILE, SITE_DIRS, member_problem,
                                      nesting_problem)
from fx_cli.workspace.reqlines import check_lines, describe
from fx_cli.workspace.requirements import fx_pin

PLAN_MEMBER_MAX = 4 * 1024 * 1024  # plan files are small YAML; they are read into memory
GiB = 1024 ** 3
OVERSIZE_HINT = ("nothing was extracted. If the archive is this large on purpose (a big initial model) and comes "
                 "from the aggregator's owner, import it with a higher limit: --max-gib N")


def import_limits(max_gib: float | None = None) -> Limits:
    """The size limits of an import: the defaults, or ``max_gib`` per member and in all."""
    if max_gib is None:
        return Limits(oversize_hint=OVERSIZE_HINT)
    if max_gib <= 0:
        raise FxError(f"--max-gib must be above 0, got {max_gib}", "give the largest size to accept in GiB, e.g. 8")
    size = int(max_gib * GiB)
    return Limits(max_member_bytes=size, max_total_bytes=size, oversize_hint=OVERSIZE_HINT)
READABLE_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)


class NotAWorkspace(FxError):
    """A valid zip that is not an fx workspace archive."""

    def __init__(self, archive: Path, missing: str) -> None:
        super().__init__(f"{archive}: not an fx workspace archive: it has no {missing}",
                         "nothing was extracted; ask for an archive made by `fx workspace export`")


@dataclass
class VerifiedPlan:
    plan_hash: str
    federation_id: str
    agg_addr: str
    agg_port: int
    text: bytes
    openfl_frozen: str = ""  # set for an archive OpenFL exported: its frozen plan (named by OpenFL's hash)


@dataclass
class Imported:
    """An imported workspace and what the user must check about it."""

    path: Path
    plan: VerifiedPlan
    files: list[str]
    warnings: list[str] = field(default_factory=list)
    code: list[tuple[str, str]] = field(default_factory=list)  # (src/ file, sha256) - runs on this host
    code_digest: str = ""  # sha256 over the sorted (name, sha256) list
    translated: list[str] = field(default_factory=list)  # what fx does differently (an OpenFL archive)


def code_listing(workspace: Path) -> tuple[list[tuple[str, str]], str]:
    """Every file under ``src/`` with its SHA-256, and one digest over the whole list."""
    listing = []
    for path in sorted(p for p in (workspace / "src").rglob("*") if p.is_file()):
        listing.append((path.relative_to(workspace).as_posix(), hashlib.sha256(path.read_bytes()).hexdigest()))
    overall = hashlib.sha256("".join(f"{h}  {n}\n" for n, h in listing).encode()).hexdigest()
    return listing, overall


def import_workspace(archive: Path, prefix: Path | None = None, *, limits: Limits = import_limits()) -> Imported:
    """Check ``archive`` completely, verify its plan hash, then unpack it into a new folder."""
    archive = Path(archive)
    target = prefix if prefix is not None else Path(archive.stem)
    if target.exists() or target.is_symlink():
        raise FxError(f"{target} already exists; import never writes over a folder",
                      "choose another --prefix, or move the existing folder away first")
    with open_zip(archive) as zf:
        infos = check_members(archive, zf, limits)
        check_layout(archive, infos)
        small = _read_small(archive, zf, infos)
    verified = verify_plan(archive, small)
    files = extract(archive, target, limits=limits)
    _finish(archive, target, verified)
    requirements = small.get("requirements.txt", b"")
    warnings = _version_warnings(requirements) + _requirement_warnings(requirements)
    code, digest = code_listing(target)
    translated: list[str] = []
    if verified.openfl_frozen:
        src = {n: (target / n).read_bytes() for n, _ in code}
        translated = openfl_import.translations(small, src, files, verified.openfl_frozen,
                                                f"plan/plan_{verified.plan_hash[:8]}.yaml")
        openfl_import.finish(target)
    return Imported(target, verified, files, warnings, code, digest, translated)


def check_layout(archive: Path, infos: list[zipfile.ZipInfo]) -> None:
    """Refuse archives that are not fx workspaces or hold anything outside the workspace layout."""
    names = [i.filename for i in infos]
    for required in (PLAN_FILE, MARKER_FILE):
        if required not in names:
            raise NotAWorkspace(archive, required)
    for info in infos:
        if info.is_dir() and info.filename.rstrip("/") in SITE_DIRS:
            continue  # an empty site folder (OpenFL's archives have data/, logs/, local_state/); nothing to write
        problem = member_problem(info.filename)
        if problem is None and info.flag_bits & 0x1:
            problem = f"member {info.filename!r} is encrypted"
        if problem is None and info.compress_type not in READABLE_METHODS:
            problem = f"member {info.filename!r} uses unsupported compression method {info.compress_type}"
        if problem:
            raise UnsafeArchive(archive, problem)
    problem = nesting_problem(names)
    if problem:
        raise UnsafeArchive(archive, problem)


def _read_small(archive: Path, zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> dict[str, bytes]:
    """The plan files and requirements.txt, read into memory (each bounded in size)."""
    wanted = [i for i in infos if i.filename.startswith("plan/") or i.filename == "requirements.txt"]
    for info in wanted:
        if info.file_size > PLAN_MEMBER_MAX:
            raise UnsafeArchive(archive, f"member {info.filename!r} is {info.file_size:,} bytes; "
                                         f"plan files and requirements.txt are small text files")
    try:
        return {i.filename: zf.read(i) for i in wanted}
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise UnsafeArchive(archive, f"a plan member is corrupt ({err})") from None


def verify_plan(archive: Path, small: dict[str, bytes]) -> VerifiedPlan:
    """Hash the archive's plan; the frozen copy's name and content must carry the same hash."""
    with tempfile.TemporaryDirectory(prefix="fx-import-plan-") as tmp:
        root = Path(tmp)
        for name, data in small.items():
            if name.startswith("plan/"):
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                (root / name).write_bytes(data)
        plan = _load(archive, root, PLAN_FILE)
        frozen_name = f"plan/plan_{plan.hash[:8]}.yaml"
        frozen = sorted(n for n in small if FROZEN_PLAN.match(n))
        if frozen_name not in small and openfl_import.is_openfl_plan(small[PLAN_FILE]):
            net = plan.network
            return VerifiedPlan(plan.hash, plan.federation_id, str(net.agg_addr), int(net.agg_port),
                                small[PLAN_FILE], openfl_import.check_frozen(archive, small))
        if not frozen:
            raise FxError(f"{archive}: has no frozen plan (plan/plan_<hash8>.yaml), so its plan cannot be verified",
                          "ask the aggregator's owner for an archive made by `fx workspace export`")
        if frozen_name not in small:
            raise FxError(f"{archive}: plan hash mismatch: plan/plan.yaml hashes to {plan.federation_id} "
                          f"but the archive's frozen plan is {', '.join(frozen)}",
                          "the plan was changed after export; nothing was extracted. Ask for a fresh archive")
        if _load(archive, root, frozen_name).hash != plan.hash:
            raise FxError(f"{archive}: plan hash mismatch: {frozen_name} does not hash to its name",
                          "the frozen plan was altered; nothing was extracted. Ask for a fresh archive")
        net = plan.network
        return VerifiedPlan(plan.hash, plan.federation_id, str(net.agg_addr), int(net.agg_port),
                            small[PLAN_FILE])


def _load(archive: Path, root: Path, name: str) -> Plan:
    """Load one plan file of the archive; never imports the archive's code (check_classes off)."""
    try:
        return load_plan(root / name, workspace=root, check_classes=False)
    except PlanError as err:
        problems = [p.replace(str(root) + "/", "") for p in err.problems]
        raise FxError(f"{archive}: {name} is not a valid plan:\n" + "\n".join(f"  - {p}" for p in problems),
                      "nothing was extracted; ask the aggregator's owner for a fresh archive") from None


def _finish(archive: Path, target: Path, verified: VerifiedPlan) -> None:
    """Re-check the extracted plan, restore the frozen plan's read-only mode, add site folders."""
    if (target / PLAN_FILE).read_bytes() != verified.text:
        shutil.rmtree(target, ignore_errors=True)
        raise FxError(f"{archive}: changed while it was being imported; the import was undone",
                      "make sure nothing else writes the archive, then import it again")
    # The staging folder was made private (0700); the workspace gets the user's usual mode.
    umask = os.umask(0o022)
    os.umask(umask)
    target.chmod(0o777 & ~umask)
    if verified.openfl_frozen:  # fx's own frozen copy, next to OpenFL's
        (target / "plan" / f"plan_{verified.plan_hash[:8]}.yaml").write_bytes(verified.text)
    (target / "plan" / f"plan_{verified.plan_hash[:8]}.yaml").chmod(0o444)
    for name in (*SITE_DIRS, "save"):
        (target / name).mkdir(exist_ok=True)
    (target / "cert").chmod(0o700)


def _version_warnings(requirements_text: bytes) -> list[str]:
    """Warn when the archive was exported with another fx version than this one."""
    pinned = fx_pin(requirements_text.decode("utf-8", errors="replace"))
    if pinned and pinned != __version__:
        return [f"the archive was exported with fx {pinned}; this is fx {__version__}. "
                f"Every site of a federation should run the same fx version"]
    return []


def _requirement_warnings(requirements_text: bytes) -> list[str]:
    """Lines of requirements.txt that `--install` will refuse to pass to pip."""
    _, refused = check_lines(requirements_text.decode("utf-8", errors="replace"))
    if not refused:
        return []
    return ["requirements.txt has lines that are not plain package requirements; fx will not pass them "
            "to pip (and --install refuses the file):\n" + describe(refused)]


def next_steps(imported: Imported) -> list[str]:
    """The commands a collaborator site runs after importing."""
    return [
        f"cd {imported.path}",
        "fx collaborator create -n NAME -d DATA_PATH",
        "fx collaborator generate-cert-request -n NAME",
        "send col_NAME_to_agg_cert_request.zip to the aggregator's owner; import the signed package they "
        "return with `fx collaborator certify -n NAME --import agg_to_col_NAME_signed_cert.zip`",
        "fx collaborator start -n NAME",
    ]
