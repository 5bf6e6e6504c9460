"""Both certificate packages are read as hostile zips, and their contents are checked before use."""
from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from fx_cli.pki import ca
from fx_cli.pki.certs import Names, request
from fx_cli.pki.keys import new_private_key
from fx_cli.pki.requests import zip_bytes
from fx_cli.pki.store import Layout, pem
from tests.pki_helpers import Federation, expired_start, fx_in, make_zip, new_host, ok_in, seed_federation, snapshot

FILE, LINK = 0o100644, 0o120777
BIG = b"\n" * (70 * 1024)  # over the 64 KiB limit on a certificate or request


@pytest.fixture
def fed(tmp_path: Path) -> Federation:
    return seed_federation(tmp_path, names=("one",))


def _csr_pem(name: str = "one", dns: tuple[str, ...] = ()) -> bytes:
    return pem(request(new_private_key(), Names(name, dns), "client"))


def _refused_without_writing(root: Path, host: Path, *args: str) -> str:
    before = snapshot(root)
    res = fx_in(host, *args)
    assert res.exit_code == 1, res.all
    assert snapshot(root) == before, "a refused package changed files"
    return res.stderr


REQUEST_CASES = {
    "absolute path": ([("/tmp/col_one.csr", b"x", FILE)], "has an absolute path"),
    "dot-dot": ([("../col_one.csr", b"x", FILE)], "climbs out of the target with '..'"),
    "symlink": ([("col_one.csr", b"/etc/passwd", LINK)], "is a symbolic link"),
    "unexpected member": ([("col_one.csr", b"csr", FILE), ("col_one.key", b"key", FILE)],
                          "unexpected member 'col_one.key'"),
    "oversized member": ([("col_one.csr", BIG, FILE)], "over the 65,536-byte limit"),
    "two requests": ([("col_one.csr", b"a", FILE), ("col_two.csr", b"b", FILE)], "expected exactly one member"),
}


@pytest.mark.parametrize("case", sorted(REQUEST_CASES))
def test_hostile_request_package_is_refused_and_nothing_is_written(fed, tmp_path, case):
    members, reason = REQUEST_CASES[case]
    zip_path = make_zip(tmp_path / "col_one_to_agg_cert_request.zip", members)
    err = _refused_without_writing(tmp_path, fed.agg, "collaborator", "certify", "-r", str(zip_path), "-s")
    assert "refused" in err and reason in err, err


def _signed_members(fed: Federation) -> dict[str, bytes]:
    agg = Layout(fed.agg)
    return {"client/col_one.crt": agg.client("one", "crt").read_bytes(), "cert_chain.crt": agg.chain.read_bytes()}


SIGNED_CASES = {
    "absolute path": (lambda m: [("/client/col_one.crt", m["client/col_one.crt"], FILE),
                                 ("cert_chain.crt", m["cert_chain.crt"], FILE)], "has an absolute path"),
    "dot-dot": (lambda m: [("client/../../col_one.crt", m["client/col_one.crt"], FILE)],
                "climbs out of the target with '..'"),
    "symlink": (lambda m: [("client/col_one.crt", m["client/col_one.crt"], FILE),
                           ("cert_chain.crt", b"/etc/ssl/certs/ca-certificates.crt", LINK)], "is a symbolic link"),
    "unexpected member": (lambda m: [*[(k, v, FILE) for k, v in m.items()], ("client/col_one.key", b"k", FILE)],
                          "unexpected member 'client/col_one.key'"),
    "oversized member": (lambda m: [("client/col_one.crt", m["client/col_one.crt"], FILE),
                                    ("cert_chain.crt", m["cert_chain.crt"] + BIG, FILE)], "over the 65,536-byte limit"),
    "missing chain": (lambda m: [("client/col_one.crt", m["client/col_one.crt"], FILE)],
                      "member 'cert_chain.crt' is missing"),
}


@pytest.mark.parametrize("case", sorted(SIGNED_CASES))
def test_hostile_signed_package_is_refused_and_nothing_is_written(fed, tmp_path, case):
    build, reason = SIGNED_CASES[case]
    zip_path = make_zip(tmp_path / "agg_to_col_one_signed_cert.zip", build(_signed_members(fed)))
    err = _refused_without_writing(tmp_path, fed.cols["one"], "collaborator", "certify", "--import", str(zip_path))
    assert "refused" in err and reason in err, err


