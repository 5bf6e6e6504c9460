"""Untrusted zips: every hostile shape is refused before anything is written."""
from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest

from fx_cli.archive.safezip import Limits, UnsafeArchive, check_members, extract, open_zip


def make_zip(path: Path, members: list[tuple[str, bytes, int | None]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


def snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("members, reason", [
    ([("/etc/evil", b"x", None)], "absolute path"),
    ([("a/../../evil", b"x", None)], "climbs out"),
    ([("link", b"/etc/passwd", stat.S_IFLNK | 0o777)], "symbolic link"),
    ([("dev", b"", stat.S_IFCHR | 0o600)], "device"),
    ([("a.txt", b"1", None), ("a.txt", b"2", None)], "appears twice"),
    ([("d/a.txt", b"1", None), ("./d/a.txt", b"2", None)], "'./d/a.txt' appears twice"),
    ([("d/a.txt", b"1", None), ("d//a.txt", b"2", None)], "'d//a.txt' appears twice"),
    ([("d/./a.txt", b"1", None), ("d/a.txt", b"2", None)], "'d/a.txt' appears twice"),
    ([("Plan.yaml", b"1", None), ("plan.yaml", b"2", None)], "differs only in case"),
    ([("c:evil", b"x", None)], "absolute path"),
    ([("back\\slash", b"x", None)], "backslash"),
    ([("a", b"file", None), ("a/b", b"x", None)], "is a file but"),
])
def test_hostile_members_are_refused_and_nothing_is_written(tmp_path, members, reason):
    archive = make_zip(tmp_path / "bad.zip", members)
    before = snapshot(tmp_path)
    with pytest.raises(UnsafeArchive, match=reason):
        extract(archive, tmp_path / "out")
    assert snapshot(tmp_path) == before


def test_size_limits_and_zip_bombs_are_refused(tmp_path):
    archive = make_zip(tmp_path / "bomb.zip", [("zeros", b"\0" * (8 * 2**20), None)])
    with pytest.raises(UnsafeArchive, match="zip bomb"):
        extract(archive, tmp_path / "out")
    with pytest.raises(UnsafeArchive, match="over the 1,000-byte limit"):
        extract(archive, tmp_path / "out", limits=Limits(max_member_bytes=1000))
    many = make_zip(tmp_path / "many.zip", [(f"f{i}", b"x" * 10, None) for i in range(5)])
    with pytest.raises(UnsafeArchive, match="add up to over 30 bytes"):
        extract(many, tmp_path / "out", limits=Limits(max_total_bytes=30))
    with pytest.raises(UnsafeArchive, match="5 members, over the limit of 3"):
        extract(many, tmp_path / "out", limits=Limits(max_members=3))
    assert not (tmp_path / "out").exists()


def test_not_a_zip_and_unexpected_members(tmp_path):
    (tmp_path / "junk.zip").write_bytes(b"not a zip at all")
    with pytest.raises(UnsafeArchive, match="not a valid zip"):
        extract(tmp_path / "junk.zip", tmp_path / "out")
    archive = make_zip(tmp_path / "pkg.zip", [("col_a.csr", b"csr", None), ("extra.sh", b"rm -rf", None)])
    with open_zip(archive) as zf, pytest.raises(UnsafeArchive, match="unexpected member 'extra.sh'"):
        check_members(archive, zf, Limits(), allowed=lambda name: name == "col_a.csr")
    ok = make_zip(tmp_path / "ok.zip", [("col_a.csr", b"csr", None)])
    with open_zip(ok) as zf:
        assert [i.filename for i in check_members(ok, zf, Limits(), allowed=lambda name: name == "col_a.csr")] == [
            "col_a.csr"]


def test_good_archive_extracts_into_a_new_target_only(tmp_path):
    archive = make_zip(tmp_path / "good.zip", [("plan/plan.yaml", b"a: 1", None), ("src/x.py", b"", None)])
    names = extract(archive, tmp_path / "out")
    assert sorted(names) == ["plan/plan.yaml", "src/x.py"]
    assert (tmp_path / "out" / "plan" / "plan.yaml").read_bytes() == b"a: 1"
    with pytest.raises(Exception, match="already exists"):
        extract(archive, tmp_path / "out")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no staging left behind
