"""The scripted seed flow across three folders standing for three hosts, and what it leaves on disk."""
from __future__ import annotations

import re
import stat
import zipfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from fx_cli.pki.store import Layout
from tests.pki_helpers import fx_in, new_host, ok_in, openssl_verify, seed_federation

FP = r"fingerprint \(SHA-256\): ([0-9A-F:]{95})"


def _fingerprints(text: str, what: str) -> list[str]:
    return re.findall(rf"{what} {FP}", text)


def test_seed_flow_runs_without_prompts(tmp_path):
    fed = seed_federation(tmp_path)  # its commands get no terminal: a prompt would fail them
    agg = Layout(fed.agg)
    assert agg.server("localhost", "crt").is_file() and agg.chain.is_file()
    for name, host in fed.cols.items():
        col = Layout(host)
        assert col.client(name, "crt").is_file()
        assert col.chain.read_bytes() == agg.chain.read_bytes()
        assert not (host / "cert" / "ca").exists(), "a collaborator host never holds the CA"
        assert f"{name},data/{name}" in (host / "plan" / "data.yaml").read_text()
    cols_text = (fed.agg / "plan" / "cols.yaml").read_text()
    assert cols_text.startswith("# Collaborators allowed to join")
    assert "- one" in cols_text and "- two" in cols_text


def test_fingerprints_print_identically_on_both_sides(tmp_path):
    fed = seed_federation(tmp_path, names=("one",))
    text = "\n".join(r.output for r in fed.outputs)
    requests = _fingerprints(text, "request")
    # aggregator request: printed by generate and by certify; collaborator request: by requester and CA.
    assert len(requests) == 4 and requests[0] == requests[1] and requests[2] == requests[3]
    roots = _fingerprints(text, "root CA")
    assert len(roots) == 2 and roots[0] == roots[1], "the importer sees the root fingerprint certify printed"
    certificates = _fingerprints(text, "certificate")
    assert certificates[-1] == certificates[-2], "CA and importer print the same certificate fingerprint"


def _split_chain(chain: Path, out: Path) -> tuple[Path, Path]:
    root, signing = x509.load_pem_x509_certificates(chain.read_bytes())
    from fx_cli.pki.store import pem
    (out / "root.pem").write_bytes(pem(root))
    (out / "signing.pem").write_bytes(pem(signing))
    return out / "root.pem", out / "signing.pem"


def test_chain_and_leaves_verify_with_the_openssl_cli(tmp_path):
    fed = seed_federation(tmp_path)
    agg = Layout(fed.agg)
    checks = [(agg.root_crt, agg.signing_crt, agg.server("localhost", "crt"), "sslserver")]
    for name, host in fed.cols.items():
        root, signing = _split_chain(Layout(host).chain, host)
        checks.append((root, signing, Layout(host).client(name, "crt"), "sslclient"))
    for root, signing, leaf, purpose in checks:
        res = openssl_verify(root, signing, leaf, purpose)
        assert res.returncode == 0 and res.stdout.strip().endswith(": OK"), res.stdout + res.stderr
    wrong = openssl_verify(agg.root_crt, agg.signing_crt, agg.server("localhost", "crt"), "sslclient")
    assert wrong.returncode != 0, "the aggregator certificate is for servers only"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keys_are_0600_and_private_folders_0700(tmp_path):
    fed = seed_federation(tmp_path)
    keys = list((fed.agg / "cert").rglob("*.key")) + [h / "cert" / "client" / f"col_{n}.key"
                                                      for n, h in fed.cols.items()]
    assert len(keys) == 5
    for key in keys:
        assert _mode(key) == 0o600, key
        assert _mode(key.parent) == 0o700, key.parent
        assert b"PRIVATE KEY" in key.read_bytes()


def test_no_package_holds_a_private_key(tmp_path):
    fed = seed_federation(tmp_path, names=("one",))
    request = zipfile.ZipFile(fed.cols["one"] / "col_one_to_agg_cert_request.zip")
    signed = zipfile.ZipFile(fed.agg / "agg_to_col_one_signed_cert.zip")
    assert request.namelist() == ["col_one.csr"]
    assert sorted(signed.namelist()) == ["cert_chain.crt", "client/col_one.crt"]
    for zf in (request, signed):
        for name in zf.namelist():
            assert b"PRIVATE KEY" not in zf.read(name)


