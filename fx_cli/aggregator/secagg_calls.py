"""The aggregator's answers to the ``SecAgg*`` calls: admit the caller, delegate to ``SecAggRounds``, map errors.

The certificate in a key advert is the caller's own TLS certificate, taken from the connection: a caller cannot
advertise under someone else's certificate, and the aggregator relays it unchanged for every peer to check.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterator

import grpc
import numpy as np

from fx_cli.aggregator.coordinator import Coordinator
from fx_cli.secagg.keys import SecAggError
from fx_cli.secagg.quantize import dtype_of
from fx_cli.secagg.rounds import SecAggRounds
from fx_cli.transport.secagg_serde import SecAggAnswer, SecAggCall
from fx_cli.transport.serde import Caller


def _peer_cert(context: grpc.ServicerContext) -> bytes:
    values = (context.auth_context() or {}).get("x509_pem_cert") or [b""]
    return bytes(values[0])


def answer(stage: str, request: SecAggCall | Iterator[SecAggCall | None], context: grpc.ServicerContext,
           rounds: SecAggRounds | None, coord: Coordinator, admit: Callable[[grpc.ServicerContext, Caller], str],
           wait: float) -> SecAggAnswer:
    if rounds is None:
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, "this federation does not use secure aggregation")
    try:
        if stage == "SecAggUploadMasked":
            assert not isinstance(request, SecAggCall)
            return _masked(request, context, rounds, coord, admit)
        assert isinstance(request, SecAggCall)
        name = admit(context, request.caller)
        if stage == "SecAggAdvertise":
            if request.advert is None or request.advert.name != name:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"'{name}' sent a key advert not in its own name")
            advert = dataclasses.replace(request.advert, round=request.round, cert_pem=_peer_cert(context))
            return SecAggAnswer(adverts=rounds.advertise(request.round, advert))
        if stage == "SecAggShareKeys":
            return SecAggAnswer(sealed=rounds.share(request.round, name, request.sealed))
        if stage == "SecAggUnmask":
            return SecAggAnswer(survivors=rounds.unmask(request.round, name, wait, lambda: coord.seen(name)))
        rounds.reveal(request.round, name, request.revealed)
        return SecAggAnswer()
    except SecAggError as err:
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, err.message)


def _masked(frames: Iterator[SecAggCall | None], context: grpc.ServicerContext, rounds: SecAggRounds,
            coord: Coordinator, admit: Callable[[grpc.ServicerContext, Caller], str]) -> SecAggAnswer:
    first = next(frames, None)
    if first is None:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a masked upload must start with its header")
    name = admit(context, first.caller)
    model = coord.model_for(first.round)
    values = sum(e.nbytes for e in model.entries) // 4 + 1
    if first.masked_values != values or first.modulus_bits != rounds.params.modulus_bits:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the masked update of '{name}' has {first.masked_values} "
                      f"values mod 2^{first.modulus_bits}; this round needs {values} mod 2^{rounds.params.modulus_bits}")
    dtype = np.dtype(dtype_of(rounds.params.modulus_bits)).newbyteorder("<")
    buffer = bytearray(first.masked)
    for frame in frames:
        if frame is None or len(buffer) + len(frame.masked) > values * dtype.itemsize:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the masked update of '{name}' is malformed")
        buffer += frame.masked
    if len(buffer) != values * dtype.itemsize:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"the masked update of '{name}' is truncated")
    rounds.masked(first.round, name, np.frombuffer(bytes(buffer), dtype=dtype).astype(dtype.newbyteorder("=")))
    coord.count_in(len(buffer))
    return SecAggAnswer()
