"""Signing a request for a name that already holds a valid certificate needs --replace, and shows the old one."""
from __future__ import annotations

from pathlib import Path

import pytest

from fx_cli.pki import ca
from fx_cli.pki.certs import Names
from fx_cli.pki.fingerprint import fingerprint
from fx_cli.pki.store import Layout, read_cert
from tests.pki_helpers import (Federation, expired_start, fx_in, new_host, ok_in, plant_leaf, seed_federation,
                               snapshot)


@pytest.fixture
def fed(tmp_path: Path) -> Federation:
    return seed_federation(tmp_path, ("one",))


def _cert_fp(path: Path) -> str:
    return fingerprint(read_cert(path))


def _impostor_package(root: Path, name: str) -> Path:
    """A request for ``name`` made on another host (a different key)."""
    host = new_host(root, f"impostor-{name}")
    ok_in(host, "collaborator", "create", "-n", name, "-d", "x", "-s")
    ok_in(host, "collaborator", "generate-cert-request", "-n", name, "-s")
    return host / f"col_{name}_to_agg_cert_request.zip"


def _same_key_package(fed: Federation, name: str) -> Path:
    """The genuine site asks again (its key is kept, so the request has the same key)."""
    ok_in(fed.cols[name], "collaborator", "generate-cert-request", "-n", name, "-s")
    return fed.cols[name] / f"col_{name}_to_agg_cert_request.zip"


@pytest.mark.parametrize("source, key_words", [("impostor", "a DIFFERENT key"), ("same site", "the same key")])
def test_collaborator_request_over_a_valid_certificate_needs_replace(fed, tmp_path, source, key_words):
    crt = fed.agg / "cert" / "client" / "col_one.crt"
    old_fp = _cert_fp(crt)
    package = _impostor_package(tmp_path, "one") if source == "impostor" else _same_key_package(fed, "one")
    before = snapshot(fed.agg / "cert")
    signed_pkg = (fed.agg / "agg_to_col_one_signed_cert.zip").read_bytes()
    res = fx_in(fed.agg, "collaborator", "certify", "--request-pkg", str(package), "-s")
    assert res.exit_code == 1, res.all
    assert "already holds a valid certificate" in res.stderr and old_fp in res.all
    assert key_words in res.stderr and "--replace" in res.stderr
    assert snapshot(fed.agg / "cert") == before
    assert (fed.agg / "agg_to_col_one_signed_cert.zip").read_bytes() == signed_pkg

    res = ok_in(fed.agg, "collaborator", "certify", "--request-pkg", str(package), "-s", "--replace")
    assert "signing REPLACES it" in res.output and old_fp in res.output
    assert "(replacing the previous certificate)" in res.output
    assert _cert_fp(crt) != old_fp


def test_local_request_by_name_over_a_valid_certificate_needs_replace(tmp_path):
    host = new_host(tmp_path, "ca")
    ok_in(host, "workspace", "certify")
    ok_in(host, "collaborator", "create", "-n", "solo", "-d", "x", "-s")
    ok_in(host, "collaborator", "generate-cert-request", "-n", "solo", "-s")
    ok_in(host, "collaborator", "certify", "-n", "solo", "-s")
    res = fx_in(host, "collaborator", "certify", "-n", "solo", "-s")
    assert res.exit_code == 1 and "already holds a valid certificate" in res.stderr, res.all
    ok_in(host, "collaborator", "certify", "-n", "solo", "-s", "--replace")


def test_aggregator_request_over_a_valid_certificate_needs_replace(fed):
    crt = fed.agg / "cert" / "server" / "agg_localhost.crt"
    old_fp = _cert_fp(crt)
    res = fx_in(fed.agg, "aggregator", "certify", "--fqdn", "localhost", "-s")
    assert res.exit_code == 1, res.all
    assert "'localhost' already holds a valid certificate" in res.stderr and old_fp in res.all
    assert _cert_fp(crt) == old_fp
    res = ok_in(fed.agg, "aggregator", "certify", "--fqdn", "localhost", "-s", "--replace")
    assert old_fp in res.output and _cert_fp(crt) != old_fp


def test_the_prompt_shows_the_certificate_about_to_be_replaced(fed, tmp_path):
    crt = fed.agg / "cert" / "client" / "col_one.crt"
    old_fp = _cert_fp(crt)
    package = _impostor_package(tmp_path, "one")
    res = fx_in(fed.agg, "collaborator", "certify", "--request-pkg", str(package), "--replace", input="n\n")
    assert res.exit_code == 1
    assert "current certificate fingerprint (SHA-256): " + old_fp in res.output
    assert res.output.index(old_fp) < res.output.index("Sign this certificate?")
    assert _cert_fp(crt) == old_fp


@pytest.mark.parametrize("kind", ["expired", "foreign CA", "unreadable"])
def test_an_invalid_old_certificate_is_replaced_without_the_flag(fed, tmp_path, kind):
    layout = Layout(fed.agg)
    crt = layout.client("one", "crt")
    crt.unlink()
    if kind == "expired":
        plant_leaf(layout, Names("one"), "client", not_before=expired_start(10), days=2, stem="col_one_planted")
        (layout.root / "client" / "col_one_planted.crt").rename(crt)
    elif kind == "foreign CA":
        other = new_host(tmp_path, "other-ca")
        ok_in(other, "workspace", "certify")
        plant_leaf(layout, Names("one"), "client", issuer=ca.load_signing(Layout(other)),
                   stem="col_one_planted")
        (layout.root / "client" / "col_one_planted.crt").rename(crt)
    else:
        crt.write_bytes(b"not a certificate")
    package = _same_key_package(fed, "one")
    res = ok_in(fed.agg, "collaborator", "certify", "--request-pkg", str(package), "-s")
    assert "signing REPLACES" not in res.output
