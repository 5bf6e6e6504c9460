"""``fx audit verify``."""
from __future__ import annotations

from pathlib import Path

import click

from fx_cli.cli.output import console, ok
from fx_cli.errors import FxError


@click.command("verify")
@click.option("--log", "log_path", default="logs/audit.jsonl", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="The audit log to check.")
@click.option("--cert", "cert_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="The aggregator's certificate (default: the one in cert/server for the plan's agg_addr).")
@click.option("-p", "--plan", "plan_path", default="plan/plan.yaml", show_default=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Plan file (to find the certificate).")
def audit_verify(log_path: Path, cert_path: Path | None, plan_path: Path) -> None:
    """Check every record's hash link and the aggregator's head signatures; name the first bad record."""
    from fx_cli.audit.verify import verify_log
    from fx_cli.pki.fingerprint import fingerprint
    from fx_cli.pki.store import read_cert

    try:
        cert = read_cert(cert_path or _plan_cert(plan_path), "give the aggregator certificate with --cert")
    except FxError:
        if cert_path is not None:
            raise
        cert = None  # a log written without TLS (or by fx simulate without certificates) has no signatures
    verdict = verify_log(log_path, cert)
    if cert is None and verdict.signed_heads:
        raise FxError(f"{log_path} holds {verdict.signed_heads} head signature(s) but no aggregator certificate "
                      "was found to check them", "give it with --cert cert/server/agg_<fqdn>.crt")
    if not verdict.ok:
        raise FxError(f"{log_path}: line {verdict.bad_line}: {verdict.problem}; the {verdict.records} record(s) "
                      "before it are intact",
                      "treat everything from that line on as untrusted; keep this file as evidence and compare it "
                      "with backups or the collaborators' own logs")
    if cert is None:
        ok(f"{log_path}: {verdict.records} record(s) intact (hash chain); the log is not signed")
    else:
        ok(f"{log_path}: {verdict.records} record(s) intact; {verdict.signed_heads} head signature(s) valid "
           f"(signer {fingerprint(cert)})")
    if verdict.unsigned_tail and cert is not None:
        console().print(f"[yellow]note:[/] the last {verdict.unsigned_tail} record(s) come after the last signed "
                        "head (the aggregator signs at each round end)")
    if verdict.truncated_line:
        console().print(f"[yellow]note:[/] line {verdict.truncated_line} is an incomplete record (the aggregator "
                        "was stopped mid-write, e.g. kill -9); verification stops there. The next `fx aggregator "
                        "start` cuts it off and records that it did")


def _plan_cert(plan_path: Path) -> Path:
    from fx_cli.plan import load_plan
    from fx_cli.pki.store import Layout
    from fx_cli.pki.tls import find_server_cert

    try:
        plan = load_plan(plan_path, check_classes=False)
    except FxError as err:
        raise FxError(f"cannot find the aggregator certificate: {err.message}",
                      "run in the aggregator's workspace or give --cert cert/server/agg_<fqdn>.crt") from None
    return find_server_cert(Layout(plan.workspace, plan.network.cert_folder), str(plan.network.agg_addr))
