"""``fx workspace export``: what goes into the archive, what stays out, and the pinned requirements."""
from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from fx_cli import __version__
from fx_cli.plan import load_plan
from tests.archive_helpers import (FORBIDDEN_SUFFIXES, FORBIDDEN_TOPS, PLANTED, plant_site_files,
                                   zip_members)


def test_export_holds_plan_src_init_model_and_requirements_only(make_workspace, fx):
    ws = make_workspace()
    plant_site_files(ws)
    res = fx("workspace", "export")
    assert res.exit_code == 0, res.all
    plan_hash = load_plan("plan/plan.yaml").hash
    names = set(zip_members(ws / "ws.zip"))
    assert names == {".workspace", "requirements.txt", "save/init.pbuf", "src/__init__.py", "plan/plan.yaml",
                     "plan/cols.yaml", "plan/data.yaml", f"plan/plan_{plan_hash[:8]}.yaml"}
    for name in names:
        assert not name.endswith(FORBIDDEN_SUFFIXES), name
        assert name.split("/")[0] not in FORBIDDEN_TOPS, name
        assert "__pycache__" not in name and name not in PLANTED, name


def test_export_prints_what_went_in_and_what_was_left_out(make_workspace, fx):
    ws = make_workspace()
    plant_site_files(ws)
    res = fx("workspace", "export")
    assert res.exit_code == 0, res.all
    included, left_out = res.output.split("included:")[1].split("left out:")
    assert "save/init.pbuf" in included and "src/__init__.py" in included
    for expected in ("cert/ (4 files): certificates and private keys", "data/ (1 file): data never leaves",
                     "logs/ (1 file)", "local_state/ (1 file)", "save/best.pbuf: trained", "save/last.pbuf: trained",
                     "src/stray.key: certificate, key", "src/stray.pem", "plan/agg.csr", "src/__pycache__/: Python"):
        assert expected in left_out, (expected, left_out)
    assert f"fx-federated=={__version__}" in res.output


def test_export_refuses_an_uninitialised_plan_and_writes_nothing(make_workspace, fx):
    ws = make_workspace(initialize=False)
    res = fx("workspace", "export")
    assert res.exit_code == 1
    assert "not initialised" in res.stderr and "fx plan initialize" in res.stderr
    assert not (ws / "ws.zip").exists()
    assert not list((ws / "plan").glob("plan_*.yaml"))


def test_export_outside_a_workspace_names_the_missing_plan(tmp_path, monkeypatch, fx):
    monkeypatch.chdir(tmp_path)
    res = fx("workspace", "export")
    assert res.exit_code == 1
    assert "plan/plan.yaml not found" in res.stderr and "workspace root" in res.stderr


def test_export_requirements_keep_own_lines_and_pin_fx_and_numpy(make_workspace, fx):
    ws = make_workspace()
    (ws / "requirements.txt").write_text("# ours\nrich>=12\nnumpy>=1.0\n")
    res = fx("workspace", "export", "--output", "out/site.zip")
    assert res.exit_code == 0, res.all
    lines = zip_members(ws / "out" / "site.zip")["requirements.txt"].decode().splitlines()
    assert "rich>=12" in lines and "# ours" in lines
    assert "numpy>=1.0" not in lines
    assert f"numpy=={importlib.metadata.version('numpy')}" in lines
    assert f"fx-federated=={__version__}" in lines
    assert not any(line.startswith("fx==") for line in lines)  # PyPI's "fx" is another project
    assert "'numpy>=1.0' replaced by the exact pin" in res.stderr


def test_export_pins_frameworks_imported_by_src_without_importing_them(make_workspace, tmp_path):
    ws = make_workspace()
    (ws / "src" / "model.py").write_text(
        "import os\n\ndef build():\n    import keras\n    from tensorflow import nn\n    import not_installed_pkg\n")
    code = ("import sys, json; from click.testing import CliRunner; from fx_cli.cli.main import cli;"
            "r = CliRunner().invoke(cli, ['workspace', 'export']);"
            "print(json.dumps([r.exit_code, r.output + r.stderr, 'tensorflow' in sys.modules, 'keras' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ws, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "FQDN": "localhost"})
    exit_code, output, tf_loaded, keras_loaded = json.loads(out.stdout.splitlines()[-1])
    assert exit_code == 0, output
    assert not tf_loaded and not keras_loaded
    lines = zip_members(ws / "ws.zip")["requirements.txt"].decode().splitlines()
    assert f"keras=={importlib.metadata.version('keras')}" in lines
    tf_dist = importlib.metadata.packages_distributions()["tensorflow"][0]
    assert f"{tf_dist.replace('_', '-').lower()}=={importlib.metadata.version(tf_dist)}" in lines
    assert "'not_installed_pkg' is imported by the workspace code but not installed here" in output


def test_export_is_deterministic_and_refuses_to_overwrite_without_force(make_workspace, fx):
    ws = make_workspace()
    assert fx("workspace", "export").exit_code == 0
    first = (ws / "ws.zip").read_bytes()
    again = fx("workspace", "export")
    assert again.exit_code == 1 and "already exists" in again.stderr and "--force" in again.stderr
    os.utime(ws / "src" / "__init__.py", (1, 1))  # timestamps must not leak into the archive
    assert fx("workspace", "export", "--force").exit_code == 0
    assert (ws / "ws.zip").read_bytes() == first
    with zipfile.ZipFile(ws / "ws.zip") as zf:
        assert zf.namelist() == sorted(zf.namelist())
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_export_leaves_out_stale_frozen_plans_and_symlinks(make_workspace, fx, tmp_path):
    ws = make_workspace()
    stale = ws / "plan" / "plan_0badf00d.yaml"
    stale.write_text("old: plan\n")
    outside = tmp_path / "outside_secret.txt"
    outside.write_text("do not ship")
    (ws / "src" / "link.txt").symlink_to(outside)
    res = fx("workspace", "export")
    assert res.exit_code == 0, res.all
    names = set(zip_members(ws / "ws.zip"))
    assert "plan/plan_0badf00d.yaml" not in names and "src/link.txt" not in names
    assert "plan/plan_0badf00d.yaml: frozen copy of an older plan" in res.output
    assert "src/link.txt: symbolic link" in res.output


def test_export_marks_the_frozen_plan_read_only(make_workspace, fx):
    ws = make_workspace()
    assert fx("workspace", "export").exit_code == 0
    frozen = f"plan/plan_{load_plan('plan/plan.yaml').hash[:8]}.yaml"
    with zipfile.ZipFile(ws / "ws.zip") as zf:
        modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in zf.infolist()}
    assert modes[frozen] == 0o444
    assert modes["plan/plan.yaml"] == 0o644


