"""Shared fixtures: an in-process ``fx(*args)`` runner and workspace factories."""
from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from click.testing import CliRunner

from fx_cli.cli.main import cli

# Deterministic FQDN for 'auto' addresses; never the host's real name.
os.environ.setdefault("FQDN", "localhost")

# A suite started in the background by a non-interactive shell (`make test &`) inherits SIGINT ignored, and
# every process it starts would too: Python then installs no Ctrl-C handler and the tests of what Ctrl-C
# does would see the signal ignored. An ignored disposition is inherited across exec, a handler is not.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@dataclass
class Result:
    exit_code: int
    output: str
    stderr: str

    @property
    def all(self) -> str:
        return self.output + self.stderr


def run_fx(*args: str, input: str | None = None) -> Result:
    """Run ``fx ARGS`` in-process and return its exit code and output."""
    runner = CliRunner()
    res = runner.invoke(cli, list(args), input=input, catch_exceptions=False)
    return Result(res.exit_code, res.stdout, res.stderr)


@pytest.fixture
def fx() -> Callable[..., Result]:
    return run_fx


@pytest.fixture
def make_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Create (and chdir into) a workspace from a template; optionally initialise it."""

    def make(template: str = "numpy/synthetic", name: str = "ws", initialize: bool = True) -> Path:
        ws = tmp_path / name
        res = run_fx("workspace", "create", "--prefix", str(ws), "--template", template)
        assert res.exit_code == 0, res.all
        monkeypatch.chdir(ws)
        if initialize:
            res = run_fx("plan", "initialize", "-a", "localhost")
            assert res.exit_code == 0, res.all
        return ws

    return make
