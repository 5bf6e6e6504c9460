"""Extracting untrusted zip files.

Every zip fx reads (workspace archives, certificate packages) is treated as
hostile: the whole member list is checked before one byte is written, and
extraction goes to a temporary folder beside the target that is renamed into
place only when complete.  Nothing is ever written outside the target.
"""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable

from fx_cli.errors import FxError

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    max_members: int = 10_000
    max_member_bytes: int = 1024 * MiB
    max_total_bytes: int = 4096 * MiB
    max_ratio: float = 200.0  # uncompressed/compressed, per member above 1 MiB, and of all members together
    oversize_hint: str | None = None  # how a user may raise the size limits, if they can


UNSAFE_HINT = "nothing was extracted; ask the sender for a fresh archive made by fx"


class UnsafeArchive(FxError):
    """A zip that fx refuses to extract."""

    def __init__(self, archive: Path, what: str, hint: str | None = None) -> None:
        super().__init__(f"{archive}: refused: {what}", hint or UNSAFE_HINT)


def _member_problem(info: zipfile.ZipInfo, limits: Limits) -> str | None:
    name = info.filename
    mode = info.external_attr >> 16
    if "\\" in name or "\x00" in name:
        return f"member {name!r} has a backslash or NUL in its name"
    path = PurePosixPath(name)
    if path.is_absolute() or (len(name) > 1 and name[1] == ":"):
        return f"member {name!r} has an absolute path"
    if ".." in path.parts:
        return f"member {name!r} climbs out of the target with '..'"
    if stat.S_ISLNK(mode):
        return f"member {name!r} is a symbolic link"
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):  # 0: permission bits only
        return f"member {name!r} is a device, FIFO or other special file"
    if info.flag_bits & 0x1:
        return f"member {name!r} is encrypted"
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA):
        return f"member {name!r} uses unsupported compression method {info.compress_type}"
    return None


def _bomb_problem(info: zipfile.ZipInfo, limits: Limits) -> str | None:
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > MiB and ratio > limits.max_ratio:
        return f"member {info.filename!r} expands {ratio:.0f}x (zip bomb?)"
    return None


def name_key(name: str) -> str:
    """The name as a filesystem may see it: one path, Unicode-normalised (NFKC) and case-folded.

    macOS (APFS/HFS+) and Windows treat names equal after normalisation or case folding as one
    file, so two such members would overwrite each other there.
    """
    return unicodedata.normalize("NFKC", PurePosixPath(name).as_posix()).casefold()


def _total_ratio_problem(total: int, compressed: int, limits: Limits) -> str | None:
    ratio = total / max(compressed, 1)
    if total > MiB and ratio > limits.max_ratio:
        return f"its members expand {ratio:.0f}x in total, {total:,} bytes from {compressed:,} (zip bomb?)"
    return None


def check_members(archive: Path, zf: zipfile.ZipFile, limits: Limits,
                  allowed: Callable[[str], bool] | None = None) -> list[zipfile.ZipInfo]:
    """Validate the whole member list; returns the file members to extract."""
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise UnsafeArchive(archive, f"{len(infos)} members, over the limit of {limits.max_members}")
    seen: dict[str, str] = {}
    folded: dict[str, str] = {}
    total = compressed = 0
    files = []
    for info in infos:
        problem = _member_problem(info, limits)
        if problem:
            raise UnsafeArchive(archive, problem)
        # Normalised, so 'a/b', './a/b', 'a//b' and 'a/./b' (one path on disk) count as the same name.
        key = PurePosixPath(info.filename).as_posix()
        if key in seen:
            raise UnsafeArchive(archive, f"member {info.filename!r} appears twice")
        other = folded.get(name_key(key))
        if other is not None:
            raise UnsafeArchive(archive, f"member {info.filename!r} differs only in case or Unicode form "
                                         f"from member {other!r} (one file on some systems)")
        seen[key] = info.filename
        folded[name_key(key)] = info.filename
        if info.is_dir():
            continue
        if allowed is not None and not allowed(info.filename):
            raise UnsafeArchive(archive, f"unexpected member {info.filename!r}")
        if info.file_size > limits.max_member_bytes:
            raise UnsafeArchive(archive, f"member {info.filename!r} is {info.file_size:,} bytes, over the "
                                         f"{limits.max_member_bytes:,}-byte limit", limits.oversize_hint)
        problem = _bomb_problem(info, limits)
        if problem:
            raise UnsafeArchive(archive, problem)
        total += info.file_size
        compressed += info.compress_size
        if total > limits.max_total_bytes:
            raise UnsafeArchive(archive, f"members add up to over {limits.max_total_bytes:,} bytes",
                                limits.oversize_hint)
        files.append(info)
    problem = _total_ratio_problem(total, compressed, limits)
    if problem:
        raise UnsafeArchive(archive, problem)
    file_keys = {name_key(i.filename) for i in files}
    for info in files:
        for parent in list(PurePosixPath(info.filename).parents)[:-1]:
            if name_key(str(parent)) in file_keys:
                raise UnsafeArchive(archive, f"member {str(parent)!r} is a file but {info.filename!r} "
                                             "needs it to be a folder")
    return files


def open_zip(archive: Path) -> zipfile.ZipFile:
    """Open a zip, turning 'not a zip' into a clear error."""
    try:
        return zipfile.ZipFile(archive)
    except FileNotFoundError:
        raise FxError(f"{archive}: no such file", "check the path of the archive") from None
    except zipfile.BadZipFile as err:
        raise UnsafeArchive(archive, f"not a valid zip file ({err})") from None


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, archive: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with zf.open(info) as src, open(dest, "xb") as out:
        while chunk := src.read(MiB):
            written += len(chunk)
            if written > info.file_size:  # the header lied about the size
                raise UnsafeArchive(archive, f"member {info.filename!r} is larger than its header says")
            out.write(chunk)


def extract(archive: str | os.PathLike[str], target: str | os.PathLike[str], *, limits: Limits = Limits(),
            allowed: Callable[[str], bool] | None = None) -> list[str]:
    """Extract into ``target``, which must not exist yet; returns the extracted file names."""
    archive, target = Path(archive), Path(target)
    if target.exists():
        raise FxError(f"{target} already exists", "choose another destination or remove it first")
    with open_zip(archive) as zf:
        files = check_members(archive, zf, limits, allowed)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            root = staging.resolve()
            for info in files:
                dest = (staging / info.filename).resolve()
                if root not in dest.parents:
                    raise UnsafeArchive(archive, f"member {info.filename!r} resolves outside the target")
                try:
                    _copy_member(zf, info, dest, archive)
                except zipfile.BadZipFile as err:
                    raise UnsafeArchive(archive, f"member {info.filename!r} is corrupt ({err})") from None
            os.replace(staging, target)
            umask = os.umask(0o022)
            os.umask(umask)
            target.chmod(0o777 & ~umask)  # mkdtemp made it 0700
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return [i.filename for i in files]
