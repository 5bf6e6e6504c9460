"""The one authorization rule of the aggregator: certificate CN == claimed name, and name in cols.yaml."""
from __future__ import annotations

from typing import Collection, Mapping, Sequence, cast

import grpc

from fx_cli.pki.diagnose import explain_rpc_error

__all__ = ["peer_common_name", "authorize", "explain_rpc_error"]


def peer_common_name(context: grpc.ServicerContext) -> str | None:
    """The CN of the peer's verified client certificate; None without TLS or certificate."""
    # gRPC maps each property to a list of values; grpc-stubs types them as plain bytes.
    auth = cast(Mapping[str, Sequence[bytes]], context.auth_context() or {})
    values = auth.get("x509_common_name") or []
    return values[0].decode("utf-8", "replace") if values else None


def authorize(context: grpc.ServicerContext, claimed_name: str, authorized_cols: Collection[str],
              tls: bool = True, *, single_cert_cn: str | None = None) -> None:
    """Abort the call unless the peer's certificate names ``claimed_name`` and that name is authorized.

    UNAUTHENTICATED: no certificate, or its CN differs from the claimed name (or from
    ``single_cert_cn`` when every collaborator shares one certificate).  PERMISSION_DENIED:
    the name is not in cols.yaml.  With ``tls=False`` only the cols.yaml rule applies.
    """
    if tls:
        cn = peer_common_name(context)
        expected = single_cert_cn or claimed_name
        if cn is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED,
                          f"no client certificate: collaborator {claimed_name!r} must connect with "
                          f"cert/client/col_{claimed_name}.crt from this federation's CA")
        if cn != expected:
            context.abort(grpc.StatusCode.UNAUTHENTICATED,
                          f"certificate CN {cn!r} does not match the claimed collaborator name {expected!r}; "
                          "start the collaborator with -n set to the name its certificate was issued for")
    if claimed_name not in authorized_cols:
        context.abort(grpc.StatusCode.PERMISSION_DENIED,
                      f"collaborator {claimed_name!r} is not in the aggregator's plan/cols.yaml; on the aggregator "
                      f"host run `fx collaborator certify` for it (which adds it) or add it to plan/cols.yaml")
