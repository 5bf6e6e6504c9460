"""Bytes that cross the top level of a hierarchical federation, against the flat federation of the same sites.

2 regions x 2 sites (numpy/synthetic), TLS on, real processes on loopback. The
top aggregator's per-round ``bytes_in``/``bytes_out`` (logs/aggregator_metrics.jsonl)
are what crossed the long-distance links; in the flat federation every site
talks to the top. Target: the hierarchy moves regions x model, the flat one
sites x model, so the ratio is regions / sites = 0.5 (a little above, for
headers and metrics).

    python benchmarks/bench_topology.py [--params 1000000] [--rounds 2]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.runtime_helpers import make_workspace, processes  # noqa: E402
from tests.topology_helpers import two_regions  # noqa: E402

SITES = {"a1": 1, "a2": 2, "b1": 3, "b2": 4}


def _top_bytes(ws: Path) -> list[tuple[int, int]]:
    records = [json.loads(line) for line in (ws / "logs" / "aggregator_metrics.jsonl").read_text().splitlines()]
    return [(r["bytes_in"], r["bytes_out"]) for r in records if not r["final"]]


def _run(procs_ws: Path, starts: list[tuple[str, list[str], Path]]) -> float:
    began = time.monotonic()
    with processes(procs_ws) as procs:
        started = [procs.start(name, *args, cwd=cwd) for name, args, cwd in starts]
        codes = {p.name: p.wait(900) for p in started}
    if any(codes.values()):
        raise SystemExit(f"a process failed: {codes}")
    return time.monotonic() - began


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fx-bench-topology-"))
    try:
        sizes = {"num_params": args.params, "network": {"chunk_size_mib": 4.0}}
        top, regions, sites = two_regions(root / "tree", rounds=args.rounds, **sizes)  # type: ignore[arg-type]
        tree_s = _run(top, [("aggregator", ["aggregator", "start"], top)]
                      + [(n, ["aggregator", "start"], ws) for n, ws in regions.items()]
                      + [(s, ["collaborator", "start", "-n", s], ws) for s, ws in sites.items()])
        flat = make_workspace(root / "flat", list(SITES), rounds=args.rounds, shards=SITES, **sizes)  # type: ignore[arg-type]
        flat_s = _run(flat, [("aggregator", ["aggregator", "start"], flat)]
                      + [(s, ["collaborator", "start", "-n", s], flat) for s in SITES])
        model_mb = args.params * 4 / 1e6
        print(f"model {args.params:.0e} parameters = {model_mb:.1f} MB; {args.rounds} rounds; 2 regions x 2 sites")
        print(f"{'round':>5} {'top in+out, hierarchy':>24} {'top in+out, flat':>18} {'ratio':>7}")
        ratios = []
        for i, (tree, flat_round) in enumerate(zip(_top_bytes(top), _top_bytes(flat)), 1):
            t, f = sum(tree) / 1e6, sum(flat_round) / 1e6
            ratios.append(t / f)
            print(f"{i:>5} {t:>21.1f} MB {f:>15.1f} MB {t / f:>7.3f}")
        print(f"expected: regions x model = {2 * 2 * model_mb:.1f} MB per round (down + up), sites x model = "
              f"{4 * 2 * model_mb:.1f} MB; ratio target 0.5, measured {max(ratios):.3f} (worst round)")
        print(f"wall time: hierarchy {tree_s:.1f} s, flat {flat_s:.1f} s (the hierarchy adds a level of transfers)")
        return 0 if max(ratios) < 0.55 else 1
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
