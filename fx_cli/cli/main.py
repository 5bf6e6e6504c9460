"""The ``fx`` entry point: global options and the one place errors become exit codes."""
from __future__ import annotations

import os
import sys

# gRPC's C core logs to stderr on its own (e.g. "E1128 ... add_port.cc:83 ...") and reads this variable when
# grpc is first imported, which happens later, inside commands. fx reports failures itself; `fx -l debug`
# turns gRPC's log back on, and a value the user set is always kept.
GRPC_VERBOSITY_SET_BY_USER = "GRPC_VERBOSITY" in os.environ
os.environ.setdefault("GRPC_VERBOSITY", "NONE")
# TensorFlow's C++ start-up notes (oneDNN, absl) likewise: errors only, unless the user set it.
TF_LOG_SET_BY_USER = "TF_CPP_MIN_LOG_LEVEL" in os.environ
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from typing import Any

import click

from fx_cli import __version__
from fx_cli.cli.lazy import LazyGroup
from fx_cli.errors import FxError

GROUPS = {
    "workspace": "fx_cli.cli.workspace:workspace",
    "plan": "fx_cli.cli.plan:plan",
    "aggregator": "fx_cli.cli.aggregator:aggregator",
    "collaborator": "fx_cli.cli.collaborator:collaborator",
    "model": "fx_cli.cli.model:model",
    "pki": "fx_cli.cli.pki:pki",
    "audit": "fx_cli.cli.audit:audit",
    "plot": "fx_cli.cli.plot_cmds:plot",
    "simulate": "fx_cli.cli.simulate_cmds:simulate",
}


class FxGroup(LazyGroup):
    """Root group: turns every ``FxError`` (and ``OSError``) into a message, a hint and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (FxError, OSError) as err:
            if (ctx.obj or {}).get("traceback"):
                raise
            fx_err = err if isinstance(err, FxError) else os_error(err)
            report_error(fx_err)
            raise click.exceptions.Exit(fx_err.exit_code) from None
        except click.exceptions.Abort:
            if sys.stdin.isatty():
                raise  # Ctrl-C at a prompt: click's "Aborted!" is the answer the user gave
            report_error(FxError("stopped: the command asked a question, and there is no terminal to answer it",
                                 "give the answer as an option (see the command's --help): -s/--silent or "
                                 "-y/--yes to confirm, -d DATA_PATH for `fx collaborator create`"))
            raise click.exceptions.Exit(1) from None


def os_error(err: OSError) -> FxError:
    """A file-system failure (missing folder, permissions, disk full) as a message naming the path."""
    where = f"{err.filename}: " if err.filename else ""
    return FxError(f"{where}{err.strerror or err}",
                   "check that the path exists, that you may write there and that the disk has room "
                   "(--traceback shows where it happened)")


def report_error(err: FxError) -> None:
    """Print an ``FxError`` to stderr: the message in red, then the hint."""
    from rich.markup import escape

    from fx_cli.cli.output import err_console

    console = err_console()
    console.print(f"[bold red]error:[/] {escape(err.message)}", highlight=False, markup=True)
    if err.hint:
        console.print(f"[yellow]what to do:[/] {escape(err.hint)}", highlight=False)


@click.group(cls=FxGroup, lazy_subcommands=GROUPS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-v", "--version", prog_name="fx", message="%(prog)s %(version)s")
@click.option("-l", "--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
              help="How much to log.")
@click.option("--traceback", "--debug", "traceback", is_flag=True,
              help="Re-raise errors with a full traceback instead of the short message.")
@click.pass_context
def cli(ctx: click.Context, log_level: str, traceback: bool) -> None:
    """fx: federated learning across sites whose data never leaves them.

    \b
    Typical flow (OpenFL TaskRunner compatible):
      fx workspace create --prefix ws --template keras/digits
      cd ws && fx plan initialize
      fx workspace certify && fx aggregator generate-cert-request && fx aggregator certify -s
      fx aggregator start            # on the server
      fx collaborator start -n one   # at each data site
    """
    from fx_cli.logs import setup_logging

    ctx.obj = {"traceback": traceback, "log_level": log_level}
    if log_level.lower() == "debug" and not GRPC_VERBOSITY_SET_BY_USER and "grpc" not in sys.modules:
        os.environ["GRPC_VERBOSITY"] = "INFO"
    if log_level.lower() == "debug" and not TF_LOG_SET_BY_USER and "tensorflow" not in sys.modules:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    setup_logging(log_level)


def entry() -> None:
    """Console-script entry point."""
    cli(prog_name="fx")


if __name__ == "__main__":  # pragma: no cover
    entry()
