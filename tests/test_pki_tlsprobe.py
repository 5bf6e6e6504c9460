"""``tlsprobe.speaks_tls``: is the server at an address a TLS one? A wrong answer turns into a false
"use_tls differs" error that stops a collaborator, so a server that only closes the connection (shutting down,
restarting, overloaded) must read as unknown, not as a plain server. Real servers on loopback."""
from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path
from typing import Callable, Iterator

import grpc

from fx_cli.pki.tlsprobe import mismatch, speaks_tls
from fx_cli.transport.server import serve
from tests.runtime_helpers import make_workspace

NOTHING = grpc.method_handlers_generic_handler("probe.Nothing", {})
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@contextlib.contextmanager
def raw_server(answer: Callable[[socket.socket], None]) -> Iterator[str]:
    """A TCP server on loopback that hands every connection to ``answer`` (then closes it); yields host:port."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                answer(conn)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept
        listener.close()
        thread.join(5)


def close_at_once(conn: socket.socket) -> None:
    """What a TLS server that is shutting down may do: accept, then close without a word."""


def plain_http2_that_closes_on_tls(conn: socket.socket) -> None:
    """A plain HTTP/2 server that closes on anything but the HTTP/2 preface, and answers that with SETTINGS."""
    conn.settimeout(5)
    first = b""
    with contextlib.suppress(OSError):
        while len(first) < len(HTTP2_PREFACE) and HTTP2_PREFACE.startswith(first):
            got = conn.recv(len(HTTP2_PREFACE) - len(first))
            if not got:
                break
            first += got
    if first == HTTP2_PREFACE:
        conn.sendall(bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))
        conn.recv(64)


def test_a_plain_grpc_server_is_not_tls_and_a_tls_one_is(tmp_path: Path) -> None:
    from fx_cli.pki.tls import server_credentials

    with serve(NOTHING, "127.0.0.1:0", None, chunk=1 << 20) as port:
        assert speaks_tls(f"127.0.0.1:{port}") is False
        assert mismatch(f"127.0.0.1:{port}", ours=True) is not None
    ws = make_workspace(tmp_path, ["one"], rounds=1)
    with serve(NOTHING, "localhost:0", server_credentials(ws, "localhost"), chunk=1 << 20) as port:
        assert speaks_tls(f"localhost:{port}") is True
        assert mismatch(f"localhost:{port}", ours=True) is None
        assert "expects TLS" in mismatch(f"localhost:{port}", ours=False).message  # type: ignore[union-attr]


def test_a_server_that_only_closes_the_connection_is_unknown_not_plain() -> None:
    with raw_server(close_at_once) as target:
        assert speaks_tls(target) is None
        assert mismatch(target, ours=True) is None  # no false "use_tls differs": the caller keeps retrying


def test_a_plain_http2_server_that_closes_on_a_client_hello_is_still_found_plain() -> None:
    with raw_server(plain_http2_that_closes_on_tls) as target:
        assert speaks_tls(target) is False
        error = mismatch(target, ours=True)
        assert error is not None and "does not use TLS" in error.message


def test_nothing_listening_is_unknown() -> None:
    with raw_server(close_at_once) as target:
        pass  # the port is free again
    assert speaks_tls(target) is None
