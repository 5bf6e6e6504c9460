"""Every shipped template: create, initialise, and the init file round-trips."""
from __future__ import annotations

import stat

import numpy as np
import pytest

from fx_cli.plan import load_plan
from fx_cli.runners.build import build_runner
from fx_cli.tensors.pbuf import read_model, write_model
from fx_cli.workspace.templates import list_templates

WORKSPACE_DIRS = ("plan", "src", "save", "logs", "data", "cert", "local_state")


def test_the_four_required_templates_ship():
    assert {"keras/digits", "keras/mnist", "numpy/synthetic", "no-op"} <= set(list_templates())


@pytest.mark.parametrize("template", list_templates())
def test_template_creates_initialises_and_round_trips(template, make_workspace, tmp_path):
    ws = make_workspace(template)
    for name in WORKSPACE_DIRS:
        assert (ws / name).is_dir(), name
    assert (ws / "requirements.txt").is_file() and (ws / ".workspace").is_file()
    plan = load_plan("plan/plan.yaml")
    assert plan.network.agg_addr == "localhost"
    init = read_model(ws / "save" / "init.pbuf")
    fresh = build_runner(plan).get_tensors()
    assert list(init.tensors) == list(fresh)
    for name, array in fresh.items():
        np.testing.assert_array_equal(init.tensors[name], array.astype(np.float32))
    copy = tmp_path / "copy.pbuf"
    assert init.trailer is not None and init.trailer.spec.startswith("model-sections-sha256:")
    write_model(copy, init.tensors, spec=init.trailer.spec)
    again = read_model(copy)
    assert all(np.array_equal(again.tensors[n], init.tensors[n]) for n in init.tensors)
    assert copy.read_bytes() == (ws / "save" / "init.pbuf").read_bytes()


def test_create_refuses_a_non_empty_prefix_unless_forced(fx, tmp_path):
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    res = fx("workspace", "create", "--prefix", str(target), "--template", "no-op")
    assert res.exit_code == 1 and "not empty" in res.stderr and "--force" in res.stderr
    res = fx("workspace", "create", "--prefix", str(target), "--template", "no-op", "--force")
    assert res.exit_code == 0, res.all
    assert (target / "keep.txt").read_text() == "mine" and (target / "plan" / "plan.yaml").exists()


def test_created_plan_is_merged_self_contained_and_cert_dir_private(make_workspace):
    ws = make_workspace("numpy/synthetic", initialize=False)
    text = (ws / "plan" / "plan.yaml").read_text()
    assert "defaults:" not in text and "rounds_to_train: 3" in text
    assert text.startswith("# numpy/synthetic: ") and "# Merged from template 'numpy/synthetic'" in text
    assert stat.S_IMODE((ws / "cert").stat().st_mode) == 0o700


def test_initialize_writes_address_and_freeze_is_read_only(fx, make_workspace):
    ws = make_workspace("no-op", initialize=False)
    res = fx("plan", "freeze")
    assert res.exit_code == 1 and "fx plan initialize" in res.stderr
    res = fx("plan", "initialize", "-a", "agg.example.org")
    assert res.exit_code == 0, res.all
    assert load_plan("plan/plan.yaml").network.agg_addr == "agg.example.org"
    assert "set network.settings.agg_addr to agg.example.org in plan/plan.yaml" in res.output
    assert "next: fx workspace certify" in res.output
    assert "set network.settings.agg_addr" not in fx("plan", "initialize").output  # nothing to change
    res = fx("plan", "freeze")
    assert res.exit_code == 0, res.all
    (frozen,) = (ws / "plan").glob("plan_*.yaml")
    assert frozen.name == f"plan_{load_plan('plan/plan.yaml').hash[:8]}.yaml"
    assert not frozen.stat().st_mode & 0o222
    assert "already frozen" in fx("plan", "freeze").output


def test_initialize_from_an_existing_pbuf_keeps_its_round(fx, make_workspace, tmp_path):
    make_workspace("numpy/synthetic", initialize=False)
    start = {f"w{i}": np.full(250, i, np.float32) for i in range(4)}
    write_model(tmp_path / "start.pbuf", start, round_number=5)
    res = fx("plan", "initialize", "-a", "localhost", "-i", str(tmp_path / "start.pbuf"))
    assert res.exit_code == 0, res.all
    init = read_model("save/init.pbuf")
    assert init.round_number == 5 and init.tensors["w3"][0] == 3.0


def test_model_info_lists_tensors(fx, make_workspace):
    make_workspace("numpy/synthetic")
    res = fx("model", "info", "-i", "save/init.pbuf")
    assert res.exit_code == 0, res.all
    assert "w0" in res.output and "4 tensors, 1,000 values" in res.output and "round 0" in res.output


def test_plan_print_shows_merged_plan_and_hash(fx, make_workspace):
    make_workspace("numpy/synthetic")
    res = fx("plan", "print")
    assert res.exit_code == 0
    assert f"federation {load_plan('plan/plan.yaml').federation_id}" in res.output
    assert "rounds_to_train: 3" in res.output


def test_initialize_refuses_a_bad_address_at_the_parameter_and_keeps_the_plan(fx, make_workspace):
    ws = make_workspace("no-op", initialize=False)
    before = (ws / "plan" / "plan.yaml").read_bytes()
    res = fx("plan", "initialize", "-a", "bad host!")
    assert res.exit_code == 2 and "invalid aggregator address 'bad host!'" in res.stderr
    assert (ws / "plan" / "plan.yaml").read_bytes() == before and not (ws / "save" / "init.pbuf").exists()
    assert fx("plan", "initialize", "-a", "Agg.Example.ORG").exit_code == 0
    assert load_plan("plan/plan.yaml").network.agg_addr == "agg.example.org"
    assert fx("plan", "initialize", "-a", "10.1.2.3").exit_code == 0
    assert load_plan("plan/plan.yaml").network.agg_addr == "10.1.2.3"


def test_initialize_with_an_invalid_plan_changes_nothing(fx, make_workspace):
    ws = make_workspace("no-op", initialize=False)
    plan_file = ws / "plan" / "plan.yaml"
    plan_file.write_text(plan_file.read_text().replace("rounds_to_train:", "rounds_to_trian:"))
    before = plan_file.read_bytes()
    res = fx("plan", "initialize", "-a", "agg.example.org")
    assert res.exit_code == 1 and "rounds_to_trian: unknown key" in res.stderr
    assert plan_file.read_bytes() == before and not (ws / "save" / "init.pbuf").exists()


def test_a_model_file_for_another_plan_is_refused_by_the_no_op_runner_naming_the_tensors(fx, make_workspace, tmp_path):
    make_workspace("no-op", initialize=False)
    write_model(tmp_path / "other.pbuf", {"w0": np.ones(3, np.float32)})
    res = fx("plan", "initialize", "-a", "localhost", "-i", str(tmp_path / "other.pbuf"))
    assert res.exit_code == 1
    assert "tensor 'dummy_tensor': missing" in res.stderr and "tensor 'w0': unknown to the model" in res.stderr
    assert f"{tmp_path / 'other.pbuf'} does not fit the plan's model" in res.stderr
