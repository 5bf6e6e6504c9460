"""What a new user meets first: prompts without a terminal, messages outside a workspace, option spellings."""
from __future__ import annotations

from pathlib import Path

from fx_cli.pki.store import Layout
from tests.pki_helpers import fx_in, new_host, ok_in, seed_federation


def test_certify_without_a_terminal_says_which_flag_signs(tmp_path: Path) -> None:
    fed = seed_federation(tmp_path, names=())
    col = new_host(tmp_path, "col")
    ok_in(col, "collaborator", "generate-cert-request", "-n", "three")
    pkg = str(col / "col_three_to_agg_cert_request.zip")
    res = fx_in(fed.agg, "collaborator", "certify", "--request-pkg", pkg)  # stdin is empty: nobody answers
    assert res.exit_code == 1
    assert "Aborted!" not in res.all
    assert "nobody answered 'Sign this certificate?'" in res.stderr and "no terminal" in res.stderr
    assert "-s/--silent" in res.stderr
    assert not Layout(fed.agg).client("three", "crt").exists()
    res = fx_in(fed.agg, "collaborator", "certify", "--request-pkg", pkg, "--yes")
    assert res.exit_code == 0, res.all
    assert Layout(fed.agg).client("three", "crt").exists()


def test_aggregator_request_and_certify_both_take_n_for_the_host_name(tmp_path: Path) -> None:
    host = new_host(tmp_path, "agg")
    ok_in(host, "workspace", "certify")
    ok_in(host, "aggregator", "generate-cert-request", "-n", "agg.example.org")
    res = fx_in(host, "aggregator", "certify", "-n", "agg.example.org")
    assert res.exit_code == 1 and "-s/--silent" in res.stderr
    ok_in(host, "aggregator", "certify", "-n", "agg.example.org", "-s")
