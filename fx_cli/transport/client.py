"""Client channels, bounded retries and readable errors for failed calls.

Only ``UNAVAILABLE`` (the aggregator is down or restarting) is retried, with
exponential backoff and jitter until ``network.settings.reconnect_deadline``
has passed without reaching it. Everything else, certain TLS handshake
failures included, fails at once with a message that says what to do. A
connection closed during set-up may be a restart or a rejected client
certificate: it is retried, but when it repeats and the local certificate
is found invalid, the call fails at once with that explanation.
"""
from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Callable, Iterator, TypeVar

import grpc

from fx_cli.errors import FxError
from fx_cli.pki.diagnose import CERTAIN, POSSIBLE, tls_failure_kind
from fx_cli.transport.reasons import plain_reason
from fx_cli.transport.server import DEFAULT_WINDOW, message_options

log = logging.getLogger("fx.transport")
T = TypeVar("T")

MAX_DELAY = 30.0
# Consecutive connections closed during set-up before the local certificate is examined.
SUSPECT_AFTER = 2


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff from ``initial`` seconds, doubling up to ``MAX_DELAY``, jittered ±50%, within ``deadline``."""

    initial: float
    deadline: float

    def delays(self, rng: random.Random) -> Iterator[float]:
        delay = max(self.initial, 0.01)
        while True:
            yield delay * rng.uniform(0.5, 1.5)
            delay = min(delay * 2, MAX_DELAY)


def open_channel(target: str, credentials: grpc.ChannelCredentials | None, chunk: int,
                 window: int | None = DEFAULT_WINDOW, own_connection: bool = False) -> grpc.Channel:
    """A channel to ``target`` (TLS when ``credentials`` is given) sized for ``chunk``-byte messages and
    ``window`` bytes in flight per stream (``server.stream_window``).

    ``own_connection``: never share a connection with this process's other channels to ``target`` (gRPC reuses
    one connection for channels with the same settings), so closing the channel closes its connection.
    """
    options = message_options(chunk, window) + [
        ("grpc.keepalive_time_ms", 20000),
        ("grpc.keepalive_timeout_ms", 10000),
        ("grpc.keepalive_permit_without_calls", 1),
        # The aggregator restarting must not push reconnect attempts minutes apart.
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 2000),
    ]
    if own_connection:
        options.append(("grpc.use_local_subchannel_pool", 1))
    if credentials is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, credentials, options=options)


def details(err: grpc.RpcError) -> str:
    return str(getattr(err, "details", lambda: "")() or "")


def code_of(err: grpc.RpcError) -> grpc.StatusCode | None:
    return getattr(err, "code", lambda: None)()


def is_retryable(err: grpc.RpcError) -> bool:
    return code_of(err) == grpc.StatusCode.UNAVAILABLE and tls_failure_kind(err) != CERTAIN


class Retrier:
    """Runs calls, retrying ``UNAVAILABLE`` until the policy's deadline passes without a success.

    ``suspect(err)`` is asked, once such failures repeat, whether the local set-up explains a connection
    closed during set-up; an ``FxError`` it returns ends the retries at once.
    """

    def __init__(self, policy: RetryPolicy, target: str, *, seed: int | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 suspect: Callable[[grpc.RpcError], FxError | None] | None = None) -> None:
        self.policy = policy
        self.target = target
        self.rng = random.Random(seed)
        self.sleep = sleep
        self.suspect = suspect

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """``fn()``; after the deadline an ``FxError`` naming the aggregator address."""
        first_failure: float | None = None
        closed_in_setup = 0
        delays = self.policy.delays(self.rng)
        while True:
            try:
                return fn()
            except grpc.RpcError as err:
                if not is_retryable(err):
                    raise
                closed_in_setup = closed_in_setup + 1 if tls_failure_kind(err) == POSSIBLE else 0
                if closed_in_setup >= SUSPECT_AFTER and self.suspect is not None:
                    explained = self.suspect(err)
                    if explained is not None:
                        raise explained from None
                now = time.monotonic()
                first_failure = now if first_failure is None else first_failure
                waited = now - first_failure
                if waited >= self.policy.deadline:
                    raise unreachable(self.target, waited, err) from None
                delay = min(next(delays), self.policy.deadline - waited)
                log.warning("cannot reach the aggregator at %s for %s (%s); retrying in %.1f s",
                            self.target, what, plain_reason(details(err)), delay)
                self.sleep(delay)


def unreachable(target: str, waited: float, err: grpc.RpcError) -> FxError:
    hint = ("check that `fx aggregator start` is running there and that network.settings.agg_addr/agg_port "
            "in plan/plan.yaml point at it; raise network.settings.reconnect_deadline to wait longer")
    if tls_failure_kind(err) == POSSIBLE:
        hint = ("the connection kept closing during set-up: the aggregator may be restarting, or refusing this "
                "collaborator's certificate (`fx collaborator ping -n NAME` tells which); " + hint)
    return FxError(f"cannot reach the aggregator at {target}: gave up after {waited:.0f} s "
                   f"({plain_reason(details(err))})", hint)


_HINTS = {
    grpc.StatusCode.UNAUTHENTICATED: "check that '{who}' is listed in the aggregator's plan/cols.yaml and that "
                                     "cert/client/col_{who}.crt was signed by this federation's CA "
                                     "(fx collaborator certify)",
    grpc.StatusCode.PERMISSION_DENIED: "check that '{who}' is listed in the aggregator's plan/cols.yaml and that "
                                       "you started the collaborator with its own name and certificate",
    grpc.StatusCode.FAILED_PRECONDITION: "follow the aggregator's message; if the plans differ, copy the "
                                         "aggregator's plan/plan.yaml into this workspace",
    grpc.StatusCode.INVALID_ARGUMENT: "the aggregator could not use what was sent; check that both sides run "
                                      "the same fx version and the same plan",
    grpc.StatusCode.DEADLINE_EXCEEDED: "the aggregator is overloaded or stuck; check its log",
    grpc.StatusCode.RESOURCE_EXHAUSTED: "a message exceeded a size limit; make sure both sides use the same "
                                        "network.settings.chunk_size_mib",
}


def rpc_failure(err: grpc.RpcError, target: str, who: str, what: str, workspace: object = None) -> FxError:
    """An ``FxError`` for a failed call that was not retried; identity and TLS failures explained in detail."""
    code = code_of(err)
    if tls_failure_kind(err) == CERTAIN or code in (grpc.StatusCode.UNAUTHENTICATED,
                                                    grpc.StatusCode.PERMISSION_DENIED):
        return _explain_tls(err, target, who, workspace)
    if code == grpc.StatusCode.UNAVAILABLE:
        return unreachable(target, 0, err)
    name = code.name if code is not None else "UNKNOWN"
    hint = _HINTS.get(code, "see the aggregator's log for the cause") if code else "see the aggregator's log"
    return FxError(f"the aggregator at {target} refused {what} from '{who}' ({name}): {details(err) or 'no details'}",
                   hint.format(who=who))


def _explain_tls(err: grpc.RpcError, target: str, who: str, workspace: object) -> FxError:
    from pathlib import Path

    from fx_cli.pki.authz import explain_rpc_error

    return explain_rpc_error(err, target, workspace=Path(str(workspace)) if workspace else None, collaborator=who)
