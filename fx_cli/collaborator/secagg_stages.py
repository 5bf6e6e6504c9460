"""A collaborator's part in secure aggregation: the protocol stages around its training task, over its channel.

Before training it advertises fresh keys and shares them; after training it sends its update delta masked
(the plain update never leaves the site) and a metrics-only result; after its last task of the round it
answers the unmask stage once. Any refused check (a peer's advert that does not verify, a stage it came too
late for) is an ``FxError`` naming the cause.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Mapping

import numpy as np

from fx_cli.collaborator.tasks import TaskOutput
from fx_cli.faults import fault
from fx_cli.plan import Plan
from fx_cli.secagg.client import SecAggClient
from fx_cli.secagg.params import SecAggParams
from fx_cli.transport.secagg_serde import SecAggAnswer, SecAggCall

STAGE_TIMEOUT_MARGIN = 30.0


def secagg_params(plan: Plan) -> SecAggParams | None:
    """The round parameters when the plan turns secure aggregation on (the threshold is required then)."""
    from fx_cli.secagg.settings import secagg_of

    s = secagg_of(plan.config)
    if s is None or s.threshold is None:
        return None
    return SecAggParams(s.threshold, float(s.clipping_range), s.quantization_bits, s.modulus_bits, s.max_weight)


class SecAggStages:
    def __init__(self, plan: Plan, name: str, client: Any, params: SecAggParams) -> None:
        from fx_cli.pki.store import Layout, read_certs, read_key

        layout = Layout(plan.workspace, plan.network.cert_folder)
        from cryptography.hazmat.primitives.asymmetric import ec

        from fx_cli.errors import FxError

        key = read_key(layout.client(name, "key"), "certify this collaborator first")
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise FxError(f"secure aggregation signs keys with an EC certificate key; '{name}' has "
                          f"{type(key).__name__}", "certify this collaborator with a key made by fx (ECDSA P-384)")
        self.key = key
        self.cert_pem = layout.client(name, "crt").read_bytes()
        self.chain = read_certs(layout.chain)
        self.federation = plan.federation_id
        self.name, self.client, self.params = name, client, params
        self.timeout = plan.aggregator.heartbeat_timeout + STAGE_TIMEOUT_MARGIN
        self.state: SecAggClient | None = None
        self.inbox: dict[str, bytes] = {}

    def _unary(self, stage: str, call: SecAggCall) -> SecAggAnswer:
        answer: SecAggAnswer = self.client._call(f"the secure-aggregation {stage} stage", lambda: self.client.stub.secagg[
            stage](call, timeout=self.timeout), retry=False)
        return answer

    def before_training(self, r: int) -> bool:
        """Advertise this round's keys, check every peer's, share ours."""
        self.state = SecAggClient(self.federation, r, self.name, self.params, self.key, self.cert_pem, self.chain)
        reply = self._unary("SecAggAdvertise", SecAggCall(self.client.caller, r, advert=self.state.advertise()))
        adverts = [dataclasses.replace(a, round=r) for a in reply.adverts]
        fault("collaborator:secagg_advertised")
        sealed = self.state.share_keys(adverts)
        self.inbox = self._unary("SecAggShareKeys", SecAggCall(self.client.caller, r, sealed=sealed)).sealed
        fault("collaborator:secagg_shared")
        return True

    def send_masked(self, r: int, out: TaskOutput, model: Mapping[str, np.ndarray]) -> TaskOutput:
        """Send the masked delta; the result to upload is then the task's metrics only."""
        assert self.state is not None
        delta = np.concatenate([(np.asarray(out.tensors[n], np.float64) - np.asarray(model[n], np.float64)).ravel()
                                for n in model])
        masked = self.state.masked_input(self.inbox, delta, out.data_size)
        data = masked.astype(masked.dtype.newbyteorder("<")).tobytes()
        chunk = self.client.chunk
        first = SecAggCall(self.client.caller, r, masked=data[:chunk], masked_values=masked.size,
                           modulus_bits=self.params.modulus_bits)

        def frames() -> Iterator[SecAggCall]:
            yield first
            for start in range(chunk, len(data), chunk):
                yield SecAggCall(self.client.caller, r, masked=data[start:start + chunk])
        self.client._call("the masked update", lambda: self.client.stub.secagg["SecAggUploadMasked"](
            frames(), timeout=self.timeout), retry=False)
        return dataclasses.replace(out, tensors={})

    def unmask(self, r: int) -> bool:
        """Reveal the shares the survivors need (once), when the aggregator has fixed who they are."""
        if self.state is None or self.state.round != r:
            return True
        survivors = self._unary("SecAggUnmask", SecAggCall(self.client.caller, r)).survivors
        self._unary("SecAggReveal", SecAggCall(self.client.caller, r, revealed=self.state.unmask(survivors)))
        self.state = None
        return True
