"""The status HTTP server: read-only JSON, Prometheus text, Server-Sent Events and the live page.

Binding rule: 127.0.0.1 (plain HTTP) by default. Any other address needs TLS with the aggregator's own
certificate, and each request must show either a client certificate from the federation's CA or the bearer
token printed at start (``Authorization: Bearer …`` or ``?token=…`` for the page and its event stream).
"""
from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import logging
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, urlsplit

from fx_cli.status.board import LiveBoard
from fx_cli.status.saved import Saved, read_saved
from fx_cli.status.views import Facts, clients_doc, metrics_doc, prometheus, status_doc

log = logging.getLogger("fx.status")
ASSETS = Path(__file__).parent / "assets"
PAGES = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript; charset=utf-8"),
         "/style.css": ("style.css", "text/css; charset=utf-8")}
KEEPALIVE_S = 10.0
CACHE_S = 0.3  # several requests in a burst (the page loads three documents) share one read of the state


@dataclass
class StatusSource:
    """Where the documents come from: the plan's facts, the saved state, the audit log and the live board."""

    facts: Facts
    db_path: Path
    audit_path: Path | None
    live: LiveBoard | None
    _cache: tuple[float, Saved] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def saved(self) -> Saved:
        with self._lock:
            if self._cache is None or time.monotonic() - self._cache[0] > CACHE_S:
                self._cache = (time.monotonic(), read_saved(self.db_path, self.audit_path))
            return self._cache[1]

    def document(self, name: str) -> Any:
        saved = self.saved()
        if name == "status":
            return status_doc(self.facts, saved, self.live)
        if name == "clients":
            return clients_doc(self.facts, saved, self.live)
        return metrics_doc(saved)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    source: StatusSource
    token: str | None
    stopping: threading.Event


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.debug("status %s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        url = urlsplit(self.path)
        if not self._authorized(parse_qs(url.query)):
            self._send(401, b"status API: show a client certificate of this federation or the token printed at "
                            b"start\n", "text/plain; charset=utf-8", {"WWW-Authenticate": "Bearer"})
            return
        route: dict[str, Callable[[], None]] = {
            "/status": lambda: self._json("status"), "/clients": lambda: self._json("clients"),
            "/metrics": lambda: self._json("metrics"), "/metrics/prometheus": self._prometheus,
            "/events": self._events, "/healthz": lambda: self._send(200, b"ok\n", "text/plain")}
        if url.path in route:
            route[url.path]()
        elif url.path in PAGES:
            name, kind = PAGES[url.path]
            self._send(200, (ASSETS / name).read_bytes(), kind)
        else:
            self._send(404, b"not found\n", "text/plain")

    def do_POST(self) -> None:  # noqa: N802
        self._send(405, b"the status API is read-only\n", "text/plain", {"Allow": "GET"})

    do_PUT = do_DELETE = do_PATCH = do_POST  # noqa: N815

    def _authorized(self, query: dict[str, list[str]]) -> bool:
        token = self.server.token
        if token is None:
            return True
        if isinstance(self.connection, ssl.SSLSocket) and self.connection.getpeercert():
            return True  # the TLS layer checked it against the federation's CA
        given = self.headers.get("Authorization", "").removeprefix("Bearer ").strip() or \
            (query.get("token") or [""])[0]
        return hmac.compare_digest(given.encode(), token.encode())

    def _send(self, code: int, body: bytes, kind: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'self'")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, name: str) -> None:
        self._send(200, json.dumps(self.server.source.document(name), indent=1).encode(), "application/json")

    def _prometheus(self) -> None:
        src = self.server.source
        text = prometheus(src.document("status"), src.document("clients"), src.document("metrics"))
        self._send(200, text.encode(), "text/plain; version=0.0.4; charset=utf-8")

    def _events(self) -> None:
        live = self.server.source.live
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        reader = live.subscribe() if live is not None else None
        try:
            self._write_event({"type": "hello", "running": live is not None})
            while reader is not None and not self.server.stopping.is_set():
                try:
                    event = reader.get(timeout=KEEPALIVE_S)
                except Exception:  # queue.Empty: a comment keeps proxies from closing the stream
                    self.wfile.write(b": keepalive\n\n")
                    self.wfile.flush()
                    continue
                if event is None:
                    break
                self._write_event(event)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        finally:
            if reader is not None and live is not None:
                live.unsubscribe(reader)

    def _write_event(self, event: dict[str, Any]) -> None:
        self.wfile.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
        self.wfile.flush()


@contextlib.contextmanager
def serve_status(source: StatusSource, host: str, port: int, tls: ssl.SSLContext | None = None,
                 token: str | None = None) -> Iterator[str]:
    """Serve until the block ends; yields the base URL. A non-loopback ``host`` without ``tls`` is refused."""
    if not is_loopback(host) and tls is None:
        raise ValueError("the status server binds beyond loopback only with TLS")
    server = _Server((host.strip("[]"), port), _Handler)
    server.source, server.token, server.stopping = source, token, threading.Event()
    if tls is not None:
        # The handshake happens in the request's own thread (first read), so a silent client blocks nobody.
        server.socket = tls.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="fx-status",
                              daemon=True)
    thread.start()
    bound = server.server_address[1]
    shown = f"[{host.strip('[]')}]" if ":" in host.strip("[]") else host
    try:
        yield f"{'https' if tls else 'http'}://{shown}:{bound}"
    finally:
        server.stopping.set()
        if source.live is not None:
            source.live.close()
        server.shutdown()
        server.server_close()
        thread.join(5.0)
