"""``fx plot`` draws the logs of a real mTLS federation run."""
from __future__ import annotations

import struct
from pathlib import Path

import pytest

from fx_cli.plot.data import load_run, site_logs
from tests.runtime_helpers import fx_in, make_workspace, run_in_process


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


@pytest.fixture(scope="module")
def finished_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ws = make_workspace(tmp_path_factory.mktemp("plot"), ["one", "two"], rounds=3)
    run = run_in_process(ws, ["one", "two"], timeout=120)
    assert not run.errors, run.errors
    return ws


def test_plot_writes_one_chart_per_concern(finished_ws: Path) -> None:
    out = fx_in(finished_ws, "plot", "-o", "charts")
    names = sorted(p.name for p in (finished_ws / "charts").iterdir())
    assert names == ["bytes.png", "collaborators.png", "metrics.png", "participants.png", "round_times.png"], out
    data = load_run(finished_ws / "logs" / "aggregator_metrics.jsonl", site_logs(finished_ws / "logs"))
    assert sorted(data.sites) == ["one", "two"]
    assert all(series.x == [1, 2, 3] for series in data.metrics.values())
    assert data.participants.y == [2.0, 2.0, 2.0] and all(v > 0 for v in data.bytes_in.y)
    # one panel per aggregated metric (2.6 in each + 0.6 in, 100 dpi): the chart holds every metric
    assert png_size(finished_ws / "charts" / "metrics.png") == (700, int(round((2.6 * len(data.metrics) + 0.6) * 100)))
    site_keys = {k for per in data.sites.values() for k in per}
    assert png_size(finished_ws / "charts" / "collaborators.png")[1] == int(round((2.6 * len(site_keys) + 0.6) * 100))


def test_plot_with_named_sites_and_a_truncated_last_line(finished_ws: Path, tmp_path: Path) -> None:
    metrics = tmp_path / "agg.jsonl"
    metrics.write_text((finished_ws / "logs" / "aggregator_metrics.jsonl").read_text() + '{"round": 4, "fin')
    fx_in(finished_ws, "plot", "--metrics", str(metrics), "--site", f"one={finished_ws / 'logs' / 'one_metrics.jsonl'}",
          "-o", str(tmp_path / "out"))
    assert (tmp_path / "out" / "collaborators.png").exists()
    assert load_run(metrics, {}).seconds.x == [1, 2, 3]


def test_plot_without_a_metrics_file_says_what_to_do(tmp_path: Path, fx) -> None:  # type: ignore[no-untyped-def]
    import contextlib

    with contextlib.chdir(tmp_path):
        res = fx("plot")
    assert res.exit_code == 1 and "aggregator_metrics.jsonl: not found" in res.all
