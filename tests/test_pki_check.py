"""``fx pki check`` reports each planted problem in plain words, and passes a healthy workspace."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fx_cli.pki import ca
from fx_cli.pki.certs import Names
from fx_cli.pki.keys import new_private_key
from fx_cli.pki.store import Layout, pem
from fx_cli.plan.participants import add_col
from tests.pki_helpers import Federation, expired_start, fx_in, plant_leaf, seed_federation


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Federation:
    return seed_federation(tmp_path_factory.mktemp("pki-check"))


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _problems(host: Path) -> tuple[list[str], str]:
    res = fx_in(host, "pki", "check")
    lines = [line for line in res.output.splitlines() if line.startswith("problem")]
    assert (res.exit_code == 1) == bool(lines), res.all
    return lines, res.output + res.stderr


def test_healthy_aggregator_and_collaborator_hosts_pass(fed):
    for host in (fed.agg, *fed.cols.values()):
        res = fx_in(host, "pki", "check")
        assert res.exit_code == 0, res.all
        assert "all certificates are in order" in res.output and "problem" not in res.output


def _plant_mismatch(agg: Layout) -> None:
    stray = ca.issue(ca.load_signing(agg), new_private_key().public_key(), Names("localhost", (), ("127.0.0.1",)),
                     "server")
    agg.server("localhost", "crt").write_bytes(pem(stray))


def _plant_foreign(agg: Layout) -> None:
    plant_leaf(agg, Names("four"), "client", issuer=ca.new_ca().signing)
    add_col(agg.workspace / "plan" / "cols.yaml", "four")


def _plant_expired(agg: Layout) -> None:
    plant_leaf(agg, Names("five"), "client", not_before=expired_start(10), days=2)
    add_col(agg.workspace / "plan" / "cols.yaml", "five")


def _plant_expiring(agg: Layout) -> None:
    plant_leaf(agg, Names("six"), "client", days=10)
    add_col(agg.workspace / "plan" / "cols.yaml", "six")


def _plant_uncovered_addr(agg: Layout) -> None:
    plan = agg.workspace / "plan" / "plan.yaml"
    plan.write_text(plan.read_text().replace("agg_addr: localhost", "agg_addr: agg.example.org"))


def _plant_unlisted(agg: Layout) -> None:
    assert fx_in(agg.workspace, "collaborator", "remove", "-n", "two").exit_code == 0


def _plant_open_key(agg: Layout) -> None:
    agg.server("localhost", "key").chmod(0o644)


PLANTED = {
    "key/certificate mismatch": (_plant_mismatch, "cert/server/agg_localhost.crt: does not match its private key "
                                                  "cert/server/agg_localhost.key (key/certificate mismatch)"),
    "chain to another CA": (_plant_foreign, "cert/client/col_four.crt: was issued by 'fx Signing CA"),
    "expired": (_plant_expired, "cert/client/col_five.crt: expired on"),
    "expiring within 30 days": (_plant_expiring, "cert/client/col_six.crt: expires in"),
    "SAN not covering agg_addr": (_plant_uncovered_addr, "the server certificate's SAN does not cover "
                                                         "network.settings.agg_addr 'agg.example.org'"),
    "CN not in cols.yaml": (_plant_unlisted, "cert/client/col_two.crt: collaborator CN 'two' is not in plan/cols.yaml"),
    "key readable by others": (_plant_open_key, "cert/server/agg_localhost.key: private key has mode 0644"),
}


@pytest.mark.parametrize("case", sorted(PLANTED))
def test_check_reports_the_planted_problem_and_fails(fed, tmp_path, case):
    plant, expected = PLANTED[case]
    host = _copy(fed.agg, tmp_path / "agg")
    plant(Layout(host))
    lines, text = _problems(host)
    assert len(lines) == 1, text
    assert expected in lines[0], text
    assert "what to do:" in text


def test_check_says_what_to_run_for_an_uncovered_address(fed, tmp_path):
    host = _copy(fed.agg, tmp_path / "agg")
    _plant_uncovered_addr(Layout(host))
    _, text = _problems(host)
    assert "fx aggregator generate-cert-request --san agg.example.org" in text


def test_check_on_a_collaborator_host_finds_a_certificate_from_another_ca(fed, tmp_path):
    host = _copy(fed.cols["one"], tmp_path / "col")
    Layout(host).chain.write_bytes(ca.new_ca().chain_pem())
    lines, text = _problems(host)
    assert len(lines) == 1 and "cert/client/col_one.crt: was issued by" in lines[0], text
    assert "(a chain to another CA)" in lines[0]


def test_check_on_a_host_without_certificates_says_to_certify(tmp_path):
    from tests.pki_helpers import new_host

    host = new_host(tmp_path, "bare")
    lines, text = _problems(host)
    assert any("cert/cert_chain.crt: not found" in line for line in lines), text
    assert "fx workspace certify" in text


def test_ca_host_without_an_aggregator_certificate_is_not_ready(tmp_path):
    from tests.pki_helpers import new_host, ok_in

    host = new_host(tmp_path, "agg")
    ok_in(host, "workspace", "certify")
    ok_in(host, "collaborator", "generate-cert-request", "-n", "one", "-x")
    lines, text = _problems(host)
    assert len(lines) == 1 and "cert/server: holds no aggregator certificate" in lines[0], text
    assert "fx aggregator generate-cert-request" in text and "--fqdn localhost" in text
    assert "note    cert/client/col_one.csr: request not signed yet" in text


def test_pki_commands_never_import_tensorflow(tmp_path):
    from tests.pki_helpers import ok_in

    res = fx_in(tmp_path, "workspace", "create", "--prefix", "kd", "--template", "keras/digits")
    assert res.exit_code == 0, res.all
    ok_in(tmp_path / "kd", "workspace", "certify")
    code = ("import sys\nfrom fx_cli.cli.main import cli\n"
            "try:\n    cli(['pki', 'check'], prog_name='fx')\nexcept SystemExit as e:\n    print('exit', e.code)\n"
            "print('tensorflow' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path / "kd", capture_output=True, text=True, timeout=60)
    assert "cert/server: holds no aggregator certificate" in res.stdout, res.stdout + res.stderr
    assert res.stdout.strip().endswith("False"), res.stdout
