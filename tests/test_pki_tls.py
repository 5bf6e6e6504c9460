"""Mutual TLS against a real gRPC server on loopback: who gets in, who does not, and what the client is told."""
from __future__ import annotations

import shutil
from pathlib import Path

import grpc
import pytest

from fx_cli.errors import FxError
from fx_cli.pki import ca
from fx_cli.pki.authz import explain_rpc_error
from fx_cli.pki.diagnose import is_tls_failure
from fx_cli.pki.certs import Names
from fx_cli.pki.store import Layout
from fx_cli.pki.tls import client_credentials, server_credentials
from fx_cli.plan.participants import read_cols
from tests.pki_helpers import (Federation, expired_start, identity_server, new_host, ok_in, plant_leaf,
                               seed_federation, whoami)


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return seed_federation(tmp_path_factory.mktemp("pki-tls"))


@pytest.fixture(scope="module")
def port(fed: Federation):
    cols = read_cols(fed.agg / "plan" / "cols.yaml")
    with identity_server(server_credentials(fed.agg, "localhost"), cols) as bound:
        yield bound


def _raw_client(host: Path, name: str) -> grpc.ChannelCredentials:
    """Credentials built without fx's local checks, as a client that skips them would."""
    layout = Layout(host)
    return grpc.ssl_channel_credentials(layout.chain.read_bytes(), layout.client(name, "key").read_bytes(),
                                        layout.client(name, "crt").read_bytes())


def _rejected(target: str, creds: grpc.ChannelCredentials, claimed: str, handshake: bool = True,
              **local: object) -> FxError:
    with pytest.raises(grpc.RpcError) as info:
        whoami(target, creds, claimed)
    assert is_tls_failure(info.value) is handshake, info.value.details()
    return explain_rpc_error(info.value, target, **local)  # type: ignore[arg-type]


def _rogue_host(root: Path, fed: Federation) -> Path:
    """A collaborator folder that trusts the federation's chain but holds no certificate yet."""
    host = new_host(root, "rogue")
    shutil.copy(Layout(fed.agg).chain, Layout(host).chain)
    return host


def test_collaborator_with_a_valid_certificate_is_authorized(fed, port):
    for name, host in fed.cols.items():
        assert whoami(f"localhost:{port}", client_credentials(host, name), name) == name
    assert whoami(f"127.0.0.1:{port}", client_credentials(fed.cols["one"], "one"), "one") == "one"


def test_collaborator_without_a_client_certificate_is_rejected(fed, port):
    target = f"localhost:{port}"
    err = _rejected(target, client_credentials(fed.cols["one"], None), "one", workspace=fed.cols["one"])
    assert "rejected this collaborator's certificate during the TLS handshake" in err.message
    assert "no client certificate was sent" in err.message and err.hint


def test_collaborator_with_a_foreign_ca_is_rejected(fed, port, tmp_path):
    other = new_host(tmp_path, "other-federation")
    ok_in(other, "workspace", "certify")
    rogue = _rogue_host(tmp_path, fed)
    plant_leaf(Layout(rogue), Names("one"), "client", issuer=ca.load_signing(Layout(other)))
    err = _rejected(f"localhost:{port}", _raw_client(rogue, "one"), "one", workspace=rogue, collaborator="one")
    assert "rejected this collaborator's certificate" in err.message
    assert "cert/client/col_one.crt was issued by 'fx Signing CA" in err.message and "a different CA" in err.message
    with pytest.raises(FxError, match="a different CA"):
        client_credentials(rogue, "one")  # fx's own client refuses before dialling


def test_collaborator_of_another_federation_sees_the_server_is_from_a_different_ca(fed, port, tmp_path):
    other = new_host(tmp_path, "other")
    ok_in(other, "workspace", "certify")
    plant_leaf(Layout(other), Names("one"), "client")
    target = f"localhost:{port}"
    err = _rejected(target, client_credentials(other, "one"), "one", workspace=other, collaborator="one")
    assert f"the aggregator's certificate at {target} is from a different CA than cert/cert_chain.crt" in err.message
    assert "(verification failed: unable to get local issuer certificate)" in err.message
    assert "fx collaborator certify --import" in err.hint


