"""Certificate commands: thin click shells over ``fx_cli.pki``."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import click
from rich.markup import escape

from fx_cli.cli.output import console, err_console
from fx_cli.errors import FxError
from fx_cli.names import check_collaborator_name, check_fqdn, is_ip

if TYPE_CHECKING:
    from fx_cli.pki.signing import PendingRequest
    from fx_cli.pki.store import Layout

NAME_OPTS = ("-n", "--collaborator-name", "--collaborator_name", "name")


def _checked(check: Callable[[str], str], value: str) -> str:
    """Run a name rule, turning its error into a usage error (exit 2) that states the rule."""
    try:
        return check(value)
    except FxError as err:
        raise click.BadParameter(err.message) from None


def _name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    return None if value is None else _checked(check_collaborator_name, value)


def _fqdn(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    return None if value is None else _checked(check_fqdn, value.lower())


def _sans(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(_checked(check_fqdn, v.lower()) for v in values)


def _ips(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    bad = [v for v in values if not is_ip(v)]
    if bad:
        raise click.BadParameter(f"{bad[0]!r} is not an IPv4 or IPv6 address (DNS names go in --san)")
    return values


def _say(text: str) -> None:
    # No markup or emoji: a fingerprint such as "DF:AB:BE" would otherwise print ":ab:" as an emoji.
    console().print(text, markup=False, emoji=False)


def _ok(text: str) -> None:
    console().print(f"[green]✔[/] {escape(text)}", emoji=False)


def _fingerprint(what: str, value: str) -> None:
    _say(f"{what} fingerprint (SHA-256): {value}")


def _confirm_or_warn(silent: bool, source: str) -> None:
    """Ask before signing; ``-s`` signs straight away with a warning."""
    if silent:
        err_console().print("[yellow]warning:[/] signing without confirmation; compare the fingerprint above "
                            "with the one the requester printed")
        return
    _say("Make sure this fingerprint is the same as the one printed where the request was made.")
    try:
        signed = click.confirm("Sign this certificate?", default=False)
    except click.Abort:  # end of input (no terminal) or Ctrl-C at the prompt
        raise FxError(f"not signed: {source}: nobody answered 'Sign this certificate?'"
                      + ("" if sys.stdin.isatty() else " (there is no terminal to ask on)"),
                      "compare the fingerprint above with the one the requester printed; to sign without being "
                      "asked (scripts, CI), run the same command with -s/--silent") from None
    if not signed:
        raise FxError(f"not signed: {source}", "compare the fingerprints out of band, then run the command again")


@click.command(name="certify")
@click.option("--force", is_flag=True, help="Start a new CA; the old one is moved aside, never deleted.")
def workspace_certify(force: bool) -> None:
    """Create the federation's root and signing CA under cert/."""
    from fx_cli.pki.ca import new_ca, write_ca
    from fx_cli.pki.fingerprint import fingerprint
    from fx_cli.pki.workspace import current_layout

    layout = current_layout()
    bundle = new_ca()
    backup = write_ca(layout, bundle, force)
    if backup:
        err_console().print(f"[yellow]warning:[/] the old CA was moved to {escape(layout.show(backup))}; "
                            "certificates it issued are no longer trusted here", emoji=False)
    _ok(f"created the certificate authority; trust chain in {layout.show(layout.chain)}")
    _fingerprint("root CA", fingerprint(bundle.root.cert))


@click.command(name="generate-cert-request")
@click.option("-n", "--fqdn", callback=_fqdn,
              help="Aggregator host name (default: $FQDN or this host's FQDN); -n as in `fx aggregator certify`.")
@click.option("--san", multiple=True, callback=_sans, help="Another DNS name clients may dial (repeatable).")
@click.option("--ip", multiple=True, callback=_ips, help="An IP address clients may dial (repeatable).")
def aggregator_generate_cert_request(fqdn: str | None, san: tuple[str, ...], ip: tuple[str, ...]) -> None:
    """Write the aggregator's key and certificate request under cert/server/."""
    from fx_cli.pki.requests import aggregator_request
    from fx_cli.pki.workspace import current_layout
    from fx_cli.plan.identity import local_fqdn

    layout = current_layout()
    result = aggregator_request(layout, fqdn or _checked(check_fqdn, local_fqdn()), san, ip)
    _report_request(layout.show(result.csr_path), layout.show(result.key_path), result.key_reused)
    _fingerprint("request", result.fingerprint)


def _report_request(csr: str, key: str, reused: bool) -> None:
    _ok(f"wrote the certificate request {csr}")
    _say(f"kept the existing private key {key}" if reused else f"wrote the private key {key} (mode 0600)")


