"""CA side: check a request, then sign it (aggregator locally, collaborators from packages)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fx_cli.errors import FxError
from fx_cli.names import check_collaborator_name, check_fqdn, is_ip
from fx_cli.pki import ca
from fx_cli.pki.certs import Names, Role, names_of
from fx_cli.pki.fingerprint import fingerprint
from fx_cli.pki.packages import read_request_package
from fx_cli.pki.requests import zip_bytes
from fx_cli.pki.store import Layout, pem, read_cert, read_csr, write_public
from fx_cli.pki.verify import chain_problem, describe, expired
from fx_cli.plan.participants import add_col

_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
REQUEST_HINT = "ask for a fresh request made by `fx collaborator generate-cert-request`"


@dataclass(frozen=True)
class Holder:
    """A valid certificate (unexpired, from this CA) already issued for the name a request asks for."""

    path: Path
    fingerprint: str
    not_after: dt.datetime
    same_key: bool


@dataclass(frozen=True)
class PendingRequest:
    """A checked request, shown to the operator before signing."""

    csr: x509.CertificateSigningRequest
    names: Names
    role: Role
    source: str
    holder: Holder | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.csr)

    @property
    def summary(self) -> str:
        return describe(self.csr)


@dataclass(frozen=True)
class Signed:
    """A certificate just issued, and for collaborators the package to send back."""

    names: Names
    cert_path: Path
    fingerprint: str
    replaced: bool
    package: Path | None = None
    added_to_cols: bool = False


def _key_problem(csr: x509.CertificateSigningRequest) -> str | None:
    key = csr.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, _CURVES):
        return None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size >= 2048:
        return None
    return f"uses an unsupported key ({type(key).__name__}); fx signs ECDSA P-256/384/521 or RSA >= 2048"


def _name_problems(names: Names, role: Role) -> list[str]:
    check = check_collaborator_name if role == "client" else check_fqdn
    problems = []
    for dns in (names.common_name, *names.dns):
        try:
            check(dns)
        except FxError as err:
            problems.append(err.message)
    if role == "client" and (names.dns or names.ips):
        problems.append(f"asks for extra names {list(names.dns + names.ips)}; a collaborator is named by its CN only")
    problems += [f"{ip!r} is not an IP address" for ip in names.ips if not is_ip(ip)]
    return problems


def check_request(csr: x509.CertificateSigningRequest, role: Role, source: str,
                  expected_cn: str | None = None) -> PendingRequest:
    """Validate a request's signature, key and names; raise naming ``source``."""
    problems = [] if csr.is_signature_valid else ["its signature does not verify (damaged or tampered with)"]
    problems += [p for p in [_key_problem(csr)] if p]
    names = names_of(csr)
    problems += _name_problems(names, role)
    if expected_cn is not None and names.common_name != expected_cn:
        problems.append(f"its CN {names.common_name!r} differs from the name {expected_cn!r} in the file name")
    if problems:
        raise FxError(f"refusing to sign {source}: " + "; ".join(problems), REQUEST_HINT)
    return PendingRequest(csr, names, role, source)


def current_holder(layout: Layout, csr: x509.CertificateSigningRequest, cert_path: Path) -> Holder | None:
    """The valid certificate at ``cert_path``, if there is one (expired, foreign or unreadable ones are not)."""
    if not cert_path.is_file():
        return None
    try:
        cert = read_cert(cert_path)
        chain = ca.load_chain(layout)
    except FxError:
        return None
    if expired(cert) or chain_problem(cert, chain, "the chain") is not None:
        return None
    same_key = cert.public_key().public_bytes(*_SPKI) == csr.public_key().public_bytes(*_SPKI)
    return Holder(cert_path, fingerprint(cert), cert.not_valid_after_utc, same_key)