def test_certificates_carry_the_documented_key_hash_extensions_and_validity(tmp_path):
    fed = seed_federation(tmp_path, names=("one",))
    agg = Layout(fed.agg)
    root, signing = (x509.load_pem_x509_certificate(p.read_bytes()) for p in (agg.root_crt, agg.signing_crt))
    server = x509.load_pem_x509_certificate(agg.server("localhost", "crt").read_bytes())
    client = x509.load_pem_x509_certificate(agg.client("one", "crt").read_bytes())
    for cert in (root, signing, server, client):
        assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey) and cert.public_key().curve.name == "secp384r1"
        assert cert.signature_hash_algorithm.name == "sha384"
        assert cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    days = lambda c: (c.not_valid_after_utc - c.not_valid_before_utc).days  # noqa: E731
    assert (days(root), days(signing), days(server), days(client)) == (3650, 1825, 365, 365)
    assert signing.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    for leaf, eku in ((server, ExtendedKeyUsageOID.SERVER_AUTH), (client, ExtendedKeyUsageOID.CLIENT_AUTH)):
        assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
        assert leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
        assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [eku]
        aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
        assert aki == signing.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_aggregator_san_holds_the_fqdn_every_extra_name_and_address(tmp_path):
    host = new_host(tmp_path, "agg")
    ok_in(host, "workspace", "certify")
    ok_in(host, "aggregator", "generate-cert-request", "--fqdn", "Agg.Example.org", "--san", "localhost",
          "--san", "agg", "--ip", "127.0.0.1", "--ip", "::1")
    res = ok_in(host, "aggregator", "certify", "--fqdn", "agg.example.org", "-s")
    assert "CN=agg.example.org; SAN: DNS:agg.example.org, DNS:localhost, DNS:agg, IP:127.0.0.1, IP:::1" in res.output
    assert "warning: signing without confirmation" in res.stderr


def test_generating_a_request_again_keeps_the_existing_key(tmp_path):
    host = new_host(tmp_path, "col")
    ok_in(host, "collaborator", "generate-cert-request", "-n", "one", "-x")
    key = host / "cert" / "client" / "col_one.key"
    before = key.read_bytes()
    res = ok_in(host, "collaborator", "generate-cert-request", "-n", "one", "-x")
    assert "kept the existing private key cert/client/col_one.key" in res.output
    assert key.read_bytes() == before and not (host / "col_one_to_agg_cert_request.zip").exists()


def test_write_private_key_never_overwrites(tmp_path):
    from fx_cli.errors import FxError
    from fx_cli.pki.keys import new_private_key
    from fx_cli.pki.store import write_private_key

    path = tmp_path / "private" / "k.key"
    write_private_key(path, new_private_key())
    before = path.read_bytes()
    try:
        write_private_key(path, new_private_key())
    except FxError as err:
        assert "never overwrites a private key" in err.message and str(path) in err.message
    else:
        raise AssertionError("an existing key was overwritten")
    assert path.read_bytes() == before and _mode(path) == 0o600 and _mode(path.parent) == 0o700


def test_workspace_certify_refuses_an_existing_ca_and_force_moves_it_aside(tmp_path):
    host = new_host(tmp_path, "agg")
    ok_in(host, "workspace", "certify")
    layout = Layout(host)
    old_key, old_chain = layout.root_key.read_bytes(), layout.chain.read_bytes()
    res = fx_in(host, "workspace", "certify")
    assert res.exit_code == 1 and "a certificate authority already exists" in res.stderr and "--force" in res.stderr
    assert layout.root_key.read_bytes() == old_key
    res = ok_in(host, "workspace", "certify", "--force")
    assert "the old CA was moved to cert/ca.replaced-" in res.stderr
    assert layout.chain.read_bytes() != old_chain
    moved = next((host / "cert").glob("ca.replaced-*"))
    assert (moved / "ca" / "root-ca" / "private" / "root-ca.key").read_bytes() == old_key
    assert (moved / "cert_chain.crt").read_bytes() == old_chain and _mode(moved) == 0o700
    ok_in(host, "workspace", "certify", "--force")  # within the same second: a second, separate folder
    assert len(list((host / "cert").glob("ca.replaced-*"))) == 2