@click.command(name="certify")
@click.option("-n", "--fqdn", callback=_fqdn, help="Aggregator host name (default: $FQDN or this host's FQDN).")
@click.option("-s", "--silent", "-y", "--yes", "silent", is_flag=True,
              help="Sign without asking (prints a warning); needed where there is no terminal.")
@click.option("--replace", "replace_existing", is_flag=True,
              help="Sign even though the name holds a valid certificate (it is replaced).")
def aggregator_certify(fqdn: str | None, silent: bool, replace_existing: bool) -> None:
    """Sign the aggregator's request with the signing CA."""
    from fx_cli.pki.signing import check_replace, pending_aggregator, sign_aggregator
    from fx_cli.pki.workspace import current_layout
    from fx_cli.plan.identity import local_fqdn

    layout = current_layout()
    request = pending_aggregator(layout, fqdn or local_fqdn())
    _show_request(request.source, request.summary, request.fingerprint)
    _show_holder(layout, request)
    check_replace(layout, request, replace_existing)
    _confirm_or_warn(silent, request.source)
    signed = sign_aggregator(layout, request, replace_existing)
    _ok(f"signed {layout.show(signed.cert_path)}")
    _fingerprint("certificate", signed.fingerprint)


def _show_holder(layout: Layout, request: PendingRequest) -> None:
    holder = request.holder
    if holder is not None:
        _say(f"  {request.names.common_name} already holds {layout.show(holder.path)}, valid until "
             f"{holder.not_after:%Y-%m-%d}; signing REPLACES it")
        _fingerprint("  current certificate", holder.fingerprint)


def _show_request(source: str, summary: str, fingerprint: str) -> None:
    _say(f"Certificate request {source}")
    _say(f"  {summary}")
    _fingerprint("request", fingerprint)


@click.command(name="create")
@click.option(*NAME_OPTS, required=True, callback=_name, help="Collaborator name.")
@click.option("-d", "--data-path", "--data_path", "data_path",
              help="Data path for this collaborator, checked by the plan's data loader (for the shipped templates "
                   "a shard number: 1, 2, ...).")
@click.option("-s", "--silent", is_flag=True,
              help="Do not ask; the data path defaults to what the plan's data loader suggests (the next free shard).")
def collaborator_create(name: str, data_path: str | None, silent: bool) -> None:
    """Register a collaborator's data path in plan/data.yaml (comments kept), checked by the plan's data loader."""
    from fx_cli.pki.workspace import current_layout, data_path as data_file
    from fx_cli.plan import load_plan
    from fx_cli.plan.participants import read_data, set_data
    from fx_cli.runners.datapath import check_data_path, suggest_data_path

    layout = current_layout()
    plan = load_plan(layout.workspace / "plan" / "plan.yaml", check_classes=False)
    registry = data_file(layout)
    taken = [path for who, path in (read_data(registry) if registry.is_file() else {}).items() if who != name]
    if data_path is None:
        default = suggest_data_path(plan, name, taken)
        data_path = default if silent else click.prompt("Data path", default=default)
    checked = check_data_path(plan, data_path)
    set_data(registry, name, data_path)
    _ok(f"collaborator {name} uses data path {data_path!r} (plan/data.yaml)")
    _say(f"checked by {checked.loader}" if checked.checked else
         f"not checked now: {checked.loader} is checked when `fx collaborator start -n {name}` builds it")


@click.command(name="generate-cert-request")
@click.option(*NAME_OPTS, required=True, callback=_name, help="Collaborator name (the certificate's CN).")
@click.option("-s", "--silent", is_flag=True, help="Do not ask anything (nothing is asked today).")
@click.option("-x", "--skip-package", is_flag=True, help="Do not write the request package zip.")
def collaborator_generate_cert_request(name: str, silent: bool, skip_package: bool) -> None:
    """Write the collaborator's key and request, and the package to send to the aggregator."""
    from fx_cli.pki.requests import collaborator_request
    from fx_cli.pki.workspace import current_layout

    layout = current_layout()
    result = collaborator_request(layout, name, package=not skip_package)
    _report_request(layout.show(result.csr_path), layout.show(result.key_path), result.key_reused)
    if result.package:
        _say(f"send {layout.show(result.package)} to the aggregator operator (it holds no private key)")
    _fingerprint("request", result.fingerprint)


@click.command(name="certify")
@click.option(*NAME_OPTS, callback=_name, help="Sign the local request cert/client/col_<name>.csr.")
@click.option("-r", "--request-pkg", type=click.Path(dir_okay=False, path_type=Path),
              help="CA side: sign the request in this col_<name>_to_agg_cert_request.zip.")
