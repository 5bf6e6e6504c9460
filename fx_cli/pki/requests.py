"""Requester side: a key and a certificate request, and the collaborator's request package."""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from fx_cli.pki import certs
from fx_cli.pki.certs import Names, Role
from fx_cli.pki.fingerprint import fingerprint
from fx_cli.pki.keys import PrivateKey, new_private_key
from fx_cli.pki.store import Layout, pem, read_key, write_private_key, write_public


@dataclass(frozen=True)
class RequestResult:
    """What a ``generate-cert-request`` produced."""

    names: Names
    key_path: Path
    csr_path: Path
    fingerprint: str
    key_reused: bool
    package: Path | None = None


def _key_for(key_path: Path) -> tuple[PrivateKey, bool]:
    """The existing key at ``key_path`` (never replaced), else a new one written there."""
    if key_path.exists():
        return read_key(key_path, "restore the key file"), True
    key = new_private_key()
    write_private_key(key_path, key)
    return key, False


def _request(key_path: Path, csr_path: Path, names: Names, role: Role) -> tuple[x509.CertificateSigningRequest, bool]:
    key, reused = _key_for(key_path)
    csr = certs.request(key, names, role)
    write_public(csr_path, pem(csr))
    return csr, reused


def aggregator_request(layout: Layout, fqdn: str, dns: tuple[str, ...] = (),
                       ips: tuple[str, ...] = ()) -> RequestResult:
    """Write ``cert/server/agg_<fqdn>.key`` and ``.csr`` with the FQDN, DNS names and IPs in the SAN."""
    names = Names(fqdn, tuple(d for d in dns if d != fqdn), ips)
    key_path, csr_path = layout.server(fqdn, "key"), layout.server(fqdn, "csr")
    csr, reused = _request(key_path, csr_path, names, "server")
    return RequestResult(names, key_path, csr_path, fingerprint(csr), reused)


def collaborator_request(layout: Layout, name: str, package: bool = True) -> RequestResult:
    """Write ``cert/client/col_<name>.key`` and ``.csr``, and unless told not to, the request package."""
    key_path, csr_path = layout.client(name, "key"), layout.client(name, "csr")
    csr, reused = _request(key_path, csr_path, Names(name), "client")
    zip_path = write_request_package(layout, name, csr) if package else None
    return RequestResult(Names(name), key_path, csr_path, fingerprint(csr), reused, zip_path)


def zip_bytes(members: dict[str, bytes]) -> bytes:
    """A deflated zip holding exactly ``members`` (regular files, mode 0644)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return buffer.getvalue()


def write_request_package(layout: Layout, name: str, csr: x509.CertificateSigningRequest) -> Path:
    """``col_<name>_to_agg_cert_request.zip``: the request only, never the key."""
    path = layout.request_package(name)
    write_public(path, zip_bytes({f"col_{name}.csr": pem(csr)}))
    return path
