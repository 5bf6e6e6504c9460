"""A collaborator that lies, against a real aggregator process: about its data size, its metrics, its empty
training result, and with absurd tensors. Each lie is neutralised or refused with a named cause, the honest
collaborators finish, and the aggregator never crashes (nor would on restart)."""
from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import numpy as np
import pytest

from fx_cli.transport.serde import Trailer, UploadMeta
from tests.fault_helpers import flat, processes
from tests.runtime_helpers import final_model, make_workspace
from tests.test_hostile_updates import CODE, RawClient

pytestmark = pytest.mark.slow
TIMEOUT = 90.0


def _lie(raw: RawClient, *, size: int, value: float) -> dict[str, tuple[CODE, str]]:
    """Collaborator 'one' sends its round-1 results, lying in every way the test names."""
    assert raw.join_and_get_tasks().tasks == ("aggregated_model_validation", "train", "locally_tuned_model_validation")
    me = raw.me
    lies = {name: np.full_like(t, value) for name, t in raw.model.items()}
    got = {
        "metric 1e308": raw.send([UploadMeta(me, 0, "aggregated_model_validation", 50, {"accuracy": 1e308}),
                                  Trailer(0, 0)]),
        "metric -1e13": raw.send([UploadMeta(me, 0, "locally_tuned_model_validation", 50, {"accuracy": -1e13}),
                                  Trailer(0, 0)]),
        "empty train": raw.send([UploadMeta(me, 0, "train", 100, {"loss": 0.5}, 0), Trailer(0, 0)]),
        "huge size": raw.send([UploadMeta(me, 0, "train", size, {"loss": 0.5}, len(lies))] + raw.frames(lies)),
        "validation": raw.send([UploadMeta(me, 0, "aggregated_model_validation", 2**53, {"accuracy": 1.0}),
                                Trailer(0, 0)]),
        "local validation": raw.send([UploadMeta(me, 0, "locally_tuned_model_validation", 50, {"accuracy": 0.9}),
                                      Trailer(0, 0)]),
    }
    threading.Thread(target=raw.take_leave, daemon=True).start()  # told when the run ends, like a real one
    return got


def _metrics_lines(ws: Path) -> list[dict[str, object]]:
    def no_constants(name: str) -> float:
        raise AssertionError(f"{name} in aggregator_metrics.jsonl is not valid JSON")
    text = (ws / "logs" / "aggregator_metrics.jsonl").read_text()
    return [json.loads(line, parse_constant=no_constants) for line in text.splitlines()]


@pytest.mark.parametrize("size", [2**53, 10**6])
def test_lies_about_size_metrics_and_empty_results_are_neutralised(tmp_path, size):
    ws = make_workspace(tmp_path, ["one", "two"], rounds=1, num_params=400,
                        aggregator={"final_evaluation": False, "data_size_limits": {"one": 300}})
    with processes(ws) as procs:
        agg = procs.aggregator()
        got = _lie(RawClient(ws), size=size, value=1000.0)
        honest = procs.collaborator("two")
        assert agg.wait(TIMEOUT) == 0, agg.output()
        assert honest.wait(TIMEOUT) == 0, honest.output()
    log = flat(agg.output())
    assert got["metric 1e308"][0] == CODE.INVALID_ARGUMENT and "outside the plausible range" in got["metric 1e308"][1]
    assert got["metric -1e13"][0] == CODE.INVALID_ARGUMENT
    assert got["empty train"][0] == CODE.INVALID_ARGUMENT and "carries no model update" in got["empty train"][1]
    for case in ("huge size", "validation", "local validation"):
        assert got[case][0] == CODE.OK, (case, got[case])
    assert "carries no model update" in log and "outside the plausible range" in log  # named in the log too
    assert f"the data size {size} claimed by 'one' for 'train' is used as 300" in log
    audit = [json.loads(line) for line in (ws / "logs" / "audit.jsonl").read_text().splitlines()]
    clipped = [r for r in audit if r.get("kind") == "data_size_clipped"]
    assert clipped, [r.get("kind") for r in audit]
    assert clipped[0]["data"]["collaborator"] == "one" and clipped[0]["data"]["claimed"] == size
    assert "Traceback" not in agg.output()
    # The liar's weight is its declared maximum (300) against the honest 200: 0.6 * 1000 + 0.4 * (honest ~ 0.3).
    for name, array in final_model(ws).items():
        assert np.all(np.abs(array - 600.0) < 1.0), (name, array[:4])
    # Its 2**53-sample validation claim is clipped as well; metrics are finite JSON.
    (line,) = _metrics_lines(ws)
    metrics = line["metrics"]
    assert isinstance(metrics, dict) and all(math.isfinite(v) for v in metrics.values())
    assert metrics["aggregated_model_validation/accuracy"] < 1.0


