"""A tiny Chrome DevTools Protocol client (stdlib only): headless Chromium driven over its websocket.

Enough of RFC 6455 for CDP on loopback: client frames masked, text frames, no fragmentation on send.
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import socket
import struct
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

from tests.status_helpers import CHROMIUM_FLAGS, chromium


class DevTools:
    """One page target's websocket."""

    def __init__(self, ws_url: str) -> None:
        parts = urlsplit(ws_url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            assert chunk, "DevTools closed the connection during the handshake"
            head += chunk
        assert head.startswith(b"HTTP/1.1 101"), head
        self.next_id = 0

    def _send(self, text: str) -> None:
        data, mask = text.encode(), os.urandom(4)
        n = len(data)
        header = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n)
                                  if n < 65536 else bytes([0x80 | 127]) + struct.pack(">Q", n))
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            assert chunk, "DevTools closed the connection"
            out += chunk
        return out

    def _receive(self) -> str:
        message = b""
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            n = struct.unpack(">H", self._exact(2))[0] if n == 126 else struct.unpack(">Q", self._exact(8))[0] \
                if n == 127 else n
            payload = self._exact(n)
            if b0 & 0x0F in (0x1, 0x0):
                message += payload
                if b0 & 0x80:
                    return message.decode()

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self._send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self._receive())
            if reply.get("id") == self.next_id:
                assert "error" not in reply, reply
                return dict(reply["result"])

    def _run(self, expression: str) -> dict[str, Any]:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)

    def evaluate(self, expression: str) -> Any:
        result = self._run(expression)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = 60.0) -> Any:
        """Evaluate ``expression`` until it is truthy. While the page is still loading the expression may throw
        (``document.body`` is null before the body is parsed): that counts as not yet, and the last error is
        shown if the deadline passes."""
        deadline = time.monotonic() + timeout
        while True:
            result = self._run(expression)
            value = None if "exceptionDetails" in result else result["result"].get("value")
            if value:
                return value
            assert time.monotonic() < deadline, f"timed out waiting for {what}; the page last gave {result}"
            time.sleep(0.1)

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))


@contextlib.contextmanager
def open_page(url: str, profile: Path) -> Iterator[DevTools]:
    """Headless Chromium with a fresh profile showing ``url``; yields its DevTools connection."""
    profile.mkdir(parents=True, exist_ok=True)
    log = profile / "chromium.log"
    proc = subprocess.Popen([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1200,1100",
                             "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1", url],
                            stdout=subprocess.DEVNULL, stderr=open(log, "w"))
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            assert proc.poll() is None, f"chromium exited {proc.returncode}: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as res:
            targets = json.loads(res.read())
        page = next(t for t in targets if t["type"] == "page" and re.match(re.escape(url), t["url"]))
        tools = DevTools(page["webSocketDebuggerUrl"])
        try:
            yield tools
        finally:
            tools.sock.close()
    finally:
        proc.kill()
        proc.wait()