def _tampered(csr_pem: bytes) -> bytes:
    der = bytearray(x509.load_pem_x509_csr(csr_pem).public_bytes(Encoding.DER))
    der[-5] ^= 0x01  # inside the signature's last integer: still parses, no longer verifies
    body = base64.encodebytes(bytes(der)).replace(b"\n", b"")
    lines = [body[i:i + 64] for i in range(0, len(body), 64)]
    return b"-----BEGIN CERTIFICATE REQUEST-----\n" + b"\n".join(lines) + b"\n-----END CERTIFICATE REQUEST-----\n"


BAD_REQUESTS = {
    "cn differs from file name": (lambda: _csr_pem("two"), "its CN 'two' differs from the name 'one'"),
    "extra names": (lambda: _csr_pem("one", ("localhost",)), "asks for extra names ['localhost']"),
    "bad signature": (lambda: _tampered(_csr_pem("one")), "its signature does not verify"),
    "not a request": (lambda: b"hello", "is not a PEM certificate request"),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_request_that_is_not_what_it_claims_is_not_signed(fed, tmp_path, case):
    make, reason = BAD_REQUESTS[case]
    zip_path = tmp_path / "col_one_to_agg_cert_request.zip"
    zip_path.write_bytes(zip_bytes({"col_one.csr": make()}))
    err = _refused_without_writing(tmp_path, fed.agg, "collaborator", "certify", "-r", str(zip_path), "-s")
    assert reason in err, err


def _package(path: Path, cert: bytes, chain: bytes) -> Path:
    path.write_bytes(zip_bytes({"client/col_one.crt": cert, "cert_chain.crt": chain}))
    return path


def test_import_refuses_a_certificate_for_another_key(fed, tmp_path):
    agg = Layout(fed.agg)
    other = ca.issue(ca.load_signing(agg), new_private_key().public_key(), Names("one"), "client")
    pkg = _package(tmp_path / "pkg.zip", pem(other), agg.chain.read_bytes())
    err = _refused_without_writing(tmp_path, fed.cols["one"], "collaborator", "certify", "--import", str(pkg))
    assert "the certificate does not match the private key cert/client/col_one.key" in err


def test_import_refuses_a_certificate_that_does_not_chain_to_the_included_ca(fed, tmp_path):
    foreign = ca.new_ca()
    pkg = _package(tmp_path / "pkg.zip", Layout(fed.cols["one"]).client("one", "crt").read_bytes(), foreign.chain_pem())
    err = _refused_without_writing(tmp_path, fed.cols["one"], "collaborator", "certify", "--import", str(pkg))
    assert "was issued by 'fx Signing CA" in err and "a different CA from the one in the package's cert_chain.crt" in err


def test_import_refuses_an_expired_certificate(fed, tmp_path):
    col = Layout(fed.cols["one"])
    key_pub = x509.load_pem_x509_certificate(col.client("one", "crt").read_bytes()).public_key()
    old = ca.issue(ca.load_signing(Layout(fed.agg)), key_pub, Names("one"), "client",  # type: ignore[arg-type]
                   not_before=expired_start(10), days=2)
    pkg = _package(tmp_path / "pkg.zip", pem(old), col.chain.read_bytes())
    err = _refused_without_writing(tmp_path, fed.cols["one"], "collaborator", "certify", "--import", str(pkg))
    assert "the certificate expired on" in err


def test_import_refuses_to_replace_a_different_trusted_chain(fed, tmp_path):
    host = tmp_path / "col-copy"
    shutil.copytree(fed.cols["one"], host)
    Layout(host).chain.write_bytes(ca.new_ca().chain_pem())
    pkg = fed.agg / "agg_to_col_one_signed_cert.zip"
    err = _refused_without_writing(tmp_path, host, "collaborator", "certify", "--import", str(pkg))
    assert "its cert_chain.crt differs from cert/cert_chain.crt already here" in err


def test_import_on_a_host_without_the_key_names_the_key_file(fed, tmp_path):
    host = new_host(tmp_path, "elsewhere")
    err = _refused_without_writing(tmp_path, host, "collaborator", "certify", "--import",
                                   str(fed.agg / "agg_to_col_one_signed_cert.zip"))
    assert "cert/client/col_one.key not found" in err and "generate-cert-request -n one" in err


def test_importing_the_same_package_twice_is_harmless(fed):
    res = ok_in(fed.cols["one"], "collaborator", "certify", "--import", str(fed.agg / "agg_to_col_one_signed_cert.zip"))
    assert "installed cert/client/col_one.crt" in res.output
