"""`make bench`: every benchmark in turn, each printing its figures and ratios against the targets."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = [
    ("model files above 2 GiB", ["bench_pbuf_large.py"]),
    ("federation speed and memory", ["bench_federation.py"]),
    ("every figure against the loopback TLS limit", ["bench_wire.py"]),
    ("collaborator memory with PyTorch and Keras against the framework alone", ["bench_framework_memory.py"]),
    ("aggregator memory over 20 rounds", ["bench_leak.py"]),
    ("secure aggregation overhead and the DP accountant", ["bench_privacy.py"]),
    ("bytes across the top level of a hierarchy", ["bench_topology.py"]),
]


def main() -> int:
    failed = []
    for title, (script, *args) in BENCHMARKS:
        path = HERE / script
        if not path.exists():
            print(f"\n== {title}: {script} is missing")
            failed.append(script)
            continue
        print(f"\n== {title} ({script})", flush=True)
        if subprocess.run([sys.executable, str(path), *args], cwd=HERE.parent).returncode != 0:
            failed.append(script)
    print(f"\n{len(BENCHMARKS) - len(failed)} of {len(BENCHMARKS)} benchmarks ran" +
          (f"; failed or missing: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