@pytest.mark.parametrize("template, settings", [("fx_cli.aggregation.TrimmedMean", {"trim_ratio": 0.25}),
                                                ("fx_cli.aggregation.Krum", {"byzantine": 1, "keep": 2}),
                                                ("fx_cli.aggregation.NormBoundedAverage", {"median_multiple": 2.0})])
def test_robust_aggregation_keeps_one_liar_from_moving_the_model(tmp_path, template, settings):
    names = ["one", "two", "three", "four"]
    ws = make_workspace(tmp_path, names, rounds=1, num_params=400, aggregator={"final_evaluation": False},
                        tasks={"train": {"function": "train_task", "kwargs": {"epochs": 1, "metrics": ["loss"]},
                                         "aggregation_type": {"template": template, "settings": settings}}})
    with processes(ws) as procs:
        agg = procs.aggregator()
        got = _lie(RawClient(ws), size=100, value=1e30)
        honest = [procs.collaborator(n) for n in names[1:]]
        assert agg.wait(TIMEOUT) == 0, agg.output()
        for col in honest:
            assert col.wait(TIMEOUT) == 0, col.output()
    assert got["huge size"][0] == CODE.OK
    assert "Traceback" not in agg.output()
    for name, array in final_model(ws).items():
        assert np.all(np.abs(array) < 10.0), (template, name, array[:4])  # honest values are about 0.1-1


@pytest.mark.parametrize("bad", ["1e308", "Infinity", "NaN", "-1e300"])
def test_a_bad_metric_saved_before_a_crash_does_not_crash_every_restart(tmp_path, bad):
    """Saved results are replayed at restart: one absurd value (from an older fx) is dropped, not a crash loop."""
    import sqlite3

    from tests.fault_helpers import killed

    ws = make_workspace(tmp_path, ["one", "two"], rounds=1, num_params=400, aggregator={"final_evaluation": False},
                        network={"reconnect_deadline": 60})
    with processes(ws) as procs:
        agg = procs.aggregator(fault="aggregator:aggregating")  # every result of round 1 is saved
        cols = [procs.collaborator(n) for n in ("one", "two")]
        killed(agg)
        for col in cols:
            col.popen.kill()
    with sqlite3.connect(ws / "local_state" / "aggregator.db") as db:
        changed = db.execute("UPDATE updates SET metrics = ? WHERE collaborator = 'one' AND task = "
                             "'aggregated_model_validation'", (f'{{"accuracy": {bad}}}',)).rowcount
    assert changed == 1
    logs = []
    for _ in range(2):  # every result is saved: the restart closes the round alone; the second finds it done
        with processes(ws) as procs:
            agg = procs.aggregator()
            assert agg.wait(TIMEOUT) == 0, agg.output()
        assert "Traceback" not in agg.output()
        logs.append(flat(agg.output()))
    assert "dropped metric 'accuracy'" in logs[0] and "'one'" in logs[0]
    (line,) = _metrics_lines(ws)
    assert all(math.isfinite(v) for v in line["metrics"].values())  # type: ignore[union-attr]
