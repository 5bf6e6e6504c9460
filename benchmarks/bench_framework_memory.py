"""Collaborator memory with a real framework: what fx adds to what PyTorch or Keras itself needs to train a model.

Issue 15 asks that a collaborator hold "at most about two models' worth (the model in the runner plus one in
flight), whatever the framework". With a framework, the runner's share is whatever the framework holds to
train the model (weights, gradients, optimizer moments, its own caches), which fx does not control. So this
benchmark measures both, in the same run:

* **plain**: the framework alone, no fx at all. The template's model (``torch/digits`` or ``keras/digits`` with
  a wide hidden layer, about 5e7 parameters by default), Adam, the same data shard, and per round the
  collaborator's three tasks: evaluate, train one epoch, evaluate. Then the final evaluation.
* **fx**: the same plan as a real federation: an aggregator and one collaborator, as processes, over mutual TLS.

It prints both peaks (``VmHWM``, see ``fx_cli.aggregator.memory.high_water``) and what fx adds, in models: the median of
``--repeats`` runs of each, alternating, since the framework's own peak moves between runs (plain Keras:
1,824-1,999 MiB over four runs). One model added is the model in flight (a download must land somewhere while
the framework's memory is in use), which is the issue's budget. fx's own fixed cost (gRPC and its modules, about
25 MiB) is in the figure too, so a small model reads as more models: at 4e6 parameters (16 MiB), +1.5.

Usage: python -m benchmarks.bench_framework_memory [--frameworks torch,keras] [--hidden N] [--rounds N]
       [--repeats N]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script (make bench) or with -m
from benchmarks.bench_wire import free_port, fx_in, mib, reap, start  # noqa: E402

TEMPLATES = {"torch": "torch/digits", "keras": "keras/digits"}
FILTERS = 64  # the convolution's filters: the hidden layer's input is FILTERS * 4 * 4 = 1024 values
BATCH = 256
TARGET_ADDED_MODELS = 1.0  # the model in flight


def model_bytes(hidden: int, classes: int = 10) -> int:
    """float32 bytes of the template model: conv 3x3 (+bias), dense FILTERS*16 -> hidden (+bias), dense -> classes."""
    return 4 * (FILTERS * 9 + FILTERS + FILTERS * 16 * hidden + hidden + hidden * classes + classes)


def make_workspace(root: Path, framework: str, hidden: int, rounds: int) -> Path:
    os.environ.setdefault("FQDN", "localhost")
    ws = root / f"ws_{framework}"
    fx_in(root, "workspace", "create", "--prefix", str(ws), "--template", TEMPLATES[framework])
    plan_path = ws / "plan" / "plan.yaml"
    plan = yaml.safe_load(plan_path.read_text())
    plan["network"]["settings"] = dict(plan["network"].get("settings") or {}, agg_addr="localhost",
                                       agg_port=free_port(), use_tls=True)
    plan["aggregator"]["settings"].update(rounds_to_train=rounds)
    runner = plan["task_runner"]["settings"]
    if framework == "torch":
        runner["model_settings"] = {"filters": FILTERS, "hidden": hidden}
    else:
        runner.update(conv_filters=[FILTERS], dense_units=hidden)
    plan["tasks"]["train"]["kwargs"].update(epochs=1, batch_size=BATCH)
    plan_path.write_text(yaml.safe_dump(plan))
    (ws / "plan" / "data.yaml").write_text("col-1,1\n")
    fx_in(ws, "plan", "initialize", "-a", "localhost")
    fx_in(ws, "workspace", "certify")
    fx_in(ws, "aggregator", "generate-cert-request", "--fqdn", "localhost")
    fx_in(ws, "aggregator", "certify", "--fqdn", "localhost", "-s")
    fx_in(ws, "collaborator", "generate-cert-request", "-n", "col-1", "-s", "-x")
    fx_in(ws, "collaborator", "certify", "-n", "col-1", "-s")
    from fx_cli.plan.participants import write_cols

    write_cols(ws / "plan" / "cols.yaml", ["col-1"])
    return ws


def federation_peak(ws: Path) -> int:
    """The collaborator's peak RSS in bytes over a whole federation (the aggregator runs beside it)."""
    logs = ws / "logs"
    logs.mkdir(exist_ok=True)
    agg = start(["-m", "fx_cli", "aggregator", "start"], ws, logs / "bench_agg.log")
    col = start(["-m", "fx_cli", "collaborator", "start", "-n", "col-1"], ws, logs / "bench_col.log")
    usage = reap([agg, col], 1800)  # peaks: each process's own high-water mark (see bench_wire.reap)
    if any(u.code for u in usage):
        raise SystemExit(f"the federation failed (exit codes {[u.code for u in usage]}); see {logs}")
    return usage[1].maxrss


