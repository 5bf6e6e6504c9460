"""Secure aggregation in ``fx simulate``: the simulator plays each virtual collaborator's side of the protocol.

The same stages as a federation, on the same objects: every virtual collaborator is a ``SecAggClient``
(``fx_cli/secagg/client.py``) that advertises keys to, shares keys through, sends its masked vector to and
answers the unmask stage of the engine's own ``SecAggRounds``, exactly as ``secagg_calls.py`` drives it for
gRPC callers. Advertise and share run in one thread per collaborator (the stage barriers close once every
trainer of the round has answered, as over the network); unmasking runs once every trainer's masked vector
is in, and the round closer rebuilds the seeds and returns the mean, so the round's model comes from the
unmasked sum (``secagg_model``) here too.

What it demonstrates and what it does not: the maths (quantisation, cancelling masks, Shamir recovery,
threshold checks) and the engine path. Not the trust model: in a simulation every collaborator lives in this
one process, with no certificates. The adverts are still signed and checked by ``verify_advert``, but with
per-run keys and an in-memory CA that the simulator makes at start and never writes anywhere; the plain
update of a virtual collaborator exists in this process (its worker computes it) before it is masked.
"""
from __future__ import annotations

import functools
import logging
import threading
from typing import Callable, Sequence

import numpy as np

from fx_cli.errors import FxError
from fx_cli.secagg.client import SecAggClient
from fx_cli.secagg.rounds import SecAggRounds

log = logging.getLogger("fx.simulate")


class SimulatedSecAgg:
    """The protocol side of every virtual collaborator, for one run (keys made fresh each run)."""

    def __init__(self, rounds: SecAggRounds, federation: str, names: Sequence[str], unmask_timeout: float) -> None:
        from fx_cli.pki.ca import issue, new_ca
        from fx_cli.pki.certs import Names
        from fx_cli.pki.keys import new_private_key
        from fx_cli.pki.store import pem

        self.rounds, self.federation, self.unmask_timeout = rounds, federation, unmask_timeout
        ca = new_ca()  # per-run, in memory only: stands in for the federation's CA
        self.chain = [ca.root.cert, ca.signing.cert]
        self.identities = {}
        for name in names:
            key = new_private_key()
            self.identities[name] = (key, pem(issue(ca.signing, key.public_key(), Names(name), "client")))
        self.clients: dict[str, tuple[SecAggClient, dict[str, bytes]]] = {}
        self.round: int | None = None
        self.trainers: frozenset[str] = frozenset()
        self.masked_in: set[str] = set()
        self.unmask_errors: list[BaseException] = []

    def open_round(self, r: int) -> None:
        """Stages 1 and 2 for every trainer of round ``r``, each in its own thread (as separate sites would)."""
        self.round, self.masked_in, self.clients = r, set(), {}
        self.trainers = frozenset(self.rounds.trainers(r))
        errors: list[BaseException] = []
        threads = [threading.Thread(target=self._catch(errors, functools.partial(self._setup, r, n)), daemon=True,
                                    name=f"fx-secagg-{n}") for n in sorted(self.trainers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            err = errors[0]
            raise err if isinstance(err, FxError) else FxError(f"secure aggregation in round {r + 1}: {err!r}",
                                                               "report this as a bug in fx simulate")

    def _setup(self, r: int, name: str) -> None:
        key, cert = self.identities[name]
        client = SecAggClient(self.federation, r, name, self.rounds.params, key, cert, self.chain)
        adverts = self.rounds.advertise(r, client.advertise())
        sealed = client.share_keys(adverts)
        self.clients[name] = (client, self.rounds.share(r, name, sealed))

    def mask(self, r: int, name: str, delta: np.ndarray, weight: int) -> int:
        """Stage 3: ``name``'s masked vector into the engine's running total; the bytes it would have sent."""
        if r != self.round or name not in self.clients:
            raise FxError(f"'{name}' sent a masked update for round {r + 1} without taking part in its key "
                          "exchange", "report this as a bug in fx simulate")
        client, inbox = self.clients[name]
        vector = client.masked_input(inbox, delta, weight)
        self.rounds.masked(r, name, vector)
        self.masked_in.add(name)
        if self.masked_in >= set(self.clients):
            for peer in sorted(self.clients):  # stage 4 once the round closer fixes the survivors
                threading.Thread(target=self._catch(self.unmask_errors, functools.partial(self._unmask, r, peer)),
                                 daemon=True, name=f"fx-secagg-unmask-{peer}").start()
        return int(vector.nbytes)

    def _unmask(self, r: int, name: str) -> None:
        client, _ = self.clients[name]
        survivors = self.rounds.unmask(r, name, self.unmask_timeout)
        self.rounds.reveal(r, name, client.unmask(survivors))

    @staticmethod
    def _catch(errors: list[BaseException], work: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                work()
            except BaseException as err:  # noqa: BLE001 - handed to the dispatcher
                log.warning("%s", err.message if isinstance(err, FxError) else repr(err))
                errors.append(err)
        return run
