"""What a collaborator reports about itself at join: sample counts, CPUs, memory, GPU, fx version.

No framework is imported to find a GPU: an NVIDIA device node or ``nvidia-smi`` on the PATH counts.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from fx_cli import __version__
from fx_cli.transport.serde import Capabilities


def memory_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


def gpu_present() -> bool:
    return Path("/dev/nvidia0").exists() or shutil.which("nvidia-smi") is not None


def capabilities_of(runner: Any) -> Capabilities:
    """This host's capabilities with ``runner``'s data."""
    return Capabilities(int(runner.train_data_size()), int(runner.valid_data_size()), os.cpu_count() or 1,
                        memory_bytes(), gpu_present(), __version__)
