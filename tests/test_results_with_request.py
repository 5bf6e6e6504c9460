"""Protocol 3: the validation that ends a collaborator's round travels with its next task request, so the
aggregator answers one call less per collaborator and round. Against a real aggregator over mutual TLS: the
encoding, what a dishonest sender gets, a retried request, a late result, and real collaborators using it.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import grpc
import pytest

from fx_cli.transport import serde
from fx_cli.transport.serde import (RESULTS_WITH_REQUEST, Action, Caller, JoinRequest, MetricsResult, TaskReply,
                                    TasksRequest)
from tests.fault_helpers import flat, processes, wait_until
from tests.runtime_helpers import make_workspace
from tests.test_hostile_updates import RawClient

CODE = grpc.StatusCode
VALIDATIONS = (MetricsResult("aggregated_model_validation", 50, {"accuracy": 0.25}),
               MetricsResult("locally_tuned_model_validation", 50, {"accuracy": 0.75}))


def test_a_task_request_carries_its_results_and_the_reply_names_the_late_ones() -> None:
    request = TasksRequest(Caller("one", "abc"), 3, VALIDATIONS)
    assert serde.tasks_request_from_bytes(serde.tasks_request_to_bytes(request)) == request
    plain = TasksRequest(Caller("one", "abc"))  # what a protocol-2 collaborator sends
    assert serde.tasks_request_from_bytes(serde.tasks_request_to_bytes(plain)) == plain
    reply = TaskReply(Action.RUN, 4, ("train",), not_counted=("locally_tuned_model_validation",))
    assert serde.task_reply_from_bytes(serde.task_reply_to_bytes(reply)) == reply
    assert serde.PROTOCOL >= RESULTS_WITH_REQUEST


def audit(ws: Path) -> list[dict]:  # type: ignore[type-arg]
    """The audit log's whole records so far (a line being written as we read is left for the next look)."""
    lines = (ws / "logs" / "audit.jsonl").read_text().split("\n")[:-1]
    return [json.loads(x) for x in lines]


def accepted(ws: Path, collaborator: str, round_num: int) -> list[str]:
    """Tasks whose results from ``collaborator`` the audit log records as accepted in round ``round_num`` (1-based)."""
    return sorted(r["data"]["task"] for r in audit(ws) if r["kind"] == "update_accepted"
                  and r["data"]["collaborator"] == collaborator and r["data"]["round"] == round_num)


def closed(ws: Path, round_num: int) -> bool:
    return any(r["kind"] == "round_closed" and r["data"]["round"] == round_num for r in audit(ws))


def ask(raw: RawClient, round_num: int, *results: MetricsResult) -> tuple[grpc.StatusCode, str, TaskReply | None]:
    try:
        reply = raw.stub.get_tasks(TasksRequest(raw.me, round_num, results), timeout=30)
        return CODE.OK, "", reply
    except grpc.RpcError as err:
        return err.code(), err.details() or "", None


@pytest.mark.slow
def test_results_with_a_task_request_are_checked_counted_once_and_used_every_round(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one", "two"], rounds=2, num_params=4000)
    all_three = sorted(["train", *(v.task for v in VALIDATIONS)])
    with processes(ws) as procs:
        agg = procs.aggregator()
        two = procs.collaborator("two")
        raw = RawClient(ws)
        assert raw.stub.join(JoinRequest(raw.me, b""), timeout=30, wait_for_ready=True).protocol >= \
            RESULTS_WITH_REQUEST
        assert raw.stub.get_tasks(TasksRequest(raw.me), timeout=30).tasks == (
            "aggregated_model_validation", "train", "locally_tuned_model_validation")
        nan = ask(raw, 0, MetricsResult("aggregated_model_validation", 50, {"accuracy": float("nan")}))
        twice = ask(raw, 0, VALIDATIONS[0], VALIDATIONS[0])
        not_assigned = ask(raw, 0, MetricsResult("evaluate", 50, {"accuracy": 0.5}))
        training = ask(raw, 0, MetricsResult("train", 100, {"loss": 0.5}))  # an update needs its tensors
        assert accepted(ws, "one", 1) == [], "a refused request counts none of its results"
        first = ask(raw, 0, *VALIDATIONS)
        retry = ask(raw, 0, *VALIDATIONS)  # as after a reply lost on its way back
        assert raw.send([raw.header()] + raw.frames(raw.model))[0] == CODE.OK
        assert accepted(ws, "one", 1) == all_three
        wait_until(lambda: closed(ws, 1), "round 1 to close", procs=[agg])
        late = ask(raw, 0, *VALIDATIONS)  # round 1 is over: not counted, and said so
        raw.channel.close()
        one = procs.collaborator("one")
        assert agg.wait(120) == 0, agg.output()
        for col in (one, two):
            assert col.wait(120) == 0, col.output()
    assert nan[0] == CODE.INVALID_ARGUMENT and "metric 'accuracy' of task 'aggregated_model_validation' is nan" in \
        nan[1], nan
    assert twice[0] == CODE.INVALID_ARGUMENT and "the result of a task twice" in twice[1], twice
    assert not_assigned[0] == CODE.FAILED_PRECONDITION and "task 'evaluate' is not assigned" in not_assigned[1], \
        not_assigned
    assert training[0] == CODE.INVALID_ARGUMENT and "carries no model update" in training[1], training
    assert first[0] == CODE.OK and retry[0] == CODE.OK and first[2] and retry[2], (first, retry)
    assert late[0] == CODE.OK and late[2] is not None and late[2].not_counted == tuple(v.task for v in VALIDATIONS)
    assert late[2].action is Action.RUN and late[2].round == 1, late  # and the next round's tasks came with it
    # Counted once, whatever was resent; none of the resent ones was refused.
    assert accepted(ws, "one", 1) == all_three
    log = flat(agg.output())
    assert "rejected a result of 'one' for round 1 sent with its task request: the result of 'aggregated_model" \
           "_validation'" not in log
    assert "round 1: late result of 'locally_tuned_model_validation' from 'one' not counted" in log
    # Real collaborators send the validation that ends their round with the next task request, every round.
    for name, rounds in (("one", [2]), ("two", [1, 2])):
        for r in rounds:
            assert re.search(rf"round {r}: received 'locally_tuned_model_validation' from '{name}' \(data size \d+, "
                             r"with its task request\)", log), (name, r)
            assert accepted(ws, name, r) == all_three
    assert re.search(r"final model: received 'aggregated_model_validation' from 'two' \(data size \d+, with its "
                     r"task request\)", log)
    assert "Traceback" not in agg.output()
