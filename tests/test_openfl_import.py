"""`fx workspace import` of an archive OpenFL 1.9 exported: it imports, says what it translated, and federates."""
from __future__ import annotations

import numpy as np

from fx_cli.tensors.pbuf import read_model
from tests.openfl_helpers import certify_all, openfl_export_archive, reference_linear_fedavg
from tests.runtime_helpers import final_model, free_port, fx_in, run_federation


def test_openfl_archive_imports_reports_its_translations_and_runs_a_mtls_federation(tmp_path):
    archive = openfl_export_archive(tmp_path / "openfl_ws.zip", free_port())
    out = fx_in(tmp_path, "workspace", "import", "--archive", str(archive), "--prefix", "site", "--no-install")
    flat = " ".join(out.split())
    assert "an OpenFL workspace; translated for fx:" in out
    assert "aggregator.template openfl.component.aggregator.Aggregator -> fx_cli.aggregator.Aggregator" in flat
    assert "straggler_handling_policy.template openfl.component.WaitForAllPolicy" in flat
    assert "src/dataloader.py, src/taskrunner.py import openfl" in flat
    assert "fx plan initialize -i save/init.pbuf" in flat
    ws = tmp_path / "site"
    assert not (ws / "data").exists() or not any((ws / "data").iterdir())
    assert "# openfl==1.9.0" in (ws / "requirements.txt").read_text()
    assert "numpy" in (ws / "requirements.txt").read_text().splitlines()

    fx_in(ws, "plan", "initialize", "-i", "save/init.pbuf")  # OpenFL's weights, now with fx's record
    assert sorted(read_model(ws / "save" / "init.pbuf").tensors) == ["linear/b", "linear/w"]
    certify_all(ws, ["one", "two"])
    run = run_federation(ws, ["one", "two"], timeout=300)
    assert run.codes == {"aggregator": 0, "one": 0, "two": 0}, run.outputs
    got, want = final_model(ws), reference_linear_fedavg([1, 2], rounds=3)
    for name, array in want.items():
        np.testing.assert_allclose(got[name], array, rtol=1e-5, atol=1e-6, err_msg=name)


def test_openfl_archive_whose_plan_changed_after_export_is_refused(tmp_path):
    import zipfile

    good = openfl_export_archive(tmp_path / "good.zip", free_port())
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "plan/plan.yaml":
                data = data.replace(b"rounds_to_train: 3", b"rounds_to_train: 30")
            dst.writestr(info, data)
    from click.testing import CliRunner

    from fx_cli.cli.main import cli

    res = CliRunner().invoke(cli, ["workspace", "import", "--archive", str(bad), "--prefix", str(tmp_path / "x"),
                                   "--no-install"])
    assert res.exit_code == 1
    assert "differs from OpenFL's frozen plan" in res.output and not (tmp_path / "x").exists()
