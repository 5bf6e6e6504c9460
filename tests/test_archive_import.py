"""``fx workspace import``: a second site gets the same plan and code, verified by hash."""
from __future__ import annotations

import filecmp
import stat
from pathlib import Path

import pytest

from fx_cli import __version__
from fx_cli.plan import load_plan
from tests.archive_helpers import build_zip, plant_site_files, replace_member, snapshot, zip_members


@pytest.fixture
def exported(make_workspace, fx, tmp_path, monkeypatch) -> tuple[Path, Path]:
    """(workspace, archive) after a real export; the cwd is then a fresh 'second site' folder."""
    ws = make_workspace()
    plant_site_files(ws)
    (ws / "src" / "model.py").write_text("WEIGHTS = 3\n")
    res = fx("workspace", "export")
    assert res.exit_code == 0, res.all
    site = tmp_path / "site2"
    site.mkdir()
    monkeypatch.chdir(site)
    return ws, ws / "ws.zip"


def test_import_at_a_second_site_gives_identical_plan_hash_and_src(exported, fx):
    ws, archive = exported
    res = fx("workspace", "import", "--archive", str(archive), "--prefix", "imported", "-s")
    assert res.exit_code == 0, res.all
    site_ws = Path("imported").resolve()
    original = load_plan(ws / "plan" / "plan.yaml")
    copy = load_plan(site_ws / "plan" / "plan.yaml")
    assert copy.hash == original.hash
    assert f"federation: {original.federation_id}" in res.output
    assert original.hash in res.output
    cmp = filecmp.dircmp(ws / "src", site_ws / "src", ignore=["__pycache__", "stray.key", "stray.pem"])
    assert not cmp.diff_files and not cmp.left_only and not cmp.right_only
    assert (site_ws / "save" / "init.pbuf").read_bytes() == (ws / "save" / "init.pbuf").read_bytes()
    assert not list((site_ws / "cert").iterdir()) and not list((site_ws / "data").iterdir())
    assert stat.S_IMODE((site_ws / "cert").stat().st_mode) == 0o700
    frozen = site_ws / "plan" / f"plan_{original.hash[:8]}.yaml"
    assert stat.S_IMODE(frozen.stat().st_mode) == 0o444


def test_import_prints_next_steps_and_how_to_install_later(exported, fx):
    _, archive = exported
    res = fx("workspace", "import", "--archive", str(archive))
    assert res.exit_code == 0, res.all
    for step in ("fx collaborator create -n NAME -d", "fx collaborator generate-cert-request -n NAME",
                 "fx collaborator start -n NAME", "requirements not installed", "-m pip install -r"):
        assert step in res.output, step
    assert res.output.index("generate-cert-request") < res.output.index("collaborator start")
    # The archive pins fx-federated==<version> (fx itself); pip must not be told to fetch it.
    assert "after deleting its 'fx-federated==' line" in " ".join(res.output.split())


def test_import_defaults_to_the_archive_stem_and_never_overwrites(exported, fx):
    _, archive = exported
    assert fx("workspace", "import", "--archive", str(archive), "-s").exit_code == 0
    assert Path("ws", "plan", "plan.yaml").is_file()
    marker = Path("ws", "src", "model.py")
    marker.write_text("LOCAL EDIT\n")
    again = fx("workspace", "import", "--archive", str(archive), "-s")
    assert again.exit_code == 1
    assert "ws already exists" in again.stderr and "--prefix" in again.stderr
    assert marker.read_text() == "LOCAL EDIT\n"


def test_import_refuses_an_existing_empty_folder(exported, fx):
    _, archive = exported
    Path("target").mkdir()
    res = fx("workspace", "import", "--archive", str(archive), "--prefix", "target", "-s")
    assert res.exit_code == 1 and "target already exists" in res.stderr
    assert not list(Path("target").iterdir())


def test_plan_edited_after_export_is_rejected_and_nothing_written(exported, fx, tmp_path):
    _, archive = exported
    plan_text = zip_members(archive)["plan/plan.yaml"].decode()
    tampered = replace_member(archive, tmp_path / "tampered.zip", "plan/plan.yaml",
                              plan_text.replace("rounds_to_train: 3", "rounds_to_train: 4").encode())
    before = snapshot(tmp_path)
    res = fx("workspace", "import", "--archive", str(tampered), "--prefix", "t", "-s")
    assert res.exit_code == 1
    assert "plan hash mismatch: plan/plan.yaml hashes to plan_" in res.stderr
    assert snapshot(tmp_path) == before


