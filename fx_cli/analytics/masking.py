"""Masked totals: pairwise masks that cancel in the sum, so the aggregator sees only totals.

Each pair of sites (i, j) shares a secret (X25519 key agreement; the public keys travel through the
aggregator, see ``tabular.py``; each site derives its key from its own secret file and the run's nonce).
For every released number, site i adds the mask derived from that secret, the run, the query and the
cell when i < j and subtracts it when i > j; summed over all sites the masks cancel exactly. Numbers
are fixed-point integers modulo 2**64 (2**-24 resolution for sums, magnitudes below 2**38), so one
masked value alone is uniformly distributed.

Why this and not Ferdelance's sequential chain: in fx every message goes through the aggregator, so a
chain relayed by it would show the aggregator each running total, and the difference of two consecutive
ones is a site's value. Masks are fresh per run, query, group and bin (Ferdelance reused one mask for
every group, leaking differences between groups). Limits: every site must answer (a missing site leaves
its masks in the total, and the query fails rather than giving a wrong total), and the public keys must
reach the sites unaltered (an aggregator that swaps keys can unmask).
"""
from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from fx_cli.errors import FxError

SCALES = {"n": 1.0, "s": 2.0 ** 24, "ss": 2.0 ** 24}
LIMIT = 2.0 ** 62  # totals of up to 4 sites at the limit still fit in 64 bits


def site_key(secret_path: Path, nonce: str) -> X25519PrivateKey:
    """This site's key for the run named by ``nonce``: derived from a secret that never leaves the site
    (created once, mode 0600), so a restarted site has the same key and another run a fresh one."""
    try:
        fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = secret_path.read_bytes()
    else:
        secret = secrets.token_bytes(32)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secret)
            fh.flush()
            os.fsync(fh.fileno())
    if len(secret) != 32:
        raise FxError(f"{secret_path} is damaged ({len(secret)} bytes, expected 32)",
                      "delete it; the site makes a new one (masked queries of a run under way then fail)")
    return X25519PrivateKey.from_private_bytes(hashlib.sha256(secret + nonce.encode()).digest())


def public_bytes(key: X25519PrivateKey) -> bytes:
    """The raw 32-byte public key to publish."""
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def to_fixed(stats: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """Floats to fixed-point uint64 (two's complement)."""
    product = np.rint(stats * np.array([SCALES[n] for n in names]))
    if not np.all(np.abs(product) < LIMIT):
        raise FxError(f"a value ({float(np.max(np.abs(stats))):g}) is too large for a masked total",
                      "rescale the column, or ask for the query without masked: true")
    scaled = product.astype(np.int64)
    out: np.ndarray = scaled.view(np.uint64)
    return out


def from_fixed(total: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """A fixed-point total back to floats."""
    out: np.ndarray = total.astype(np.uint64).view(np.int64).astype(np.float64) / np.array([SCALES[n] for n in names])
    return out


class Masker:
    """One site's masks for one run."""

    def __init__(self, site: str, key: X25519PrivateKey, peers: dict[str, bytes], run: str) -> None:
        self.site, self.run = site, run
        self.shared = {p: key.exchange(X25519PublicKey.from_public_bytes(pub)) for p, pub in peers.items() if p != site}

    def mask(self, values: np.ndarray, label: str) -> np.ndarray:
        """``values`` (uint64) plus this site's share of the zero-sum masks for ``label``."""
        out = values.astype(np.uint64).copy()
        for peer, secret in sorted(self.shared.items()):
            stream = hashlib.shake_256(secret + f"\0{self.run}\0{label}".encode()).digest(8 * out.size)
            m = np.frombuffer(stream, dtype="<u8").reshape(out.shape)
            with np.errstate(over="ignore"):
                out = out + m if self.site < peer else out - m
        masked: np.ndarray = out
        return masked
