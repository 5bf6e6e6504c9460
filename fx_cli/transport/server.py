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
# ``network.settings.stream_window_mib``'s default, in bytes: see ``stream_window``.
DEFAULT_WINDOW = 8 << 20


def stream_window(window_mib: float, chunk: int) -> int | None:
    """The HTTP/2 flow-control window of every stream, in bytes; None: gRPC sizes it itself.

    The window is what a receiver buffers of a stream it has not read yet. gRPC's own sizing grows it from the
    measured bandwidth-delay product, and a receiver short of CPU (eight collaborators on two cores) measures a
    long delay: at 5e7 x 8 a collaborator then buffered up to 0.5 x the model on top of it (peaks of 1.9-2.2 x
    the model, 1.7 x with this window; the aggregator 1.38-1.52 x against 1.31 x). A fixed window bounds that
    at the cost of speed on long, fast links: one stream carries at most window / round-trip time (8 MiB at
    50 ms: 168 MB/s). Never below two chunks, so a whole chunk is always in flight.
    """
    if window_mib <= 0:
        return None
    return max(int(window_mib * 2**20), 2 * chunk)


def message_options(chunk: int, window: int | None = DEFAULT_WINDOW) -> list[tuple[str, int]]:
    """Channel/server options sized for chunks of ``chunk`` bytes and streams of ``window`` bytes in flight
    (None: gRPC's own window sizing; see ``stream_window``). Used by both sides."""
    limit = max(chunk, MIN_MESSAGE_LIMIT) + MESSAGE_SLACK
    options = [("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)]
    if window is not None:
        options += [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", window)]
    return options


def server_options(chunk: int, window: int | None = DEFAULT_WINDOW) -> list[tuple[str, int]]:
    # so_reuseport off: a second aggregator on the same port must fail loudly, not share it.
    return message_options(chunk, window) + [
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
          chunk: int, window: int | None = DEFAULT_WINDOW, max_workers: int = 16,
          grace: float = 1.0) -> Iterator[int]:
    """Serve ``handler`` on ``address`` (``host:port``; port 0 picks a free one); yields the bound port."""
    server = grpc.server(ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="fx-rpc"),
                         handlers=[handler], options=server_options(chunk, window))
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
