"""Where the status server listens and how it is protected; the file that tells ``fx aggregator status`` where."""
from __future__ import annotations

import json
import os
import secrets
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fx_cli.errors import FxError
from fx_cli.status.server import is_loopback

HINT = ('set aggregator.settings.status_address to "127.0.0.1:0" (loopback, any free port), "HOST:PORT", '
        'or "off"')


@dataclass(frozen=True)
class Binding:
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)


def parse_address(value: str) -> Binding | None:
    """``HOST:PORT`` (IPv6 in brackets) as a ``Binding``; None for ``off``."""
    if value.strip().lower() in ("off", "false", "none", ""):
        return None
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise FxError(f"aggregator.settings.status_address: {value!r} is not HOST:PORT", HINT)
    return Binding(host, int(port))


def tls_context(workspace: Path, agg_addr: str, cert_folder: str) -> ssl.SSLContext:
    """TLS with the aggregator's own certificate; client certificates from the federation's CA are accepted."""
    from fx_cli.pki.store import Layout
    from fx_cli.pki.tls import find_server_cert

    layout = Layout(workspace, cert_folder)
    cert = find_server_cert(layout, agg_addr)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, cert.with_suffix(".key"))
    context.load_verify_locations(layout.chain)
    context.verify_mode = ssl.CERT_OPTIONAL
    return context


def new_token() -> str:
    return secrets.token_urlsafe(24)


def write_pointer(path: Path, url: str, token: str | None) -> None:
    """``local_state/status_server.json`` (mode 0600: it may hold the token) for ``fx aggregator status``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": url, "pid": os.getpid(), "token": token}, fh)
    os.replace(tmp, path)


def read_pointer(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) and isinstance(data.get("url"), str) else None
    except (OSError, ValueError):
        return None
