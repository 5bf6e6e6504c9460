"""The collaborator's side of one secure-aggregation round: four stages, each answered at most once.

1. ``advertise``: fresh X25519 pairs, signed with the certificate key;
2. ``share_keys``: check every peer's advert, Shamir-share the self-mask seed and the ``s`` key among
   the peers, each share sealed to its receiver;
3. ``masked_input``: quantize the update, add the self mask and the pairwise masks with every peer that
   shared (the masks cancel in the sum);
4. ``unmask``: for each survivor reveal its seed share, for each dropped peer its ``s``-key share,
   never both for one peer, and nothing when fewer than the threshold survive.
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from fx_cli.secagg import shamir
from fx_cli.secagg.keys import (Cause, KeyAdvert, RoundKeys, SecAggError, agree, make_advert, open_sealed,
                                private_bytes, seal, verify_advert)
from fx_cli.secagg.masks import pair_info, prg, self_info
from fx_cli.secagg.params import SecAggParams
from fx_cli.secagg.quantize import dtype_of, quantize

Revealed = dict[str, tuple[str, int, int]]  # peer -> ("seed" | "s", x, share)


def encode_shares(x: int, seed_share: int, s_share: int) -> bytes:
    return x.to_bytes(4, "big") + seed_share.to_bytes(shamir.SHARE_BYTES, "big") + s_share.to_bytes(
        shamir.SHARE_BYTES, "big")


def decode_shares(data: bytes) -> tuple[int, int, int]:
    if len(data) != 4 + 2 * shamir.SHARE_BYTES:
        raise SecAggError(Cause.BAD_CIPHERTEXT, "a key-share message has the wrong length")
    n = shamir.SHARE_BYTES
    return int.from_bytes(data[:4], "big"), int.from_bytes(data[4:4 + n], "big"), int.from_bytes(data[4 + n:], "big")


class SecAggClient:
    def __init__(self, federation: str, round_num: int, name: str, params: SecAggParams,
                 signing_key: ec.EllipticCurvePrivateKey, cert_pem: bytes, ca_chain: Sequence[x509.Certificate]) -> None:
        self.federation, self.round, self.name, self.params = federation, round_num, name, params
        self.signing_key, self.cert_pem, self.ca_chain = signing_key, cert_pem, list(ca_chain)
        self.keys = RoundKeys.new()
        self.seed = os.urandom(32)
        self.peers: dict[str, KeyAdvert] = {}  # U1: verified adverts, this one included
        self.held: dict[str, tuple[int, int, int]] = {}  # shares others gave us: peer -> (x, seed, s)
        self.sharers: list[str] = []  # U2: peers whose shares reached us (and us)
        self.answered_unmask = False

    def advertise(self) -> KeyAdvert:
        return make_advert(self.federation, self.round, self.name, self.keys, self.signing_key, self.cert_pem)

    def share_keys(self, adverts: Sequence[KeyAdvert]) -> dict[str, bytes]:
        """Stage 2: sealed shares for each peer (by name). Raises ``SecAggError`` on any bad advert."""
        for advert in adverts:
            verify_advert(advert, self.federation, self.round, self.ca_chain)
        self.peers = {a.name: a for a in adverts}
        if self.name not in self.peers or self.peers[self.name].s_public != self.advertise().s_public:
            raise SecAggError(Cause.INCONSISTENT, f"the key adverts relayed to '{self.name}' lack its own keys")
        if len(self.peers) < self.params.threshold:
            raise SecAggError(Cause.BELOW_THRESHOLD, f"{len(self.peers)} collaborators advertised keys, fewer than "
                              f"the threshold {self.params.threshold}")
        order = sorted(self.peers)
        xs = [order.index(n) + 1 for n in order]
        seed_shares = shamir.split(self.seed, self.params.threshold, xs)
        s_shares = shamir.split(private_bytes(self.keys.s), self.params.threshold, xs)
        out = {}
        for peer, x in zip(order, xs):
            plain = encode_shares(x, seed_shares[x], s_shares[x])
            if peer == self.name:
                self.held[peer] = (x, seed_shares[x], s_shares[x])
            else:
                out[peer] = seal(agree(self.keys.c, self.peers[peer].c_public), self.round, self.name, peer, plain)
        return out

    def masked_input(self, sealed: Mapping[str, bytes], values: np.ndarray, weight: int) -> np.ndarray:
        """Stage 3: ``quantize(values)·weight ++ [weight]`` plus masks, mod 2^k."""
        p = self.params
        if not 0 < weight <= p.max_weight:
            raise SecAggError(Cause.INCONSISTENT, f"weight {weight} of '{self.name}' is outside 1..{p.max_weight}",
                              "raise secure_aggregation.settings.max_weight in the plan")
        for sender, data in sealed.items():
            if sender not in self.peers or sender == self.name:
                raise SecAggError(Cause.INCONSISTENT, f"key shares from '{sender}', who did not advertise keys")
            x, seed_share, s_share = decode_shares(open_sealed(
                agree(self.keys.c, self.peers[sender].c_public), self.round, sender, self.name, data))
            if x != sorted(self.peers).index(self.name) + 1:
                raise SecAggError(Cause.INCONSISTENT, f"the shares from '{sender}' are not for '{self.name}'")
            self.held[sender] = (x, seed_share, s_share)
        self.sharers = sorted(set(sealed) | {self.name})
        if len(self.sharers) < p.threshold:
            raise SecAggError(Cause.BELOW_THRESHOLD, f"{len(self.sharers)} collaborators shared keys, fewer than "
                              f"the threshold {p.threshold}")
        dtype = dtype_of(p.modulus_bits)
        vector = np.concatenate([quantize(values, p.clipping_range, p.quantization_bits, weight, p.modulus_bits),
                                 np.array([weight], dtype=dtype)])
        vector += prg(self.seed, self_info(self.round, self.name), vector.size, p.modulus_bits)
        for peer in self.sharers:
            if peer == self.name:
                continue
            mask = prg(agree(self.keys.s, self.peers[peer].s_public), pair_info(self.round, self.name, peer),
                       vector.size, p.modulus_bits)
            if self.name < peer:
                vector += mask
            else:
                vector -= mask
        return vector

    def unmask(self, survivors: Sequence[str]) -> Revealed:
        """Stage 4: seed shares of ``survivors``, ``s``-key shares of the sharers who did not survive."""
        if self.answered_unmask:
            raise SecAggError(Cause.INCONSISTENT, f"'{self.name}' was asked to unmask round {self.round} twice "
                              "(an answer to a second, different list could reveal an individual update)")
        alive = set(survivors)
        if not alive <= set(self.sharers) or self.name not in alive:
            raise SecAggError(Cause.INCONSISTENT, "the survivor list names collaborators that never shared keys")
        if len(alive) < self.params.threshold:
            raise SecAggError(Cause.BELOW_THRESHOLD, f"only {len(alive)} collaborators sent masked updates, fewer "
                              f"than the threshold {self.params.threshold}; nothing is revealed")
        self.answered_unmask = True
        out: Revealed = {}
        for peer in self.sharers:
            x, seed_share, s_share = self.held[peer]
            out[peer] = ("seed", x, seed_share) if peer in alive else ("s", x, s_share)
        return out
