"""``fx collaborator ping``: reachability, TLS, authorization and plan agreement, each reported on its own.

Builds no data loader and imports no task runner (so no TensorFlow).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from fx_cli.errors import FxError
from fx_cli.names import check_collaborator_name
from fx_cli.plan import load_plan
from fx_cli.pki.diagnose import is_tls_failure
from fx_cli.transport.client import code_of, details, rpc_failure
from fx_cli.transport.serde import PingReply, PingRequest

# Details of UNAVAILABLE that mean nothing answered at all (as opposed to a failed TLS handshake).
UNREACHABLE = ("connection refused", "dns resolution failed", "name or service not known", "no route to host",
               "network is unreachable", "deadline exceeded", "timed out", "failed to resolve")


@dataclass(frozen=True)
class PingReport:
    target: str
    security: str
    name: str
    reply: PingReply
    seconds: float


class PingFailed(FxError):
    """One named check of ``fx collaborator ping`` failed."""

    def __init__(self, check: str, err: FxError) -> None:
        super().__init__(f"{check} check failed: {err.message}", err.hint)
        self.check = check


def ping(name: str, plan_path: Path, timeout: float = 10.0) -> PingReport:
    """Ping the aggregator as ``name``; raise ``PingFailed`` naming the first check that failed."""
    from fx_cli.collaborator.loop import client_credentials_for
    from fx_cli.collaborator.session import AggregatorClient
    from fx_cli.pki.authz import explain_rpc_error

    check_collaborator_name(name)
    plan = load_plan(plan_path, check_classes=False)
    net = plan.network
    security = "plain TCP" if not net.use_tls else ("mutual TLS" if net.require_client_auth else "TLS")
    try:
        credentials = client_credentials_for(plan, name)
    except FxError as err:
        raise PingFailed("TLS", err) from None
    with AggregatorClient(plan, name, credentials) as client:
        started = time.monotonic()
        try:
            reply = client.stub.ping(PingRequest(client.caller, client.plan_json), timeout=timeout)
        except grpc.RpcError as err:
            check = _failed_check(err, net.use_tls)
            failure = (explain_rpc_error(err, client.target, workspace=plan.workspace, collaborator=name)
                       if check in ("TLS", "authorization") else rpc_failure(err, client.target, name, "a ping"))
            raise PingFailed(check, failure) from None
        seconds = time.monotonic() - started
    if not reply.plan_matches:
        raise PingFailed("plan", FxError(
            f"this plan (hash {plan.hash[:16]}) differs from the aggregator's (hash {reply.plan_hash[:16]}); "
            f"differing keys: {', '.join(reply.differing_keys) or 'unknown'}",
            "copy the aggregator's plan/plan.yaml into this workspace"))
    return PingReport(client.target, security, name, reply, seconds)


def _failed_check(err: grpc.RpcError, tls: bool) -> str:
    code = code_of(err)
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return "authorization"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "reachability"
    if code == grpc.StatusCode.UNAVAILABLE:
        nothing_there = any(marker in details(err).lower() for marker in UNREACHABLE)
        return "TLS" if tls and (is_tls_failure(err) or not nothing_there) else "reachability"
    return "protocol"
