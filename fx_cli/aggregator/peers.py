"""Who is calling, as the audit log records it: network address and certificate fingerprint.

``GateWatch`` is how the servicer's ``Gate`` reports admissions and refusals (transport-neutral: a
``Peer`` rather than a gRPC context), so operations code never needs gRPC.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Protocol, Sequence, cast

if TYPE_CHECKING:
    import grpc


@dataclass(frozen=True)
class Peer:
    address: str  # e.g. "ipv4:127.0.0.1:53412"
    cert_fingerprint: str | None  # SHA-256 of the client certificate (None without TLS)


class GateWatch(Protocol):
    def admitted(self, name: str) -> None:
        """A call of ``name`` was let in (any call but Join: who it is was already recorded when it joined)."""

    def joined(self, name: str, peer: Peer) -> None:
        """``name`` was let in by its Join call, from ``peer``."""

    def refused(self, claimed: str, peer: Peer, reason: str) -> None:
        """A call claiming to be ``claimed`` was refused for ``reason``."""

    def capabilities(self, name: str, caps: Any) -> None:
        """``name`` reported its capabilities (``transport.serde.Capabilities``) and is eligible."""


def peer_of(context: "grpc.ServicerContext") -> Peer:
    """The caller's address and certificate fingerprint."""
    auth = cast(Mapping[str, Sequence[bytes]], context.auth_context() or {})
    pems = auth.get("x509_pem_cert") or []
    fingerprint = None
    if pems:
        from cryptography import x509

        from fx_cli.pki.fingerprint import fingerprint as fp

        try:
            fingerprint = fp(x509.load_pem_x509_certificate(pems[0]))
        except ValueError:
            fingerprint = "(unreadable certificate)"
    return Peer(str(context.peer() or ""), fingerprint)


def refusal_reason(context: "grpc.ServicerContext", err: BaseException) -> str:
    """The message a refused call was aborted with."""
    details = getattr(context, "details", None)
    text = details() if callable(details) else None
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return str(text or err or type(err).__name__)
