"""gRPC credentials from the workspace's certificates (used by the federation runtime)."""
from __future__ import annotations

from pathlib import Path

import grpc
from cryptography import x509

from fx_cli.errors import FxError
from fx_cli.pki.certs import covers
from fx_cli.pki.keys import key_matches
from fx_cli.pki.store import CERTIFY_HINT, Layout, pem, read_cert, read_certs, read_key
from fx_cli.pki.verify import chain_problem, issued_by, validity_problem


def _server_hint(agg_addr: str) -> str:
    return (f"run `fx aggregator generate-cert-request --fqdn {agg_addr}` (add --san/--ip for other names "
            "clients dial), then `fx aggregator certify`")


def find_server_cert(layout: Layout, agg_addr: str) -> Path:
    """``cert/server/agg_<agg_addr>.crt``, else the only ``agg_*.crt`` whose SAN covers ``agg_addr``."""
    direct = layout.server(agg_addr.lower(), "crt")
    if direct.exists():
        return direct
    found = [p for p in sorted((layout.root / "server").glob("agg_*.crt")) if covers(read_cert(p), agg_addr)]
    if len(found) == 1:
        return found[0]
    if found:
        raise FxError(f"several aggregator certificates cover {agg_addr!r}: "
                      + ", ".join(layout.show(p) for p in found),
                      "keep one of them in cert/server, or set network.settings.agg_addr to its FQDN")
    raise FxError(f"{layout.show(direct)} not found, and no certificate in {layout.show(layout.root / 'server')} "
                  f"covers {agg_addr!r}", _server_hint(agg_addr))


def _intermediates(chain: list[x509.Certificate]) -> bytes:
    """The chain without its self-signed root, sent after the leaf."""
    return pem(*[c for c in chain if not issued_by(c, c)])


def _checked_pair(layout: Layout, cert_path: Path, key_path: Path, hint: str) -> tuple[bytes, bytes]:
    """(key PEM, certificate chain PEM) after checking that the pair belongs together and to our CA."""
    chain = read_certs(layout.chain, CERTIFY_HINT)
    cert = read_cert(cert_path, hint)
    key = read_key(key_path, hint)
    if not key_matches(key, cert):
        raise FxError(f"{layout.show(cert_path)} does not match the private key {layout.show(key_path)}", hint)
    problem = chain_problem(cert, chain, layout.show(layout.chain)) or validity_problem(cert, warn_days=0)
    if problem:
        raise FxError(f"{layout.show(cert_path)} {problem}", hint)
    return key_path.read_bytes(), pem(cert) + _intermediates(chain)


def server_credentials(workspace: Path, agg_addr: str, require_client_auth: bool = True, *,
                       cert_folder: str = "cert") -> grpc.ServerCredentials:
    """TLS for the aggregator: its certificate and key; clients must show one from our CA."""
    layout = Layout(Path(workspace), cert_folder)
    cert_path = find_server_cert(layout, agg_addr)
    key_path = cert_path.with_suffix(".key")
    key_pem, chain_pem = _checked_pair(layout, cert_path, key_path, _server_hint(agg_addr))
    return grpc.ssl_server_credentials([(key_pem, chain_pem)], root_certificates=layout.chain.read_bytes(),
                                       require_client_auth=require_client_auth)


def client_credentials(workspace: Path, collaborator: str | None, *,
                       cert_folder: str = "cert") -> grpc.ChannelCredentials:
    """TLS for a collaborator: trust ``cert/cert_chain.crt``; present ``col_<name>`` unless None."""
    layout = Layout(Path(workspace), cert_folder)
    root = read_certs(layout.chain, "import the signed package: `fx collaborator certify --import "
                      f"agg_to_col_{collaborator or '<name>'}_signed_cert.zip`")
    if collaborator is None:
        return grpc.ssl_channel_credentials(root_certificates=pem(*root))
    hint = (f"run `fx collaborator generate-cert-request -n {collaborator}`, have the aggregator sign it, "
            f"then `fx collaborator certify --import agg_to_col_{collaborator}_signed_cert.zip`")
    key_pem, chain_pem = _checked_pair(layout, layout.client(collaborator, "crt"),
                                       layout.client(collaborator, "key"), hint)
    return grpc.ssl_channel_credentials(root_certificates=pem(*root), private_key=key_pem,
                                        certificate_chain=chain_pem)
