"""Write and read back a .pbuf larger than 2 GiB; report time and peak memory.

Run: python benchmarks/bench_pbuf_large.py [--gib 2.25] [--tensor-mib 256]
The work runs in a child process that reads its own peak RSS (VmHWM): not ru_maxrss, which Linux floors at the
peak of the process that started the child (a test suite's, say), so a growth measured with it could read 0.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, os, sys, time, zlib
import numpy as np
from fx_cli.aggregator.memory import rss_bytes
from fx_cli.tensors.pbuf import iter_model, write_model

def peak_rss():
    return rss_bytes()[1]

path, total, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
count = -(-total // per)
base = peak_rss()

def tensors():
    for i in range(count):
        yield f"t{i}", np.full(per // 4, i, dtype=np.float32)

t0 = time.perf_counter()
size = write_model(path, tensors())
t1 = time.perf_counter()
checksum, n = 0, 0
for header, array in iter_model(path):
    assert array[0] == n and array[-1] == n, header.name
    checksum = zlib.crc32(array[:1024].tobytes(), checksum)
    n += 1
    del array
t2 = time.perf_counter()
peak = peak_rss()
print(json.dumps({"file_bytes": os.path.getsize(path), "tensors": n, "write_s": t1 - t0, "read_s": t2 - t1,
                  "baseline_rss": base, "peak_rss": peak}))
"""


def measure(total_bytes: int, tensor_bytes: int, directory: str | None = None) -> dict:
    """Run one write+read in a child process; returns its figures."""
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        path = os.path.join(tmp, "big.pbuf")
        out = subprocess.run([sys.executable, "-c", CHILD, path, str(total_bytes), str(tensor_bytes)],
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gib", type=float, default=2.25)
    parser.add_argument("--tensor-mib", type=int, default=256)
    args = parser.parse_args()
    r = measure(int(args.gib * 2**30), args.tensor_mib * 2**20)
    gib = r["file_bytes"] / 2**30
    print(f"pbuf file: {gib:.2f} GiB in {r['tensors']} tensors")
    print(f"write: {r['write_s']:.2f} s ({gib / r['write_s']:.2f} GiB/s)   read: {r['read_s']:.2f} s "
          f"({gib / r['read_s']:.2f} GiB/s)")
    print(f"peak RSS: {r['peak_rss'] / 2**20:.0f} MiB (baseline {r['baseline_rss'] / 2**20:.0f} MiB) = "
          f"{r['peak_rss'] / r['file_bytes']:.3f} x file size")


if __name__ == "__main__":
    main()