def test_export_without_a_workspace_marker_writes_a_default_one(make_workspace, fx):
    ws = make_workspace()
    (ws / ".workspace").unlink()
    res = fx("workspace", "export")
    assert res.exit_code == 0, res.all
    assert zip_members(ws / "ws.zip")[".workspace"] == b"current_plan_name: default\n"
    assert ".workspace was missing" in res.stderr


def test_export_leaves_out_private_keys_whatever_their_file_name(make_workspace, fx, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    ws = make_workspace()
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    (ws / "src" / "keys").mkdir()
    (ws / "src" / "keys" / "id_ecdsa").write_bytes(pem)
    # The block straddles the scanner's 1 MiB chunk boundary.
    (ws / "src" / "settings.py").write_bytes(b"#" * (1024 * 1024 - 20) + b"\nKEY = '''" + pem + b"'''\n")
    (ws / "plan" / "notes.txt").write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn...\n")
    res = fx("workspace", "export")
    assert res.exit_code == 0, res.all
    members = zip_members(ws / "ws.zip")
    assert not {"src/keys/id_ecdsa", "src/settings.py", "plan/notes.txt"} & set(members)
    assert not any(b"PRIVATE KEY" in data for data in members.values())
    for name in ("src/keys/id_ecdsa", "src/settings.py", "plan/notes.txt"):
        assert f"{name}: holds a private key" in res.output, res.output


def _dist_info(folder: Path, name: str, version: str) -> None:
    """An installed distribution ``name`` at ``version`` providing the module ``name`` (metadata only)."""
    (folder / name).mkdir(parents=True)
    (folder / name / "__init__.py").write_text("")
    info = folder / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "top_level.txt").write_text(f"{name}\n")
    (info / "RECORD").write_text("")


def _wheel(folder: Path, name: str, version: str) -> None:
    """A pure-Python wheel of ``name`` ``version`` in ``folder`` (a one-package index for pip --find-links)."""
    info = f"{name}-{version}.dist-info"
    with zipfile.ZipFile(folder / f"{name}-{version}-py3-none-any.whl", "w") as whl:
        whl.writestr(f"{name}/__init__.py", "")
        whl.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        whl.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        whl.writestr(f"{info}/RECORD", "")


def test_export_pins_a_local_build_by_its_public_version_which_another_site_can_install(make_workspace, tmp_path):
    """PyTorch's CPU wheels are versioned ``2.13.0+cpu``: no index but PyTorch's serves that exact pin, so the
    archive pins ``==2.13.0`` (satisfied by any 2.13.0 build, the local one too) and says why."""
    site = tmp_path / "site"
    _dist_info(site, "fxlocalbuild", "1.4.0+cpu")
    ws = make_workspace()
    (ws / "src" / "model.py").write_text("import fxlocalbuild\n")
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "FQDN": "localhost", "PYTHONPATH": os.pathsep.join([str(site), str(repo)])}
    code = ("import json; from click.testing import CliRunner; from fx_cli.cli.main import cli;"
            "r = CliRunner().invoke(cli, ['workspace', 'export']); print(json.dumps([r.exit_code, r.output + r.stderr]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ws, capture_output=True, text=True, timeout=60, env=env)
    exit_code, output = json.loads(out.stdout.splitlines()[-1])
    assert exit_code == 0, output
    lines = zip_members(ws / "ws.zip")["requirements.txt"].decode().splitlines()
    assert "fxlocalbuild==1.4.0" in lines, output
    assert not any("+cpu" in line for line in lines)
    assert "fxlocalbuild 1.4.0+cpu is a local build ('+cpu'" in " ".join(output.split())
    # Another site, whose index has only the public build: the pin installs; the local one could not.
    index = tmp_path / "index"
    index.mkdir()
    _wheel(index, "fxlocalbuild", "1.4.0")
    for pin, ok in (("fxlocalbuild==1.4.0", True), ("fxlocalbuild==1.4.0+cpu", False)):
        res = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--find-links",
                              str(index), "--disable-pip-version-check", pin], capture_output=True, text=True,
                             timeout=120, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
        assert (res.returncode == 0) is ok, res.stdout + res.stderr
    # Here, where the local build is installed, the public pin is already satisfied: pip changes nothing.
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index",
                          "--disable-pip-version-check", "fxlocalbuild==1.4.0"], capture_output=True, text=True,
                         timeout=120, env=env)
    assert res.returncode == 0 and "already satisfied" in res.stdout, res.stdout + res.stderr
