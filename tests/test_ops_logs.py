"""The aggregator's and each collaborator's console log also go to files under logs/."""
from __future__ import annotations

from pathlib import Path

from tests.runtime_helpers import make_workspace, run_federation


def test_console_logs_are_saved_under_logs(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one", "two"], rounds=2)
    run = run_federation(ws, ["one", "two"], timeout=180)
    assert run.ok, run.outputs
    agg = (ws / "logs" / "aggregator.log").read_text()
    assert "listening on" in agg and "round 1/2" in agg and "round 2/2" in agg and "final model" in agg
    for name in ("one", "two"):
        text = (ws / "logs" / f"{name}.log").read_text()
        assert "round 1: train" in text and "round 2: train" in text, text
        assert "INFO fx." in text
