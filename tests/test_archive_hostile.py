"""Hostile workspace archives: each is refused with its own message and nothing is written."""
from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest

from fx_cli.archive.safezip import Limits
from fx_cli.errors import FxError
from fx_cli.workspace.import_ import import_workspace
from tests.archive_helpers import (build_zip, info, set_encrypted_flag, snapshot, with_extra, zip_members)
from tests.conftest import run_fx


@pytest.fixture(scope="module")
def good_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real export of a fresh numpy/synthetic workspace (made once for this module)."""
    root = tmp_path_factory.mktemp("origin")
    with pytest.MonkeyPatch.context() as mp:
        assert run_fx("workspace", "create", "--prefix", str(root / "ws"), "--template", "numpy/synthetic").exit_code == 0
        mp.chdir(root / "ws")
        assert run_fx("plan", "initialize", "-a", "localhost").exit_code == 0
        res = run_fx("workspace", "export")
        assert res.exit_code == 0, res.all
    return root / "ws" / "ws.zip"


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The importing site: an empty cwd inside tmp_path, so any stray write shows in a snapshot."""
    where = tmp_path / "site"
    where.mkdir()
    monkeypatch.chdir(where)
    return where


def _refused(archive: Path, root: Path, expected: str) -> None:
    """Import through the CLI: exit 1, ``expected`` in the message, and the filesystem unchanged."""
    before = snapshot(root)
    res = run_fx("workspace", "import", "--archive", str(archive), "--prefix", "target", "-s")
    assert res.exit_code == 1, res.all
    assert expected in res.stderr, res.stderr
    assert snapshot(root) == before
    assert not Path("target").exists()


def test_control_the_unmodified_archive_imports(good_archive, site):
    res = run_fx("workspace", "import", "--archive", str(good_archive), "--prefix", "target", "-s")
    assert res.exit_code == 0, res.all


HOSTILE = {
    "absolute path": ([(info("{tmp}/abs_evil.txt"), b"x")], "has an absolute path"),
    "dot-dot": ([(info("src/../../escaped.txt"), b"x")], "climbs out of the target with '..'"),
    "symlink": ([(info("src/link", stat.S_IFLNK | 0o777), b"/etc/passwd")], "is a symbolic link"),
    "character device": ([(info("src/dev", stat.S_IFCHR | 0o644), b"")], "is a device, FIFO or other special file"),
    "fifo": ([(info("src/pipe", stat.S_IFIFO | 0o644), b"")], "is a device, FIFO or other special file"),
    "duplicate": ([(info("src/__init__.py"), b"import os  # second copy")], "appears twice"),
    "case collision": ([(info("src/__INIT__.py"), b"x")], "differs only in case"),
    "planted CA chain": ([(info("cert/cert_chain.crt"), b"-----BEGIN CERTIFICATE-----")],
                         "certificates and private keys stay at each site"),
    "planted key in src": ([(info("src/col_x.key"), b"-----BEGIN PRIVATE KEY-----")],
                           "certificate, key or certificate request"),
    "data member": ([(info("data/leak.csv"), b"1,2")], "data never leaves its site"),
    "unexpected top-level file": ([(info("setup.py"), b"import os")], "is not part of a workspace archive"),
    "file used as folder": ([(info("src/model"), b"x"), (info("src/model/x.py"), b"y")],
                            "is a file but 'src/model/x.py' needs it to be a folder"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_member_is_refused_with_its_own_message(case, good_archive, site, tmp_path):
    extra, expected = HOSTILE[case]
    for member, _ in extra:  # absolute names point into tmp_path, so the snapshot would see an escape
        member.filename = member.filename.format(tmp=tmp_path)
    hostile = with_extra(good_archive, tmp_path / "hostile.zip", extra)
    _refused(hostile, tmp_path, expected)


def test_zip_bomb_member_is_refused_by_its_compression_ratio(good_archive, site, tmp_path):
    bomb = with_extra(good_archive, tmp_path / "bomb.zip", [(info("src/bomb.bin"), b"\0" * (8 * 1024 * 1024))])
    assert bomb.stat().st_size < 100_000
    _refused(bomb, tmp_path, "(zip bomb?)")


def test_member_over_the_size_limit_is_refused(good_archive, site, tmp_path):
    big = with_extra(good_archive, tmp_path / "big.zip", [(info("src/big.bin"), b"\1" * 10_000)])
    before = snapshot(tmp_path)
    with pytest.raises(FxError, match="'src/big.bin' is 10,000 bytes, over the 8,192-byte limit"):
        import_workspace(big, Path("target"), limits=Limits(max_member_bytes=8192))
    assert snapshot(tmp_path) == before


def test_members_over_the_total_size_limit_are_refused(good_archive, site, tmp_path):
    total = sum(len(d) for d in zip_members(good_archive).values())
    before = snapshot(tmp_path)
    with pytest.raises(FxError, match="members add up to over"):
        import_workspace(good_archive, Path("target"), limits=Limits(max_total_bytes=total - 1))
    assert snapshot(tmp_path) == before


def test_too_many_members_are_refused(good_archive, site, tmp_path):
    many = with_extra(good_archive, tmp_path / "many.zip", [(info(f"src/m{i}.py"), b"") for i in range(50)])
    with pytest.raises(FxError, match="members, over the limit of 20"):
        import_workspace(many, Path("target"), limits=Limits(max_members=20))
    assert not Path("target").exists()


@pytest.mark.parametrize("missing", ["plan/plan.yaml", ".workspace"])
def test_archive_that_is_not_a_workspace_is_refused(missing, good_archive, site, tmp_path):
    partial = with_extra(good_archive, tmp_path / "partial.zip", [], drop=(missing,))
    _refused(partial, tmp_path, f"not an fx workspace archive: it has no {missing}")


def test_unrelated_zip_is_not_a_workspace(site, tmp_path):
    other = build_zip(tmp_path / "photos.zip", [("holiday.jpg", b"\xff\xd8"), ("notes.txt", b"hi")])
    _refused(other, tmp_path, "not an fx workspace archive: it has no plan/plan.yaml")


def test_file_that_is_not_a_zip_is_refused(site, tmp_path):
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"this is not a zip file at all" * 10)
    _refused(fake, tmp_path, "not a valid zip file")


def test_encrypted_member_is_refused(good_archive, site, tmp_path):
    locked = with_extra(good_archive, tmp_path / "locked.zip", [(info("src/secret.py"), b"x = 1")])
    set_encrypted_flag(locked, "src/secret.py")
    with zipfile.ZipFile(locked) as zf:
        assert zf.getinfo("src/secret.py").flag_bits & 0x1
    _refused(locked, tmp_path, "member 'src/secret.py' is encrypted")
