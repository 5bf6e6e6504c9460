"""Helpers for the workspace archive tests: hostile zips and filesystem snapshots."""
from __future__ import annotations

import stat
import struct
import warnings
import zipfile
from pathlib import Path

# Files a workspace holds that must never travel in an archive.
PLANTED = ("cert/client/col_x.key", "cert/client/col_x.crt", "cert/cert_chain.crt", "cert/client/col_x.csr",
           "src/stray.key", "src/stray.pem", "plan/agg.csr", "save/best.pbuf", "save/last.pbuf",
           "logs/x_metrics.txt", "data/x.npz", "local_state/tensor.db", "src/__pycache__/m.cpython-311.pyc")
FORBIDDEN_SUFFIXES = (".key", ".crt", ".csr", ".pem", ".srl", ".pyc")
FORBIDDEN_TOPS = ("cert", "data", "logs", "local_state")


def plant_site_files(ws: Path) -> None:
    """Create every kind of file an export must leave out."""
    for name in PLANTED:
        path = ws / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"secret " + name.encode())


def snapshot(root: Path) -> set[str]:
    """Every path under ``root`` (relative), to prove an import wrote nothing."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def zip_members(archive: Path) -> dict[str, bytes]:
    """Name -> content of every member."""
    with zipfile.ZipFile(archive) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def info(name: str, mode: int = stat.S_IFREG | 0o644) -> zipfile.ZipInfo:
    """A unix member header with the given file type and mode bits."""
    zi = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    zi.create_system = 3
    zi.external_attr = mode << 16
    zi.compress_type = zipfile.ZIP_DEFLATED
    return zi


def build_zip(target: Path, members: list[tuple[zipfile.ZipInfo | str, bytes]],
              compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """Write members in order, duplicates included (zipfile only warns about them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with zipfile.ZipFile(target, "w", compression=compression) as zf:
            for member, data in members:
                zf.writestr(member, data)
    return target


def with_extra(base: Path, target: Path, extra: list[tuple[zipfile.ZipInfo | str, bytes]],
               drop: tuple[str, ...] = ()) -> Path:
    """A copy of a real archive, minus ``drop``, plus hostile ``extra`` members."""
    kept: list[tuple[zipfile.ZipInfo | str, bytes]] = [
        (name, data) for name, data in zip_members(base).items() if name not in drop]
    return build_zip(target, kept + extra)


def replace_member(base: Path, target: Path, name: str, data: bytes) -> Path:
    """A copy of a real archive with one member's content replaced."""
    members = zip_members(base)
    members[name] = data
    return build_zip(target, list(members.items()))


def set_encrypted_flag(archive: Path, name: str) -> None:
    """Set the 'encrypted' bit of ``name`` in both headers (zipfile cannot write encrypted members)."""
    data = bytearray(archive.read_bytes())
    encoded = name.encode()
    for signature, flags_at, name_len_at, name_at in ((b"PK\x03\x04", 6, 26, 30), (b"PK\x01\x02", 8, 28, 46)):
        start = 0
        while (pos := data.find(signature, start)) >= 0:
            (length,) = struct.unpack_from("<H", data, pos + name_len_at)
            if bytes(data[pos + name_at:pos + name_at + length]) == encoded:
                (flags,) = struct.unpack_from("<H", data, pos + flags_at)
                struct.pack_into("<H", data, pos + flags_at, flags | 0x1)
            start = pos + 4
    archive.write_bytes(bytes(data))
