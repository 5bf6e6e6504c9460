"""Federation benchmark: numpy/synthetic over mutual TLS on loopback, real processes.

For 2 and 8 collaborators at 1e5 and 5e7 parameters, prints seconds per round,
peak RSS of the aggregator and of the largest collaborator (psutil, sampled,
plus the kernel's high-water mark where /proc has it) and bytes moved per
second, with the ratios against the targets:

* a tiny model runs at <= 0.25 s per round;
* aggregator peak RSS at 5e7 parameters <= 3x the model size, not growing from 2 to 8 collaborators.

Usage: python benchmarks/bench_federation.py [--quick] [--rounds N] [--keep DIR]
(``--quick`` runs only the 1e5 cases.)
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import yaml

TINY_TARGET_S = 0.25
RSS_TARGET_X = 3.0


def fx(cwd: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "fx_cli", *args], cwd=cwd, check=True, env=_env(),
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _env() -> dict[str, str]:
    return dict(os.environ, FQDN="localhost", PYTHONUNBUFFERED="1")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_workspace(root: Path, n: int, params: int, rounds: int) -> Path:
    """A certified numpy/synthetic workspace with ``n`` collaborators and a ``params``-value model."""
    ws = root / f"ws_{n}_{params}"
    fx(root, "workspace", "create", "--prefix", str(ws), "--template", "numpy/synthetic")
    plan_path = ws / "plan" / "plan.yaml"
    plan = yaml.safe_load(plan_path.read_text())
    plan["network"]["settings"].update(agg_addr="localhost", agg_port=free_port(), use_tls=True,
                                       client_reconnect_interval=0.1)
    plan["aggregator"]["settings"].update(rounds_to_train=rounds)
    plan["task_runner"]["settings"].update(num_params=params, num_tensors=8)
    plan_path.write_text(yaml.safe_dump(plan))
    names = [f"col-{i}" for i in range(1, n + 1)]
    (ws / "plan" / "data.yaml").write_text("".join(f"{c},{i}\n" for i, c in enumerate(names, 1)))
    fx(ws, "plan", "initialize", "-a", "localhost")
    fx(ws, "workspace", "certify")
    fx(ws, "aggregator", "generate-cert-request", "--fqdn", "localhost")
    fx(ws, "aggregator", "certify", "--fqdn", "localhost", "-s")
    for c in names:
        fx(ws, "collaborator", "generate-cert-request", "-n", c, "-s", "-x")
        fx(ws, "collaborator", "certify", "-n", c, "-s")
    return ws


@dataclass
class Sampled:
    """Peak memory of one process: sampled RSS and the kernel's high-water mark."""

    pid: int
    rss: int = 0
    hwm: int = 0

    def sample(self) -> None:
        with contextlib.suppress(psutil.Error, OSError):
            self.rss = max(self.rss, psutil.Process(self.pid).memory_info().rss)
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.hwm = max(self.hwm, int(line.split()[1]) * 1024)

    @property
    def peak(self) -> int:
        return max(self.rss, self.hwm)


@dataclass
class Case:
    collaborators: int
    params: int
    rounds: int
    seconds_per_round: float = 0.0
    wall: float = 0.0
    agg_peak: int = 0
    col_peak: int = 0
    bytes_per_second: float = 0.0
    round_seconds: list[float] = field(default_factory=list)

    @property
    def model_bytes(self) -> int:
        return self.params * 4


