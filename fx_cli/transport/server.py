"""The gRPC server's lifecycle as a context manager that yields the bound port."""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Iterator

import grpc

from fx_cli.errors import FxError
from fx_cli.transport.reasons import bind_reason

log = logging.getLogger("fx.transport")

# Room for a tensor/stream header or a plan JSON next to the largest data chunk.
MESSAGE_SLACK = 1 << 20
MIN_MESSAGE_LIMIT = 4 << 20


def message_options(chunk: int) -> list[tuple[str, int]]:
    """Channel/server options sized for chunks of ``chunk`` bytes (used by both sides)."""
    limit = max(chunk, MIN_MESSAGE_LIMIT) + MESSAGE_SLACK
    return [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)]


def server_options(chunk: int) -> list[tuple[str, int]]:
    # so_reuseport off: a second aggregator on the same port must fail loudly, not share it.
    return message_options(chunk) + [
        ("grpc.so_reuseport", 0),
        ("grpc.keepalive_permit_without_calls", 1),
        # Probe idle peers so a vanished collaborator's stream is cancelled, not held open forever.
        ("grpc.keepalive_time_ms", 30000),
        ("grpc.keepalive_timeout_ms", 10000),
        ("grpc.http2.min_ping_interval_without_data_ms", 5000),
        ("grpc.http2.max_ping_strikes", 0),
    ]


@contextmanager
def serve(handler: grpc.GenericRpcHandler[Any, Any], address: str, credentials: grpc.ServerCredentials | None, *,
          chunk: int, max_workers: int = 16, grace: float = 1.0) -> Iterator[int]:
    """Serve ``handler`` on ``address`` (``host:port``; port 0 picks a free one); yields the bound port."""
    server = grpc.server(ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="fx-rpc"),
                         handlers=[handler], options=server_options(chunk))
    try:
        port = (server.add_secure_port(address, credentials) if credentials is not None
                else server.add_insecure_port(address))
    except RuntimeError as err:
        port, detail = 0, str(err)
    else:
        detail = ""
    if not port:
        raise FxError(f"cannot listen on {address}: {bind_reason(detail)}",
                      "another process may hold the port; stop it or set network.settings.agg_port "
                      "in plan/plan.yaml to a free port")
    server.start()
    try:
        yield port
    finally:
        server.stop(grace).wait()
