"""``fx plan initialize | print | freeze``."""
from __future__ import annotations

from pathlib import Path

import click

from fx_cli.cli.output import console, ok, step, warn
from fx_cli.errors import FxError

PLAN = click.option("-p", "--plan", "plan_path", default="plan/plan.yaml", show_default=True,
                    type=click.Path(dir_okay=False, path_type=Path), help="Plan file.")


def _address(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A bad address is a usage error (exit 2) stating the rule, before anything is read or written."""
    from fx_cli.names import check_address

    try:
        return None if value is None else check_address(value)
    except FxError as err:
        raise click.BadParameter(err.message) from None


@click.command()
@PLAN
@click.option("-c", "--cols", "cols_path", default="plan/cols.yaml", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Authorized collaborators.")
@click.option("-d", "--data", "data_path", default="plan/data.yaml", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Collaborator data paths.")
@click.option("-a", "--aggregator-address", "--aggregator_address", "agg_addr", callback=_address,
              help="Aggregator address to write into the plan (default: keep, or this host's FQDN if 'auto').")
@click.option("-i", "--init-model", "--init_model_path", "init_model",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Start from these weights: a .pbuf or a native model file (e.g. .keras).")
def initialize(plan_path: Path, cols_path: Path, data_path: Path, agg_addr: str | None,
               init_model: Path | None) -> None:
    """Write the initial model weights and resolve the aggregator address."""
    from fx_cli.plan.initialize import initialize as run

    done = run(plan_path, cols_path, data_path, agg_addr, init_model, progress=step)
    ok(f"wrote {done.init_path} ({done.tensor_count} tensors, {done.total_bytes:,} bytes)")
    if done.address_written:
        ok(f"set network.settings.agg_addr to {done.agg_addr} in {plan_path}")
    for warning in done.warnings:
        warn(warning)
    console().print(f"aggregator: {done.agg_addr}:{done.agg_port}   federation: plan_{done.plan_hash[:8]}")
    console().print("next: fx workspace certify (on the aggregator host), then fx workspace export for the data sites")


@click.command("print")
@PLAN
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
def print_(plan_path: Path, as_json: bool) -> None:
    """Show the merged plan (defaults applied, 'auto' values resolved)."""
    import json

    from fx_cli.plan import load_plan
    from fx_cli.plan.yamlio import dump_yaml

    plan = load_plan(plan_path)
    text = json.dumps(plan.config, indent=2) if as_json else dump_yaml(plan.config)
    click.echo(f"# {plan.path}  hash {plan.hash[:16]}  federation {plan.federation_id}")
    click.echo(text, nl=False)


@click.command()
@PLAN
def freeze(plan_path: Path) -> None:
    """Write a read-only copy plan/plan_<hash8>.yaml of an initialised plan."""
    from fx_cli.plan import load_plan
    from fx_cli.plan.freeze import freeze as run

    path, new = run(load_plan(plan_path))
    ok(f"froze plan to {path}" if new else f"plan already frozen as {path}")


@click.command("region")
@click.option("-n", "--name", "name", required=True,
              help="This region's collaborator name at its parent (its client certificate, the parent's cols.yaml).")
@click.option("-a", "--aggregator-address", "--aggregator_address", "agg_addr", required=True,
              help="The address this region's aggregator serves its sites at (its server certificate's FQDN).")
@click.option("--local-rounds", "local_rounds", default=1, show_default=True, type=int,
              help="Rounds with this region's sites for each round of the parent.")
@click.option("--port", "port", default="auto", show_default=True,
              help="Port of this region's aggregator ('auto': derived from the region's plan).")
def region(name: str, agg_addr: str, local_rounds: int, port: str) -> None:
    """Make this workspace (imported from the parent's archive) a middle aggregator's for region NAME."""
    from fx_cli.topology.create import UPSTREAM_PLAN, make_region

    made = make_region(Path.cwd(), name, agg_addr, local_rounds, int(port) if port.isdigit() else port)
    ok(f"this workspace is now region '{made.name}' (plan {made.plan_hash[:12]}), serving at "
       f"{made.agg_addr}:{made.agg_port}; its parent's plan {made.parent_hash[:12]} is {UPSTREAM_PLAN}")
    console().print(
        "next, on this host:\n"
        f"  fx aggregator generate-cert-request --fqdn {made.agg_addr}   # the region's server certificate\n"
        f"  fx collaborator generate-cert-request -n {made.name}          # its client certificate at the parent\n"
        "  carry both request packages to the federation's CA, and the signed packages back "
        "(fx aggregator certify / fx collaborator certify --import)\n"
        f"  fx collaborator ping -n {made.name} -p {UPSTREAM_PLAN}        # checks the link to the parent\n"
        "  fx workspace export   # the archive this region's sites import; they are added to plan/cols.yaml\n"
        "  fx aggregator start   # serves the sites and answers the parent")
