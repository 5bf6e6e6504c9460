"""What a new user meets first: prompts without a terminal, messages outside a workspace, option spellings."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fx_cli.pki.store import Layout
from tests.fault_helpers import TIMEOUT, flat, in_log, processes, wait_until
from tests.runtime_helpers import make_workspace as federation_workspace
from tests.pki_helpers import fx_in, new_host, ok_in, seed_federation


def test_certify_without_a_terminal_says_which_flag_signs(tmp_path: Path) -> None:
    fed = seed_federation(tmp_path, names=())
    col = new_host(tmp_path, "col")
    ok_in(col, "collaborator", "generate-cert-request", "-n", "three")
    pkg = str(col / "col_three_to_agg_cert_request.zip")
    res = fx_in(fed.agg, "collaborator", "certify", "--request-pkg", pkg)  # stdin is empty: nobody answers
    assert res.exit_code == 1
    assert "Aborted!" not in res.all
    assert "nobody answered 'Sign this certificate?'" in res.stderr and "no terminal" in res.stderr
    assert "-s/--silent" in res.stderr
    assert not Layout(fed.agg).client("three", "crt").exists()
    res = fx_in(fed.agg, "collaborator", "certify", "--request-pkg", pkg, "--yes")
    assert res.exit_code == 0, res.all
    assert Layout(fed.agg).client("three", "crt").exists()


def test_aggregator_request_and_certify_both_take_n_for_the_host_name(tmp_path: Path) -> None:
    host = new_host(tmp_path, "agg")
    ok_in(host, "workspace", "certify")
    ok_in(host, "aggregator", "generate-cert-request", "-n", "agg.example.org")
    res = fx_in(host, "aggregator", "certify", "-n", "agg.example.org")
    assert res.exit_code == 1 and "-s/--silent" in res.stderr
    ok_in(host, "aggregator", "certify", "-n", "agg.example.org", "-s")


def test_commands_outside_a_workspace_say_so_and_how_to_get_into_one(tmp_path: Path, monkeypatch, fx) -> None:
    monkeypatch.chdir(tmp_path)
    for args in (("plan", "initialize"), ("aggregator", "start"), ("collaborator", "start", "-n", "one"),
                 ("collaborator", "create", "-n", "one", "-s"), ("plan", "print")):
        res = fx(*args)
        assert res.exit_code == 1, (args, res.all)
        text = flat(res.stderr)
        assert f"{tmp_path} is not an fx workspace: it has no plan/plan.yaml" in text, (args, text)
        assert "fx workspace create --prefix NAME" in text and "fx workspace import --archive ZIP" in text
        assert "fix the keys named above" not in text
    assert list(tmp_path.iterdir()) == []  # no logs/ folder left behind


def test_collaborator_start_with_a_data_path_for_d_explains_what_d_means_here(make_workspace, fx) -> None:
    make_workspace()
    res = fx("collaborator", "start", "-n", "site-a", "-d", "1")
    assert res.exit_code == 2
    text = flat(res.stderr)
    assert "'1' is not a data-config file" in text and "names the file of 'name,data path' lines" in text
    assert "fx collaborator create -n NAME -d 1" in text
    assert "data file not found" not in text


def test_a_mistyped_command_gets_a_suggestion(fx) -> None:
    res = fx("colaborator", "start")
    assert res.exit_code == 2 and "Did you mean 'collaborator'?" in res.stderr
    res = fx("collaborator", "strat")
    assert res.exit_code == 2 and "Did you mean 'start'?" in res.stderr
    res = fx("collaborator", "zzz")
    assert res.exit_code == 2 and "Did you mean" not in res.stderr and "certify, create" in res.stderr


def test_group_help_shows_each_command_s_whole_first_sentence(fx) -> None:
    for group in ("aggregator", "collaborator", "workspace", "plan", "model"):
        res = fx(group, "--help")
        assert res.exit_code == 0
        commands = res.output.split("Commands:")[1]
        assert "..." not in commands, res.output
    text = flat(fx("aggregator", "--help").output)
    assert "Delete the aggregator's saved run (local_state/) so that the next start begins at round 1." in text


@pytest.mark.slow
def test_ctrl_c_on_the_aggregator_says_the_run_is_saved_and_how_to_resume(tmp_path: Path) -> None:
    ws = federation_workspace(tmp_path, ["one"], rounds=1)
    with processes(ws) as procs:
        agg = procs.aggregator()
        wait_until(lambda: in_log(agg, "listening on"), "the aggregator to listen", procs=[agg])
        agg.popen.send_signal(signal.SIGINT)
        assert agg.wait(TIMEOUT) == 130, agg.output()
    text = flat(agg.output())
    assert "interrupted: the run so far is saved" in text
    assert "run the same command, `fx aggregator start`, to resume where it stopped" in text
    assert "Aborted!" not in text


def test_an_unreachable_aggregator_is_explained_in_plain_words(tmp_path: Path) -> None:
    from fx_cli.collaborator.loop import CollaboratorRun, run_collaborator
    from fx_cli.errors import FxError

    ws = federation_workspace(tmp_path, ["one"], tls=False, network={"reconnect_deadline": 0.5})
    with pytest.raises(FxError) as err:
        run_collaborator(CollaboratorRun("one", ws / "plan" / "plan.yaml", ws / "plan" / "data.yaml"))
    assert "nothing is listening at that address (connection refused)" in err.value.message
    assert "failed to connect to all addresses" not in err.value.message and "ipv" not in err.value.message


@pytest.mark.slow
def test_a_busy_port_is_explained_and_grpc_s_own_log_stays_quiet(tmp_path: Path) -> None:
    from fx_cli.plan import load_plan

    ws = federation_workspace(tmp_path, ["one"], rounds=1)
    port = load_plan(ws / "plan" / "plan.yaml").network.agg_port
    env = {k: v for k, v in os.environ.items() if k != "GRPC_VERBOSITY"}
    with contextlib.ExitStack() as stack:  # 'localhost' is both loopbacks: hold the port on each
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            holder = stack.enter_context(socket.socket(family))
            holder.bind((host, port))
            holder.listen()
        res = subprocess.run([sys.executable, "-m", "fx_cli", "aggregator", "start"], cwd=ws, env=env,
                             capture_output=True, text=True, timeout=TIMEOUT)
    assert res.returncode == 1, res.stderr
    text = flat(res.stderr)
    assert f"cannot listen on localhost:{port}: the port is already in use" in text, text
    assert "GRPC_VERBOSITY" not in text and ".cc:" not in text, text


def test_two_workspaces_from_one_template_are_distinct_federations_and_export_keeps_the_salt(
        tmp_path: Path, monkeypatch, fx) -> None:
    from fx_cli.plan import load_plan

    plans = []
    for name in ("a", "b"):
        ok_in(tmp_path, "workspace", "create", "--prefix", name, "--template", "numpy/synthetic")
        plans.append(load_plan(tmp_path / name / "plan" / "plan.yaml"))
    a, b = plans
    assert a.network.agg_port != b.network.agg_port and a.federation_id != b.federation_id
    salt = a.config["network"]["settings"]["hash_salt"]
    assert len(salt) == 16 and salt != b.config["network"]["settings"]["hash_salt"]
    ok_in(tmp_path / "a", "plan", "initialize", "-a", "localhost")
    ok_in(tmp_path / "a", "workspace", "export", "--output", str(tmp_path / "a.zip"))
    ok_in(tmp_path, "workspace", "import", "--archive", str(tmp_path / "a.zip"), "--prefix", "site", "-s")
    site = load_plan(tmp_path / "site" / "plan" / "plan.yaml")
    initialized = load_plan(tmp_path / "a" / "plan" / "plan.yaml")
    assert site.config["network"]["settings"]["hash_salt"] == salt
    assert site.hash == initialized.hash and site.network.agg_port == initialized.network.agg_port


def test_swapped_certificate_packages_are_named_with_the_command_that_takes_each(tmp_path: Path) -> None:
    fed = seed_federation(tmp_path, names=("one",))
    request = fed.cols["one"] / "col_one_to_agg_cert_request.zip"
    signed = fed.agg / "agg_to_col_one_signed_cert.zip"
    res = fx_in(fed.cols["one"], "collaborator", "certify", "--import", str(request))
    assert res.exit_code == 1
    text = flat(res.stderr)
    assert "is the certificate request package of 'one', not a signed certificate" in text
    assert "fx collaborator certify --request-pkg col_one_to_agg_cert_request.zip" in text
    assert "fresh archive" not in text
    res = fx_in(fed.agg, "collaborator", "certify", "--request-pkg", str(signed), "-s")
    assert res.exit_code == 1
    text = flat(res.stderr)
    assert "is the signed certificate package of 'one', not a certificate request" in text
    assert "fx collaborator certify --import agg_to_col_one_signed_cert.zip" in text


def test_initialize_shows_its_steps_and_warns_when_an_exported_federation_changes_identity(
        make_workspace, fx) -> None:
    ws = make_workspace(initialize=False)
    res = fx("plan", "initialize", "-a", "localhost")
    assert res.exit_code == 0, res.all
    assert "… building the model of" in res.stderr and "… writing" in res.stderr
    assert "federation id changed" not in res.stderr  # never exported or imported: nothing to break
    assert fx("workspace", "export", "--output", "ws.zip").exit_code == 0
    res = fx("plan", "initialize", "-a", "localhost")
    assert res.exit_code == 0 and "federation id changed" not in res.stderr  # same address, same federation
    res = fx("plan", "initialize", "-a", "other.example.org")
    assert res.exit_code == 0, res.all
    text = flat(res.stderr)
    assert "warning: the federation id changed from plan_" in text
    assert "the aggregator and the sites will no longer match" in text and "export again" in text
    assert ws.is_dir()


def test_model_save_shows_its_steps(make_workspace, fx) -> None:
    ws = make_workspace()
    res = fx("model", "save", "-i", "save/init.pbuf", "-o", "model.npz")
    assert res.exit_code == 0, res.all
    for shown in ("… building the model of", "… loading the weights of save/init.pbuf", "… writing"):
        assert shown in res.stderr, res.stderr
    assert (ws / "model.npz").is_file()


@pytest.mark.slow
def test_round_one_is_labelled_as_the_starting_model_and_the_final_evaluation_has_one_name(tmp_path: Path) -> None:
    import json

    from tests.runtime_helpers import run_federation

    ws = federation_workspace(tmp_path, ["one", "two"], rounds=2)
    run = run_federation(ws, ["one", "two"])
    assert run.codes == {"aggregator": 0, "one": 0, "two": 0}, run.outputs
    agg = flat(run.outputs["aggregator"])
    assert "round 1/2 starting model accuracy=" in agg and "round 2/2 accuracy=" in agg
    assert "final model: received 'aggregated_model_validation' from 'one'" in agg
    assert "round 3" not in agg and "final model: accuracy=" in agg
    for name in ("one", "two"):
        shown = flat(run.outputs[name])
        assert "loading the data (" in shown and "downloading the round 1 model" in shown
        assert shown.index("loading the data (") < shown.index("downloading the round 1 model")
    records = [json.loads(x) for x in (ws / "logs" / "aggregator_metrics.jsonl").read_text().splitlines()]
    assert [(r["round"], r["final"]) for r in records] == [(1, False), (2, False), (2, True)]
    for name in ("one", "two"):
        site = [json.loads(x) for x in (ws / "logs" / f"{name}_metrics.jsonl").read_text().splitlines()]
        assert {r["round"] for r in site if r["final"]} == {2} and max(r["round"] for r in site) == 2


def test_a_data_path_is_checked_by_the_plan_s_loader_when_registered_without_tensorflow(tmp_path: Path) -> None:
    ok_in(tmp_path, "workspace", "create", "--prefix", "ws", "--template", "keras/digits")
    ws = tmp_path / "ws"
    (ws / "plan" / "data.yaml").write_text("")  # no sites yet
    before = (ws / "plan" / "data.yaml").read_text()
    for bad, why in (("3", "shard 3 is outside 1..2"), ("data/site-a", "is not a shard number")):
        res = fx_in(ws, "collaborator", "create", "-n", "site-a", "-d", bad)
        assert res.exit_code == 1, res.all
        assert f"data path '{bad}' cannot be used by fx_cli.runners.keras_data.DigitsData" in flat(res.stderr)
        assert why in res.stderr
    assert (ws / "plan" / "data.yaml").read_text() == before  # nothing written
    res = ok_in(ws, "collaborator", "create", "-n", "site-a", "-s")  # -s: the next free shard, not data/<name>
    assert "uses data path '1'" in res.output and "checked by fx_cli.runners.keras_data.DigitsData" in res.output
    ok_in(ws, "collaborator", "create", "-n", "site-b", "-s")
    assert (ws / "plan" / "data.yaml").read_text().split() == ["site-a,1", "site-b,2"]
    # The check runs without TensorFlow: a process where importing it fails still registers.
    code = ("import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
            "from fx_cli.cli.main import cli\n"
            "cli(['collaborator', 'create', '-n', 'site-c', '-d', '2'], prog_name='fx')")
    done = subprocess.run([sys.executable, "-c", code], cwd=ws, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert "site-c,2" in (ws / "plan" / "data.yaml").read_text()


def test_the_mnist_loader_wants_its_file_at_registration(tmp_path: Path) -> None:
    ok_in(tmp_path, "workspace", "create", "--prefix", "ws", "--template", "keras/mnist")
    ws = tmp_path / "ws"
    res = fx_in(ws, "collaborator", "create", "-n", "site-a", "-d", "1")
    assert res.exit_code == 1 and "MNIST file not found" in res.stderr and "downloads nothing" in res.stderr
    (ws / "elsewhere.npz").write_bytes(b"not read at registration")
    ok_in(ws, "collaborator", "create", "-n", "site-a", "-d", "1,elsewhere.npz")


def test_a_prompt_without_a_terminal_says_which_option_answers_it(make_workspace, fx) -> None:
    make_workspace()
    res = fx("collaborator", "create", "-n", "site-a")  # asks for the data path; stdin is empty
    assert res.exit_code == 1 and "Aborted!" not in res.all
    text = flat(res.stderr)
    assert "no terminal to answer it" in text and "-d DATA_PATH" in text
    res = fx("aggregator", "reset")
    assert res.exit_code == 1 and "-y/--yes" in flat(res.stderr)
    assert fx("aggregator", "reset", "-s").exit_code == 0


@pytest.mark.slow
def test_the_package_builds_without_setuptools_warnings_and_ships_its_data(tmp_path: Path) -> None:
    import shutil
    import zipfile

    root = Path(__file__).resolve().parents[1]
    src = tmp_path / "src"
    src.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    shutil.copytree(root / "fx_cli", src / "fx_cli", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v",
                           str(src), "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    log = done.stdout + done.stderr
    assert "is absent from the `packages` configuration" not in log and "Package would be ignored" not in log
    wheel, = (tmp_path / "dist").glob("fx_federated-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in ("fx_cli/plan/defaults/aggregator.yaml", "fx_cli/plan_templates/keras/digits/plan/plan.yaml",
                    "fx_cli/plan_templates/keras/digits/.workspace", "fx_cli/cli/main.py"):
        assert shipped in names, shipped


def test_a_wrong_data_path_stops_the_collaborator_before_it_connects(tmp_path: Path) -> None:
    from fx_cli.collaborator.loop import CollaboratorRun, run_collaborator
    from fx_cli.errors import FxError

    ws = federation_workspace(tmp_path, ["one"], tls=False, network={"reconnect_deadline": 600})
    (ws / "plan" / "data.yaml").write_text("one,first\n")
    with pytest.raises(FxError) as err:  # nothing listens: a connection attempt would retry for 600 s
        run_collaborator(CollaboratorRun("one", ws / "plan" / "plan.yaml", ws / "plan" / "data.yaml"))
    assert "data path 'first' cannot be used by fx_cli.runners.synthetic.SyntheticData" in err.value.message
