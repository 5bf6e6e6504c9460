"""Beyond loopback the status API is TLS with the aggregator's certificate and needs a client cert or the token."""
from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from fx_cli.errors import FxError
from fx_cli.plan import load_plan
from fx_cli.status.binding import new_token, parse_address, tls_context
from fx_cli.status.board import LiveBoard
from fx_cli.status.server import StatusSource, serve_status
from fx_cli.status.views import Facts
from tests.runtime_helpers import make_workspace
from tests.status_helpers import get


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_workspace(tmp_path_factory.mktemp("tls"), ["one"], rounds=1)


def client_context(ws: Path, with_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ws / "cert" / "cert_chain.crt"))
    context.check_hostname = False
    if with_cert:
        context.load_cert_chain(ws / "cert" / "client" / "col_one.crt", ws / "cert" / "client" / "col_one.key")
    return context


def test_beyond_loopback_needs_tls_and_a_client_certificate_or_the_token(ws: Path) -> None:
    plan = load_plan(ws / "plan" / "plan.yaml")
    source = StatusSource(Facts.from_plan(plan, ["one"]), ws / "local_state" / "aggregator.db", None, LiveBoard(60))
    token = new_token()
    with pytest.raises(ValueError):
        with serve_status(source, "0.0.0.0", 0):
            pass
    with serve_status(source, "0.0.0.0", 0, tls_context(ws, "localhost", "cert"), token) as url:
        port = url.rsplit(":", 1)[1]
        base = f"https://127.0.0.1:{port}"
        anonymous = client_context(ws, with_cert=False)
        assert get(f"{base}/status", context=anonymous)[0] == 401
        assert get(f"{base}/status", context=anonymous, headers={"Authorization": "Bearer wrong"})[0] == 401
        code, body, _ = get(f"{base}/status", context=anonymous, headers={"Authorization": f"Bearer {token}"})
        assert code == 200 and '"phase": "starting"' in body
        assert get(f"{base}/metrics?token={token}", context=anonymous)[0] == 200
        assert get(f"{base}/clients", context=client_context(ws, with_cert=True))[0] == 200
        with pytest.raises(Exception):  # plain HTTP to the TLS port gets no answer
            get(f"http://127.0.0.1:{port}/status")


def test_status_address_is_checked() -> None:
    assert parse_address("off") is None
    binding = parse_address("127.0.0.1:0")
    assert binding is not None and binding.loopback
    binding = parse_address("[::1]:8080")
    assert binding is not None and binding.loopback and binding.port == 8080
    for bad in ("127.0.0.1", "host:port", ":80", "1.2.3.4:99999"):
        with pytest.raises(FxError, match="status_address"):
            parse_address(bad)