def run_case(root: Path, n: int, params: int, rounds: int, interval: float) -> Case:
    ws = make_workspace(root, n, params, rounds)
    logs = ws / "logs"
    procs = [subprocess.Popen([sys.executable, "-m", "fx_cli", "aggregator", "start"], cwd=ws, env=_env(),
                              stdout=open(logs / "bench-aggregator.log", "w"), stderr=subprocess.STDOUT)]
    for i in range(1, n + 1):
        procs.append(subprocess.Popen([sys.executable, "-m", "fx_cli", "collaborator", "start", "-n", f"col-{i}"],
                                      cwd=ws, env=_env(), stdout=open(logs / f"bench-col-{i}.log", "w"),
                                      stderr=subprocess.STDOUT))
    samples = [Sampled(p.pid) for p in procs]
    done = threading.Event()

    def sampler() -> None:
        while not done.is_set():
            for s in samples:
                s.sample()
            done.wait(interval)

    thread = threading.Thread(target=sampler, daemon=True)
    started = time.monotonic()
    thread.start()
    try:
        codes = [p.wait(timeout=1800) for p in procs]
    finally:
        done.set()
        for p in procs:
            if p.poll() is None:
                p.kill()
    thread.join()
    if any(codes):
        raise SystemExit(f"run failed (exit codes {codes}); see {logs}")
    records = [json.loads(x) for x in (logs / "aggregator_metrics.jsonl").read_text().splitlines()]
    case = Case(n, params, rounds, wall=time.monotonic() - started)
    case.round_seconds = [r["seconds"] for r in records if not r["final"]]  # the final model's check is extra
    steady = case.round_seconds[1:] or case.round_seconds  # round 1 includes connection set-up
    case.seconds_per_round = sum(steady) / len(steady)
    moved = sum(r["bytes_in"] + r["bytes_out"] for r in records)
    case.bytes_per_second = moved / max(sum(r["seconds"] for r in records), 1e-9)
    case.agg_peak = samples[0].peak
    case.col_peak = max(s.peak for s in samples[1:])
    return case


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def report(cases: list[Case]) -> None:
    print(f"{'collabs':>7} {'params':>9} {'s/round':>9} {'agg peak RSS':>14} {'x model':>8} "
          f"{'col peak RSS':>14} {'moved/s':>12}  rounds (s)")
    for c in cases:
        print(f"{c.collaborators:>7} {c.params:>9.0e} {c.seconds_per_round:>9.3f} {mib(c.agg_peak):>14} "
              f"{c.agg_peak / c.model_bytes:>8.2f} {mib(c.col_peak):>14} {mib(c.bytes_per_second) + '/s':>12}  "
              + ", ".join(f"{s:.2f}" for s in c.round_seconds))
    print()
    for c in cases:
        if c.params <= 1e5:
            verdict = "OK" if c.seconds_per_round <= TINY_TARGET_S else "MISSED"
            print(f"tiny model, {c.collaborators} collaborators: {c.seconds_per_round:.3f} s/round = "
                  f"{c.seconds_per_round / TINY_TARGET_S:.2f} x the {TINY_TARGET_S} s target  [{verdict}]")
    big = {c.collaborators: c for c in cases if c.params >= 5e7}
    for n, c in sorted(big.items()):
        ratio = c.agg_peak / c.model_bytes
        verdict = "OK" if ratio <= RSS_TARGET_X else "MISSED"
        print(f"5e7 params, {n} collaborators: aggregator peak RSS {mib(c.agg_peak)} = {ratio:.2f} x model "
              f"({mib(c.model_bytes)}); target <= {RSS_TARGET_X} x  [{verdict}]")
    if 2 in big and 8 in big:
        growth = big[8].agg_peak / big[2].agg_peak
        print(f"aggregator peak RSS 8 vs 2 collaborators at 5e7: {growth:.2f} x  "
              f"[{'OK' if growth <= 1.1 else 'GROWS'}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only the 1e5-parameter cases")
    parser.add_argument("--rounds", type=int, default=0, help="rounds per case (default: 10 tiny, 3 large)")
    parser.add_argument("--keep", type=Path, help="keep the workspaces in this folder")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="fx-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    sizes = [100_000] if args.quick else [100_000, 50_000_000]
    cases = []
    try:
        for params in sizes:
            for n in (2, 8):
                rounds = args.rounds or (10 if params <= 1e5 else 3)
                print(f"running {n} collaborators x {params:.0e} params x {rounds} rounds ...", flush=True)
                cases.append(run_case(root, n, params, rounds, interval=0.02 if params <= 1e5 else 0.05))
                if params > 1e5:
                    shutil.rmtree(root / f"ws_{n}_{params}", ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print()
    report(cases)


if __name__ == "__main__":
    main()
