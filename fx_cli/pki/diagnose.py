"""Turning a failed call to the aggregator into an error that names the cause and the fix."""
from __future__ import annotations

import re
from pathlib import Path

import grpc

from fx_cli.errors import FxError
from fx_cli.pki.keys import key_matches
from fx_cli.pki.store import Layout, read_cert, read_certs, read_key
from fx_cli.pki.verify import chain_problem, eku_problem, validity_problem


def fresh_cert_hint(name: str | None) -> str:
    """How a collaborator gets a (new) certificate from this federation's CA."""
    name = name or "NAME"
    return (f"run `fx collaborator generate-cert-request -n {name}`, have the aggregator operator sign "
            f"col_{name}_to_agg_cert_request.zip with `fx collaborator certify --request-pkg`, then run "
            f"`fx collaborator certify --import agg_to_col_{name}_signed_cert.zip`")


# What gRPC's details of an UNAVAILABLE call say when a TLS handshake failed for certain: retrying cannot help.
# Hostname mismatches say "Hostname Verification Check failed"; a server certificate from another CA says
# CERTIFICATE_VERIFY_FAILED.
SERVER_CERT_MARKERS = ("hostname verification", "peer name", "certificate_verify_failed", "certificate has expired")
CERTAIN_MARKERS = SERVER_CERT_MARKERS + ("handshake", "ssl", "tls", "x509", "alpn", "certificate", "verification",
                                         "verify failed", "unauthenticated")
# A client certificate the server rejects shows up only as "Socket closed" (under TLS 1.3 the server's alert
# arrives after the client thinks the handshake is done) - but so does an aggregator that restarts, or a
# connection the network drops. Such failures are retried; the local certificate is checked while they last.
AMBIGUOUS_MARKERS = ("socket closed", "connection reset")
REJECTED_MARKERS = AMBIGUOUS_MARKERS + ("handshake",)
CERTAIN, POSSIBLE = "certain", "possible"


def tls_failure_kind(err: grpc.RpcError) -> str | None:
    """``CERTAIN`` (a TLS failure), ``POSSIBLE`` (a rejected client certificate or a restart) or None."""
    code = getattr(err, "code", lambda: None)()
    if code != grpc.StatusCode.UNAVAILABLE:
        return None
    text = str(getattr(err, "details", lambda: "")() or "").lower()
    if any(marker in text for marker in CERTAIN_MARKERS):
        return CERTAIN
    return POSSIBLE if any(marker in text for marker in AMBIGUOUS_MARKERS) else None


def is_tls_failure(err: grpc.RpcError) -> bool:
    """True when an UNAVAILABLE call looks like a failed TLS handshake (certainly or possibly)."""
    return tls_failure_kind(err) is not None


def local_rejection(target: str, workspace: Path, collaborator: str | None,
                    cert_folder: str = "cert") -> FxError | None:
    """For connections that keep closing during set-up: an error when this host's own certificate explains it."""
    from fx_cli.pki.tlsprobe import mismatch

    plain_server = mismatch(target, ours=True)
    if plain_server is not None:
        return plain_server
    local = local_client_problem(Layout(workspace, cert_folder), collaborator)
    return _handshake_rejected(target, local, collaborator) if local else None


def _host(target: str) -> str:
    host = target.rsplit(":", 1)[0] if target.count(":") == 1 or target.startswith("[") else target
    return host.strip("[]")


def local_client_problem(layout: Layout, collaborator: str | None) -> str | None:
    """What is wrong with this host's client certificate, judged against its own cert_chain.crt."""
    if collaborator is None:
        return "no client certificate was sent (this client was set up without one)"
    cert_path, key_path = layout.client(collaborator, "crt"), layout.client(collaborator, "key")
    if not cert_path.exists():
        return f"no client certificate was sent ({layout.show(cert_path)} not found)"
    try:
        cert = read_cert(cert_path)
        problem = chain_problem(cert, read_certs(layout.chain), layout.show(layout.chain))
        problem = problem or validity_problem(cert, warn_days=0) or eku_problem(cert, "client")
        if not problem and key_path.exists() and not key_matches(read_key(key_path, ""), cert):
            problem = f"does not match the private key {layout.show(key_path)}"
    except FxError as err:
        return err.message
    return f"{layout.show(cert_path)} {problem}" if problem else None


