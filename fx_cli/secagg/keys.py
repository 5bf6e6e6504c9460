"""Per-round key pairs and their adverts, signed with the collaborator's fx certificate key.

Each collaborator makes two X25519 pairs per round (Bonawitz et al.): ``c`` encrypts the Shamir shares
it sends to each peer, ``s`` agrees the pairwise mask seeds. Keeping them apart matters: the ``s`` key
of a dropped collaborator is rebuilt by the survivors, and must not also open its share ciphertexts.
The advert binds (federation, round, name, both public keys) under an ECDSA/SHA-384 signature by the key
of the collaborator's certificate; a peer checks the certificate against the federation's CA chain, its
common name against the name, then the signature, so the aggregator that relays adverts cannot swap keys.
"""
from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from typing import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fx_cli.errors import FxError
from fx_cli.pki.certs import names_of
from fx_cli.pki.verify import chain_problem
from fx_cli.secagg.masks import derive_key

RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


class Cause(enum.Enum):
    """Why a peer's advert or message was refused (named in the error)."""

    BAD_SIGNATURE = "bad_signature"
    FOREIGN_CERTIFICATE = "foreign_certificate"
    NAME_MISMATCH = "name_mismatch"
    WRONG_ROUND = "wrong_round"
    BAD_CIPHERTEXT = "bad_ciphertext"
    BELOW_THRESHOLD = "below_threshold"
    INCONSISTENT = "inconsistent"


class SecAggError(FxError):
    """A secure-aggregation step refused, with a machine-readable ``cause``."""

    def __init__(self, cause: Cause, message: str, hint: str = "") -> None:
        super().__init__(f"secure aggregation: {message} [{cause.value}]",
                         hint or "the round cannot be aggregated securely; it is redone or the run stops")
        self.cause = cause


@dataclass(frozen=True)
class RoundKeys:
    c: x25519.X25519PrivateKey
    s: x25519.X25519PrivateKey

    @classmethod
    def new(cls) -> "RoundKeys":
        return cls(x25519.X25519PrivateKey.generate(), x25519.X25519PrivateKey.generate())


@dataclass(frozen=True)
class KeyAdvert:
    """What a collaborator publishes in stage 1 (relayed by the aggregator)."""

    name: str
    round: int
    c_public: bytes
    s_public: bytes
    cert_pem: bytes
    signature: bytes


def public_bytes(key: x25519.X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(*RAW)


def _signed_payload(federation: str, round_num: int, name: str, c_public: bytes, s_public: bytes) -> bytes:
    parts = [b"fx-secagg-advert-v1", federation.encode(), str(round_num).encode(), name.encode(), c_public, s_public]
    return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


def make_advert(federation: str, round_num: int, name: str, keys: RoundKeys, signing_key: ec.EllipticCurvePrivateKey,
                cert_pem: bytes) -> KeyAdvert:
    c_pub, s_pub = public_bytes(keys.c), public_bytes(keys.s)
    signature = signing_key.sign(_signed_payload(federation, round_num, name, c_pub, s_pub), ec.ECDSA(hashes.SHA384()))
    return KeyAdvert(name, round_num, c_pub, s_pub, cert_pem, signature)


def verify_advert(advert: KeyAdvert, federation: str, round_num: int, ca_chain: Sequence[x509.Certificate]) -> None:
    """Raise ``SecAggError`` naming the cause unless ``advert`` is ``advert.name``'s own, for this round."""
    who = f"the key advert of '{advert.name}'"
    if advert.round != round_num:
        raise SecAggError(Cause.WRONG_ROUND, f"{who} is for round {advert.round}, not {round_num}")
    try:
        cert = x509.load_pem_x509_certificate(advert.cert_pem)
    except ValueError:
        raise SecAggError(Cause.FOREIGN_CERTIFICATE, f"{who} carries no readable certificate") from None
    problem = chain_problem(cert, ca_chain, "the federation's CA chain")
    if problem:
        raise SecAggError(Cause.FOREIGN_CERTIFICATE, f"{who}: its certificate {problem}")
    if names_of(cert).common_name != advert.name:
        raise SecAggError(Cause.NAME_MISMATCH, f"{who} is signed by the certificate of "
                          f"'{names_of(cert).common_name}'")
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise SecAggError(Cause.BAD_SIGNATURE, f"{who}: its certificate key is not an EC key")
    try:
        key.verify(advert.signature, _signed_payload(federation, round_num, advert.name, advert.c_public,
                                                     advert.s_public), ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise SecAggError(Cause.BAD_SIGNATURE, f"{who} does not match its signature (the keys were changed on "
                          "the way: the aggregator or the network altered them)") from None


def agree(private: x25519.X25519PrivateKey, peer_public: bytes) -> bytes:
    """The X25519 shared secret with a peer's public key."""
    return private.exchange(x25519.X25519PublicKey.from_public_bytes(peer_public))


def private_bytes(key: x25519.X25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())


def _share_key(shared: bytes, round_num: int) -> bytes:
    return derive_key(shared, f"fx-secagg-share|{round_num}".encode())


def seal(shared: bytes, round_num: int, sender: str, receiver: str, plaintext: bytes) -> bytes:
    """AES-256-GCM under the pair's share key; sender, receiver and round are bound as associated data."""
    nonce = os.urandom(12)
    aad = f"{round_num}|{sender}|{receiver}".encode()
    return nonce + AESGCM(_share_key(shared, round_num)).encrypt(nonce, plaintext, aad)


def open_sealed(shared: bytes, round_num: int, sender: str, receiver: str, sealed: bytes) -> bytes:
    aad = f"{round_num}|{sender}|{receiver}".encode()
    try:
        return AESGCM(_share_key(shared, round_num)).decrypt(sealed[:12], sealed[12:], aad)
    except InvalidTag:
        raise SecAggError(Cause.BAD_CIPHERTEXT, f"the key shares '{sender}' sent to '{receiver}' do not decrypt "
                          "(altered on the way)") from None
