"""The one fingerprint format, printed identically by requester, CA and importer."""
from __future__ import annotations

import hashlib
from typing import Union

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

Signed = Union[x509.Certificate, x509.CertificateSigningRequest]


def fingerprint(obj: Signed) -> str:
    """SHA-256 of the DER encoding as ``AB:CD:...`` (matches ``openssl x509 -fingerprint -sha256``)."""
    digest = hashlib.sha256(obj.public_bytes(Encoding.DER)).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))

