"""The aggregator's side of one secure-aggregation round.

It relays adverts and sealed shares, adds each masked vector into one running total as it arrives (no
individual vector is kept), and once at least the threshold of survivors answer the unmask stage it
rebuilds the survivors' self-mask seeds and the dropped collaborators' ``s`` keys, removes those masks,
and returns the weighted mean. With fewer survivors than the threshold nothing can be (or is) unmasked.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
from cryptography.hazmat.primitives.asymmetric import x25519

from fx_cli.secagg import shamir
from fx_cli.secagg.client import Revealed
from fx_cli.secagg.keys import Cause, KeyAdvert, SecAggError, agree
from fx_cli.secagg.masks import pair_info, prg, self_info
from fx_cli.secagg.params import SecAggParams
from fx_cli.secagg.quantize import dequantize_mean, dtype_of


class SecAggServer:
    def __init__(self, round_num: int, params: SecAggParams) -> None:
        self.round, self.params = round_num, params
        self.adverts: dict[str, KeyAdvert] = {}
        self.sealed: dict[str, dict[str, bytes]] = {}  # receiver -> sender -> sealed shares
        self.sharers: set[str] = set()
        self.total: np.ndarray | None = None
        self.survivors: set[str] = set()
        self.revealed: dict[str, Revealed] = {}

    def add_advert(self, advert: KeyAdvert) -> None:
        if advert.name in self.adverts:
            raise SecAggError(Cause.INCONSISTENT, f"'{advert.name}' advertised keys twice in round {self.round}")
        self.adverts[advert.name] = advert

    def add_shares(self, sender: str, sealed: Mapping[str, bytes]) -> None:
        if sender not in self.adverts or not set(sealed) <= set(self.adverts) - {sender}:
            raise SecAggError(Cause.INCONSISTENT, f"'{sender}' sent key shares for collaborators it cannot know")
        for receiver, data in sealed.items():
            self.sealed.setdefault(receiver, {})[sender] = data
        self.sharers.add(sender)

    def shares_for(self, receiver: str) -> dict[str, bytes]:
        """The sealed shares addressed to ``receiver`` by everyone who completed stage 2."""
        return {s: d for s, d in self.sealed.get(receiver, {}).items() if s in self.sharers}

    def add_masked(self, sender: str, vector: np.ndarray) -> None:
        if sender not in self.sharers or sender in self.survivors:
            raise SecAggError(Cause.INCONSISTENT, f"a masked update from '{sender}' was not expected")
        vector = np.asarray(vector, dtype=dtype_of(self.params.modulus_bits))
        if self.total is None:
            self.total = vector.copy()
        elif vector.shape != self.total.shape:
            raise SecAggError(Cause.INCONSISTENT, f"the masked update of '{sender}' has {vector.size} values, "
                              f"the others {self.total.size}")
        else:
            self.total += vector
        self.survivors.add(sender)

    def survivor_list(self) -> list[str]:
        if len(self.survivors) < self.params.threshold:
            raise SecAggError(Cause.BELOW_THRESHOLD, f"round {self.round + 1}: {len(self.survivors)} masked updates "
                              f"arrived, fewer than the threshold {self.params.threshold}: the sum cannot be "
                              "unmasked and no individual update is revealed",
                              "lower secure_aggregation.settings.threshold or keep more collaborators online")
        return sorted(self.survivors)

    def add_unmask(self, sender: str, revealed: Revealed) -> None:
        if sender not in self.survivors:
            raise SecAggError(Cause.INCONSISTENT, f"unmask shares from '{sender}', who sent no masked update")
        self.revealed[sender] = revealed

    def _secret(self, peer: str, kind: str) -> bytes:
        shares = {x: v for r in self.revealed.values() if peer in r
                  for k, x, v in [r[peer]] if k == kind}
        if len(shares) < self.params.threshold:
            raise SecAggError(Cause.BELOW_THRESHOLD, f"only {len(shares)} shares of the {kind} of '{peer}' arrived, "
                              f"fewer than the threshold {self.params.threshold}")
        return shamir.combine(dict(sorted(shares.items())[: self.params.threshold]))

    def unmasked_sum(self) -> np.ndarray:
        """The plain (quantized, weighted) sum; the last element is the total weight."""
        if self.total is None:
            raise SecAggError(Cause.BELOW_THRESHOLD, f"round {self.round + 1}: no masked update arrived")
        survivors = self.survivor_list()
        total: np.ndarray = self.total.copy()
        p, n = self.params, self.total.size
        for v in survivors:
            total -= prg(self._secret(v, "seed"), self_info(self.round, v), n, p.modulus_bits)
        for d in sorted(self.sharers - self.survivors):
            s_key = x25519.X25519PrivateKey.from_private_bytes(self._secret(d, "s"))
            for v in survivors:
                mask = prg(agree(s_key, self.adverts[v].s_public), pair_info(self.round, v, d), n, p.modulus_bits)
                if v < d:
                    total -= mask  # v added it
                else:
                    total += mask
        return total

    def mean(self) -> tuple[np.ndarray, int]:
        """The weighted mean of the survivors' updates (floats) and their total weight."""
        total = self.unmasked_sum()
        weight = int(total[-1])
        return dequantize_mean(total[:-1], weight, self.params.clipping_range, self.params.quantization_bits), weight
