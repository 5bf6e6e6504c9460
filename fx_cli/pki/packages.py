"""Reading the two certificate packages, treating each zip as hostile."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from fx_cli.archive.safezip import Limits, UnsafeArchive, check_members, open_zip
from fx_cli.errors import FxError
from fx_cli.pki.store import parse_csr

# Certificates and requests are a few KiB; anything bigger is not ours.
LIMITS = Limits(max_members=8, max_member_bytes=64 * 1024, max_total_bytes=256 * 1024)
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
REQUEST_MEMBER = re.compile(rf"^col_({_LABEL})\.csr$")
CERT_MEMBER = re.compile(rf"^client/col_({_LABEL})\.crt$")
CHAIN_MEMBER = "cert_chain.crt"


@dataclass(frozen=True)
class SignedPackage:
    """The contents of ``agg_to_col_<name>_signed_cert.zip``."""

    name: str
    cert: x509.Certificate
    chain: list[x509.Certificate]
    chain_pem: bytes


def _read_checked(path: Path, allowed: re.Pattern[str] | None, extra: set[str]) -> dict[str, bytes]:
    """Members of ``path`` after the whole list passed the hostile-zip checks."""
    def ok(member: str) -> bool:
        return member in extra or bool(allowed and allowed.match(member))

    with open_zip(path) as zf:
        files = check_members(path, zf, LIMITS, allowed=ok)
        data = {}
        for info in files:
            with zf.open(info) as fh:
                content = fh.read(LIMITS.max_member_bytes + 1)
            if len(content) > info.file_size or len(content) > LIMITS.max_member_bytes:
                raise UnsafeArchive(path, f"member {info.filename!r} is larger than its header says")
            data[info.filename] = content
        return data


def _single(path: Path, data: dict[str, bytes], pattern: re.Pattern[str], what: str) -> tuple[str, bytes]:
    matches = [(m.group(1), content) for member, content in data.items() if (m := pattern.match(member))]
    if len(matches) != 1:
        raise UnsafeArchive(path, f"expected exactly one {what}, found {len(matches)}")
    return matches[0]


def _wrong_package(path: Path, wanted: str) -> FxError | None:
    """An error naming what ``path`` is when it is another kind of fx package than ``wanted``."""
    try:
        with open_zip(path) as zf:  # member names only: nothing is extracted or decompressed
            names = zf.namelist()
    except (FxError, OSError, ValueError):
        return None  # the reader reports it
    request = next((m.group(1) for n in names if (m := REQUEST_MEMBER.match(n))), None)
    signed = next((m.group(1) for n in names if (m := CERT_MEMBER.match(n))), None)
    if wanted == "signed" and request and not signed:
        return FxError(f"{path} is the certificate request package of '{request}', not a signed certificate",
                       f"the request is signed on the aggregator (CA) host with `fx collaborator certify "
                       f"--request-pkg {path.name}`; bring back the agg_to_col_{request}_signed_cert.zip it "
                       f"writes and import that here with `fx collaborator certify --import`")
    if wanted == "request" and signed and not request:
        return FxError(f"{path} is the signed certificate package of '{signed}', not a certificate request",
                       f"it is installed at the collaborator's site with `fx collaborator certify --import "
                       f"{path.name}`; here, sign the site's col_{signed}_to_agg_cert_request.zip with --request-pkg")
    if "plan/plan.yaml" in names:
        return FxError(f"{path} is a workspace archive, not a certificate package",
                       f"import it with `fx workspace import --archive {path.name}`")
    return None


def read_request_package(path: Path) -> tuple[str, x509.CertificateSigningRequest]:
    """The collaborator name and request in ``col_<name>_to_agg_cert_request.zip``."""
    wrong = _wrong_package(path, "request")
    if wrong is not None:
        raise wrong
    data = _read_checked(path, REQUEST_MEMBER, set())
    name, content = _single(path, data, REQUEST_MEMBER, "member named col_<name>.csr")
    return name, parse_csr(content, f"{path}: col_{name}.csr")


def read_signed_package(path: Path) -> SignedPackage:
    """Certificate and chain from ``agg_to_col_<name>_signed_cert.zip``."""
    wrong = _wrong_package(path, "signed")
    if wrong is not None:
        raise wrong
    data = _read_checked(path, CERT_MEMBER, {CHAIN_MEMBER})
    name, cert_pem = _single(path, data, CERT_MEMBER, "member named client/col_<name>.crt")
    if CHAIN_MEMBER not in data:
        raise UnsafeArchive(path, f"member {CHAIN_MEMBER!r} is missing")
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        chain = x509.load_pem_x509_certificates(data[CHAIN_MEMBER])
    except ValueError as err:
        raise FxError(f"{path}: holds a damaged certificate ({err})",
                      "ask the aggregator operator for a fresh package") from None
    return SignedPackage(name, cert, chain, data[CHAIN_MEMBER])