def test_collaborator_whose_name_is_not_in_cols_yaml_is_refused(fed, tmp_path):
    root = tmp_path
    host = _rogue_host(root, fed)
    plant_leaf(Layout(host), Names("three"), "client", issuer=ca.load_signing(Layout(fed.agg)))
    with identity_server(server_credentials(fed.agg, "localhost"), ["one", "two"]) as bound:
        target = f"localhost:{bound}"
        with pytest.raises(grpc.RpcError) as info:
            whoami(target, client_credentials(host, "three"), "three")
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED and not is_tls_failure(info.value)
    err = explain_rpc_error(info.value, target)
    assert "does not authorize this collaborator" in err.message
    assert "'three' is not in the aggregator's plan/cols.yaml" in err.message and "fx collaborator certify" in err.message


def test_removed_collaborator_is_refused(fed, tmp_path):
    agg = tmp_path / "agg-copy"
    shutil.copytree(fed.agg, agg)
    ok_in(agg, "collaborator", "remove", "-n", "two")
    with identity_server(server_credentials(agg, "localhost"), read_cols(agg / "plan" / "cols.yaml")) as bound:
        assert whoami(f"localhost:{bound}", client_credentials(fed.cols["one"], "one"), "one") == "one"
        with pytest.raises(grpc.RpcError) as info:
            whoami(f"localhost:{bound}", client_credentials(fed.cols["two"], "two"), "two")
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED and "'two'" in info.value.details()


def test_collaborator_claiming_another_name_than_its_cn_is_rejected(fed, port):
    target = f"localhost:{port}"
    with pytest.raises(grpc.RpcError) as info:
        whoami(target, client_credentials(fed.cols["one"], "one"), "two")
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    err = explain_rpc_error(info.value, target)
    assert "refused this collaborator's identity" in err.message
    assert "certificate CN 'one' does not match the claimed collaborator name 'two'" in err.message


def test_collaborator_with_an_expired_certificate_is_rejected(fed, port, tmp_path):
    host = _rogue_host(tmp_path, fed)
    plant_leaf(Layout(host), Names("one"), "client", issuer=ca.load_signing(Layout(fed.agg)),
               not_before=expired_start(10), days=2)
    err = _rejected(f"localhost:{port}", _raw_client(host, "one"), "one", workspace=host, collaborator="one")
    assert "rejected this collaborator's certificate" in err.message
    assert "cert/client/col_one.crt expired on" in err.message
    with pytest.raises(FxError, match="expired on"):
        client_credentials(host, "one")


def test_server_certificate_that_does_not_cover_the_dialled_address_is_rejected(fed, tmp_path):
    agg = tmp_path / "agg-elsewhere"
    shutil.copytree(fed.agg, agg)
    plant_leaf(Layout(agg), Names("agg.example.org"), "server")
    with identity_server(server_credentials(agg, "agg.example.org"), ["one"]) as bound:
        target = f"localhost:{bound}"
        err = _rejected(target, client_credentials(fed.cols["one"], "one"), "one")
    assert f"the server certificate does not cover 'localhost', the address dialled ({target})" in err.message
    assert "--san localhost" in err.hint


def test_plain_tcp_skips_the_cn_check_but_still_enforces_cols_yaml():
    with identity_server(None, ["one"]) as bound:
        assert whoami(f"127.0.0.1:{bound}", None, "one") == ""
        with pytest.raises(grpc.RpcError) as info:
            whoami(f"127.0.0.1:{bound}", None, "mallory")
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_server_credentials_pick_the_certificate_whose_san_covers_an_ip(fed):
    with identity_server(server_credentials(fed.agg, "127.0.0.1"), ["one"]) as bound:
        assert whoami(f"127.0.0.1:{bound}", client_credentials(fed.cols["one"], "one"), "one") == "one"


def test_missing_server_certificate_names_the_file_and_the_command(tmp_path):
    host = new_host(tmp_path, "agg")
    ok_in(host, "workspace", "certify")
    with pytest.raises(FxError) as info:
        server_credentials(host, "agg.example.org")
    assert "cert/server/agg_agg.example.org.crt not found" in info.value.message
    assert "fx aggregator generate-cert-request --fqdn agg.example.org" in (info.value.hint or "")


def test_missing_client_files_name_the_file_and_the_command(tmp_path):
    host = new_host(tmp_path, "col")
    with pytest.raises(FxError) as info:
        client_credentials(host, "one")
    assert "cert/cert_chain.crt not found" in info.value.message
    assert "fx collaborator certify --import agg_to_col_one_signed_cert.zip" in (info.value.hint or "")


def test_unreachable_aggregator_is_explained(fed):
    with identity_server(None, []) as bound:
        pass  # the port is now closed
    target = f"localhost:{bound}"
    err = _rejected(target, client_credentials(fed.cols["one"], "one"), "one", handshake=False)
    assert f"cannot reach the aggregator at {target}" in err.message and "agg_addr" in err.hint
