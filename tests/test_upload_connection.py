"""``network.settings.upload_connection_mib``: a large upload streams over a connection of its own, closed after it.

The aggregator's gRPC keeps part of what a connection has received buffered until that connection closes (about
3-4 MiB each with the default 8 MiB window, measured), so large uploads over the collaborators' long-lived
connections grew the aggregator's memory with their number (``benchmarks/bench_wire.py`` prints the growth from
2 to 8 collaborators). Here: which connection each call arrives on, seen by a real gRPC server, and a real
mutual-TLS federation that uploads this way.
"""
from __future__ import annotations

import contextlib
import re
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import grpc
import numpy as np
import pytest

from fx_cli.aggregator.servicer import READY_KEY
from fx_cli.collaborator.session import AggregatorClient
from fx_cli.plan import load_plan
from fx_cli.transport import codec
from fx_cli.transport.chunks import chunk_bytes
from fx_cli.transport.methods import generic_handler
from fx_cli.transport.serde import (DATA, Caller, Frame, Outcome, PingReply, PingRequest, UploadMeta, UploadReply)
from fx_cli.transport.server import serve
from fx_cli.tensors.pbuf import read_model
from tests.fault_helpers import TIMEOUT, assert_bit_identical, files, killed, processes, uninterrupted_model
from tests.runtime_helpers import final_model, make_workspace, reference_fedavg, run_in_process

MIB = 2**20


class Recorder:
    """A server that answers pings and takes uploads, noting the client address each call came from."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def _note(self, what: str, context: Any) -> None:
        with self.lock:
            self.calls.append((what, context.peer()))

    def ping(self, request: PingRequest, context: Any) -> PingReply:
        self._note("ping", context)
        return PingReply("fed", "hash", True, (), 0, 1, False)

    def upload_results(self, frames: Iterator[Frame | None], context: Any) -> UploadReply:
        header = next(frames)
        assert isinstance(header, UploadMeta)
        if header.tensor_count and not header.eager:
            context.send_initial_metadata(((READY_KEY, "go"),))
        received = sum(memoryview(f).nbytes for f in frames if isinstance(f, DATA))
        self._note("upload", context)
        return UploadReply(Outcome.ACCEPTED, received)

    def _unused(self, request: Any, context: Any) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "not part of this test")

    join = get_tasks = download_model = heartbeat = _unused

    def secagg(self, stage: str, request: Any, context: Any) -> Any:
        return self._unused(request, context)

    def peer(self, what: str, index: int = -1) -> str:
        with self.lock:
            return [p for w, p in self.calls if w == what][index]


def port_of(peer: str) -> int:
    """The client's port in a gRPC peer string (``ipv4:127.0.0.1:5555``, ``ipv6:[::1]:5555``)."""
    match = re.search(r":(\d+)$", peer)
    assert match, peer
    return int(match.group(1))


def connected(port: int) -> bool:
    """Whether a TCP connection with ``port`` at either end is established on this host (loopback only here)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, remote, state = line.split()[1:4]
            if state == "01" and port in (int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16)):
                return True
    return False


def wait_closed(port: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while connected(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def encoded(n: int) -> list[tuple[Any, memoryview]]:
    values = np.arange(n, dtype=np.float32)
    return [codec.encode("w", values, None)]


def meta(round_num: int, tensors: int = 1, task: str = "train") -> UploadMeta:
    return UploadMeta(Caller("one", "h"), round_num, task, 10, {} if tensors else {"acc": 0.5}, tensors)


@contextlib.contextmanager
def recorded_client(root: Path, upload_connection_mib: float) -> Iterator[tuple[Recorder, AggregatorClient]]:
    """A collaborator's client of a plan with ``upload_connection_mib``, and the recording server it calls."""
    ws = make_workspace(root, ["one"], tls=False,
                        network={"upload_connection_mib": upload_connection_mib, "chunk_size_mib": 0.25})
    plan = load_plan(ws / "plan" / "plan.yaml")
    recorder = Recorder()
    with serve(generic_handler(recorder), f"localhost:{plan.network.agg_port}", None, chunk=chunk_bytes(0.25)), \
            AggregatorClient(plan, "one", None) as client:
        client.ping()
        yield recorder, client


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads the host's TCP table (Linux /proc)")
def test_a_large_upload_goes_over_a_connection_of_its_own_which_is_closed_after_it(tmp_path: Path) -> None:
    with recorded_client(tmp_path, 1) as (recorder, client):
        shared = recorder.peer("ping")
        big = encoded(MIB // 4 + 1)  # just over 1 MiB of float32
        assert client.upload(meta(0), big).bytes_received > MIB
        first = recorder.peer("upload")
        assert first != shared
        assert wait_closed(port_of(first)), f"the upload's connection {first} is still open"

        client.upload(meta(1), big)
        assert recorder.peer("upload") not in (first, shared)  # a new connection each time

        client.upload(meta(2), encoded(1000))  # 4 kB: over the shared connection, which stays open throughout
        assert recorder.peer("upload") == shared
        client.upload(meta(3, tensors=0, task="validate"), [])
        assert recorder.peer("upload") == shared
        client.ping()
        assert recorder.peer("ping") == shared and connected(port_of(shared))


def test_with_zero_every_upload_shares_the_one_connection(tmp_path: Path) -> None:
    with recorded_client(tmp_path, 0) as (recorder, client):
        client.upload(meta(0), encoded(MIB))
        assert recorder.peer("upload") == recorder.peer("ping")


def test_a_mutual_tls_federation_uploading_over_connections_of_their_own_gives_fedavg(tmp_path: Path) -> None:
    names = ["one", "two"]
    ws = make_workspace(tmp_path, names, rounds=2, num_params=100_000,
                        network={"upload_connection_mib": 0.1, "chunk_size_mib": 0.05})
    out = run_in_process(ws, names)
    assert not out.errors, out.errors
    expected = reference_fedavg(ws, {"one": 1, "two": 2}, 2)
    for name, array in final_model(ws).items():
        np.testing.assert_allclose(array, expected[name], rtol=1e-6, atol=1e-6)


def test_an_aggregator_killed_mid_upload_on_such_a_connection_resumes_and_ends_bit_identical(tmp_path: Path) -> None:
    """kill -9 while an upload streams over its own connection: the collaborators retry over new connections."""
    names = ["one", "two"]
    settings: dict[str, Any] = dict(rounds=2, num_params=20_000, num_tensors=4,
                                    network={"reconnect_deadline": 60, "upload_connection_mib": 0.01})
    reference = uninterrupted_model(tmp_path / "reference", names, **settings)
    ws = make_workspace(tmp_path / "run", names, **settings)
    with processes(ws) as procs:
        first = procs.aggregator(fault="aggregator:mid_upload#2")
        cols = [procs.collaborator(n) for n in names]
        killed(first)
        assert files(ws / "local_state" / "updates", "*.part-*"), "the kill did not come mid-upload"
        second = procs.aggregator()
        assert second.wait(TIMEOUT) == 0, second.output()
        for col in cols:
            assert col.wait(TIMEOUT) == 0, col.output()
    assert_bit_identical(read_model(ws / "save" / "last.pbuf").tensors, reference)
