"""Deadlines for process tests derived from how long a process takes to start on this machine, now.

A plan deadline that a test relies on being met (a collaborator joining in time, say) must hold on a busy
machine too; a fixed 2-3 s does not. ``startup_seconds`` measures the start-up of a fresh Python importing
what a collaborator imports before it connects; ``deadline`` scales it by a generous factor, never below the
value the test would use on an idle machine (so the idle suite stays as fast as before).
"""
from __future__ import annotations

import functools
import subprocess
import sys
import time

PROBE = "import grpc, numpy, yaml, fx_cli.collaborator.loop, fx_cli.transport.client"


def startup_seconds() -> float:
    """Wall-clock seconds a fresh interpreter takes to import the collaborator's start-up modules now."""
    start = time.monotonic()
    subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True, timeout=300)
    return time.monotonic() - start


@functools.lru_cache(maxsize=None)
def _cached_startup() -> float:
    return startup_seconds()


def deadline(minimum: float, startups: float = 6.0) -> float:
    """``minimum`` seconds, or ``startups`` times the measured start-up when the machine is slower than that."""
    return round(max(minimum, startups * _cached_startup()), 1)