@click.option("-i", "--import", "import_", type=click.Path(dir_okay=False, path_type=Path),
              help="Collaborator side: install this agg_to_col_<name>_signed_cert.zip.")
@click.option("-s", "--silent", "-y", "--yes", "silent", is_flag=True,
              help="Sign without asking (prints a warning); needed where there is no terminal.")
@click.option("--replace", "replace_existing", is_flag=True,
              help="Sign even though the name holds a valid certificate (it is replaced).")
def collaborator_certify(name: str | None, request_pkg: Path | None, import_: Path | None, silent: bool,
                         replace_existing: bool) -> None:
    """Sign a collaborator's request (CA side) or install the signed certificate (collaborator side)."""
    if import_ is not None:
        if request_pkg is not None:
            raise click.UsageError("--import and --request-pkg are used on different hosts; pass one of them")
        return _import(import_)
    if request_pkg is None and name is None:
        raise click.UsageError("pass --request-pkg ZIP or -n NAME (CA side), or --import ZIP (collaborator side)")
    _sign(name, request_pkg, silent, replace_existing)


def _sign(name: str | None, request_pkg: Path | None, silent: bool, replace_existing: bool) -> None:
    from fx_cli.pki.signing import check_replace, pending_collaborator, sign_collaborator
    from fx_cli.pki.workspace import cols_path, current_layout

    layout = current_layout()
    request = pending_collaborator(layout, request_pkg, name)
    if name is not None and request.names.common_name != name:
        raise FxError(f"{request.source} is a request for {request.names.common_name!r}, not {name!r}",
                      "drop -n, or pass the package of the collaborator you meant")
    _show_request(request.source, request.summary, request.fingerprint)
    _show_holder(layout, request)
    check_replace(layout, request, replace_existing)
    _confirm_or_warn(silent, request.source)
    signed = sign_collaborator(layout, request, cols_path(layout), replace_existing)
    who = signed.names.common_name
    replaced = " (replacing the previous certificate)" if signed.replaced else ""
    _ok(f"signed {layout.show(signed.cert_path)}{replaced}")
    _say(f"{who} is {'now' if signed.added_to_cols else 'already'} authorized in plan/cols.yaml")
    _say(f"send {layout.show(signed.package) if signed.package else ''} back to collaborator {who}")
    _fingerprint("certificate", signed.fingerprint)


def _import(package: Path) -> None:
    from fx_cli.pki.install import import_signed
    from fx_cli.pki.workspace import current_layout

    layout = current_layout()
    installed = import_signed(layout, package.resolve())
    _ok(f"installed {layout.show(installed.cert_path)} and {layout.show(installed.chain_path)}")
    _fingerprint("certificate", installed.fingerprint)
    _fingerprint("root CA", installed.root_fingerprint)
    _say("compare the root CA fingerprint with the one `fx workspace certify` printed on the aggregator host")


@click.command(name="remove")
@click.option(*NAME_OPTS, required=True, callback=_name, help="Collaborator to shut out.")
def collaborator_remove(name: str) -> None:
    """Take a collaborator out of plan/cols.yaml; the aggregator refuses it from then on."""
    from fx_cli.pki.workspace import cols_path, current_layout
    from fx_cli.plan.participants import remove_col

    layout = current_layout()
    if not remove_col(cols_path(layout), name):
        raise FxError(f"collaborator {name!r} is not in plan/cols.yaml; nothing to remove",
                      "check the name with `cat plan/cols.yaml`")
    _ok(f"removed {name} from plan/cols.yaml; a running aggregator refuses it from its next call and finishes the "
        "current round without it")
    _say("note: fx keeps no revocation list; its certificate stays valid but is refused because the name is gone")


@click.command(name="check")
def check() -> None:
    """Inspect the workspace's certificates and say what is wrong and what to run."""
    from fx_cli.pki.check import run_check
    from fx_cli.pki.workspace import current_layout

    findings = run_check(current_layout())
    styles = {"ok": "[green]ok[/]     ", "note": "[cyan]note[/]   ", "problem": "[red]problem[/]"}
    for f in findings:
        console().print(f"{styles[f.severity]} {escape(f.subject)}: {escape(f.message)}", emoji=False)
        if f.hint:
            console().print(f"          [yellow]what to do:[/] {escape(f.hint)}", emoji=False)
    problems = sum(f.severity == "problem" for f in findings)
    if problems:
        raise FxError(f"{problems} certificate problem{'s' if problems > 1 else ''} found", "see the lines above")
    _ok("all certificates are in order")
