"""Middle (regional) aggregators as real processes over mutual TLS on loopback.

1 top, 2 regions with 2 sites each (numpy/synthetic). With ``local_rounds: 1``
the final model equals the flat 4-site federation's within float32 rounding:
FedAvg sums in float32 (``WeightedAverage``), and the hierarchy rounds each
region's average to float32 before the top weights it, so the two orders of
summation differ by a few ULPs, never more. With ``local_rounds: 3`` it equals
an independent two-level computation written here with the synthetic runner.
"""
from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from fx_cli.cli.main import cli
from fx_cli.runners.synthetic import SyntheticData, SyntheticRunner
from tests.runtime_helpers import make_workspace, processes
from tests.topology_helpers import add_region, load_model, two_regions

pytestmark = pytest.mark.slow
TIMEOUT = 240.0
SHARDS = {"a1": 1, "a2": 2, "b1": 3, "b2": 4}
REGIONS = {"region-a": ["a1", "a2"], "region-b": ["b1", "b2"]}
# float32 sums in another order: a few units in the last place of values of order 1.
FLOAT32_ROUNDING = {"rtol": 1e-5, "atol": 1e-6}


def _run_hierarchy(top: Path, regions: dict[str, Path], sites: dict[str, Path]) -> dict[str, str]:
    with processes(top) as procs:
        started = [procs.aggregator()]
        started += [procs.start(name, "aggregator", "start", cwd=ws) for name, ws in regions.items()]
        started += [procs.collaborator(site, cwd=ws) for site, ws in sites.items()]
        codes = {p.name: p.wait(TIMEOUT) for p in started}
        outputs = {p.name: p.output() for p in started}
    assert all(code == 0 for code in codes.values()), {n: (c, outputs[n][-3000:]) for n, c in codes.items() if c}
    return outputs


def test_one_local_round_equals_the_flat_federation(tmp_path: Path) -> None:
    top, regions, sites = two_regions(tmp_path / "tree", rounds=2, local_rounds=1)
    outputs = _run_hierarchy(top, regions, sites)

    flat = make_workspace(tmp_path / "flat", list(SHARDS), rounds=2, shards=SHARDS)
    shutil.copyfile(top / "save" / "init.pbuf", flat / "save" / "init.pbuf")
    with processes(flat) as procs:
        started = [procs.aggregator()] + [procs.collaborator(site) for site in SHARDS]
        assert all(p.wait(TIMEOUT) == 0 for p in started), [p.output()[-2000:] for p in started]

    tree_model, flat_model = load_model(top / "save" / "last.pbuf"), load_model(flat / "save" / "last.pbuf")
    assert sorted(tree_model) == sorted(flat_model)
    for name in flat_model:
        np.testing.assert_allclose(tree_model[name], flat_model[name], **FLOAT32_ROUNDING)
    # The model really moved: not the initial one.
    init = load_model(top / "save" / "init.pbuf")
    assert any(not np.allclose(init[n], tree_model[n]) for n in init)
    # Metrics weigh regions by their sites' summed data sizes: the same figures as the flat run.
    tree_rounds = _metrics(top)
    flat_rounds = _metrics(flat)
    assert tree_rounds.keys() == flat_rounds.keys()
    for key, metrics in flat_rounds.items():
        for name, value in metrics.items():
            assert tree_rounds[key][name] == pytest.approx(value, rel=1e-6), (key, name)
    # The top only ever heard of the regions; each region only of its own sites.
    top_log = outputs["aggregator"]
    assert "region-a" in top_log and not any(f"'{site}'" in top_log for site in SHARDS)
    # A region audits its own rounds like any aggregator (the same engine observers).
    kinds = [json.loads(line)["kind"] for line in (regions["region-a"] / "logs" / "audit.jsonl").read_text().splitlines()]
    assert kinds.count("round_closed") == 2 and "update_accepted" in kinds
    region_sizes = {r["round"]: r["data_sizes"] for r in _records(top) if not r["final"]}
    assert region_sizes[1]["train"] == sum(100 * k for k in SHARDS.values())


def test_three_local_rounds_match_an_independent_two_level_computation(tmp_path: Path) -> None:
    top, regions, sites = two_regions(tmp_path / "tree", rounds=2, local_rounds=3)
    _run_hierarchy(top, regions, sites)

    expected = _two_level(load_model(top / "save" / "init.pbuf"), global_rounds=2, local_rounds=3)
    got = load_model(top / "save" / "last.pbuf")
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], **FLOAT32_ROUNDING)
    # Each region ran 2 x 3 rounds with its sites, plus the final evaluation.
    region_records = _records(regions["region-a"])
    assert [r["round"] for r in region_records if not r["final"]] == [1, 2, 3, 4, 5, 6]
    assert any(r["final"] for r in region_records)


def test_three_levels_complete(tmp_path: Path) -> None:
    """top -> region-a -> (a-north -> a1, a2) and region-a's own site... as a chain of three aggregator levels."""
    top = make_workspace(tmp_path / "top", ["region-a"], rounds=2, shards=SHARDS,
                         certify=["region-a", "a-north", "a1", "a2"])
    middle = add_region(top, tmp_path, "region-a", ["a-north"], local_rounds=1)
    lower = add_region(middle, tmp_path, "a-north", ["a1", "a2"], local_rounds=2)
    with processes(top) as procs:
        started = [procs.aggregator(), procs.start("region-a", "aggregator", "start", cwd=middle),
                   procs.start("a-north", "aggregator", "start", cwd=lower),
                   procs.collaborator("a1", cwd=lower), procs.collaborator("a2", cwd=lower)]
        codes = {p.name: p.wait(TIMEOUT) for p in started}
        assert all(c == 0 for c in codes.values()), {p.name: p.output()[-3000:] for p in started}
    # Two top rounds x 1 x 2 local rounds at the bottom: the lowest region trained 4 rounds with its sites.
    assert [r["round"] for r in _records(lower) if not r["final"]] == [1, 2, 3, 4]
    assert (top / "save" / "last.pbuf").exists()


