"""Helpers for the status API tests: HTTP on loopback, the event stream, headless Chromium."""
from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage")


def status_url(ws: Path) -> str:
    return str(json.loads((ws / "local_state" / "status_server.json").read_text())["url"])


def get(url: str, *, headers: dict[str, str] | None = None, context: ssl.SSLContext | None = None,
        method: str = "GET") -> tuple[int, str, dict[str, str]]:
    """(status code, body, headers) of one request."""
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as res:
            return res.status, res.read().decode(), dict(res.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(), dict(err.headers)


def get_json(url: str) -> Any:
    code, body, _ = get(url)
    assert code == 200, (url, code, body)
    return json.loads(body)


def first_events(url: str, count: int, timeout: float = 60.0) -> list[tuple[str, dict[str, Any]]]:
    """The first ``count`` events of an SSE stream, read over a raw socket."""
    parts = urlsplit(url)
    events: list[tuple[str, dict[str, Any]]] = []
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: text/event-stream\r\n\r\n".encode())
        buffer = b""
        while len(events) < count:
            chunk = sock.recv(4096)
            assert chunk, f"the event stream closed after {events}"
            buffer += chunk
            while b"\n\n" in buffer and len(events) < count:
                block, buffer = buffer.split(b"\n\n", 1)
                lines = block.decode().splitlines()
                kind = next((x[7:] for x in lines if x.startswith("event: ")), "")
                data = next((x[6:] for x in lines if x.startswith("data: ")), "")
                if kind:
                    events.append((kind, json.loads(data)))
    return events


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium is missing: run `make install` (installs Debian's chromium) or apt-get install chromium"
    return found


def browse(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium on ``url`` with a fresh profile; it must not reach anything but ``url``."""
    profile.mkdir(parents=True, exist_ok=True)
    return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1200,1100",
                           "--virtual-time-budget=8000", *extra, url], capture_output=True, text=True, timeout=120)
