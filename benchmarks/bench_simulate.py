"""``fx simulate`` speed and memory as the number of virtual collaborators grows.

numpy/synthetic (1e4 parameters, 3 rounds) with N = 10, 100, 1000, and keras/digits with N = 10, 100, each
as one ``fx simulate -n N --workers K`` process (K defaults to 2). Peak RSS is summed over the simulation and
all its worker processes (each process's peak, sampled every 20 ms with psutil). Prints wall time, seconds
per round, summed peak RSS, final accuracy, then the targets: N=1000 in <= 30 s wall and <= 1.5 GiB summed
peak RSS, and RSS(N=1000) <= 1.2 x RSS(N=10). Exits 1 when a target is missed.

Usage: python benchmarks/bench_simulate.py [--workers 2] [--sizes 10,100,1000] [--keras-sizes 10,100]
       [--no-keras] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml

WALL_TARGET = 30.0
RSS_TARGET = 1.5 * 2**30
GROWTH_TARGET = 1.2
PARAMS = 10_000
ROUNDS = 3


@dataclass
class Figures:
    label: str
    n: int
    wall: float
    per_round: list[float]
    rss: int
    accuracy: float | None


def fx(ws: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "fx_cli", *args], cwd=ws, check=True, capture_output=True, text=True)


def workspace(root: Path, template: str, name: str) -> Path:
    ws = root / name
    fx(root, "workspace", "create", "--prefix", name, "--template", template)
    plan_path = ws / "plan" / "plan.yaml"
    plan = yaml.safe_load(plan_path.read_text())
    plan["aggregator"]["settings"]["rounds_to_train"] = ROUNDS
    if template == "numpy/synthetic":
        plan["task_runner"]["settings"].update(num_params=PARAMS, num_tensors=4)
    plan_path.write_text(yaml.safe_dump(plan))
    fx(ws, "plan", "initialize", "-a", "localhost")
    return ws


def measure(ws: Path, n: int, workers: int, label: str) -> Figures:
    """Run one simulation from scratch; wall time and the summed per-process peak RSS."""
    fx(ws, "aggregator", "reset", "-y")
    shutil.rmtree(ws / "logs", ignore_errors=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "fx_cli", "simulate", "-n", str(n), "--workers", str(workers)],
                            cwd=ws, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peaks: dict[int, int] = {}
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            family = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for p in family:
            try:
                peaks[p.pid] = max(peaks.get(p.pid, 0), p.memory_info().rss)
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.02)
    out, _ = proc.communicate()
    wall = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"{label} N={n} failed ({proc.returncode}):\n{out}")
    records = [json.loads(line) for line in (ws / "logs" / "aggregator_metrics.jsonl").read_text().splitlines()]
    rounds = [r["seconds"] for r in records if not r["final"]]
    final = next((r for r in records if r["final"]), records[-1])
    accuracy = final["metrics"].get("aggregated_model_validation/accuracy")
    return Figures(label, n, wall, rounds, sum(peaks.values()), accuracy)


def show(f: Figures) -> None:
    per_round = " ".join(f"{s:.2f}" for s in f.per_round)
    acc = f"{f.accuracy:.4f}" if f.accuracy is not None else "-"
    print(f"{f.label:16} N={f.n:<5} wall {f.wall:7.2f} s   s/round {per_round:24}  summed peak RSS "
          f"{f.rss / 2**20:7.1f} MiB   final accuracy {acc}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--keras-sizes", default="10,100")
    parser.add_argument("--no-keras", action="store_true")
    parser.add_argument("--keep", type=Path, default=None)
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="fx-bench-simulate-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"fx simulate, {args.workers} workers, {os.cpu_count()} cores (figures from a possibly shared machine)")
    try:
        synthetic = workspace(root, "numpy/synthetic", "synthetic")
        numpy_figs = []
        for n in [int(x) for x in args.sizes.split(",")]:
            numpy_figs.append(measure(synthetic, n, args.workers, "numpy/synthetic"))
            show(numpy_figs[-1])
        if not args.no_keras:
            digits = workspace(root, "keras/digits", "digits")
            for n in [int(x) for x in args.keras_sizes.split(",")]:
                show(measure(digits, n, args.workers, "keras/digits"))
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    by_n = {f.n: f for f in numpy_figs}
    failed = False
    if 1000 in by_n:
        big = by_n[1000]
        ok = big.wall <= WALL_TARGET
        failed |= not ok
        print(f"N=1000 wall {big.wall:.2f} s / target {WALL_TARGET:.0f} s = {big.wall / WALL_TARGET:.2f}  "
              f"{'ok' if ok else 'MISSED'}")
        ok = big.rss <= RSS_TARGET
        failed |= not ok
        print(f"N=1000 summed peak RSS {big.rss / 2**30:.3f} GiB / target 1.5 GiB = {big.rss / RSS_TARGET:.2f}  "
              f"{'ok' if ok else 'MISSED'}")
        if 10 in by_n:
            ratio = big.rss / by_n[10].rss
            ok = ratio <= GROWTH_TARGET
            failed |= not ok
            print(f"RSS(N=1000) / RSS(N=10) = {ratio:.2f} / target {GROWTH_TARGET}  {'ok' if ok else 'MISSED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
