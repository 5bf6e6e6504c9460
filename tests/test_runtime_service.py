"""The aggregator service: state bound to its plan, revocation through cols.yaml, logs, plain-TCP warnings, CLI."""
from __future__ import annotations

import contextlib
import json
import logging
import threading
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner

from fx_cli.aggregator.service import AggregatorRun, run_aggregator
from fx_cli.aggregator.state import Store
from fx_cli.cli.main import cli
from fx_cli.collaborator.loop import CollaboratorRun, client_credentials_for, run_collaborator
from fx_cli.collaborator.session import AggregatorClient
from fx_cli.errors import FxError
from fx_cli.plan import load_plan
from fx_cli.plan.participants import write_cols
from fx_cli.transport.serde import PingRequest
from tests.runtime_helpers import aggregator_thread, edit_plan, make_workspace, run_in_process


def test_saved_state_refuses_another_plan_naming_the_differing_keys(tmp_path: Path) -> None:
    store = Store(tmp_path / "aggregator.db")
    store.bind("a" * 96, {"aggregator": {"settings": {"rounds_to_train": 3}}, "network": {"x": 1}}, None)
    with pytest.raises(FxError, match="differing keys: aggregator.settings.rounds_to_train") as err:
        store.bind("b" * 96, {"aggregator": {"settings": {"rounds_to_train": 4}}, "network": {"x": 1}}, None)
    assert "move local_state/ aside" in (err.value.hint or "")
    with pytest.raises(FxError, match="task group"):
        store.bind("a" * 96, {}, "learning")
    store.close()


def test_the_aggregator_refuses_to_resume_a_run_of_a_changed_plan(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one"], rounds=1, tls=False)
    assert not run_in_process(ws, ["one"]).errors
    edit_plan(ws, aggregator={"rounds_to_train": 2})
    with pytest.raises(FxError, match="holds a run of another plan.*aggregator.settings.rounds_to_train"):
        run_aggregator(AggregatorRun(ws / "plan" / "plan.yaml", ws / "plan" / "cols.yaml"))


def test_removing_a_collaborator_from_cols_yaml_shuts_it_out_at_once(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one", "two"], rounds=1, straggler_handling_policy={
        "template": "fx_cli.aggregator.stragglers.PercentagePolicy", "percent_collaborators_needed": 0.5})
    plan = load_plan(ws / "plan" / "plan.yaml")
    with aggregator_thread(ws):
        with AggregatorClient(plan, "two", client_credentials_for(plan, "two")) as two:
            ping = PingRequest(two.caller, two.plan_json)
            assert two.stub.ping(ping, timeout=5).plan_matches
            write_cols(ws / "plan" / "cols.yaml", ["one"])
            with pytest.raises(grpc.RpcError) as refused:
                two.stub.ping(ping, timeout=5)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "'two' is not in the aggregator's plan/cols.yaml" in refused.value.details()
        run_collaborator(CollaboratorRun("one", ws / "plan" / "plan.yaml", ws / "plan" / "data.yaml"))


def test_write_logs_adds_tensorboard_scalars(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one"], rounds=2, tls=False, aggregator={"write_logs": True})
    assert not run_in_process(ws, ["one"]).errors
    events = list((ws / "logs" / "aggregator_tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1
    data = events[0].read_bytes()
    assert b"aggregator/aggregated_model_validation/accuracy" in data and b"aggregator/train/loss" in data


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_plain_tcp_works_only_when_the_plan_says_so_and_both_sides_warn(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one"], rounds=1, tls=False)
    collect = Collect()
    logging.getLogger("fx").addHandler(collect)
    try:
        assert not run_in_process(ws, ["one"]).errors
    finally:
        logging.getLogger("fx").removeHandler(collect)
    text = "\n".join(collect.lines)
    assert "collaborators connect over PLAIN TCP" in text and "talking to the aggregator over PLAIN TCP" in text


def fx(ws: Path, *args: str) -> tuple[int, str]:
    with contextlib.chdir(ws):
        res = CliRunner().invoke(cli, list(args))
    return res.exit_code, res.output + res.stderr


def test_cli_start_errors_are_messages_with_hints_and_exit_1(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one"], rounds=1, tls=False)
    code, out = fx(ws, "aggregator", "start", "--task_group", "nope")
    assert code == 1 and "task group 'nope' is not in assigner.settings.task_groups" in " ".join(out.split())
    code, out = fx(ws, "collaborator", "start", "-n", "nobody")
    assert code == 1 and "collaborator 'nobody' has no line in plan/data.yaml" in out
    write_cols(ws / "plan" / "cols.yaml", [])
    code, out = fx(ws, "aggregator", "start")
    assert code == 1 and "plan/cols.yaml lists no collaborators" in out and "what to do:" in out


def test_cli_aggregator_and_collaborator_print_rounds_and_the_final_model(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one"], rounds=2, tls=False)
    # CliRunner swaps sys.stdout for the whole process, so only the aggregator goes through it here.
    thread = threading.Thread(target=run_collaborator, args=(
        CollaboratorRun("one", ws / "plan" / "plan.yaml", ws / "plan" / "data.yaml"),), daemon=True)
    thread.start()
    code, out = fx(ws, "aggregator", "start")
    thread.join(60)
    assert code == 0 and "round 1/2  starting model accuracy=" in out and "round 2/2" in out and "participants=1/1" in out
    assert "final model  accuracy=" in out and "final model: accuracy=" in out
    assert "federation complete: final aggregated model" in out and "save/last.pbuf" in out


def test_without_persist_checkpoint_no_state_is_kept_but_models_are_saved(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one"], rounds=2, tls=False, aggregator={"persist_checkpoint": False})
    assert not run_in_process(ws, ["one"]).errors
    assert list((ws / "local_state").iterdir()) == []
    assert (ws / "save" / "last.pbuf").exists() and (ws / "save" / "best.pbuf").exists()
    record = json.loads((ws / "logs" / "aggregator_metrics.jsonl").read_text().splitlines()[0])
    assert record["rss_mib"] > 0 and record["peak_rss_mib"] >= record["rss_mib"]


def test_secure_aggregation_without_mutual_tls_or_threshold_is_refused_not_ignored(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one"], rounds=1, tls=False, aggregator={"secure_aggregation": True})
    with pytest.raises(FxError, match="secure aggregation needs mutual TLS"):
        run_aggregator(AggregatorRun(ws / "plan" / "plan.yaml", ws / "plan" / "cols.yaml"))
    ws = make_workspace(tmp_path / "tls", ["one", "two"], rounds=1, aggregator={"secure_aggregation": True})
    with pytest.raises(FxError, match="threshold must be set, from 2 to the 2 collaborators"):
        run_aggregator(AggregatorRun(ws / "plan" / "plan.yaml", ws / "plan" / "cols.yaml"))