def test_frozen_plan_altered_under_its_name_is_rejected(exported, fx, tmp_path):
    _, archive = exported
    members = zip_members(archive)
    frozen = next(n for n in members if n.startswith("plan/plan_"))
    text = members[frozen].decode().replace("rounds_to_train: 3", "rounds_to_train: 9")
    bad = replace_member(archive, tmp_path / "bad.zip", frozen, text.encode())
    before = snapshot(tmp_path)
    res = fx("workspace", "import", "--archive", str(bad), "--prefix", "t", "-s")
    assert res.exit_code == 1
    assert f"{frozen} does not hash to its name" in res.stderr
    assert snapshot(tmp_path) == before


def test_archive_without_frozen_plan_cannot_be_verified(exported, fx, tmp_path):
    _, archive = exported
    members = {n: d for n, d in zip_members(archive).items() if not n.startswith("plan/plan_")}
    bare = build_zip(tmp_path / "bare.zip", list(members.items()))
    res = fx("workspace", "import", "--archive", str(bare), "--prefix", "t", "-s")
    assert res.exit_code == 1 and "has no frozen plan" in res.stderr
    assert not Path("t").exists()


def test_invalid_plan_in_archive_is_reported_with_the_archive_member_name(exported, fx, tmp_path):
    _, archive = exported
    bad = replace_member(archive, tmp_path / "bad.zip", "plan/plan.yaml", b"aggregator: [unclosed\n")
    res = fx("workspace", "import", "--archive", str(bad), "--prefix", "t", "-s")
    assert res.exit_code == 1
    assert "plan/plan.yaml is not a valid plan" in res.stderr and "not valid YAML" in res.stderr
    assert "fx-import-plan-" not in res.stderr  # no temporary paths leak into the message
    assert not Path("t").exists()


def test_archive_from_another_fx_version_warns(exported, fx, tmp_path):
    _, archive = exported
    req = zip_members(archive)["requirements.txt"].decode()
    req = req.replace(f"fx-federated=={__version__}", "fx-federated==0.0.1")
    other = replace_member(archive, tmp_path / "other.zip", "requirements.txt", req.encode())
    res = fx("workspace", "import", "--archive", str(other), "--prefix", "t", "-s")
    assert res.exit_code == 0, res.all
    assert f"exported with fx 0.0.1; this is fx {__version__}" in res.stderr


def test_missing_archive_is_named(tmp_path, monkeypatch, fx):
    monkeypatch.chdir(tmp_path)
    res = fx("workspace", "import", "--archive", "nope.zip", "-s")
    assert res.exit_code == 1 and "nope.zip: no such file" in res.stderr
    assert snapshot(tmp_path) == set()


def test_an_archive_over_the_size_limits_names_the_option_that_accepts_it(exported, fx, tmp_path):
    ws, archive = exported
    res = fx("workspace", "import", "--archive", str(archive), "--prefix", "small", "-s", "--max-gib", "0.000001")
    assert res.exit_code == 1 and "over the 1,073-byte limit" in res.stderr and "--max-gib N" in res.stderr
    assert not Path("small").exists()
    res = fx("workspace", "import", "--archive", str(archive), "--prefix", "roomy", "-s", "--max-gib", "0.5")
    assert res.exit_code == 0, res.all
    assert fx("workspace", "import", "--archive", str(archive), "--prefix", "x", "--max-gib", "0").exit_code == 1


def test_export_says_when_the_sites_need_a_higher_import_limit():
    from fx_cli.workspace.export import size_notes
    from fx_cli.workspace.import_ import import_limits

    members = {"save/init.pbuf": b"\0" * 3000, "plan/plan.yaml": b"x" * 100}
    (note,) = size_notes(members, import_limits(2000 / 1024 ** 3))
    assert note.startswith("save/init.pbuf is 3,000 bytes (3,100 in all), over the default size limits")
    assert note.endswith("must import it with --max-gib 1")
    assert size_notes(members) == []


def test_archive_without_requirements_imports_and_says_there_is_nothing_to_install(exported, fx, tmp_path):
    from tests.archive_helpers import with_extra

    _, archive = exported
    bare = with_extra(archive, tmp_path / "bare.zip", [], drop=("requirements.txt",))
    res = fx("workspace", "import", "--archive", str(bare), "--prefix", "bare", "--install")
    assert res.exit_code == 0, res.all
    assert "the archive has no requirements.txt; nothing to install" in res.output