def _handshake_rejected(target: str, local: str | None, collaborator: str | None) -> FxError:
    cause = local or ("missing, from a different CA, expired, or not for client use; or the aggregator now "
                      "trusts another CA (was `fx workspace certify --force` run there?)")
    return FxError(f"the aggregator at {target} rejected this collaborator's certificate during the TLS handshake: "
                   f"{cause}", fresh_cert_hint(collaborator))


def _server_cert_error(target: str, details: str, chain_name: str) -> FxError | None:
    host, lowered = _host(target), details.lower()
    if "hostname verification" in lowered or "peer name" in lowered:
        return FxError(f"the server certificate does not cover {host!r}, the address dialled ({target})",
                       f"on the aggregator host run `fx aggregator generate-cert-request --san {host}` (or --ip for "
                       "an address), `fx aggregator certify`, and restart it; or dial a name its certificate covers")
    if "certificate has expired" in lowered:
        return FxError(f"the aggregator's certificate at {target} has expired",
                       "on the aggregator host run `fx aggregator generate-cert-request`, `fx aggregator certify` "
                       "and restart it; `fx pki check` shows the dates")
    if "certificate_verify_failed" in lowered:
        return FxError(f"the aggregator's certificate at {target} is from a different CA than {chain_name} "
                       f"(verification failed: {_reason(details)})",
                       "import the signed package from this federation's aggregator "
                       "(`fx collaborator certify --import ...`), or check agg_addr/agg_port")
    return None


def _reason(details: str) -> str:
    """OpenSSL's reason after ``CERTIFICATE_VERIFY_FAILED:``, e.g. 'unable to get local issuer certificate'."""
    found = re.search(r"CERTIFICATE_VERIFY_FAILED:\s*([^:]+)", details, re.IGNORECASE)
    return found.group(1).strip() if found else "see --debug"


def explain_rpc_error(err: grpc.RpcError, target: str, *, workspace: Path | None = None,
                      collaborator: str | None = None, cert_folder: str = "cert") -> FxError:
    """A readable ``FxError`` for a failed call; pass ``workspace``/``collaborator`` for local checks."""
    code = err.code() if isinstance(err, grpc.Call) else None
    details = (err.details() if isinstance(err, grpc.Call) else None) or str(err)
    layout = Layout(Path(workspace or "."), cert_folder)
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return FxError(f"the aggregator at {target} refused this collaborator's identity: {details}",
                       "run the collaborator with the name its certificate was issued for (`fx pki check` shows it)")
    if "not eligible: rule " in details:
        return FxError(f"the aggregator at {target} refused this collaborator: {details}",
                       "the federation's eligibility rules (aggregator.settings.eligibility) exclude it for the rule "
                       "named above; ask the aggregator operator, or fix what the rule checks (data, fx version)")
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return FxError(f"the aggregator at {target} does not authorize this collaborator: {details}",
                       "ask the aggregator operator to certify this collaborator (that adds it to plan/cols.yaml)")
    found = _server_cert_error(target, details, layout.show(layout.chain))
    if found:
        return found
    if any(marker in details.lower() for marker in REJECTED_MARKERS):
        from fx_cli.pki.tlsprobe import mismatch

        plain_server = mismatch(target, ours=True)  # a failed handshake may mean the server speaks no TLS
        if plain_server is not None:
            return plain_server
        local = local_client_problem(layout, collaborator) if workspace else None
        return _handshake_rejected(target, local, collaborator)
    if code == grpc.StatusCode.UNAVAILABLE:
        return FxError(f"cannot reach the aggregator at {target}: {details}",
                       "check that it is running and that network.settings.agg_addr/agg_port point at it")
    name = code.name if code else type(err).__name__
    return FxError(f"call to the aggregator at {target} failed: {name}: {details}",
                   "run with --debug for details; `fx pki check` inspects the certificates")
