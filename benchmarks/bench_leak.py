"""Leak check: the aggregator's resident memory over many rounds of numpy/synthetic stays flat.

Runs a real federation (aggregator and collaborators as processes, mutual TLS
on loopback) and reads the RSS the aggregator records for each round in
``logs/aggregator_metrics.jsonl`` (taken at the same point of every round,
right after the next model is written). Prints the per-round RSS and the
growth after round 2; exits 1 when it is 5% or more.

Usage: python -m benchmarks.bench_leak [--rounds 20] [--params 1000000] [--collaborators 2] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    from benchmarks.bench_federation import _env, make_workspace
except ImportError:  # run as a script from benchmarks/
    from bench_federation import _env, make_workspace  # type: ignore[no-redef]

LIMIT = 0.05  # growth after round 2 must stay below 5%
BASELINE_ROUND = 2


def run(ws: Path, n: int, timeout: float) -> None:
    """The whole federation as processes; every exit code must be 0."""
    logs = ws / "logs"
    logs.mkdir(exist_ok=True)
    names = [f"col-{i}" for i in range(1, n + 1)]
    procs = [subprocess.Popen([sys.executable, "-m", "fx_cli", *args], cwd=ws, env=_env(),
                              stdout=open(logs / f"{tag}.log", "w"), stderr=subprocess.STDOUT)
             for tag, args in [("aggregator", ["aggregator", "start"])]
             + [(c, ["collaborator", "start", "-n", c]) for c in names]]
    try:
        for proc in procs:
            code = proc.wait(timeout)
            if code != 0:
                raise SystemExit(f"a process exited {code}; see {logs}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def rss_by_round(ws: Path) -> list[tuple[int, float]]:
    """(round, aggregator RSS in MiB) of every training round."""
    records = [json.loads(line) for line in (ws / "logs" / "aggregator_metrics.jsonl").read_text().splitlines()]
    return [(r["round"], float(r["rss_mib"])) for r in records if not r["final"]]


def report(rows: list[tuple[int, float]], params: int) -> float:
    """Print the table and the growth figures; returns the largest growth after the baseline round."""
    base = dict(rows)[BASELINE_ROUND]
    print(f"aggregator RSS per round (model {params * 4 / 2**20:.1f} MiB):")
    for r, rss in rows:
        print(f"  round {r:3d}  {rss:8.1f} MiB  {100 * (rss - base) / base:+6.2f}% vs round {BASELINE_ROUND}")
    after = [rss for r, rss in rows if r >= BASELINE_ROUND]
    final, worst = (after[-1] - base) / base, (max(after) - base) / base
    later = [(r, rss) for r, rss in rows if r >= BASELINE_ROUND]
    slope = float(np.polyfit([r for r, _ in later], [rss for _, rss in later], 1)[0]) if len(later) > 1 else 0.0
    print(f"trend after round {BASELINE_ROUND}: {slope:+.3f} MiB per round (least squares)")
    print(f"growth after round {BASELINE_ROUND}: final {100 * final:+.2f}%, largest {100 * worst:+.2f}% "
          f"(limit {100 * LIMIT:.0f}%): {'PASS' if worst < LIMIT else 'FAIL'}")
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--params", type=int, default=1_000_000)
    parser.add_argument("--collaborators", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="keep the workspace under this folder")
    args = parser.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="fx-leak-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        ws = make_workspace(root, args.collaborators, args.params, args.rounds)
        started = time.monotonic()
        run(ws, args.collaborators, timeout=60 + 10 * args.rounds)
        print(f"{args.rounds} rounds, {args.collaborators} collaborators, mutual TLS: "
              f"{time.monotonic() - started:.1f} s")
        worst = report(rss_by_round(ws), args.params)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    sys.exit(0 if worst < LIMIT else 1)


if __name__ == "__main__":
    main()
