"""Installing an imported workspace's requirements with pip (offline: ``--no-index``)."""
from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from fx_cli.errors import FxError
from fx_cli.workspace.requirements import FX_DIST, merge_requirements, pip_install, requirement_name

NUMPY = f"numpy=={importlib.metadata.version('numpy')}"


def test_requirements_already_satisfied_install_offline_and_report_progress(tmp_path):
    req = tmp_path / "requirements.txt"
    # fx-federated==99.0 does not exist anywhere (nor does fx==99.0, the pin of archives made before the
    # rename): they pass only because fx's own pin never reaches pip.
    req.write_text(f"# pinned\n{NUMPY}\nfx-federated==99.0\nfx==99.0\n")
    lines: list[str] = []
    pip_install(req, ["--no-index"], on_line=lines.append)
    assert any("Requirement already satisfied: numpy" in line for line in lines), lines
    assert not any("fx==99.0" in line or "fx-federated" in line for line in lines)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["requirements.txt"]  # temporary file removed


def test_unsatisfiable_requirement_fails_with_pips_reason(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text(f"{NUMPY}\nfx-archive-test-no-such-package==1.0\n")
    with pytest.raises(FxError) as caught:
        pip_install(req, ["--no-index"])
    err = caught.value
    assert f"pip could not install the requirements in {req}" in err.message
    assert "fx-archive-test-no-such-package" in err.message
    assert "No matching distribution" in err.message
    assert "-m pip install -r" in (err.hint or "") and "the workspace itself was imported" in (err.hint or "")
    assert "after deleting its 'fx-federated==' line" in (err.hint or "")


def test_import_with_install_runs_pip_and_shows_its_output(make_workspace, fx, tmp_path, monkeypatch):
    ws = make_workspace()
    assert fx("workspace", "export").exit_code == 0
    monkeypatch.chdir(tmp_path)
    res = fx("workspace", "import", "--archive", str(ws / "ws.zip"), "--prefix", "site", "--install",
             "--pip-arg=--no-index")
    assert res.exit_code == 0, res.all
    assert "pip: Requirement already satisfied: numpy" in res.stderr
    assert "installed the requirements of site/requirements.txt" in res.output
    assert "next steps:" in res.output


def test_import_install_failure_is_exit_1_with_a_clear_message(make_workspace, fx, tmp_path, monkeypatch):
    ws = make_workspace()
    (ws / "requirements.txt").write_text("fx-archive-test-no-such-package>=1\n")
    assert fx("workspace", "export").exit_code == 0
    monkeypatch.chdir(tmp_path)
    res = fx("workspace", "import", "--archive", str(ws / "ws.zip"), "--prefix", "site", "--install",
             "--pip-arg=--no-index")
    assert res.exit_code == 1
    assert "pip could not install the requirements in site/requirements.txt" in res.stderr
    assert "fx-archive-test-no-such-package" in res.stderr
    assert Path("site", "plan", "plan.yaml").is_file()  # the import itself stands; only pip failed


def test_no_tty_means_no_install_unless_asked(make_workspace, fx, tmp_path, monkeypatch):
    ws = make_workspace()
    (ws / "requirements.txt").write_text("fx-archive-test-no-such-package>=1\n")
    assert fx("workspace", "export").exit_code == 0
    monkeypatch.chdir(tmp_path)
    res = fx("workspace", "import", "--archive", str(ws / "ws.zip"), "--prefix", "site")
    assert res.exit_code == 0, res.all
    assert "requirements not installed" in res.output and "pip:" not in res.stderr


def test_the_pinned_fx_distribution_is_the_installed_one_and_not_pypis_fx():
    assert FX_DIST in importlib.metadata.packages_distributions()["fx_cli"]
    assert FX_DIST != "fx"


@pytest.mark.parametrize("line, name", [("numpy>=1.2", "numpy"), ("Tensorflow_CPU==2.21; python_version>'3'",
                                                                   "tensorflow-cpu"),
                                        ("keras [tf]", "keras"), ("# comment", None), ("-r other.txt", None),
                                        ("git+https://example.invalid/x.git", None), ("fx", "fx")])
def test_requirement_names_are_parsed_and_normalised(line, name):
    assert requirement_name(line) == name


def test_merge_replaces_user_lines_for_pinned_packages_and_keeps_the_rest():
    text, notes = merge_requirements("scipy>=1\nNumPy<2\n-r extra.txt\n", {"numpy": "2.0.0"})
    lines = text.splitlines()
    assert lines[:2] == ["scipy>=1", "-r extra.txt"]
    assert "numpy==2.0.0" in lines and "NumPy<2" not in lines
    assert notes[0] == "requirements.txt: 'NumPy<2' replaced by the exact pin 'numpy==2.0.0'"
    assert "'-r extra.txt' names another file, which the archive does not carry" in notes[1]
