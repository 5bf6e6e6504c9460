"""Helpers for the PKI tests: workspaces per host, the scripted seed flow, planted certificates, a test gRPC service."""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import subprocess
import zipfile
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import grpc

from fx_cli.pki import ca, certs
from fx_cli.pki.certs import Names, Role
from fx_cli.pki.keys import new_private_key
from fx_cli.pki.store import Layout, pem, write_private_key, write_public
from fx_cli.pki.authz import authorize, peer_common_name
from tests.conftest import Result, run_fx

SERVICE = "fxtest.Identity"
METHOD = f"/{SERVICE}/Whoami"


@contextlib.contextmanager
def inside(path: Path) -> Iterator[Path]:
    """Run the block with ``path`` as the current folder (each folder stands for one host)."""
    old = Path.cwd()
    os.chdir(path)
    try:
        yield path
    finally:
        os.chdir(old)


def fx_in(path: Path, *args: str, input: str | None = None) -> Result:
    """``fx ARGS`` run in-process from ``path``."""
    with inside(path):
        return run_fx(*args, input=input)


def ok_in(path: Path, *args: str) -> Result:
    """Like ``fx_in`` but the command must succeed."""
    res = fx_in(path, *args)
    assert res.exit_code == 0, f"fx {' '.join(args)}: {res.all}"
    return res


def new_host(root: Path, name: str) -> Path:
    """A fresh no-op workspace standing for one host."""
    ws = root / name
    res = run_fx("workspace", "create", "--prefix", str(ws), "--template", "no-op")
    assert res.exit_code == 0, res.all
    return ws


@dataclass
class Federation:
    """Folders of the seed flow: the aggregator (also the CA) and one folder per collaborator."""

    agg: Path
    cols: dict[str, Path] = field(default_factory=dict)
    outputs: list[Result] = field(default_factory=list)


def seed_federation(root: Path, names: tuple[str, ...] = ("one", "two")) -> Federation:
    """The whole seed flow, scripted, without prompts."""
    fed = Federation(new_host(root, "agg"))

    def run(path: Path, *args: str) -> None:
        fed.outputs.append(ok_in(path, *args))

    run(fed.agg, "workspace", "certify")
    run(fed.agg, "aggregator", "generate-cert-request", "--fqdn", "localhost", "--san", "localhost",
        "--ip", "127.0.0.1")
    run(fed.agg, "aggregator", "certify", "--fqdn", "localhost", "-s")
    for name in names:
        host = fed.cols[name] = new_host(root, f"col-{name}")
        run(host, "collaborator", "create", "-n", name, "-d", f"data/{name}", "-s")
        run(host, "collaborator", "generate-cert-request", "-n", name, "-s")
        package = host / f"col_{name}_to_agg_cert_request.zip"
        run(fed.agg, "collaborator", "certify", "--request-pkg", str(package), "-s")
        run(host, "collaborator", "certify", "--import", str(fed.agg / f"agg_to_col_{name}_signed_cert.zip"))
    return fed


def plant_leaf(layout: Layout, names: Names, role: Role, *, issuer: certs.Issuer | None = None,
               not_before: dt.datetime | None = None, days: int = 365, stem: str | None = None) -> Path:
    """Write a new key and a certificate for ``names`` into ``layout``; returns the certificate path."""
    signing = issuer or ca.load_signing(layout)
    key = new_private_key()
    cert = ca.issue(signing, key.public_key(), names, role, not_before=not_before, days=days)
    stem = stem or (f"agg_{names.common_name}" if role == "server" else f"col_{names.common_name}")
    folder = layout.root / ("server" if role == "server" else "client")
    for old in (folder / f"{stem}.key", folder / f"{stem}.crt"):
        old.unlink(missing_ok=True)  # a test re-planting over its own files
    write_private_key(folder / f"{stem}.key", key)
    write_public(folder / f"{stem}.crt", pem(cert))
    return folder / f"{stem}.crt"


def expired_start(days_ago: int = 10) -> dt.datetime:
    """A start date such that a 2-day certificate ended ``days_ago - 2`` days ago."""
    return certs.now() - dt.timedelta(days=days_ago)


def openssl_verify(root: Path, signing: Path, leaf: Path, purpose: str) -> subprocess.CompletedProcess[str]:
    """``openssl verify -x509_strict -purpose P -CAfile root -untrusted signing leaf``."""
    return subprocess.run(["openssl", "verify", "-x509_strict", "-purpose", purpose, "-CAfile", str(root),
                           "-untrusted", str(signing), str(leaf)], capture_output=True, text=True, timeout=30)


def make_zip(path: Path, members: list[tuple[str, bytes, int]]) -> Path:
    """A zip with exactly these (name, data, unix mode) members, hostile ones included."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes, to prove nothing was written."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _whoami(cols: list[str], tls: bool) -> Callable[[bytes, grpc.ServicerContext], bytes]:
    def handler(request: bytes, context: grpc.ServicerContext) -> bytes:
        authorize(context, request.decode(), cols, tls=tls)
        return (peer_common_name(context) or "").encode()
    return handler


@contextlib.contextmanager
def identity_server(credentials: grpc.ServerCredentials | None, cols: list[str]) -> Iterator[int]:
    """A real gRPC server on 127.0.0.1 (port 0) whose one method calls ``authorize``; yields the port."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.unary_unary_rpc_method_handler(_whoami(cols, credentials is not None))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Whoami": handler}),))
    port = (server.add_secure_port("127.0.0.1:0", credentials) if credentials
            else server.add_insecure_port("127.0.0.1:0"))
    server.start()
    try:
        yield port
    finally:
        server.stop(grace=None)


def whoami(target: str, credentials: grpc.ChannelCredentials | None, claimed: str) -> str:
    """Call the test method claiming ``claimed``; returns the CN the server saw."""
    channel = grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
    with channel:
        return channel.unary_unary(METHOD)(claimed.encode(), timeout=10).decode()
