"""Private keys: generation, PEM encoding, and matching a key to a certificate."""
from __future__ import annotations

from typing import Union

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fx_cli.errors import FxError

CURVE = ec.SECP384R1()
PrivateKey = Union[ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey]
PublicKey = Union[ec.EllipticCurvePublicKey, rsa.RSAPublicKey]


def new_private_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-384 key."""
    return ec.generate_private_key(CURVE)


def key_to_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM (the file mode protects it)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def key_from_pem(data: bytes, source: str) -> PrivateKey:
    """Parse a PEM private key, naming ``source`` when it is not one we can use."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as err:
        raise FxError(f"{source} is not a readable unencrypted private key ({err})",
                      "restore the key file, or create a new key and certificate request") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise FxError(f"{source} holds a {type(key).__name__}; fx uses ECDSA (or RSA) keys",
                      "create a new certificate request with fx")
    return key


def public_der(key: PublicKey | PrivateKey) -> bytes:
    """DER SubjectPublicKeyInfo of a public key (or of a private key's public half)."""
    pub = key.public_key() if isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)) else key
    return pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_matches(key: PrivateKey, cert: x509.Certificate | x509.CertificateSigningRequest) -> bool:
    """True when ``cert`` (or a request) carries the public half of ``key``."""
    pub = cert.public_key()
    if not isinstance(pub, (ec.EllipticCurvePublicKey, rsa.RSAPublicKey)):
        return False
    return public_der(pub) == public_der(key)