def plain_peak(ws: Path, framework: str, rounds: int) -> int:
    """The framework alone, in a fresh process: its peak RSS in bytes."""
    out = subprocess.run([sys.executable, "-m", "benchmarks.bench_framework_memory", "--plain", framework,
                          "--workspace", str(ws), "--rounds", str(rounds)],
                         cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"the plain {framework} run failed:\n{out.stderr[-3000:]}")
    return int(out.stdout.strip().splitlines()[-1])


def _shard(ws: Path) -> tuple:
    """The collaborator's data as its loader gives it (numpy arrays only; nothing of fx's runner or transport)."""
    from fx_cli.runners.keras_data import DigitsData

    settings = yaml.safe_load((ws / "plan" / "plan.yaml").read_text())["data_loader"]["settings"]
    return DigitsData(data_path="1", **settings).arrays()


def run_plain(framework: str, ws: Path, rounds: int) -> None:
    """Train the plan's model with the framework alone; prints the peak RSS in bytes."""
    plan = yaml.safe_load((ws / "plan" / "plan.yaml").read_text())
    settings = plan["task_runner"]["settings"]
    x, y, xv, yv = _shard(ws)
    if framework == "torch":
        import torch

        sys.path.insert(0, str(ws))
        from src.model import DigitsCNN  # the template's model class

        torch.manual_seed(0)
        model = DigitsCNN(**settings["model_settings"])
        optimizer = torch.optim.Adam(model.parameters(), lr=settings.get("learning_rate", 0.001))
        loss_fn = torch.nn.CrossEntropyLoss()
        xt, yt, xvt = torch.as_tensor(x), torch.as_tensor(y), torch.as_tensor(xv)

        def evaluate() -> None:
            model.eval()
            with torch.no_grad():
                for s in range(0, len(xvt), BATCH):
                    model(xvt[s:s + BATCH])

        for _ in range(rounds):
            evaluate()
            model.train()
            for s in range(0, len(xt), BATCH):
                optimizer.zero_grad()
                loss_fn(model(xt[s:s + BATCH]), yt[s:s + BATCH]).backward()
                optimizer.step()
            evaluate()
        evaluate()
    else:
        from fx_cli.runners.keras_runner import build_cnn, import_keras  # model construction: plain Keras layers

        keras = import_keras()
        model = build_cnn(x.shape[1:], 10, settings["conv_filters"], settings["dense_units"], settings.get("seed", 0))
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=settings.get("learning_rate", 0.001)),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=False)
        for _ in range(rounds):
            model.evaluate(xv, yv, batch_size=32, verbose=0)
            model.fit(x, y, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
            model.evaluate(xv, yv, batch_size=32, verbose=0)
        model.evaluate(xv, yv, batch_size=32, verbose=0)
    from fx_cli.aggregator.memory import high_water

    print(high_water())  # this process's own peak (not ru_maxrss, see high_water)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frameworks", default="torch,keras")
    parser.add_argument("--hidden", type=int, default=48_000, help="hidden layer width (48000: 4.9e7 parameters)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each (the framework's own peak varies)")
    parser.add_argument("--plain", choices=sorted(TEMPLATES), help=argparse.SUPPRESS)
    parser.add_argument("--workspace", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plain:
        run_plain(args.plain, args.workspace, args.rounds)
        return
    size = model_bytes(args.hidden)
    print(f"model: {size / 4:.3g} parameters, {mib(size)}; {args.rounds} rounds, one collaborator, TLS on")
    failed = False
    for framework in args.frameworks.split(","):
        if importlib.util.find_spec("torch" if framework == "torch" else "keras") is None:
            extra = "torch" if framework == "torch" else "tensorflow"
            print(f"{framework}: not installed here (pip install -e '.[{extra}]'); skipped")
            continue
        plains, fxs = [], []
        for i in range(args.repeats):  # alternating, each federation in a fresh workspace
            root = Path(tempfile.mkdtemp(prefix=f"fx_fwmem_{framework}_"))
            try:
                ws = make_workspace(root, framework, args.hidden, args.rounds)
                plains.append(plain_peak(ws, framework, args.rounds))
                fxs.append(federation_peak(ws))
            finally:
                shutil.rmtree(root, ignore_errors=True)
        plain, fx = statistics.median(plains), statistics.median(fxs)
        added = (fx - plain) / size
        ok = added <= TARGET_ADDED_MODELS
        failed |= not ok
        print(f"{framework}: plain {framework} peaks at {mib(plain)} (runs: {', '.join(mib(p) for p in plains)}); "
              f"the fx collaborator at {mib(fx)} (runs: {', '.join(mib(f) for f in fxs)})")
        print(f"{framework}: fx adds {added:+.2f} models, medians against medians (target <= "
              f"{TARGET_ADDED_MODELS:.0f}, the model in flight) {'OK' if ok else 'NOT MET'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
