"""Collaborator side: install a signed package after checking it against the local key."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from fx_cli.errors import FxError
from fx_cli.pki.certs import names_of
from fx_cli.pki.fingerprint import fingerprint
from fx_cli.pki.keys import key_matches
from fx_cli.pki.packages import SignedPackage, read_signed_package
from fx_cli.pki.store import Layout, pem, read_key, write_public
from fx_cli.pki.verify import chain_problem, eku_problem, issued_by, validity_problem

FRESH_HINT = "ask the aggregator operator to sign your current request again and send the new package"


@dataclass(frozen=True)
class Installed:
    """Where an imported certificate went, with fingerprints to compare out of band."""

    name: str
    cert_path: Path
    chain_path: Path
    fingerprint: str
    root_fingerprint: str


def _package_problems(pkg: SignedPackage) -> list[str]:
    problems = []
    cn = names_of(pkg.cert).common_name
    if cn != pkg.name:
        problems.append(f"the certificate's CN {cn!r} differs from its file name col_{pkg.name}.crt")
    purpose = eku_problem(pkg.cert, "client")
    problems += [f"the certificate {purpose}"] if purpose else []
    chain = chain_problem(pkg.cert, pkg.chain, "the package's cert_chain.crt")
    problems += [f"the certificate {chain}"] if chain else []
    when = validity_problem(pkg.cert, warn_days=0)
    problems += [f"the certificate {when}"] if when else []
    return problems


def _root(chain: list[x509.Certificate]) -> x509.Certificate:
    return next(c for c in chain if issued_by(c, c))


def _check_local_chain(layout: Layout, pkg: SignedPackage, source: Path) -> None:
    """Refuse to swap this host's trust anchor for another federation's without being told."""
    if layout.chain.exists() and layout.chain.read_bytes().strip() != pkg.chain_pem.strip():
        raise FxError(f"{source}: its cert_chain.crt differs from {layout.show(layout.chain)} already here "
                      "(a certificate from a different CA)",
                      f"if this host really joins a new federation, move {layout.show(layout.chain)} away "
                      "and import again")


def import_signed(layout: Layout, package: Path) -> Installed:
    """Verify ``agg_to_col_<name>_signed_cert.zip`` against the local key and install it under ``cert/``."""
    pkg = read_signed_package(package)
    key_path = layout.client(pkg.name, "key")
    key = read_key(key_path, f"import the package on the host where `fx collaborator generate-cert-request "
                             f"-n {pkg.name}` ran (it holds {layout.show(key_path)})")
    problems = _package_problems(pkg)
    if not key_matches(key, pkg.cert):
        problems.insert(0, f"the certificate does not match the private key {layout.show(key_path)}")
    if problems:
        raise FxError(f"refusing to install {package}: " + "; ".join(problems), FRESH_HINT)
    _check_local_chain(layout, pkg, package)
    cert_path = layout.client(pkg.name, "crt")
    write_public(cert_path, pem(pkg.cert))
    write_public(layout.chain, pkg.chain_pem)
    return Installed(pkg.name, cert_path, layout.chain, fingerprint(pkg.cert), fingerprint(_root(pkg.chain)))
