"""The PKI's only file I/O: the layout under ``cert/``, PEM reading and writing, key file safety."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from fx_cli.errors import FxError
from fx_cli.pki.keys import PrivateKey, key_from_pem, key_to_pem

KEY_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
CERTIFY_HINT = "run `fx workspace certify` on the aggregator host to create the certificate authority"


@dataclass(frozen=True)
class Layout:
    """Paths of the OpenFL-compatible certificate layout of one workspace."""

    workspace: Path
    folder: str = "cert"

    @property
    def root(self) -> Path:
        return self.workspace / self.folder

    @property
    def chain(self) -> Path:
        return self.root / "cert_chain.crt"

    @property
    def ca_dir(self) -> Path:
        return self.root / "ca"

    @property
    def root_crt(self) -> Path:
        return self.ca_dir / "root-ca.crt"

    @property
    def root_key(self) -> Path:
        return self.ca_dir / "root-ca" / "private" / "root-ca.key"

    @property
    def signing_crt(self) -> Path:
        return self.ca_dir / "signing-ca.crt"

    @property
    def signing_key(self) -> Path:
        return self.ca_dir / "signing-ca" / "private" / "signing-ca.key"

    def server(self, fqdn: str, ext: str) -> Path:
        return self.root / "server" / f"agg_{fqdn}.{ext}"

    def client(self, name: str, ext: str) -> Path:
        return self.root / "client" / f"col_{name}.{ext}"

    def request_package(self, name: str) -> Path:
        return self.workspace / f"col_{name}_to_agg_cert_request.zip"

    def signed_package(self, name: str) -> Path:
        return self.workspace / f"agg_to_col_{name}_signed_cert.zip"

    def show(self, path: Path) -> str:
        """``path`` relative to the workspace, for messages."""
        try:
            return str(path.relative_to(self.workspace))
        except ValueError:
            return str(path)


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and make it 0700, whatever the umask."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    path.chmod(PRIVATE_DIR_MODE)
    return path


def write_private_key(path: Path, key: PrivateKey) -> None:
    """Write a new key file, 0600; an existing file is never overwritten."""
    private_dir(path.parent)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, KEY_MODE)
    except FileExistsError:
        raise FxError(f"{path} already exists; fx never overwrites a private key",
                      "keep using that key, or move it away yourself if you really mean to replace it") from None
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), KEY_MODE)
        fh.write(key_to_pem(key))
        fh.flush()
        os.fsync(fh.fileno())


def write_public(path: Path, data: bytes) -> None:
    """Atomically write a certificate, request or package (mode 0644)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.chmod(0o644)
    os.replace(tmp, path)


def pem(*objs: x509.Certificate | x509.CertificateSigningRequest) -> bytes:
    """PEM encoding of certificates or requests, concatenated."""
    return b"".join(o.public_bytes(Encoding.PEM) for o in objs)


def _read(path: Path, hint: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FxError(f"{path} not found", hint) from None
    except OSError as err:
        raise FxError(f"cannot read {path}: {err.strerror}", "check the file's permissions") from None


def read_certs(path: Path, hint: str = CERTIFY_HINT) -> list[x509.Certificate]:
    """Every certificate in a PEM file (at least one)."""
    data = _read(path, hint)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as err:
        raise FxError(f"{path} is not a PEM certificate file ({err})", hint) from None
    return certs


def read_cert(path: Path, hint: str = CERTIFY_HINT) -> x509.Certificate:
    """The first certificate of a PEM file."""
    return read_certs(path, hint)[0]


def read_csr(path: Path, hint: str) -> x509.CertificateSigningRequest:
    """A PEM certificate request."""
    return parse_csr(_read(path, hint), str(path))


def parse_csr(data: bytes, source: str) -> x509.CertificateSigningRequest:
    """Parse PEM request bytes, naming ``source`` on failure."""
    try:
        return x509.load_pem_x509_csr(data)
    except ValueError as err:
        raise FxError(f"{source} is not a PEM certificate request ({err})",
                      "ask the collaborator for a fresh package from `fx collaborator generate-cert-request`") from None


def read_key(path: Path, hint: str) -> PrivateKey:
    """A PEM private key."""
    return key_from_pem(_read(path, hint), str(path))

