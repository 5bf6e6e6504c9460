"""One rule for TLS failures while retrying: certain ones fail at once; a connection closed during set-up
('Socket closed': a restart, or a rejected client certificate) is retried, unless it repeats and the local
certificate explains it. Real aggregator, real mutual TLS, certificates from two real CAs."""
from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path
from typing import Iterator

import grpc
import pytest

from fx_cli.aggregator.reset import reset_state
from fx_cli.errors import FxError
from fx_cli.pki.diagnose import CERTAIN, POSSIBLE, local_rejection, tls_failure_kind
from fx_cli.pki.store import Layout
from fx_cli.transport.chunks import chunk_bytes
from fx_cli.transport.client import RetryPolicy, Retrier, open_channel, rpc_failure
from fx_cli.transport.methods import FederationStub
from fx_cli.transport.serde import Caller, PingRequest
from tests.runtime_helpers import aggregator_thread, edit_plan, make_workspace


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A federation's workspace, and a copy of it whose 'one' holds a certificate from another federation's CA."""
    root = tmp_path_factory.mktemp("tls")
    ws = make_workspace(root / "fed", ["one"], rounds=1)
    other = make_workspace(root / "other", ["one"], rounds=1)
    rogue = root / "rogue"
    shutil.copytree(ws, rogue)
    for ext in ("crt", "key"):
        shutil.copyfile(other / "cert" / "client" / f"col_one.{ext}", rogue / "cert" / "client" / f"col_one.{ext}")
    return ws, rogue


@contextlib.contextmanager
def fresh_aggregator(ws: Path) -> Iterator[None]:
    """The aggregator of ``ws`` in a thread, on a new run (the module's tests share the workspace)."""
    reset_state(ws / "local_state" / "aggregator.db", ws / "logs" / "aggregator_metrics.jsonl")
    with aggregator_thread(ws):
        yield


def raw_stub(ws: Path, client_host: Path, addr: str = "localhost") -> tuple[grpc.Channel, FederationStub, str]:
    """A channel as 'one' with ``client_host``'s key pair, built without fx's own local checks."""
    from fx_cli.plan import load_plan

    port = load_plan(ws / "plan" / "plan.yaml").network.agg_port
    layout, target = Layout(client_host), f"{addr}:{port}"
    creds = grpc.ssl_channel_credentials(Layout(ws).chain.read_bytes(), layout.client("one", "key").read_bytes(),
                                         layout.client("one", "crt").read_bytes())
    channel = open_channel(target, creds, chunk_bytes(1))
    return channel, FederationStub(channel), target


def ping(stub: FederationStub) -> None:
    stub.ping(PingRequest(Caller("one", "x"), b""), timeout=5)


def test_a_rejected_client_certificate_is_retried_only_until_the_local_check_explains_it(
        federation: tuple[Path, Path]) -> None:
    ws, rogue = federation
    with fresh_aggregator(ws):
        channel, stub, target = raw_stub(ws, rogue)
        with pytest.raises(grpc.RpcError) as raw:
            ping(stub)
        assert tls_failure_kind(raw.value) == POSSIBLE, raw.value.details()
        tries: list[float] = []
        retrier = Retrier(RetryPolicy(0.05, 30), target, sleep=tries.append,
                          suspect=lambda err: local_rejection(target, rogue, "one"))
        with pytest.raises(FxError) as err:
            retrier.call("a ping", lambda: ping(stub))
        channel.close()
        run_collaborator_to_finish(ws)
    assert len(tries) == 1, "explained on the second failure, not retried on"
    assert "rejected this collaborator's certificate during the TLS handshake" in err.value.message
    assert "cert/client/col_one.crt was issued by" in err.value.message and "fx collaborator certify" in err.value.hint


def test_a_closed_connection_with_a_valid_local_certificate_is_retried_to_the_deadline(
        federation: tuple[Path, Path]) -> None:
    ws, rogue = federation
    with fresh_aggregator(ws):
        channel, stub, target = raw_stub(ws, rogue)
        checked: list[str] = []

        def suspect(err: grpc.RpcError) -> FxError | None:
            checked.append(err.details())
            return local_rejection(target, ws, "one")  # this host's own certificate is fine: not the cause

        retrier = Retrier(RetryPolicy(0.05, 1.0), target, suspect=suspect)
        with pytest.raises(FxError) as err:
            retrier.call("a ping", lambda: ping(stub))
        channel.close()
        run_collaborator_to_finish(ws)
    assert checked and "gave up after 1 s" in err.value.message
    assert "kept closing during set-up" in err.value.hint and "fx collaborator ping" in err.value.hint


def test_certain_tls_failures_fail_at_once_and_are_explained(federation: tuple[Path, Path], tmp_path: Path) -> None:
    ws, _ = federation
    with fresh_aggregator(ws):
        channel, stub, target = raw_stub(ws, ws, addr="127.0.0.1")  # not a name the server certificate covers
        tries: list[float] = []
        with pytest.raises(grpc.RpcError) as raw:
            Retrier(RetryPolicy(0.05, 30), target, sleep=tries.append).call("a ping", lambda: ping(stub))
        channel.close()
        run_collaborator_to_finish(ws)
    assert tries == [] and tls_failure_kind(raw.value) == CERTAIN
    assert "does not cover '127.0.0.1'" in rpc_failure(raw.value, target, "one", "a ping").message


def test_the_collaborator_uses_the_local_check_when_its_certificate_goes_bad_during_the_run(
        federation: tuple[Path, Path], tmp_path: Path) -> None:
    """fx's own client refuses a bad certificate before dialling; one replaced on disk mid-run is caught here."""
    from fx_cli.collaborator.loop import client_credentials_for
    from fx_cli.collaborator.session import AggregatorClient
    from fx_cli.plan import load_plan

    ws, rogue = federation
    copy = tmp_path / "copy"
    shutil.copytree(ws, copy)
    edit_plan(copy, network={"reconnect_deadline": 120, "client_reconnect_interval": 0.05})
    plan = load_plan(copy / "plan" / "plan.yaml")
    with fresh_aggregator(ws):
        credentials = client_credentials_for(plan, "one")
        for ext in ("crt", "key"):  # both the running process's view and the disk now disagree with the CA
            shutil.copyfile(rogue / "cert" / "client" / f"col_one.{ext}", copy / "cert" / "client" / f"col_one.{ext}")
        rogue_creds = grpc.ssl_channel_credentials(Layout(copy).chain.read_bytes(),
                                                   (copy / "cert" / "client" / "col_one.key").read_bytes(),
                                                   (copy / "cert" / "client" / "col_one.crt").read_bytes())
        started = time.monotonic()
        with AggregatorClient(plan, "one", rogue_creds) as client, pytest.raises(FxError) as err:
            client.join()
        took = time.monotonic() - started
        run_collaborator_to_finish(ws)
    # Well under reconnect_deadline (120 s), which a retried failure would run into.
    assert credentials is not None and took < 60, took
    assert "rejected this collaborator's certificate" in err.value.message and "was issued by" in err.value.message


def run_collaborator_to_finish(ws: Path) -> None:
    """Let the aggregator of ``ws`` end its one round."""
    from fx_cli.collaborator.loop import CollaboratorRun, run_collaborator

    run_collaborator(CollaboratorRun("one", ws / "plan" / "plan.yaml", ws / "plan" / "data.yaml"))
