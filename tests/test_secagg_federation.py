"""Secure aggregation in real federations: gRPC over mutual TLS on loopback, certificates from fx's own CA."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from fx_cli.secagg.keys import KeyAdvert
from fx_cli.secagg.quantize import quantization_bound
from tests.runtime_helpers import final_model, make_workspace, reference_fedavg, run_in_process

NAMES = ["one", "two", "three", "four", "five"]
SHARDS = {n: i + 1 for i, n in enumerate(NAMES)}
SECAGG = {"threshold": 3, "clipping_range": 4.0, "quantization_bits": 24}


def secagg_workspace(root: Path, rounds: int = 2, **sections: dict) -> Path:
    return make_workspace(root, list(sections.pop("names", NAMES)), rounds=rounds, shards=SHARDS, num_params=3000,
                          aggregator={"secure_aggregation": True}, secure_aggregation=SECAGG,
                          **sections)


def test_five_collaborators_over_mtls_equal_plain_fedavg_within_the_quantisation_bound(tmp_path: Path) -> None:
    ws = secagg_workspace(tmp_path)
    out = run_in_process(ws, NAMES, timeout=180)
    assert not out.errors, out.errors
    want, got = reference_fedavg(ws, SHARDS, 2), final_model(ws)
    bound = 2 * quantization_bound(4.0, 24) + 1e-6  # two rounds of rounding, plus float32
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=bound)
    assert any(not np.array_equal(got[k], want[k]) for k in want)  # it really went through quantisation
    records = [json.loads(x) for x in (ws / "logs" / "aggregator_metrics.jsonl").read_text().splitlines()]
    assert [r["participants"] for r in records if not r["final"]] == [sorted(NAMES)] * 2


def dropout_run(tmp_path: Path, threshold: int) -> tuple[Path, dict[str, int], dict[str, str]]:
    """Five collaborators as processes; 'two' is killed after advertising its keys (before sharing them),
    'four' after sharing them (before its masked update)."""
    from tests.fault_helpers import processes

    settings = dict(SECAGG, threshold=threshold)
    ws = make_workspace(tmp_path, NAMES, rounds=2, shards=SHARDS, num_params=3000,
                        aggregator={"secure_aggregation": True, "heartbeat_timeout": 10},
                        secure_aggregation=settings, network={"reconnect_deadline": 60},
                        straggler_handling_policy={"template": "fx_cli.aggregator.stragglers.PercentagePolicy",
                                                   "percent_collaborators_needed": 0.6})
    faults = {"two": "collaborator:secagg_advertised", "four": "collaborator:secagg_shared"}
    with processes(ws) as procs:
        started = [procs.aggregator()] + [procs.collaborator(n, fault=faults.get(n)) for n in NAMES]
        codes = {p.name: p.wait(240) for p in started}
        outputs = {p.name: p.output() for p in started}
    return ws, codes, outputs


def test_dropouts_before_and_after_sharing_keys_still_give_the_survivors_sum(tmp_path: Path) -> None:
    from tests.runtime_helpers import reference_model

    ws, codes, outputs = dropout_run(tmp_path, threshold=3)
    assert codes == {"aggregator": 0, "one": 0, "two": -9, "three": 0, "four": -9, "five": 0}, outputs
    alive = ["five", "one", "three"]
    want = reference_model(ws, SHARDS, 2, trainers=lambda r: alive)
    got = final_model(ws)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=2 * quantization_bound(4.0, 24) + 1e-6)


def test_below_the_threshold_the_round_fails_clearly_and_reveals_nothing(tmp_path: Path) -> None:
    ws, codes, outputs = dropout_run(tmp_path, threshold=4)
    assert codes["aggregator"] != 0
    assert "3 masked updates arrived, fewer than the threshold 4" in " ".join(outputs["aggregator"].split())
    assert "no individual update is revealed" in " ".join(outputs["aggregator"].split())
    assert not (ws / "save" / "last.pbuf").exists()  # no round was completed, nothing aggregated was written


def test_aggregator_killed_while_unmasking_redoes_the_round_and_ends_with_the_plain_sum(tmp_path: Path) -> None:
    from tests.fault_helpers import killed, processes

    names = NAMES[:3]
    ws = make_workspace(tmp_path, names, rounds=2, shards=SHARDS, num_params=3000,
                        aggregator={"secure_aggregation": True}, secure_aggregation=dict(SECAGG, threshold=2),
                        network={"reconnect_deadline": 60})
    with processes(ws) as procs:
        first = procs.aggregator(fault="aggregator:secagg_unmasking")
        cols = [procs.collaborator(n) for n in names]
        killed(first)
        second = procs.aggregator()
        assert second.wait(240) == 0, second.output()
        for col in cols:
            assert col.wait(240) == 0, col.output()
    assert "round 1 is redone" in " ".join(second.output().split())
    want, got = reference_fedavg(ws, {n: SHARDS[n] for n in names}, 2), final_model(ws)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=2 * quantization_bound(4.0, 24) + 1e-6)


def test_what_the_aggregator_receives_from_one_site_is_uncorrelated_with_its_update(tmp_path: Path,
                                                                                    monkeypatch) -> None:
    """A spy on the aggregator's intake of masked vectors (the real path still runs) keeps what 'one' sent."""
    from fx_cli.secagg.quantize import quantize
    from fx_cli.secagg.rounds import SecAggRounds
    from fx_cli.tensors.pbuf import read_model
    from tests.runtime_helpers import synthetic_runner

    received: dict[tuple[int, str], np.ndarray] = {}
    real = SecAggRounds.masked

    def spy(self: SecAggRounds, round_num: int, name: str, vector: np.ndarray) -> None:
        received[(round_num, name)] = vector.copy()
        real(self, round_num, name, vector)

    monkeypatch.setattr(SecAggRounds, "masked", spy)
    names = NAMES[:3]
    ws = make_workspace(tmp_path, names, rounds=1, shards=SHARDS, num_params=100_000, num_tensors=2,
                        aggregator={"secure_aggregation": True}, secure_aggregation=dict(SECAGG, threshold=2))
    out = run_in_process(ws, names, timeout=180)
    assert not out.errors, out.errors
    init = read_model(ws / "save" / "init.pbuf").tensors
    runner = synthetic_runner(ws, SHARDS["one"])
    runner.set_tensors(init)
    trained = runner.train_task(0).tensors
    delta = np.concatenate([(np.asarray(trained[k], np.float64) - init[k]).ravel() for k in init])
    plain = quantize(delta, 4.0, 24, runner.train_data_size(), 64).astype(np.float64)
    masked = received[(0, "one")][:-1].astype(np.float64)
    assert masked.size == plain.size >= 100_000 and np.std(plain) > 0
    assert abs(np.corrcoef(masked, plain)[0, 1]) < 6 / np.sqrt(masked.size)  # 6 standard deviations of chance


