"""``network.settings.stream_window_mib``: the HTTP/2 flow-control window each stream is given.

What a receiver buffers of a stream it has not read is bounded by the window, whatever gRPC would have grown it
to; the federation itself with the smallest window is in ``test_wire_large.py``.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Iterator

import grpc
import pytest

from fx_cli.collaborator.session import AggregatorClient
from fx_cli.plan import load_plan
from fx_cli.transport.client import open_channel
from fx_cli.transport.server import DEFAULT_WINDOW, message_options, serve, stream_window
from tests.runtime_helpers import make_workspace

MIB = 2**20
CHUNK = 1 * MIB


def test_the_window_is_the_setting_but_never_below_two_chunks_and_zero_leaves_it_to_grpc():
    assert stream_window(8, 4 * MIB) == 8 * MIB == DEFAULT_WINDOW
    assert stream_window(64, 4 * MIB) == 64 * MIB
    assert stream_window(1, 4 * MIB) == 8 * MIB  # a whole chunk can always be in flight
    assert stream_window(0, 4 * MIB) is None
    bounded = dict(message_options(4 * MIB, 8 * MIB))
    assert bounded["grpc.http2.bdp_probe"] == 0 and bounded["grpc.http2.lookahead_bytes"] == 8 * MIB
    assert not {"grpc.http2.bdp_probe", "grpc.http2.lookahead_bytes"} & set(dict(message_options(4 * MIB, None)))


def sent_while_the_reader_waits(window: int, total: int, at_least: int = 0) -> int:
    """Chunks the server had handed to gRPC once the stream stalled, the client having read one of ``total``
    (not counted as stalled before ``at_least`` were handed over: a busy machine may pause a second)."""
    sent = 0
    changed = threading.Condition()
    payload = os.urandom(CHUNK)

    def down(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        nonlocal sent
        for _ in range(total):
            with changed:
                sent += 1
                changed.notify_all()
            yield payload

    handler = grpc.method_handlers_generic_handler("probe.Window", {"Down": grpc.unary_stream_rpc_method_handler(down)})
    with serve(handler, "127.0.0.1:0", None, chunk=CHUNK, window=window) as port:
        channel = open_channel(f"127.0.0.1:{port}", None, CHUNK, window)
        stream = channel.unary_stream("/probe.Window/Down")(b"")
        try:
            next(stream)
            deadline = time.monotonic() + 60
            with changed:  # the stream has stalled once no chunk was handed over for a whole second
                while time.monotonic() < deadline:
                    if not changed.wait(1.0) and sent >= at_least:
                        break
                return sent
        finally:
            stream.cancel()
            channel.close()


@pytest.mark.parametrize("window_mib", [4, 32])
def test_a_stalled_stream_holds_about_twice_the_window(window_mib: int) -> None:
    sent = sent_while_the_reader_waits(window_mib * MIB, total=160, at_least=40 if window_mib == 32 else 0)
    # the receiver's window and up to about as much again queued in the sender's transport (48-64 chunks for
    # 32 MiB here): bounded by the window, far below the 160 a stream without a bound would take
    assert sent <= 3 * window_mib, sent
    if window_mib == 32:
        assert sent >= 40, sent  # the window is what let that much through: the setting reaches gRPC


@pytest.mark.parametrize("window_mib, expected", [(0.001, 2 * 4192), (16, 16 * MIB), (0, None)])
def test_a_collaborators_channel_takes_the_plans_window(tmp_path, window_mib: float, expected: int | None) -> None:
    ws = make_workspace(tmp_path, ["one"], rounds=1, num_params=1000, num_tensors=1,
                        network={"chunk_size_mib": 0.004, "stream_window_mib": window_mib})
    with AggregatorClient(load_plan(ws / "plan" / "plan.yaml"), "one", None) as client:
        assert client.chunk == 4192 and client.window == expected