def check_replace(layout: Layout, request: PendingRequest, replace_existing: bool) -> None:
    """Refuse to sign over a valid certificate unless the operator said --replace."""
    holder = request.holder
    if holder is None or replace_existing:
        return
    key = "the same key" if holder.same_key else "a DIFFERENT key"
    raise FxError(f"{request.names.common_name!r} already holds a valid certificate {layout.show(holder.path)} "
                  f"(fingerprint {holder.fingerprint}, valid until {holder.not_after:%Y-%m-%d}); this request "
                  f"({request.source}) is for {key}, and signing it would replace that certificate",
                  "if the site really made a new request (lost key, new host), run the command again with "
                  "--replace; otherwise someone else may be asking for this name: compare fingerprints with "
                  "the site out of band")


def _single_server_csr(layout: Layout) -> Path | None:
    found = sorted((layout.root / "server").glob("agg_*.csr"))
    return found[0] if len(found) == 1 else None


def pending_aggregator(layout: Layout, fqdn: str) -> PendingRequest:
    """The local aggregator request ``cert/server/agg_<fqdn>.csr`` (or the only one there)."""
    path = layout.server(fqdn, "csr")
    if not path.exists():
        path = _single_server_csr(layout) or path
    hint = f"run `fx aggregator generate-cert-request --fqdn {fqdn}` first"
    csr = read_csr(path, hint)
    request = check_request(csr, "server", layout.show(path), expected_cn=path.stem[len("agg_"):])
    return _with_holder(layout, request, layout.server(request.names.common_name, "crt"))


def _with_holder(layout: Layout, request: PendingRequest, cert_path: Path) -> PendingRequest:
    return replace(request, holder=current_holder(layout, request.csr, cert_path))


def pending_collaborator(layout: Layout, package: Path | None, name: str | None) -> PendingRequest:
    """A collaborator request from a package, or the local ``cert/client/col_<name>.csr``."""
    if package is not None:
        member_name, csr = read_request_package(package)
        request = check_request(csr, "client", str(package), expected_cn=member_name)
    elif name is None:
        raise FxError("nothing to sign", "pass --request-pkg ZIP (a collaborator's package) or -n NAME")
    else:
        path = layout.client(name, "csr")
        csr = read_csr(path, f"run `fx collaborator generate-cert-request -n {name}` first, or pass --request-pkg")
        request = check_request(csr, "client", layout.show(path), expected_cn=name)
    return _with_holder(layout, request, layout.client(request.names.common_name, "crt"))


def _issue(layout: Layout, request: PendingRequest, cert_path: Path) -> tuple[x509.Certificate, bool]:
    signing = ca.load_signing(layout)
    cert = ca.issue(signing, request.csr.public_key(), request.names, request.role)  # type: ignore[arg-type]
    replaced = cert_path.exists()
    write_public(cert_path, pem(cert))
    return cert, replaced


def sign_aggregator(layout: Layout, request: PendingRequest, replace_existing: bool = False) -> Signed:
    """Issue ``cert/server/agg_<fqdn>.crt`` (over a valid one only with ``replace_existing``)."""
    check_replace(layout, request, replace_existing)
    path = layout.server(request.names.common_name, "crt")
    cert, replaced = _issue(layout, request, path)
    return Signed(request.names, path, fingerprint(cert), replaced)


def sign_collaborator(layout: Layout, request: PendingRequest, cols_path: Path,
                      replace_existing: bool = False) -> Signed:
    """Issue ``cert/client/col_<name>.crt``, authorize the name and write the signed package."""
    check_replace(layout, request, replace_existing)
    name = request.names.common_name
    path = layout.client(name, "crt")
    cert, replaced = _issue(layout, request, path)
    added = add_col(cols_path, name)
    package = layout.signed_package(name)
    chain = pem(*ca.load_chain(layout))
    write_public(package, zip_bytes({f"client/col_{name}.crt": pem(cert), "cert_chain.crt": chain}))
    return Signed(request.names, path, fingerprint(cert), replaced, package, added)
