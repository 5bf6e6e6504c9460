"""Signing and checking chain heads with the aggregator's TLS key pair."""
from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from fx_cli.pki.fingerprint import fingerprint
from fx_cli.pki.keys import PrivateKey


@dataclass(frozen=True)
class HeadSigner:
    """The aggregator's private key and the fingerprint of its certificate."""

    key: PrivateKey
    cert_fingerprint: str

    def sign(self, message: bytes) -> str:
        """Base64 signature (ECDSA/SHA-384, or RSA PKCS#1 v1.5/SHA-384 for an RSA key)."""
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            raw = self.key.sign(message, ec.ECDSA(hashes.SHA384()))
        else:
            raw = self.key.sign(message, padding.PKCS1v15(), hashes.SHA384())
        return base64.b64encode(raw).decode("ascii")

    @classmethod
    def from_workspace(cls, workspace: Path, agg_addr: str, cert_folder: str = "cert") -> HeadSigner:
        """The signer of the aggregator whose certificate serves ``agg_addr``."""
        from fx_cli.pki.store import Layout, read_cert, read_key
        from fx_cli.pki.tls import find_server_cert

        cert_path = find_server_cert(Layout(workspace, cert_folder), agg_addr)
        hint = "run `fx aggregator certify` so that the aggregator has a key pair"
        return cls(read_key(cert_path.with_suffix(".key"), hint), fingerprint(read_cert(cert_path, hint)))


def signature_ok(cert: x509.Certificate, message: bytes, signature_b64: str) -> bool:
    """Whether ``signature_b64`` is the certificate owner's signature of ``message``."""
    try:
        raw = base64.b64decode(signature_b64, validate=True)
        public = cert.public_key()
        if isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(raw, message, ec.ECDSA(hashes.SHA384()))
        elif isinstance(public, rsa.RSAPublicKey):
            public.verify(raw, message, padding.PKCS1v15(), hashes.SHA384())
        else:
            return False
        return True
    except (InvalidSignature, ValueError):
        return False