def test_keys_swapped_by_the_aggregator_are_refused_by_the_sites_with_the_cause(tmp_path: Path, monkeypatch) -> None:
    """The aggregator relays one site's advert with another key (a spy alters what it returns)."""
    from fx_cli.secagg.rounds import SecAggRounds

    real = SecAggRounds.advertise

    def tampering(self: SecAggRounds, round_num: int, advert: KeyAdvert) -> list[KeyAdvert]:
        adverts = real(self, round_num, advert)
        return [a if a.name != "two" else dataclasses.replace(a, s_public=bytes(32)) for a in adverts]

    monkeypatch.setattr(SecAggRounds, "advertise", tampering)
    names = NAMES[:3]
    ws = make_workspace(tmp_path, names, rounds=1, shards=SHARDS, num_params=500,
                        aggregator={"secure_aggregation": True, "heartbeat_timeout": 10},
                        secure_aggregation=dict(SECAGG, threshold=2))
    out = run_in_process(ws, names, timeout=180)
    assert set(out.errors) >= set(names)
    for name in names:
        message = str(getattr(out.errors[name], "message", out.errors[name]))
        assert "the key advert of 'two' does not match its signature" in message and "[bad_signature]" in message


def test_local_dp_under_secure_aggregation_clips_each_update_and_reports_epsilon(tmp_path: Path) -> None:
    from tests.test_privacy_federation import CLIP, records, reference

    names = ["one", "two", "three"]
    ws = make_workspace(tmp_path, names, rounds=2, shards={n: SHARDS[n] for n in names}, num_params=2000,
                        aggregator={"secure_aggregation": True}, secure_aggregation=dict(SECAGG, threshold=2),
                        privacy={"mode": "local", "clip_norm": CLIP, "noise_multiplier": 1e-9})
    out = run_in_process(ws, names, timeout=180)
    assert not out.errors, out.errors
    want, got = reference(ws, 2, "local", 0.0), final_model(ws)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=2 * quantization_bound(4.0, 24) + 1e-6)
    assert [r["privacy"]["accountant"][0]["rounds"] for r in records(ws) if not r["final"]] == [1, 2]


def test_a_collaborator_killed_after_sharing_and_restarted_finishes_the_round_without_its_update(
        tmp_path: Path) -> None:
    from tests.fault_helpers import killed, processes
    from tests.runtime_helpers import reference_model

    names = ["one", "two", "three"]
    shards = {n: SHARDS[n] for n in names}
    ws = make_workspace(tmp_path, names, rounds=2, shards=shards, num_params=2000,
                        aggregator={"secure_aggregation": True, "heartbeat_timeout": 10},
                        secure_aggregation=dict(SECAGG, threshold=2), network={"reconnect_deadline": 60})
    with processes(ws) as procs:
        aggregator = procs.aggregator()
        cols = {n: procs.collaborator(n, fault="collaborator:secagg_shared" if n == "two" else None) for n in names}
        killed(cols["two"])
        cols["two"] = procs.collaborator("two")
        assert aggregator.wait(240) == 0, aggregator.output()
        for name, col in cols.items():
            assert col.wait(240) == 0, col.output()
    assert "secure aggregation went on without this collaborator" in " ".join(cols["two"].output().split())
    want = reference_model(ws, shards, 2, trainers=lambda r: ["one", "three"] if r == 0 else names)
    got = final_model(ws)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=2 * quantization_bound(4.0, 24) + 1e-6)
