"""Wire benchmark: every federation figure as a ratio to the loopback TLS limit measured in the same run.

Absolute times drift on a shared machine, so this first measures what plain
gRPC over mutual TLS carries on loopback here and now (a server process and a
client process, the federation's own certificates from its CA, messages of the
plan's chunk size, gRPC's own flow-control window rather than fx's bounded one,
one stream down and one up; one warm-up pass, then five measured passes of 256 MiB each way, the fastest
counting), then runs real federations (numpy/synthetic, aggregator and collaborators as processes), measures
the limit again, and prints every ratio to the faster of the two measurements (each alone beside it, for
round time: on a shared VM the probe's own passes ranged 0.7-2.4 GB/s in one run while fx's rounds did not move):

* seconds per steady round (close to close, rounds 3..) / wire time of that round's bytes (5e7 x 2, 5e7 x 8;
  target <= 1.5), and beside it the round's CPU: every process's CPU-seconds per steady round (read from
  /proc when each round's record appears), what that alone takes spread over this machine's cores, and what
  the probe itself spends on the same bytes (server and client, during its transfers);
* aggregator bytes moved per CPU-second (1e7 x 8; target >= 3 x 170 MB/s), also as a fraction of the
  bytes the TLS probe moved per CPU-second of its server process;
* collaborator peak RSS / model size at 5e7 (target <= 2);
* aggregator peak RSS / model size at 5e7 (target <= 1.5) and its growth from 2 to 8 collaborators;
* aggregator CPU per collaborator per round at 1e5 parameters with 32 collaborators (target <= 10 ms);
* with ``--huge``: one tensor larger than 4 GiB through a federation of one collaborator.

Peak RSS is each process's own high-water mark (``VmHWM``, sampled every 10 ms while it runs: ``wait4``'s
``ru_maxrss`` would also count the peak of the process that started it) and CPU comes from ``wait4``;
per-round CPU from the ``cpu_s`` field of ``logs/aggregator_metrics.jsonl``. Steady rounds are rounds 3.. (``WARM_UP``): round 1
includes start-up and connection set-up, and round 2 is the first to write its updates' spill files and a
next model over an older one's pages (every later round reuses those pages; new ones cost about twice as
much to write on this kind of VM). The final model's evaluation is not a training round. For comparison
with figures from before the seventh session (rounds 2..), the report also prints that figure.

Usage: python -m benchmarks.bench_wire [--cases big2,big8,cpu,many] [--rounds N] [--huge] [--keep DIR] [--tree DIR]
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
from typing import Any, Callable, Iterator

import yaml

MB = 1e6
TARGET_ROUND_X = 1.5
BASELINE_BYTES_PER_CPU = 170 * MB  # aggregator at 1e7 x 8 before issue 15
TARGET_CPU_X = 3.0
TARGET_COL_RSS_X = 2.0
TARGET_AGG_RSS_X = 1.5
TARGET_MS_PER_COL = 10.0
PROBE_BYTES = 256 * 2**20
PROBE_REPEATS = 5  # measured passes after the warm-up; the limit is the fastest
WARM_UP_PASSES = 1
WARM_UP = 2  # rounds before the steady ones (see the module's docstring)


TREE = [str(Path(__file__).resolve().parent.parent)]  # --tree: the fx_cli that federations run


def _env() -> dict[str, str]:
    return dict(os.environ, FQDN="localhost", PYTHONUNBUFFERED="1",
                PYTHONPATH=TREE[0] + os.pathsep + os.environ.get("PYTHONPATH", ""))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fx_in(ws: Path, *args: str) -> None:
    """``fx ARGS`` in this process (32 collaborators' certificates in seconds, not a minute of start-ups)."""
    from click.testing import CliRunner

    from fx_cli.cli.main import cli

    with contextlib.chdir(ws):
        res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    if res.exit_code != 0:
        raise SystemExit(f"fx {' '.join(args)} failed ({res.exit_code}):\n{res.output}")


OVERRIDES: dict[str, dict[str, Any]] = {}  # --set section.key=value, applied to every federation's plan


def make_workspace(root: Path, n: int, params: int, rounds: int, tensors: int = 8) -> Path:
    """A certified numpy/synthetic workspace with ``n`` collaborators and a ``params``-value model."""
    os.environ.setdefault("FQDN", "localhost")
    ws = root / f"ws_{n}_{params}_{tensors}"
    fx_in(root, "workspace", "create", "--prefix", str(ws), "--template", "numpy/synthetic")
    plan_path = ws / "plan" / "plan.yaml"
    plan = yaml.safe_load(plan_path.read_text())
    plan["network"]["settings"].update(agg_addr="localhost", agg_port=free_port(), use_tls=True,
                                       client_reconnect_interval=0.1)
    plan["aggregator"]["settings"].update(rounds_to_train=rounds, join_deadline=600, heartbeat_timeout=600)
    plan["task_runner"]["settings"].update(num_params=params, num_tensors=tensors)
    for section, values in OVERRIDES.items():
        plan[section].setdefault("settings", {}).update(values)
    plan_path.write_text(yaml.safe_dump(plan))
    names = [f"col-{i}" for i in range(1, n + 1)]
    (ws / "plan" / "data.yaml").write_text("".join(f"{c},{i}\n" for i, c in enumerate(names, 1)))
    fx_in(ws, "plan", "initialize", "-a", "localhost")
    fx_in(ws, "workspace", "certify")
    fx_in(ws, "aggregator", "generate-cert-request", "--fqdn", "localhost")
    fx_in(ws, "aggregator", "certify", "--fqdn", "localhost", "-s")
    for c in names:
        fx_in(ws, "collaborator", "generate-cert-request", "-n", c, "-s", "-x")
        fx_in(ws, "collaborator", "certify", "-n", c, "-s")
    from fx_cli.plan.participants import write_cols

    write_cols(ws / "plan" / "cols.yaml", names)
    return ws


# --- processes with the kernel's accounting ---------------------------------------------------

@dataclass
class Usage:
    code: int
    cpu: float  # user + system seconds
    maxrss: int  # bytes


def start(args: list[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, *args], cwd=cwd, env=_env(), stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT)


def reap(procs: list[subprocess.Popen[bytes]], timeout: float) -> list[Usage]:
    """Wait for every process (killing all after ``timeout``); exit code, CPU and peak RSS of each.

    The peak is each process's ``high_water``, read every 10 ms while it runs (the mark only grows, so the
    last reading is the peak up to its last 10 ms); ``ru_maxrss`` only where /proc cannot be read. Not
    ``ru_maxrss`` first: it would read at least this process's own peak (237 MiB after ``make_workspace``
    at 5e7, above some of the aggregator's true peaks), see ``high_water``.
    """
    from fx_cli.aggregator.memory import high_water

    usage: dict[int, Usage] = {}
    peaks: dict[int, int] = {}
    done = threading.Event()

    def wait(p: subprocess.Popen[bytes]) -> None:
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        usage[p.pid] = Usage(p.returncode, ru.ru_utime + ru.ru_stime, peaks.get(p.pid) or ru.ru_maxrss * 1024)

    def sample() -> None:
        while not done.is_set():
            for p in procs:
                mark = high_water(p.pid) if p.pid not in usage else None
                if mark:
                    peaks[p.pid] = max(peaks.get(p.pid, 0), mark)
            done.wait(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    threads = [threading.Thread(target=wait, args=(p,), daemon=True) for p in procs]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
        for t in threads:
            t.join()
    done.set()
    sampler.join()
    return [usage[p.pid] for p in procs]


# --- the loopback TLS limit --------------------------------------------------------------------

def _probe_server(ws: Path, chunk: int, port_file: Path) -> None:
    import grpc

    from fx_cli.pki.tls import server_credentials
    from fx_cli.transport.server import serve

    payload = os.urandom(chunk)
    in_calls: list[float] = []  # CPU-seconds of this process (all its threads) during each transfer, in order

    def down(request: bytes, context: Any) -> Iterator[bytes]:
        started = time.process_time()
        try:
            for _ in range(int.from_bytes(request, "little") // chunk):
                yield payload
        finally:
            in_calls.append(time.process_time() - started)

    def up(requests: Iterator[bytes], context: Any) -> bytes:
        started = time.process_time()
        got = sum(len(r) for r in requests)
        in_calls.append(time.process_time() - started)
        return got.to_bytes(8, "little")

    handler = grpc.method_handlers_generic_handler("probe.Wire", {
        "Down": grpc.unary_stream_rpc_method_handler(down), "Up": grpc.stream_unary_rpc_method_handler(up)})
    # window=None: gRPC's own flow-control sizing, the fastest plain stream (fx bounds it; see stream_window)
    with serve(handler, "localhost:0", server_credentials(ws, "localhost"), chunk=chunk, window=None) as port:
        port_file.write_text(str(port))
        sys.stdin.read()  # until the parent closes our stdin
    port_file.with_suffix(".cpu").write_text(json.dumps(in_calls))


def _probe_client(ws: Path, chunk: int, port: int, nbytes: int, repeats: int) -> None:
    from fx_cli.pki.tls import client_credentials
    from fx_cli.transport.client import open_channel

    channel = open_channel(f"localhost:{port}", client_credentials(ws, "col-1"), chunk, None)
    down = channel.unary_stream("/probe.Wire/Down")
    upload = channel.stream_unary("/probe.Wire/Up")
    payload = os.urandom(chunk)
    result: dict[str, list[float]] = {"down": [], "up": [], "cpu": [], "bytes": [], "warm_up": []}
    # One unmeasured pass first: gRPC grows a stream's flow-control window from what it measures (its BDP
    # probe), so a new channel's first 256 MiB run slower (1.2 GB/s where later passes ran 1.7-2.2 here).
    for _ in range(WARM_UP_PASSES):
        t = time.perf_counter()
        got = sum(len(m) for m in down(nbytes.to_bytes(8, "little")))
        upload(iter([payload] * (nbytes // chunk)))
        result["warm_up"].append(2 * got / (time.perf_counter() - t))
    for _ in range(repeats):
        t, cpu = time.perf_counter(), time.process_time()
        got = sum(len(m) for m in down(nbytes.to_bytes(8, "little")))
        result["down"].append(got / (time.perf_counter() - t))
        t = time.perf_counter()
        sent = int.from_bytes(upload(iter([payload] * (nbytes // chunk))), "little")
        result["up"].append(sent / (time.perf_counter() - t))
        result["cpu"].append(time.process_time() - cpu)
        result["bytes"].append(got + sent)
    print(json.dumps(result))


@dataclass
class Wire:
    down: float  # bytes/s, aggregator -> collaborator
    up: float
    server_bytes_per_cpu: float  # whole server process, start-up included
    cpu_per_byte: float  # CPU-seconds per byte moved, server and client together, during the transfers only
    repeats: dict[str, list[float]] = field(default_factory=dict)  # "down", "up": bytes/s of each repeat

    def seconds(self, bytes_out: int, bytes_in: int) -> float:
        return bytes_out / self.down + bytes_in / self.up


def faster(a: Wire, b: Wire) -> Wire:
    """The higher limit of two probes, each direction on its own (the stricter denominator for every ratio)."""
    return Wire(max(a.down, b.down), max(a.up, b.up), max(a.server_bytes_per_cpu, b.server_bytes_per_cpu),
                min(a.cpu_per_byte, b.cpu_per_byte),
                {k: a.repeats.get(k, []) + b.repeats.get(k, []) for k in ("down", "up", "warm_up")})


def print_wire(what: str, wire: Wire) -> None:
    print(f"{what}: {wire.down / MB:,.0f} MB/s down, {wire.up / MB:,.0f} MB/s up; bare server "
          f"{wire.server_bytes_per_cpu / MB:,.0f} MB per CPU-second; server and client together, during the "
          f"transfers: {1 / wire.cpu_per_byte / MB:,.0f} MB per CPU-second", flush=True)
    print("  (the fastest of its passes after a warm-up pass of "
          + ", ".join(f"{r / MB:,.0f}" for r in wire.repeats.get("warm_up", []))
          + " MB/s; MB/s down " + ", ".join(f"{r / MB:,.0f}" for r in wire.repeats["down"])
          + "; up " + ", ".join(f"{r / MB:,.0f}" for r in wire.repeats["up"]) + ")", flush=True)


def measure_wire(ws: Path, chunk: int, nbytes: int = PROBE_BYTES, repeats: int = PROBE_REPEATS) -> Wire:
    port_file = ws / "probe.port"
    port_file.unlink(missing_ok=True)  # a previous probe's
    me = str(Path(__file__).resolve())
    server = subprocess.Popen([sys.executable, me, "--probe-server", str(ws), str(chunk), str(port_file)],
                              env=_env(), stdin=subprocess.PIPE)
    try:
        while not port_file.exists() or not port_file.read_text():
            if server.poll() is not None:
                raise SystemExit("the TLS probe server failed to start")
            time.sleep(0.05)
        out = subprocess.run([sys.executable, me, "--probe-client", str(ws), str(chunk), port_file.read_text(),
                              str(nbytes), str(repeats)], env=_env(), check=True, capture_output=True, text=True)
    finally:
        assert server.stdin is not None
        server.stdin.close()
    usage = reap([server], 60)[0]
    rates = json.loads(out.stdout)
    moved = 2 * nbytes * (repeats + WARM_UP_PASSES)
    in_calls = json.loads(port_file.with_suffix(".cpu").read_text())[2 * WARM_UP_PASSES:]  # the measured passes'
    return Wire(max(rates["down"]), max(rates["up"]), moved / max(usage.cpu, 1e-9),
                (sum(in_calls) + sum(rates["cpu"])) / sum(rates["bytes"]),
                {k: rates[k] for k in ("down", "up", "warm_up")})


# --- one federation ----------------------------------------------------------------------------

@dataclass
class Run:
    name: str
    collaborators: int
    params: int
    rounds: list[dict[str, Any]]
    aggregator: Usage
    collaborator_peak: int
    wall: float
    closed_at: list[float] = field(default_factory=list)  # when each record appeared (this process's clock)
    cpu_at: list[list[float]] = field(default_factory=list)  # then: CPU-seconds of each process (aggregator first)
    # round -> seconds the collaborators' runners spent in that round's tasks, summed over tasks and collaborators
    task_seconds: dict[int, float] = field(default_factory=dict)
    task_cpu: dict[int, float] = field(default_factory=dict)  # the same tasks' CPU-seconds (``cpu_s``)
    model_bytes: int = field(init=False)

    def __post_init__(self) -> None:
        self.model_bytes = self.params * 4

    def cycle(self, warm_up: int = WARM_UP) -> float | None:
        """Seconds from one training round's close to the next, over the rounds after ``warm_up``: all a round
        costs, including the work between a round's report and the next round's start (a round record's
        ``seconds`` ends at its report)."""
        closes = [t for r, t in zip(self.rounds, self.closed_at) if not r["final"]][warm_up - 1:]
        return (closes[-1] - closes[0]) / (len(closes) - 1) if len(closes) > 1 else None

    def cycle_cpu(self) -> list[float] | None:
        """CPU-seconds of each process (aggregator first) per round, over the rounds ``cycle`` counts."""
        marks = [c for r, c in zip(self.rounds, self.cpu_at) if not r["final"]][WARM_UP - 1:]
        if len(marks) < 2 or len(self.cpu_at) != len(self.rounds):
            return None
        return [(last - first) / (len(marks) - 1) for first, last in zip(marks[0], marks[-1])]

    def steady(self) -> list[tuple[dict[str, Any], float]]:
        """(record, CPU seconds of the aggregator for that round) of the rounds after ``WARM_UP`` (not the
        final evaluation); all but round 1 when the run is too short for that."""
        training = [r for r in self.rounds if not r["final"]]
        pairs = [(r, r["cpu_s"] - prev["cpu_s"]) for prev, r in zip(training, training[1:])]
        return pairs[WARM_UP - 1:] or pairs


def federation(root: Path, name: str, n: int, params: int, rounds: int, tensors: int = 8,
               timeout: float = 3600) -> Run:
    ws = make_workspace(root, n, params, rounds, tensors)
    logs = ws / "logs"
    logs.mkdir(exist_ok=True)
    procs = [start(["-m", "fx_cli", "aggregator", "start"], ws, logs / "bench-aggregator.log")]
    procs += [start(["-m", "fx_cli", "collaborator", "start", "-n", f"col-{i}"], ws, logs / f"bench-col-{i}.log")
              for i in range(1, n + 1)]
    started = time.monotonic()
    metrics = logs / "aggregator_metrics.jsonl"
    closed_at: list[float] = []
    cpu_at: list[list[float]] = []
    done = threading.Event()
    pids = [p.pid for p in procs]
    watcher = threading.Thread(target=_watch_lines, args=(metrics, closed_at, done, lambda: cpu_at.append(
        [_cpu_seconds(pid) for pid in pids])), daemon=True)
    watcher.start()
    usage = reap(procs, timeout)
    wall = time.monotonic() - started
    done.set()
    watcher.join()
    if any(u.code for u in usage):
        raise SystemExit(f"{name}: run failed (exit codes {[u.code for u in usage]}); see {logs}")
    records = [json.loads(x) for x in metrics.read_text().splitlines()]
    return Run(name, n, params, records, usage[0], max(u.maxrss for u in usage[1:]), wall,
               closed_at if len(closed_at) == len(records) else [], cpu_at if len(cpu_at) == len(records) else [],
               task_seconds(logs, n), task_seconds(logs, n, "cpu_s"))


def task_seconds(logs: Path, n: int, key: str = "seconds") -> dict[int, float]:
    """Seconds (``key="cpu_s"``: CPU-seconds) the collaborators' runners spent in each round's tasks (their
    metrics files), all added up."""
    spent: dict[int, float] = {}
    for i in range(1, n + 1):
        path = logs / f"col-{i}_metrics.jsonl"
        for line in path.read_text().splitlines() if path.exists() else []:
            rec = json.loads(line)
            if not rec.get("final") and key in rec:  # an older fx (``--tree``) records no cpu_s
                spent[rec["round"]] = spent.get(rec["round"], 0.0) + float(rec[key])
    return spent


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU-seconds of a running process so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime (fields 14 and 15 of proc(5))


def _watch_lines(path: Path, seen: list[float], done: threading.Event, on_line: Callable[[], None]) -> None:
    """Note when each line of ``path`` appears (polled every 10 ms), calling ``on_line`` once per line,
    until ``done``."""
    while True:
        finished = done.is_set()
        try:
            count = path.read_bytes().count(b"\n")
        except FileNotFoundError:
            count = 0
        if count > len(seen):
            now = time.monotonic()
            for _ in range(count - len(seen)):
                seen.append(now)
                on_line()
        if finished:
            return
        done.wait(0.01)


# --- report ------------------------------------------------------------------------------------

def verdict(ok: bool) -> str:
    return "OK" if ok else "MISSED"


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def report_round_speed(run: Run, wire: Wire, probes: tuple[Wire, ...] = ()) -> None:
    steady = run.steady()
    secs = run.cycle() or sum(r["seconds"] for r, _ in steady) / len(steady)
    out = sum(r["bytes_out"] for r, _ in steady) / len(steady)
    inn = sum(r["bytes_in"] for r, _ in steady) / len(steady)
    limit = wire.seconds(int(out), int(inn))
    x = secs / limit
    print(f"{run.name}: {secs:.2f} s per steady round for {(out + inn) / MB:,.0f} MB; wire time {limit:.2f} s "
          f"-> {x:.2f} x the wire (target <= {TARGET_ROUND_X})  [{verdict(x <= TARGET_ROUND_X)}]")
    if len(probes) > 1:
        print(f"{run.name}: against each probe alone (before, after): "
              + ", ".join(f"{secs / p.seconds(int(out), int(inn)):.2f} x" for p in probes))
    with_round_2 = run.cycle(warm_up=1)
    if with_round_2 is not None:
        print(f"{run.name}: counting round 2 as well (as before the seventh session): {with_round_2:.2f} s, "
              f"{with_round_2 / limit:.2f} x the wire")
    report_cpu_floor(run, wire, limit, out + inn)
    closing = [r["aggregate_s"] for r, _ in steady if "aggregate_s" in r]
    if closing:
        print(f"{run.name}: of which {sum(closing) / len(closing):.2f} s closing the round (aggregating, writing the "
              "next model); the rest is downloads, the collaborators' tasks and uploads")
    tasks = [run.task_seconds[r["round"]] for r, _ in steady if r["round"] in run.task_seconds]
    if tasks:
        per_round = sum(tasks) / len(tasks)
        cpu = [run.task_cpu[r["round"]] for r, _ in steady if r["round"] in run.task_cpu]
        cpu_text = f" and {sum(cpu) / len(cpu):.2f} CPU-s" if cpu else ""
        print(f"{run.name}: the collaborators' tasks (the synthetic runner's own work: validating, training; not "
              f"transport) took {per_round:.2f} s{cpu_text} per round, all collaborators added up "
              f"({per_round / run.collaborators:.2f} s each, run side by side, waiting for a core included)")


def report_cpu_floor(run: Run, wire: Wire, limit: float, moved: float) -> None:
    """What the round's CPU alone costs on this machine's cores, beside what the probe spends on the same bytes.

    A round cannot take less than its processes' CPU-seconds spread over every core. On a machine where the
    aggregator and its collaborators share a few cores, the probe's own CPU for the round's bytes already
    fills them for about the wire time, so this says how much of the gap to the target is CPU, not waiting.
    """
    per_process = run.cycle_cpu()
    if per_process is None:
        return
    cores = len(os.sched_getaffinity(0))
    total, agg = sum(per_process), per_process[0]
    probe = wire.cpu_per_byte * moved
    print(f"{run.name}: CPU per steady round, all processes: {total:.2f} CPU-s (aggregator {agg:.2f}, "
          f"collaborators {total - agg:.2f}); spread over this machine's {cores} cores that alone is "
          f"{total / cores:.2f} s = {total / cores / limit:.2f} x the wire. The probe spends {probe:.2f} CPU-s "
          f"on the same bytes ({probe / cores / limit:.2f} x over {cores} cores); everything fx does beyond "
          f"that costs {total - probe:.2f} CPU-s")
    budget = TARGET_ROUND_X * limit * cores
    tasks = [run.task_cpu[r["round"]] for r, _ in run.steady() if r["round"] in run.task_cpu]
    runner = f"; the runner's own tasks alone took {sum(tasks) / len(tasks):.2f} CPU-s" if tasks else ""
    print(f"{run.name}: the target's {TARGET_ROUND_X} x leaves at most {budget:.2f} CPU-s per round on {cores} "
          f"cores; the transport at the probe's cost takes {probe:.2f} of it, leaving {budget - probe:.2f} CPU-s "
          f"for all else{runner}")


def report_memory(run: Run) -> None:
    col = run.collaborator_peak / run.model_bytes
    agg = run.aggregator.maxrss / run.model_bytes
    print(f"{run.name}: collaborator peak RSS {mib(run.collaborator_peak)} = {col:.2f} x model "
          f"({mib(run.model_bytes)}; target <= {TARGET_COL_RSS_X})  [{verdict(col <= TARGET_COL_RSS_X)}]")
    print(f"{run.name}: aggregator peak RSS {mib(run.aggregator.maxrss)} = {agg:.2f} x model "
          f"(target <= {TARGET_AGG_RSS_X})  [{verdict(agg <= TARGET_AGG_RSS_X)}]")


def report_cpu(run: Run, wire: Wire) -> None:
    steady = run.steady()
    moved = sum(r["bytes_in"] + r["bytes_out"] for r, _ in steady)
    cpu = sum(c for _, c in steady)
    rate = moved / cpu
    whole = sum(r["bytes_in"] + r["bytes_out"] for r in run.rounds) / run.aggregator.cpu
    print(f"{run.name}: whole run, start-up included: {whole / MB:,.0f} MB per aggregator CPU-second")
    x = rate / BASELINE_BYTES_PER_CPU
    print(f"{run.name}: aggregator moved {rate / MB:,.0f} MB per CPU-second = {x:.2f} x the 170 MB/s baseline "
          f"(target >= {TARGET_CPU_X}) and {rate / wire.server_bytes_per_cpu:.2f} x what the bare TLS server "
          f"moves per CPU-second ({wire.server_bytes_per_cpu / MB:,.0f} MB)  [{verdict(x >= TARGET_CPU_X)}]")


def report_per_collaborator(run: Run) -> None:
    steady = run.steady()
    ms = 1000 * sum(c for _, c in steady) / len(steady) / run.collaborators
    secs = sum(r["seconds"] for r, _ in steady) / len(steady)
    print(f"{run.name}: aggregator CPU {ms:.1f} ms per collaborator per round ({secs:.2f} s per round; "
          f"target <= {TARGET_MS_PER_COL} ms)  [{verdict(ms <= TARGET_MS_PER_COL)}]")


CASES = {
    # Rounds: steady rounds are 3.., and on a shared machine one round's figure is noise; the small cases get more.
    "big2": ("5e7 x 2", 2, 50_000_000, 6),
    "big8": ("5e7 x 8", 8, 50_000_000, 5),
    "cpu": ("1e7 x 8", 8, 10_000_000, 8),
    "many": ("1e5 x 32", 32, 100_000, 10),
    "tiny": ("1e5 x 2", 2, 100_000, 3),  # a smoke test of the benchmark itself
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="big2,big8,cpu,many", help="comma-separated: " + ", ".join(CASES))
    parser.add_argument("--huge", action="store_true", help="also one tensor of 1.1e9 float32 (4.4 GB), 1 collaborator")
    parser.add_argument("--huge-params", type=int, default=1_100_000_000)
    parser.add_argument("--keep", type=Path, help="keep the workspaces in this folder")
    parser.add_argument("--tree", type=Path, help="run the federations with the fx_cli of this source tree "
                        "(e.g. a checkout of an older commit, for before/after figures on the same machine)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="a plan setting for every federation, e.g. aggregator.audit_log=false")
    parser.add_argument("--rounds", type=int, help="rounds of every case (more steady rounds, less noise)")
    args = parser.parse_args()
    if args.tree:
        TREE[0] = str(args.tree.resolve())
    for item in args.set:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        OVERRIDES.setdefault(section, {})[name] = yaml.safe_load(value)
    root = args.keep or Path(tempfile.mkdtemp(prefix="fx-wire-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        probe_ws = make_workspace(root, 1, 1000, 1)
        before = measure_wire(probe_ws, 4 << 20)
        print_wire("loopback mutual-TLS gRPC limit, before the federations", before)
        runs: dict[str, Run] = {}
        for key in [c for c in args.cases.split(",") if c]:
            label, n, params, rounds = CASES[key]
            rounds = args.rounds or rounds
            print(f"running {label} ({rounds} rounds) ...", flush=True)
            runs[key] = federation(root, label, n, params, rounds)
            print(f"  {runs[key].wall:.1f} s wall; rounds (s): "
                  + ", ".join(f"{r['seconds']:.2f}" for r in runs[key].rounds if not r["final"]), flush=True)
            if not args.keep:
                shutil.rmtree(root / f"ws_{n}_{params}_8", ignore_errors=True)
        after = measure_wire(probe_ws, 4 << 20)
        print_wire("and after them", after)
        wire = faster(before, after)
        print(f"every ratio below is to the faster of the two: {wire.down / MB:,.0f} MB/s down, "
              f"{wire.up / MB:,.0f} MB/s up", flush=True)
        if args.huge:
            print(f"running one tensor of {args.huge_params:.2e} float32 ({args.huge_params * 4 / 2**30:.2f} GiB), "
                  "1 collaborator, 1 round ...", flush=True)
            runs["huge"] = federation(root, "1 tensor > 4 GiB", 1, args.huge_params, 1, tensors=1)
            shutil.rmtree(root / f"ws_1_{args.huge_params}_1", ignore_errors=True)
        print()
        for key in ("big2", "big8"):
            if key in runs:
                report_round_speed(runs[key], wire, (before, after))
        for key in ("big2", "big8"):
            if key in runs:
                report_memory(runs[key])
        if "big2" in runs and "big8" in runs:
            growth = runs["big8"].aggregator.maxrss / runs["big2"].aggregator.maxrss
            print(f"aggregator peak RSS 8 vs 2 collaborators at 5e7: {growth:.2f} x  "
                  f"[{'FLAT' if growth <= 1.1 else 'GROWS'}]")
        if "cpu" in runs:
            report_cpu(runs["cpu"], wire)
        if "many" in runs:
            report_per_collaborator(runs["many"])
        if "huge" in runs:
            h = runs["huge"]
            print(f"one tensor of {h.model_bytes / 2**30:.2f} GiB through a federation: OK in {h.wall:.0f} s; "
                  f"aggregator peak {h.aggregator.maxrss / h.model_bytes:.2f} x, collaborator "
                  f"{h.collaborator_peak / h.model_bytes:.2f} x model")
        print("\n(one shared machine: every time is relative to the TLS limit measured above, in this run)")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--probe-server":
        _probe_server(Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--probe-client":
        _probe_client(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]))
    else:
        main()