def test_bad_names_are_refused_at_the_parameter_with_the_rule(tmp_path):
    host = new_host(tmp_path, "ws")
    cases = [("collaborator", "generate-cert-request", "-n", "Bad_Name"),
             ("collaborator", "create", "-n", "-lead", "-s"),
             ("collaborator", "certify", "-n", "x" * 64),
             ("collaborator", "remove", "-n", "a.b"),
             ("aggregator", "generate-cert-request", "--fqdn", "bad_host.example"),
             ("aggregator", "generate-cert-request", "--san", "under_score")]
    for args in cases:
        res = fx_in(host, *args)
        assert res.exit_code == 2, (args, res.all)
        assert "lower-case letters, digits and '-'" in res.stderr, (args, res.stderr)
    res = fx_in(host, "aggregator", "generate-cert-request", "--ip", "300.1.1.1")
    assert res.exit_code == 2 and "is not an IPv4 or IPv6 address" in res.stderr
    assert not (host / "cert" / "client").exists() and not (host / "cert" / "server").exists()


def test_certify_without_silent_asks_and_declining_signs_nothing(tmp_path):
    fed = seed_federation(tmp_path, names=())
    col = new_host(tmp_path, "col")
    ok_in(col, "collaborator", "generate-cert-request", "-n", "three")
    pkg = str(col / "col_three_to_agg_cert_request.zip")
    res = fx_in(fed.agg, "collaborator", "certify", "--request-pkg", pkg, input="n\n")
    assert res.exit_code == 1 and "not signed" in res.stderr
    assert "Sign this certificate?" in res.output and "CN=three; SAN: DNS:three" in res.output
    assert not Layout(fed.agg).client("three", "crt").exists() and "three" not in (fed.agg / "plan/cols.yaml").read_text()
    res = fx_in(fed.agg, "collaborator", "certify", "--request-pkg", pkg, input="y\n")
    assert res.exit_code == 0, res.all
    assert Layout(fed.agg).client("three", "crt").exists() and "- three" in (fed.agg / "plan/cols.yaml").read_text()


def test_certify_with_a_name_signs_the_local_request(tmp_path):
    host = new_host(tmp_path, "agg")
    ok_in(host, "workspace", "certify")
    ok_in(host, "collaborator", "generate-cert-request", "-n", "local", "-x")
    ok_in(host, "collaborator", "certify", "-n", "local", "-s")
    ok_in(host, "aggregator", "generate-cert-request")  # FQDN=localhost in the tests
    ok_in(host, "aggregator", "certify", "-s")
    assert Layout(host).client("local", "crt").is_file() and (host / "agg_to_col_local_signed_cert.zip").is_file()
    res = ok_in(host, "pki", "check")
    assert "all certificates are in order" in res.output


def test_collaborator_create_keeps_comments_and_other_lines(tmp_path):
    host = new_host(tmp_path, "ws")
    data = host / "plan" / "data.yaml"
    data.write_text("# collaborator_name,data_path\n# keep me, please\none,1\ntwo,2\n")
    ok_in(host, "collaborator", "create", "-n", "one", "-d", "shard-a")
    res = fx_in(host, "collaborator", "create", "-n", "three", input="\n")
    assert res.exit_code == 0 and "Data path [data/three]" in res.output
    assert data.read_text() == "# collaborator_name,data_path\n# keep me, please\none,shard-a\ntwo,2\nthree,data/three\n"


def test_collaborator_remove_takes_it_out_of_cols_yaml(tmp_path):
    fed = seed_federation(tmp_path)
    cols = fed.agg / "plan" / "cols.yaml"
    res = ok_in(fed.agg, "collaborator", "remove", "-n", "one")
    assert "no revocation list" in res.output
    assert cols.read_text() == "# Collaborators allowed to join (fx collaborator certify adds them).\ncollaborators:\n  - two\n"
    res = fx_in(fed.agg, "collaborator", "remove", "-n", "one")
    assert res.exit_code == 1 and "'one' is not in plan/cols.yaml" in res.stderr


def test_pki_commands_outside_a_workspace_say_where_to_run_them(tmp_path):
    res = fx_in(tmp_path, "workspace", "certify")
    assert res.exit_code == 1 and "is not an fx workspace: it has no plan/plan.yaml" in res.stderr
    assert "cd into a workspace folder" in res.stderr


def test_fingerprints_are_printed_verbatim_never_as_emoji(capsys):
    from fx_cli.cli.pki_cmds import _fingerprint

    _fingerprint("request", "DF:AB:BE:[red]:CD")  # ':AB:' is a rich emoji code, '[red]' markup
    assert capsys.readouterr().out == "request fingerprint (SHA-256): DF:AB:BE:[red]:CD\n"
