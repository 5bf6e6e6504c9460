"""Keeping a process's memory about one model: the aggregator whatever the number of collaborators,
a collaborator whatever the size of the stream.

glibc gives each thread that allocates concurrently its own malloc arena (up
to 8 per core), and large freed buffers stay cached in them. The gRPC server
runs one thread per in-flight call, each moving chunks of a few MiB, so with
the default the resident size grows with the number of collaborators long
after the chunks are freed. Two arenas keep the speed and stop the growth
(measured in benchmarks/bench_federation.py).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import resource
import sys

log = logging.getLogger("fx.aggregator")
M_ARENA_MAX = -8  # glibc mallopt parameter
ARENAS = 2


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas (Linux only; a no-op returning False elsewhere)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # musl or another libc without mallopt
        log.debug("mallopt is not available; malloc arenas left as they are")
        return False


def release_free_memory() -> None:
    """Hand freed heap pages back to the OS (a collaborator, before its runner works).

    The aggregator does not: its next round reuses the same pages at once, and on machines where taking
    fresh pages is slow (VMs that hand freed memory back to their host) trimming cost 0.05-0.1 s of a 1.7 s
    round at 5e7 x 2 (benchmarks/bench_wire.py).
    Its peak is unchanged; allocations over 32 MiB go back to the OS when freed in any case.
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


def rss_bytes() -> tuple[int, int]:
    """(current, peak) resident set size of this process; current is 0 where /proc is missing."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            current = int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        current = 0
    return current, max(_peak_bytes(), current)  # read second, and never below the current size


def _peak_bytes() -> int:
    """This process's peak RSS: ``high_water`` where /proc has it, ``ru_maxrss`` elsewhere."""
    mark = high_water()
    if mark is not None:
        return mark
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def high_water(pid: int | str = "self") -> int | None:
    """``VmHWM`` in bytes: the peak RSS of a process's own address space since its ``exec``; None without /proc.

    Not ``ru_maxrss``: on Linux that also counts the peak of the process a child was (v)forked from (it is
    folded in at ``exec``), so a small process started by a large one reads the large one's peak.
    """
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