def _records(ws: Path) -> list[dict]:
    lines = (ws / "logs" / "aggregator_metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _metrics(ws: Path) -> dict[tuple[int, bool], dict[str, float]]:
    return {(r["round"], r["final"]): r["metrics"] for r in _records(ws)}


def _train(shard: int, model: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    runner = SyntheticRunner(SyntheticData(str(shard)))
    runner.set_tensors(model)
    return runner.train_task(0).tensors


def _average(models: list[dict[str, np.ndarray]], weights: list[int]) -> dict[str, np.ndarray]:
    total = float(sum(weights))
    return {name: np.asarray(sum(np.float64(w) * m[name].astype(np.float64) for m, w in zip(models, weights)) / total,
                             dtype=np.float32) for name in models[0]}


def _two_level(model: dict[str, np.ndarray], global_rounds: int, local_rounds: int) -> dict[str, np.ndarray]:
    size = {site: 100 * shard for site, shard in SHARDS.items()}
    for _ in range(global_rounds):
        results, weights = [], []
        for sites in REGIONS.values():
            regional = model
            for _ in range(local_rounds):
                regional = _average([_train(SHARDS[s], regional) for s in sites], [size[s] for s in sites])
            results.append(regional)
            weights.append(sum(size[s] for s in sites))
        model = _average(results, weights)
    return model


@pytest.mark.parametrize("point", ["aggregator:mid_upload#3", "region:before_upload#2", "region:after_parent_model#2"])
def test_a_region_killed_mid_round_and_restarted_gives_the_same_model(tmp_path: Path, point: str,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    top, regions, sites = two_regions(tmp_path / "tree", rounds=2, local_rounds=1,
                                      network={"reconnect_deadline": 120}, aggregator={"heartbeat_timeout": 120})
    with processes(top) as procs:
        started = [procs.aggregator(), procs.start("region-b", "aggregator", "start", cwd=regions["region-b"])]
        monkeypatch.setenv("FX_FAULT", point)
        doomed = procs.start("region-a", "aggregator", "start", cwd=regions["region-a"])
        monkeypatch.delenv("FX_FAULT")
        started += [procs.collaborator(site, cwd=ws) for site, ws in sites.items()]
        assert doomed.wait(TIMEOUT) == -9, doomed.output()[-3000:]
        started.append(procs.start("region-a-again", "aggregator", "start", cwd=regions["region-a"]))
        codes = {p.name: p.wait(TIMEOUT) for p in started}
        assert all(c == 0 for c in codes.values()), {p.name: p.output()[-3000:] for p in started if codes[p.name]}
    expected = _two_level(load_model(top / "save" / "init.pbuf"), global_rounds=2, local_rounds=1)
    got = load_model(top / "save" / "last.pbuf")
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], **FLOAT32_ROUNDING)


def test_fx_plan_region_and_ping_from_a_region_to_its_parent(tmp_path: Path) -> None:
    from tests.fault_helpers import wait_until
    from tests.runtime_helpers import fx_in

    top = make_workspace(tmp_path / "top", ["region-a"], rounds=1, shards=SHARDS, certify=["region-a", "a1"])
    region = add_region(top, tmp_path, "region-a", ["a1"], local_rounds=2)
    plan = (region / "plan" / "plan.yaml").read_text()
    assert "upstream:" in plan and "local_rounds: 2" in plan
    assert (region / "plan" / "upstream.yaml").read_text() == (top / "plan" / "plan.yaml").read_text()
    with processes(top) as procs:
        aggregator = procs.aggregator()
        wait_until(lambda: "listening on" in aggregator.output(), "the top aggregator to listen")
        out = fx_in(region, "collaborator", "ping", "-n", "region-a", "-p", "plan/upstream.yaml")
        aggregator.popen.kill()
    assert "plan" in out and "match" in out, out
    # Running it again for the same region is refused, with what to do instead.
    with contextlib.chdir(region):
        res = CliRunner().invoke(cli, ["plan", "region", "-n", "region-a", "-a", "localhost"])
    assert res.exit_code != 0 and "already region 'region-a'" in res.output


def test_fx_simulate_with_a_topology_gives_the_real_hierarchy_model(tmp_path: Path) -> None:
    from tests.fault_helpers import assert_bit_identical
    from tests.test_simulate import flat, simulate

    top, regions, sites = two_regions(tmp_path / "tree", rounds=2, local_rounds=2)
    sim = tmp_path / "sim"
    shutil.copytree(top, sim)
    _run_hierarchy(top, regions, sites)
    (sim / "topology.yaml").write_text("local_rounds: 2\nregions:\n  region-a: [a1, a2]\n  region-b: [b1, b2]\n")
    res = simulate(sim, "--topology", "topology.yaml", "--workers", "2")
    assert res.returncode == 0, flat(res)
    assert_bit_identical(load_model(sim / "save" / "last.pbuf"), load_model(top / "save" / "last.pbuf"))
    region_lines = (sim / "logs" / "regions" / "region-a_metrics.jsonl").read_text().splitlines()
    assert len([line for line in region_lines if '"final": false' in line]) == 4  # 2 top rounds x 2 local rounds
    # A topology that names a site without data is refused before anything runs.
    (sim / "bad.yaml").write_text("regions:\n  region-a: [a1, nowhere]\n")
    res = simulate(sim, "--topology", "bad.yaml")
    assert res.returncode != 0 and "site 'nowhere' has no line in plan/data.yaml" in flat(res)
