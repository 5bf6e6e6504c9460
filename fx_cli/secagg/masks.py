"""Mask vectors from a cryptographic generator: ChaCha20 keystream under a key derived from a seed.

Flower's SecAgg+ squeezes the agreed key into a 32-bit seed for numpy's generator; here the whole
256-bit secret keys ChaCha20 (through HKDF-SHA256 with the round and the pair in ``info``), so the masks
are as hard to guess as the key agreement itself.
"""
from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fx_cli.secagg.quantize import dtype_of


def derive_key(secret: bytes, info: bytes) -> bytes:
    """32 bytes from ``secret`` for the purpose named by ``info``."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def prg(seed: bytes, info: bytes, length: int, modulus_bits: int) -> np.ndarray:
    """``length`` uniform integers mod 2^modulus_bits from the ChaCha20 keystream of (seed, info)."""
    dtype = np.dtype(dtype_of(modulus_bits))
    key = derive_key(seed, b"fx-secagg-mask|" + info)
    encryptor = Cipher(algorithms.ChaCha20(key, b"\0" * 16), mode=None).encryptor()
    stream = encryptor.update(bytes(length * dtype.itemsize))
    return np.frombuffer(stream, dtype=dtype.newbyteorder("<")).astype(dtype)


def pair_info(round_num: int, a: str, b: str) -> bytes:
    """The same label for the pair (a, b) on both sides."""
    lo, hi = sorted((a, b))
    return f"pair|{round_num}|{len(lo)}:{lo}|{len(hi)}:{hi}".encode()


def self_info(round_num: int, name: str) -> bytes:
    return f"self|{round_num}|{len(name)}:{name}".encode()
