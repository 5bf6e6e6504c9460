"""The two-tier certificate authority: creating it, loading it, issuing leaves."""
from __future__ import annotations

import datetime as dt
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from fx_cli.errors import FxError
from fx_cli.pki import certs
from fx_cli.pki.certs import Issuer, Names, Role
from fx_cli.pki.keys import PublicKey, key_matches, new_private_key
from fx_cli.pki.store import CERTIFY_HINT, Layout, pem, read_cert, read_certs, read_key, write_private_key, write_public

ROOT_DAYS = 3650
SIGNING_DAYS = 1825
LEAF_DAYS = 365
CA_HOST_HINT = "run this on the aggregator host, which holds the certificate authority (`fx workspace certify`)"


@dataclass(frozen=True)
class CaBundle:
    """Root and signing CA, each with its key."""

    root: Issuer
    signing: Issuer

    def chain_pem(self) -> bytes:
        """``cert_chain.crt``: the root, then the signing CA."""
        return pem(self.root.cert, self.signing.cert)


def new_ca(*, not_before: dt.datetime | None = None, root_days: int = ROOT_DAYS,
           signing_days: int = SIGNING_DAYS) -> CaBundle:
    """A fresh root and signing CA (in memory); a random tag tells federations' CAs apart."""
    start = not_before or certs.now()
    tag = secrets.token_hex(3)
    root_key, signing_key = new_private_key(), new_private_key()
    root = Issuer(certs.root_ca(root_key, f"fx Root CA {tag}", not_before=start, days=root_days), root_key)
    signing_cert = certs.signing_ca(signing_key, f"fx Signing CA {tag}", root, not_before=start, days=signing_days)
    return CaBundle(root, Issuer(signing_cert, signing_key))


def issue(signing: Issuer, public_key: PublicKey, names: Names, role: Role, *,
          not_before: dt.datetime | None = None, days: int = LEAF_DAYS) -> x509.Certificate:
    """Sign a leaf for ``names``; ``not_before``/``days`` let tests mint expired certificates."""
    start = not_before or certs.now()
    return certs.leaf(public_key, names, role, signing, not_before=start, not_after=start + days * certs.DAY)


def existing_ca_files(layout: Layout) -> list[Path]:
    """CA files already present (a CA, or a chain imported from one)."""
    paths = [layout.root_key, layout.signing_key, layout.root_crt, layout.signing_crt, layout.chain]
    return [p for p in paths if p.exists()]


def _move_aside(layout: Layout) -> Path:
    """Rename the old CA out of the way so that no key is ever overwritten or deleted."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    backup = Path(tempfile.mkdtemp(prefix=f"ca.replaced-{stamp}-", dir=layout.root))  # 0700, never reused
    if layout.ca_dir.exists():
        os.rename(layout.ca_dir, backup / "ca")
    if layout.chain.exists():
        os.rename(layout.chain, backup / layout.chain.name)
    return backup


def write_ca(layout: Layout, bundle: CaBundle, force: bool = False) -> Path | None:
    """Install ``bundle`` under ``cert/``; returns where an old CA was moved with ``force``."""
    existing = existing_ca_files(layout)
    if existing and not force:
        raise FxError(f"a certificate authority already exists ({layout.show(existing[0])})",
                      "keep it; pass --force only to start a new CA (every certificate it issued stops working)")
    backup = _move_aside(layout) if existing else None
    write_private_key(layout.root_key, bundle.root.key)
    write_private_key(layout.signing_key, bundle.signing.key)
    write_public(layout.root_crt, pem(bundle.root.cert))
    write_public(layout.signing_crt, pem(bundle.signing.cert))
    write_public(layout.chain, bundle.chain_pem())
    return backup


def load_signing(layout: Layout) -> Issuer:
    """The signing CA certificate and key, checked to belong together."""
    cert = read_cert(layout.signing_crt, CA_HOST_HINT)
    key = read_key(layout.signing_key, CA_HOST_HINT)
    if not key_matches(key, cert):
        raise FxError(f"{layout.show(layout.signing_key)} does not match {layout.show(layout.signing_crt)}",
                      "restore the signing CA files from the same `fx workspace certify` run")
    return Issuer(cert, key)


def load_chain(layout: Layout) -> list[x509.Certificate]:
    """The trusted chain, ``cert/cert_chain.crt``."""
    return read_certs(layout.chain, CERTIFY_HINT)
