"""Does the server at an address speak TLS at all? Tells a ``use_tls`` mismatch from everything else.

A collaborator whose ``network.settings.use_tls`` differs from the aggregator's
sees only "socket closed" (plain client, TLS server), which gRPC reports as
retryable, or a failed handshake (TLS client, plain server), which looks like a
rejected certificate. One short handshake of our own, without certificates,
answers the question: a TLS server replies with TLS (a ServerHello or an alert),
a plain HTTP/2 server with something else or nothing.
"""
from __future__ import annotations

import socket
import ssl

from fx_cli.errors import FxError

# The server answered our ClientHello with bytes that are not TLS (a plain gRPC server answers this way).
NOT_TLS_MARKERS = ("wrong_version_number", "wrong version number", "record layer failure", "packet length too long",
                   "http request")
# It closed the connection without a word: a plain server may, but so does a TLS server that is shutting down,
# restarting or overloaded. Only a plaintext HTTP/2 answer (``_plain_http2``) then tells a plain server.
CLOSED_MARKERS = ("unexpected eof", "eof occurred")
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
EMPTY_SETTINGS = bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # an HTTP/2 frame header: length 0, type SETTINGS, stream 0


def _split(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host.strip("[]"), int(port)


def speaks_tls(target: str, timeout: float = 3.0) -> bool | None:
    """True when ``host:port`` answers a TLS handshake with TLS, False when it does not, None when unknown."""
    try:
        host, port = _split(target)
        sock = socket.create_connection((host, port), timeout=timeout)
    except (OSError, ValueError):
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        with context.wrap_socket(sock, server_hostname=host) as tls:
            tls.do_handshake()
            return True
    except ssl.SSLError as err:
        text = f"{err.reason or ''} {err}".lower()
        if any(marker in text for marker in CLOSED_MARKERS):
            return _plain_http2(host, port, timeout)
        return not any(marker in text for marker in NOT_TLS_MARKERS)
    except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
        return _plain_http2(host, port, timeout)  # closed on our ClientHello without a TLS alert
    except OSError:
        return None
    finally:
        sock.close()


def _plain_http2(host: str, port: int, timeout: float) -> bool | None:
    """False when ``host:port`` answers a plaintext HTTP/2 preface with HTTP/2 (a server without TLS); None when
    it does not answer so (closing, restarting, or something else: unknown)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(HTTP2_PREFACE + EMPTY_SETTINGS)
            header = b""
            while len(header) < 9:
                got = sock.recv(9 - len(header))
                if not got:
                    return None
                header += got
    except OSError:
        return None
    return False if header[3] == EMPTY_SETTINGS[3] and header[5:9] == bytes(4) else None


def mismatch(target: str, ours: bool) -> FxError | None:
    """An error naming the ``use_tls`` mismatch when the server at ``target`` does the opposite of ``ours``."""
    theirs = speaks_tls(target)
    if theirs is None or theirs == ours:
        return None
    if ours:
        what = "does not use TLS, but this collaborator's plan has network.settings.use_tls: true"
    else:
        what = "expects TLS, but this collaborator's plan has network.settings.use_tls: false"
    return FxError(f"the aggregator at {target} {what}; the two plans differ in network.settings.use_tls",
                   "use the aggregator's plan/plan.yaml at this site (compare with `fx plan print`), then start the "
                   "collaborator again")
