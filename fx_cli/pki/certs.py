"""Pure certificate builders: CA certificates, requests and leaves (no file I/O)."""
from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from typing import Literal, Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fx_cli.pki.keys import PrivateKey, PublicKey

Role = Literal["server", "client"]
HASH = hashes.SHA384()
DAY = dt.timedelta(days=1)
EKU = {"server": ExtendedKeyUsageOID.SERVER_AUTH, "client": ExtendedKeyUsageOID.CLIENT_AUTH}


@dataclass(frozen=True)
class Issuer:
    """A CA certificate with its private key."""

    cert: x509.Certificate
    key: PrivateKey


@dataclass(frozen=True)
class Names:
    """The identity a leaf certifies: CN plus the DNS names and IP addresses of its SAN."""

    common_name: str
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()

    def san(self) -> x509.SubjectAlternativeName:
        dns = dict.fromkeys((self.common_name, *self.dns))  # ordered, without repeats
        general: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        general += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys(self.ips)]
        return x509.SubjectAlternativeName(general)


def now() -> dt.datetime:
    """The current UTC time, to the second."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def subject(common_name: str, unit: str | None = None) -> x509.Name:
    """``CN=<name>`` (with ``O=fx, OU=<unit>`` for CAs)."""
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if unit:
        attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fx"),
                  x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit)]
    return x509.Name(attrs)


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                         crl_sign=True, encipher_only=False, decipher_only=False)


def _leaf_key_usage(public_key: PublicKey) -> x509.KeyUsage:
    # RSA keys (requests from OpenFL) also need keyEncipherment for RSA key exchange.
    return x509.KeyUsage(digital_signature=True, content_commitment=False,
                         key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                         crl_sign=False, encipher_only=False, decipher_only=False)


def _builder(name: x509.Name, issuer: x509.Name, public_key: PublicKey,
             not_before: dt.datetime, not_after: dt.datetime) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder().subject_name(name).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))


def _aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def root_ca(key: PrivateKey, common_name: str, *, not_before: dt.datetime, days: int) -> x509.Certificate:
    """A self-signed root CA that may sign one level of CA below it."""
    name = subject(common_name, "Root CA")
    return (_builder(name, name, key.public_key(), not_before, not_before + days * DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(_ca_key_usage(), critical=True)
            .sign(key, HASH))


def signing_ca(key: PrivateKey, common_name: str, root: Issuer, *,
               not_before: dt.datetime, days: int) -> x509.Certificate:
    """The intermediate CA that signs every leaf; it may sign no further CA."""
    not_after = min(not_before + days * DAY, root.cert.not_valid_after_utc)
    return (_builder(subject(common_name, "Signing CA"), root.cert.subject, key.public_key(), not_before, not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ca_key_usage(), critical=True)
            .add_extension(_aki(root.cert), critical=False)
            .sign(root.key, HASH))


def request(key: PrivateKey, names: Names, role: Role) -> x509.CertificateSigningRequest:
    """A request for ``names``, asking for the extensions the CA will grant anyway."""
    return (x509.CertificateSigningRequestBuilder().subject_name(subject(names.common_name))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_leaf_key_usage(key.public_key()), critical=True)
            .add_extension(x509.ExtendedKeyUsage([EKU[role]]), critical=False)
            .add_extension(names.san(), critical=False)
            .sign(key, HASH))


def leaf(public_key: PublicKey, names: Names, role: Role, issuer: Issuer, *,
         not_before: dt.datetime, not_after: dt.datetime) -> x509.Certificate:
    """A server or client certificate; the CA chooses every extension itself."""
    not_after = min(not_after, issuer.cert.not_valid_after_utc)
    return (_builder(subject(names.common_name), issuer.cert.subject, public_key, not_before, not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_leaf_key_usage(public_key), critical=True)
            .add_extension(x509.ExtendedKeyUsage([EKU[role]]), critical=False)
            .add_extension(names.san(), critical=False)
            .add_extension(_aki(issuer.cert), critical=False)
            .sign(issuer.key, HASH))


def names_of(obj: x509.Certificate | x509.CertificateSigningRequest) -> Names:
    """CN and SAN entries of a certificate or request (empty parts when absent)."""
    cns = obj.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(cns[0].value) if cns else ""
    try:
        san = obj.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return Names(cn)
    dns = tuple(d for d in san.get_values_for_type(x509.DNSName) if d != cn)
    return Names(cn, dns, tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress)))


def covers(cert: x509.Certificate, address: str) -> bool:
    """True when the SAN names ``address`` (a host name, compared case-insensitively, or an IP)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        return ipaddress.ip_address(address) in san.get_values_for_type(x509.IPAddress)
    except ValueError:
        return address.lower().rstrip(".") in {d.lower() for d in san.get_values_for_type(x509.DNSName)}


def ca_names(cert_list: Sequence[x509.Certificate]) -> str:
    """The CNs of a list of certificates, for messages."""
    return ", ".join(repr(names_of(c).common_name) for c in cert_list)
