"""Privacy costs: secure aggregation against plain FedAvg, and the DP accountant per round.

Secure aggregation runs all four stages of the protocol (``fx_cli/secagg``) in this process with real
certificates, X25519, ChaCha20 masks and Shamir shares, without gRPC, so the
figures are compute time (collaborators' stages run one after another here; in a federation they run in
parallel, so the round pays the slowest collaborator, shown as "client max") and the bytes each message
would carry. Plain FedAvg is the weighted mean of the same float32 updates, 4 bytes per value each way.

    python benchmarks/bench_privacy.py            # 1e5 and 1e6 parameters, 4 and 16 collaborators
    python benchmarks/bench_privacy.py --quick    # 1e4 parameters, 4 collaborators

Then the same comparison over the wire: real federations (mutual TLS on loopback, collaborators as threads
of this process), plain FedAvg against secure aggregation, seconds per round and bytes the aggregator received.
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
from cryptography.hazmat.primitives import serialization

from fx_cli.pki import certs, keys
from fx_cli.secagg.client import SecAggClient
from fx_cli.secagg.params import SecAggParams
from fx_cli.secagg.server import SecAggServer


def federation_pki(n: int) -> tuple[list[Any], list[tuple[Any, bytes]]]:
    start = certs.now()
    root_key, signing_key = keys.new_private_key(), keys.new_private_key()
    root = certs.Issuer(certs.root_ca(root_key, "Root", not_before=start, days=3), root_key)
    signing = certs.Issuer(certs.signing_ca(signing_key, "Signing", root, not_before=start, days=3), signing_key)
    members = []
    for i in range(n):
        key = keys.new_private_key()
        cert = certs.leaf(key.public_key(), certs.Names(f"site{i:02d}"), "client", signing, not_before=start,
                          not_after=start + 3 * certs.DAY)
        members.append((key, cert.public_bytes(serialization.Encoding.PEM)))
    return [root.cert, signing.cert], members


def plain_fedavg(updates: list[np.ndarray], weights: list[int]) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    total = np.zeros(updates[0].size, np.float64)
    for u, w in zip(updates, weights):
        total += w * u.astype(np.float64)
    mean = total / sum(weights)
    return time.perf_counter() - started, mean


def secagg_round(chain: list[Any], members: list[tuple[Any, bytes]], updates: list[np.ndarray],
                 weights: list[int], drop: int) -> dict[str, Any]:
    n = len(updates)
    params = SecAggParams(threshold=max(2, (2 * n + 2) // 3), clipping_range=8.0, quantization_bits=22)
    names = [f"site{i:02d}" for i in range(n)]
    clients = {nm: SecAggClient("plan_bench", 0, nm, params, k, pem, chain) for nm, (k, pem) in zip(names, members)}
    client_time = dict.fromkeys(names, 0.0)
    up = dict.fromkeys(names, 0)
    down = dict.fromkeys(names, 0)
    server = SecAggServer(0, params)
    server_time = 0.0

    def timed(name: str, fn: Any, *args: Any) -> Any:
        started = time.perf_counter()
        out = fn(*args)
        client_time[name] += time.perf_counter() - started
        return out

    for nm in names:
        advert = timed(nm, clients[nm].advertise)
        up[nm] += len(advert.c_public) + len(advert.s_public) + len(advert.signature) + len(advert.cert_pem)
        server.add_advert(advert)
    adverts = list(server.adverts.values())
    advert_bytes = sum(len(a.c_public) + len(a.s_public) + len(a.signature) + len(a.cert_pem) for a in adverts)
    for nm in names:
        down[nm] += advert_bytes
        sealed = timed(nm, clients[nm].share_keys, adverts)
        up[nm] += sum(len(v) for v in sealed.values())
        server.add_shares(nm, sealed)
    dropped = set(names[:drop])  # they shared keys, then vanished before sending their masked update
    for nm, u, w in zip(names, updates, weights):
        if nm in dropped:
            continue
        inbox = server.shares_for(nm)
        down[nm] += sum(len(v) for v in inbox.values())
        masked = timed(nm, clients[nm].masked_input, inbox, u, w)
        up[nm] += masked.nbytes
        started = time.perf_counter()
        server.add_masked(nm, masked)
        server_time += time.perf_counter() - started
    survivors = server.survivor_list()
    for nm in survivors:
        down[nm] += sum(len(s) for s in survivors)
        revealed = timed(nm, clients[nm].unmask, survivors)
        up[nm] += sum(4 + 66 + 8 for _ in revealed)
        server.add_unmask(nm, revealed)
    started = time.perf_counter()
    mean, _ = server.mean()
    server_time += time.perf_counter() - started
    alive = [i for i, nm in enumerate(names) if nm not in dropped]
    _, reference = plain_fedavg([updates[i] for i in alive], [weights[i] for i in alive])
    return {"client_max": max(client_time[nm] for nm in survivors), "client_sum": sum(client_time.values()),
            "server": server_time, "up": sum(up.values()), "down": sum(down.values()),
            "max_error": float(np.max(np.abs(mean - reference)))}


def bench_secagg(sizes: list[int], counts: list[int]) -> None:
    print("secure aggregation vs plain FedAvg, one round (compute in one process; bytes each message would carry)")
    print(f"{'params':>8} {'n':>3} {'drop':>4} | {'plain s':>8} {'plain MB':>9} | {'client max s':>12} "
          f"{'server s':>9} {'secagg MB':>10} {'bytes x':>7} {'max err':>9}")
    for size in sizes:
        for n in counts:
            chain, members = federation_pki(n)
            rng = np.random.default_rng(0)
            updates = [rng.normal(0, 0.01, size).astype(np.float32) for _ in range(n)]
            weights = [int(w) for w in rng.integers(100, 1000, n)]
            plain_s, _ = plain_fedavg(updates, weights)
            plain_bytes = 2 * n * size * 4  # each update up, the model down
            for drop in (0, 1):
                r = secagg_round(chain, members, updates, weights, drop)
                total = r["up"] + r["down"] + n * size * 4  # plus the model download, as in plain FedAvg
                print(f"{size:>8.0e} {n:>3} {drop:>4} | {plain_s:>8.3f} {plain_bytes / 1e6:>9.1f} | "
                      f"{r['client_max']:>12.3f} {r['server']:>9.3f} {total / 1e6:>10.1f} "
                      f"{total / plain_bytes:>7.2f} {r['max_error']:>9.2e}", flush=True)


def bench_accountant() -> None:
    from fx_cli.privacy.accountant import RdpAccountant, _curve

    print("\nDP accountant")
    for q, z in ((1.0, 1.0), (0.1, 1.1), (0.01, 0.8), (0.3, 0.5)):
        _curve.cache_clear()
        started = time.perf_counter()
        _curve(q, z)
        first = time.perf_counter() - started
        acc = RdpAccountant(1e-5)
        started = time.perf_counter()
        for _ in range(200):
            acc.compose(q, z)
            eps = acc.epsilon()
        per_round = (time.perf_counter() - started) / 200
        print(f"q={q:<5} z={z:<4} first RDP curve {first * 1e3:8.1f} ms; then per round (compose + ε) "
              f"{per_round * 1e3:6.3f} ms; ε after 200 rounds {eps:.3g}")


def bench_wire(sizes: list[int], counts: list[int], rounds: int = 2) -> None:
    """Real federations (gRPC over mutual TLS on loopback; collaborators are threads of this process)."""
    import sys
    import tempfile
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.runtime_helpers import make_workspace, run_in_process

    import logging

    logging.disable(logging.WARNING)  # the federations' own progress lines would bury the table

    print("\nover the wire: numpy/synthetic, mTLS on loopback, seconds per round and MB received by the aggregator")
    print(f"{'params':>8} {'n':>3} | {'plain s/round':>13} {'plain MB in':>11} | {'secagg s/round':>14} "
          f"{'secagg MB in':>12} {'time x':>6}")
    for size in sizes:
        for n in counts:
            names = [f"site{i:02d}" for i in range(n)]
            shards = {nm: i + 1 for i, nm in enumerate(names)}
            figures = []
            for secure in (False, True):
                with tempfile.TemporaryDirectory() as tmp:
                    extra: dict[str, Any] = ({"secure_aggregation": {"threshold": max(2, (2 * n + 2) // 3)}}
                                             if secure else {})
                    ws = make_workspace(Path(tmp), names, rounds=rounds, shards=shards, num_params=size,
                                        num_tensors=4, aggregator={"secure_aggregation": secure,
                                                                   "final_evaluation": False,
                                                                   "heartbeat_timeout": 120}, **extra)
                    out = run_in_process(ws, names, timeout=1200)
                    assert not out.errors, out.errors
                    records = [json.loads(x) for x in (ws / "logs" / "aggregator_metrics.jsonl").read_text().splitlines()]
                    figures.append((sum(r["seconds"] for r in records) / len(records),
                                    sum(r["bytes_in"] for r in records) / len(records) / 1e6))
            (ps, pb), (ss, sb) = figures
            print(f"{size:>8.0e} {n:>3} | {ps:>13.2f} {pb:>11.1f} | {ss:>14.2f} {sb:>12.1f} {ss / ps:>6.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-wire", action="store_true", help="skip the real federations")
    args = parser.parse_args()
    if args.quick:
        bench_secagg([10_000], [4])
    else:
        bench_secagg([100_000, 1_000_000], [4, 16])
    bench_accountant()
    if not args.no_wire:
        bench_wire([10_000], [4]) if args.quick else bench_wire([100_000, 1_000_000], [4, 16])


if __name__ == "__main__":
    main()
