"""`make demo`: the whole seed flow on keras/digits, with every site in its own folder.

1. create a workspace (the aggregator's) under workspaces/, initialise the plan;
2. set up the CA and the aggregator certificate;
3. export the workspace and import it as two collaborator sites; each creates its
   collaborator, sends a certificate request package, and imports the signed certificate;
4. start the aggregator and both collaborators as real processes (gRPC over mutual TLS);
5. print per-round accuracy, the final accuracy, and where the final model is.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

COLLABORATORS = ("one", "two")


def fx(cwd: Path, *args: str) -> None:
    """Run one fx command in ``cwd``, echoing it; stop the demo if it fails."""
    print(f"\n$ (cd {cwd}) fx {' '.join(args)}", flush=True)
    done = subprocess.run([sys.executable, "-m", "fx_cli", *args], cwd=cwd)
    if done.returncode != 0:
        sys.exit(f"demo stopped: `fx {' '.join(args)}` exited {done.returncode}")


def set_port(agg: Path, port: int) -> None:
    """Pin ``network.settings.agg_port`` (the default is derived from the plan hash)."""
    import yaml

    plan_path = agg / "plan" / "plan.yaml"
    plan = yaml.safe_load(plan_path.read_text())
    plan["network"]["settings"]["agg_port"] = port
    plan_path.write_text(yaml.safe_dump(plan, sort_keys=False))


def prepare(root: Path, template: str, port: int | None = None) -> tuple[Path, dict[str, Path]]:
    """Create, initialise, certify, export/import; returns (aggregator ws, collaborator wss)."""
    agg = root / "demo"
    for old in [agg, *(root / f"demo-{c}" for c in COLLABORATORS)]:
        shutil.rmtree(old, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    fx(root, "workspace", "create", "--prefix", agg.name, "--template", template)
    if port is not None:
        set_port(agg, port)
    fx(agg, "plan", "initialize", "-a", "localhost")
    fx(agg, "workspace", "certify")
    fx(agg, "aggregator", "generate-cert-request", "--fqdn", "localhost", "--ip", "127.0.0.1")
    fx(agg, "aggregator", "certify", "--fqdn", "localhost", "-s")
    fx(agg, "workspace", "export", "--output", str(root / "demo.zip"))
    sites = {}
    for index, name in enumerate(COLLABORATORS, 1):
        site = root / f"demo-{name}"
        fx(root, "workspace", "import", "--archive", "demo.zip", "--prefix", site.name, "--no-install")
        fx(site, "collaborator", "create", "-n", name, "-d", str(index), "-s")
        fx(site, "collaborator", "generate-cert-request", "-n", name, "-s")
        fx(agg, "collaborator", "certify", "--request-pkg", str(site / f"col_{name}_to_agg_cert_request.zip"), "-s")
        fx(site, "collaborator", "certify", "--import", str(agg / f"agg_to_col_{name}_signed_cert.zip"))
        sites[name] = site
    return agg, sites


def federate(agg: Path, sites: dict[str, Path], timeout: float) -> None:
    """Start the aggregator and collaborators; wait for all; fail on any non-zero exit."""
    print("\n$ fx aggregator start   (and fx collaborator start -n NAME at each site)", flush=True)
    procs = {"aggregator": subprocess.Popen([sys.executable, "-m", "fx_cli", "aggregator", "start"], cwd=agg)}
    for name, site in sites.items():
        procs[name] = subprocess.Popen([sys.executable, "-m", "fx_cli", "collaborator", "start", "-n", name], cwd=site)
    deadline = time.monotonic() + timeout
    try:
        for name, proc in procs.items():
            code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            if code != 0:
                sys.exit(f"demo failed: {name} exited {code}")
    except subprocess.TimeoutExpired:
        sys.exit(f"demo failed: the federation did not finish within {timeout:.0f} s")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()


def accuracy_of(record: dict) -> float | None:
    """The aggregated (global-model) validation accuracy of one metrics record."""
    return record.get("metrics", {}).get("aggregated_model_validation/accuracy")


def report(agg: Path) -> None:
    """Per-round accuracy, final accuracy and the final model path, from the aggregator's logs."""
    records = [json.loads(line) for line in (agg / "logs" / "aggregator_metrics.jsonl").read_text().splitlines()]
    print("\n== fx demo: keras/digits, 2 collaborators ==")
    final = None
    for rec in records:
        acc = accuracy_of(rec)
        shown = "n/a" if acc is None else f"{acc:.4f}"
        if rec.get("final"):
            final = acc
            continue
        which = "the starting model (before training)" if rec["round"] == 1 else "the round's global model"
        print(f"round {rec['round']}: validation accuracy of {which} {shown}  ({rec.get('seconds', 0):.1f} s)")
    print(f"final accuracy (final aggregated model): {final:.4f}" if final is not None else "final accuracy: n/a")
    print(f"final model: {agg / 'save' / 'last.pbuf'}  (fx model save -i save/last.pbuf -o model.keras)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspaces", default="workspaces", type=Path)
    parser.add_argument("--template", default="keras/digits")
    parser.add_argument("--timeout", default=900.0, type=float)
    parser.add_argument("--port", type=int, help="aggregator port (default: derived from the plan hash)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    agg, sites = prepare(args.workspaces.resolve(), args.template, args.port)
    federate(agg, sites, args.timeout)
    report(agg)


if __name__ == "__main__":
    main()
