"""Checks on certificates that explain themselves: chain, validity, key match."""
from __future__ import annotations

import datetime as dt
from typing import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from fx_cli.pki.certs import EKU, Role, ca_names, names_of, now

EXPIRY_WARNING_DAYS = 30


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer`` signed ``cert``."""
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def chain_problem(cert: x509.Certificate, chain: Sequence[x509.Certificate], chain_name: str) -> str | None:
    """Why ``cert`` does not lead to a self-signed root in ``chain`` (None when it does)."""
    current = cert
    for _ in range(len(chain) + 1):
        parent = next((c for c in chain if issued_by(current, c)), None)
        if parent is None:
            issuer = names_of_issuer(current)
            return (f"was issued by {issuer!r}, a different CA from the one in {chain_name} "
                    f"(which holds {ca_names(chain)})")
        if parent == current:
            return None
        current = parent
    return f"does not lead to a self-signed root in {chain_name}"


def names_of_issuer(cert: x509.Certificate) -> str:
    """The issuer's common name (or the whole issuer name when it has none)."""
    cns = cert.issuer.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else cert.issuer.rfc4514_string()


def expired(cert: x509.Certificate, at: dt.datetime | None = None) -> bool:
    """True when ``cert`` is past its end (or not yet valid)."""
    t = at or now()
    return not cert.not_valid_before_utc <= t <= cert.not_valid_after_utc


def validity_problem(cert: x509.Certificate, at: dt.datetime | None = None,
                     warn_days: int = EXPIRY_WARNING_DAYS) -> str | None:
    """'expired on ...', 'not valid before ...' or 'expires in N days' (None when fine)."""
    t = at or now()
    end = cert.not_valid_after_utc
    if t > end:
        return f"expired on {end:%Y-%m-%d %H:%M} UTC"
    if t < cert.not_valid_before_utc:
        return f"is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC (check the clock)"
    left = end - t
    if left < dt.timedelta(days=warn_days):
        return f"expires in {left.days} days, on {end:%Y-%m-%d} (within {warn_days} days)"
    return None


def describe(obj: x509.Certificate | x509.CertificateSigningRequest) -> str:
    """'CN=<cn>; SAN: DNS:a, IP:b' for confirmation prompts and reports."""
    try:
        ext = obj.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        san = [f"DNS:{d}" for d in ext.get_values_for_type(x509.DNSName)]
        san += [f"IP:{ip}" for ip in ext.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        san = ["(none)"]
    return f"CN={names_of(obj).common_name}; SAN: {', '.join(san)}"


def eku_problem(cert: x509.Certificate, role: Role) -> str | None:
    """A sentence when the certificate's extended key usage does not allow ``role``."""
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return None
    purpose = "clientAuth" if role == "client" else "serverAuth"
    return None if EKU[role] in eku else f"is not a {role} certificate (its EKU lacks {purpose})"
