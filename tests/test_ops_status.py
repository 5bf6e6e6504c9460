"""The status API, live page, audit log and `fx aggregator status` against a real mTLS federation."""
from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest

from tests.fault_helpers import killed, processes, wait_until
from tests.runtime_helpers import fx_in, make_workspace
from tests.cdp_helpers import open_page
from tests.status_helpers import first_events, get, get_json, status_url


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])  # type: ignore[return-value]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_workspace(tmp_path_factory.mktemp("status"), ["one", "two"], rounds=3,
                          aggregator={"join_deadline": 120, "heartbeat_timeout": 120})


def test_status_api_during_and_after_a_run(ws: Path, tmp_path: Path) -> None:
    with processes(ws) as procs:
        agg = procs.aggregator()
        one = procs.collaborator("one")
        two = procs.collaborator("two", fault="collaborator:mid_train#2")  # dies in round 2: the run waits for it
        killed(two)
        wait_until(lambda: (ws / "local_state" / "status_server.json").exists(), "the status server", procs=[agg])
        base = status_url(ws)
        assert base.startswith("http://127.0.0.1:")
        wait_until(lambda: get_json(f"{base}/status")["rounds_done"] == 1, "round 1 to close", procs=[agg, one])

        status = get_json(f"{base}/status")
        assert status["running"] and status["phase"] == "running"
        assert (status["round"], status["rounds_to_train"], status["finished"]) == (2, 3, False)
        assert status["models"] == {"last": "save/last.pbuf", "best": "save/best.pbuf"}
        assert status["best"]["round"] == 1 and status["best"]["metric"] == "accuracy"
        assert status["eta_s"] is not None and status["elapsed_s"] > 0
        wait_until(lambda: len(get_json(f"{base}/clients")[0]["received"]) == 3, "'one' to finish round 2",
                   procs=[agg, one])
        clients = {c["name"]: c for c in get_json(f"{base}/clients")}
        assert clients["one"]["rounds_done"] == clients["two"]["rounds_done"] == 1
        assert clients["one"]["received"] == ["aggregated_model_validation", "locally_tuned_model_validation",
                                              "train"]  # round 2's results held for 'one'
        assert "train" not in clients["two"]["received"] and "train" in clients["two"]["assigned"]
        assert clients["one"]["connected"] is True and clients["one"]["bytes_in"] > 0
        assert clients["two"]["current_task"] == "train"  # it was told to train when it died
        metrics = get_json(f"{base}/metrics")
        assert [m["round"] for m in metrics] == [1] and metrics[0]["participants"] == ["one", "two"]
        code, prom, headers = get(f"{base}/metrics/prometheus")
        assert code == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert re.search(r'^fx_rounds_done\{federation="plan_[0-9a-f]{8}"\} 1\.0$', prom, re.M), prom
        acc = metrics[0]["metrics"]["aggregated_model_validation/accuracy"]
        assert f'metric="aggregated_model_validation/accuracy"}} {acc!r}' in prom
        assert get(f"{base}/status", method="POST")[0] == 405 and get(f"{base}/nothing")[0] == 404
        assert first_events(f"{base}/events", 1) == [("hello", {"type": "hello", "running": True})]
        everything = json.dumps([status, clients, metrics]) + prom
        assert "data.yaml" not in everything and ".key" not in everything and "cert" not in everything

        # the live page: every asset comes from the aggregator; the charts hold round 1's figures, and follow
        # the run through /events without a reload
        with open_page(f"{base}/", tmp_path / "profile") as page:
            page.wait_for("document.body.dataset.loaded === 'true'", "the page to load its data")
            series = json.loads(page.evaluate("document.getElementById('chart-accuracy').dataset.series"))
            assert series["aggregated_model_validation/accuracy"] == [[1, acc]]
            assert json.loads(page.evaluate("document.getElementById('chart-participants').dataset.series")) == \
                {"participants": [[1, 2]]}
            page.wait_for("document.getElementById('stream').textContent === 'live'", "the event stream to open")
            rows = page.evaluate("[...document.querySelectorAll('#clients tbody tr')].map(r => r.dataset.name)")
            assert rows == ["one", "two"]
            page.screenshot(tmp_path / "page.png")
            width, height = png_size(tmp_path / "page.png")
            assert width == 1200 and height > 600

            live = json.loads(fx_in(ws, "aggregator", "status", "--json"))
            assert live["source"] == f"live {base}" and live["status"]["rounds_done"] == 1
            table = fx_in(ws, "aggregator", "status")
            assert "collaborators" in table and "one" in table and "2/3" in table

            two = procs.collaborator("two")
            page.wait_for("document.body.dataset.rounds === '3'", "the page to show round 3 from the event stream",
                          timeout=180)
            points = json.loads(page.evaluate("document.getElementById('chart-participants').dataset.series"))
            assert points == {"participants": [[1, 2], [2, 2], [3, 2]]}
        for proc in (agg, one, two):
            assert proc.wait(180) == 0, proc.output()
    assert not (ws / "local_state" / "status_server.json").exists()

    after = json.loads(fx_in(ws, "aggregator", "status", "--json"))
    assert after["source"].startswith("saved state")
    assert after["status"]["phase"] == "finished" and after["status"]["rounds_done"] == 3
    assert after["status"]["running"] is False and after["status"]["eta_s"] is None
    assert [c["rounds_done"] for c in after["clients"]] == [3, 3]
    assert all(c["bytes_in"] > 0 and c["connected"] is None for c in after["clients"])
    assert [m["round"] for m in after["metrics"]] == [1, 2, 3, 3] and after["metrics"][-1]["final"]
    assert "federation" in fx_in(ws, "aggregator", "status")

    # the audit log of that run verifies, signed at every round end
    out = fx_in(ws, "audit", "verify")
    assert "record(s) intact" in out and "head signature(s) valid" in out
    records = [json.loads(x) for x in (ws / "logs" / "audit.jsonl").read_text().splitlines()]
    kinds = [r["kind"] for r in records]
    assert kinds[0] == "run_started" and kinds.count("round_closed") == 3 and "final_evaluation" in kinds
    assert kinds[-2:] == ["run_finished", "head_signed"]
    joins = [r["data"] for r in records if r["kind"] == "join"]
    assert sorted(j["collaborator"] for j in joins) == ["one", "two", "two"]  # 'two' joined again after its kill
    assert all(re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", j["cert_fingerprint"]) for j in joins)
    accepted = [r["data"] for r in records if r["kind"] == "update_accepted"]
    trains = [a for a in accepted if a["task"] == "train"]
    assert len(trains) == 6 and all(re.fullmatch(r"[0-9a-f]{64}", a["blake3"]) and a["nbytes"] > 0 for a in trains)
    assert len({a["blake3"] for a in trains}) == 6  # every update differs
    closed = [r["data"] for r in records if r["kind"] == "round_closed"]
    assert [c["participants"] for c in closed] == [["one", "two"]] * 3
    import hashlib
    assert closed[-1]["model_sha256"] == hashlib.sha256((ws / "save" / "last.pbuf").read_bytes()).hexdigest()
    assert any(r["kind"] == "task_assigned" and r["data"]["collaborator"] == "two" and r["data"]["round"] == 2
               for r in records)


def _attr(html: str, element_id: str, attribute: str) -> str:
    import html as html_lib

    tag = re.search(rf'<[^>]*id="{element_id}"[^>]*>', html)
    assert tag, f"#{element_id} not in the page"
    value = re.search(rf'{attribute}="([^"]*)"', tag.group(0))
    assert value, f"#{element_id} has no {attribute}: {tag.group(0)}"
    return html_lib.unescape(value.group(1))
