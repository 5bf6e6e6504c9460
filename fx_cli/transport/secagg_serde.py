"""Protobuf <-> dataclasses for the ``SecAgg*`` RPCs (the secure-aggregation stages, ``fx_cli/secagg``)."""
from __future__ import annotations

from dataclasses import dataclass, field

from fx_cli.proto import federation_pb2 as pb
from fx_cli.secagg.client import Revealed
from fx_cli.secagg.keys import KeyAdvert
from fx_cli.transport.serde import Caller, caller_from_pb, caller_to_pb


@dataclass(frozen=True)
class SecAggCall:
    caller: Caller
    round: int
    advert: KeyAdvert | None = None
    sealed: dict[str, bytes] = field(default_factory=dict)
    masked: bytes = b""
    masked_values: int = 0
    modulus_bits: int = 0
    revealed: Revealed = field(default_factory=dict)


@dataclass(frozen=True)
class SecAggAnswer:
    adverts: list[KeyAdvert] = field(default_factory=list)
    sealed: dict[str, bytes] = field(default_factory=dict)
    survivors: list[str] = field(default_factory=list)
    message: str = ""


def _advert_pb(a: KeyAdvert) -> pb.SecAggAdvert:
    return pb.SecAggAdvert(name=a.name, c_public=a.c_public, s_public=a.s_public, signature=a.signature,
                           cert_pem=a.cert_pem)


def _advert(m: pb.SecAggAdvert, round_num: int) -> KeyAdvert:
    return KeyAdvert(m.name, round_num, m.c_public, m.s_public, m.cert_pem, m.signature)


def call_to_bytes(c: SecAggCall) -> bytes:
    msg = pb.SecAggRequest(caller=caller_to_pb(c.caller), round=c.round, masked=c.masked,
                           masked_values=c.masked_values, modulus_bits=c.modulus_bits)
    if c.advert is not None:
        msg.advert.CopyFrom(_advert_pb(c.advert))
    msg.sealed.extend(pb.SecAggSealed(peer=p, data=d) for p, d in c.sealed.items())
    msg.revealed.extend(pb.SecAggRevealed(peer=p, seed=k == "seed", x=x, share=v.to_bytes(66, "big"))
                        for p, (k, x, v) in c.revealed.items())
    return msg.SerializeToString()


def call_from_bytes(b: bytes) -> SecAggCall:
    m = pb.SecAggRequest.FromString(b)
    return SecAggCall(caller_from_pb(m.caller), m.round, _advert(m.advert, m.round) if m.HasField("advert") else None,
                      {s.peer: s.data for s in m.sealed}, m.masked, m.masked_values, m.modulus_bits,
                      {r.peer: ("seed" if r.seed else "s", r.x, int.from_bytes(r.share, "big")) for r in m.revealed})


def answer_to_bytes(a: SecAggAnswer) -> bytes:
    msg = pb.SecAggReply(survivors=a.survivors, message=a.message)
    msg.adverts.extend(_advert_pb(x) for x in a.adverts)
    msg.sealed.extend(pb.SecAggSealed(peer=p, data=d) for p, d in a.sealed.items())
    return msg.SerializeToString()


def answer_from_bytes(b: bytes, round_num: int = 0) -> SecAggAnswer:
    m = pb.SecAggReply.FromString(b)
    return SecAggAnswer([_advert(x, round_num) for x in m.adverts], {s.peer: s.data for s in m.sealed},
                        list(m.survivors), m.message)
