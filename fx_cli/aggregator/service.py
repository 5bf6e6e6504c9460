"""``fx aggregator start``: the round engine behind a gRPC server with mutual TLS; serve, drive, say goodbye.

TensorFlow is never imported here: the aggregator only moves float32 arrays.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from fx_cli.aggregator.engine import Engine, EngineOptions, RunResult, open_engine
from fx_cli.aggregator.inputs import aggregator_inputs
from fx_cli.aggregator.eligibility import Eligibility
from fx_cli.aggregator.metrics import RoundReport
from fx_cli.aggregator.outcomes import Observer
from fx_cli.aggregator.peers import GateWatch
from fx_cli.aggregator.servicer import Gate, Servicer
from fx_cli.errors import FxError
from fx_cli.plan import Plan

if TYPE_CHECKING:
    import grpc

__all__ = ["AggregatorRun", "RunResult", "run_aggregator"]
log = logging.getLogger("fx.aggregator")
LOOPBACK = ("localhost", "127.0.0.1", "::1", "[::1]")
# Longest time a finished or failed run waits to tell connected collaborators.
ABORT_GRACE = 15.0


@dataclass(frozen=True)
class AggregatorRun:
    plan_path: Path = Path("plan/plan.yaml")
    cols_path: Path = Path("plan/cols.yaml")
    task_group: str | None = None
    resume: bool = False  # continue a saved run even though the plan changed since


def run_aggregator(run: AggregatorRun, on_round: Callable[[RoundReport], None] = lambda r: None,
                   on_ready: Callable[[str], None] = lambda a: None, observers: Sequence[Observer] = (),
                   watch: GateWatch | None = None) -> RunResult:
    """Serve the federation until every round is done; raise ``FxError`` when it cannot complete.

    ``observers`` get the engine's events; ``watch`` hears of every admitted and refused call.
    """
    plan, cols = aggregator_inputs(run.plan_path, run.cols_path)
    if plan.upstream is not None:
        from fx_cli.topology.region import run_region

        return run_region(plan, cols, run, on_round, on_ready, observers, watch)
    options = EngineOptions(task_group=run.task_group, resume=run.resume, observers=observers)
    with open_engine(plan, cols, options) as engine:
        if isinstance(engine, RunResult):
            return engine
        reports, not_told = serve_engine(plan, cols, run.cols_path, engine, on_round, on_ready, watch)
        return engine.result(reports, not_told)


def serve_engine(plan: Plan, cols: list[str], cols_path: Path, engine: Engine, on_round: Callable[[RoundReport], None],
                 on_ready: Callable[[str], None], watch: GateWatch | None = None) -> tuple[list[RoundReport], list[str]]:
    """The gRPC transport around ``engine``: serve while the engine drives the rounds, then say goodbye."""
    from fx_cli.transport.chunks import chunk_bytes
    from fx_cli.transport.methods import generic_handler
    from fx_cli.transport.server import serve, stream_window

    net, settings = plan.network, plan.aggregator
    credentials, tls_identity = _server_security(plan)
    chunk = chunk_bytes(net.chunk_size_mib)
    poll = min(30.0, max(0.5, settings.heartbeat_timeout / 3))
    gate = Gate(cols, plan.hash, tls_identity, settings.single_col_cert_common_name, cols_path, watch)
    coord = engine.coord
    gate.on_removed = coord.remove_collaborators
    servicer = Servicer(coord, gate, plan.config, plan.federation_id, chunk, poll, engine.pipelines,
                        stall_timeout=settings.heartbeat_timeout, max_transfers=net.max_concurrent_transfers,
                        clock=engine.clock, eligibility=Eligibility.from_settings(settings.eligibility),
                        secagg=engine.secagg, upload_digest=settings.audit_log)
    host = net.agg_addr if net.agg_addr in LOOPBACK else "[::]"
    window = stream_window(net.stream_window_mib, chunk)
    with serve(generic_handler(servicer), f"{host}:{int(net.agg_port)}", credentials, chunk=chunk, window=window,
               max_workers=2 * len(cols) + 8) as port:
        on_ready(f"{net.agg_addr}:{port}")
        log.info("aggregator of %s listening on %s:%d (%s); round %d/%d; collaborators: %s", plan.federation_id,
                 host, port, "mutual TLS" if tls_identity else ("TLS" if credentials else "PLAIN TCP"),
                 min(coord.model.round + 1, coord.rounds_to_train), coord.rounds_to_train, ", ".join(cols))
        log.info("streams: chunks of %s; %s (network.settings.stream_window_mib)", _size(chunk),
                 f"at most {_size(window)} in flight per stream" if window else "gRPC sizes each stream's window")
        try:
            reports = engine.drive(on_round)
        except FxError as err:
            engine.abort(err.message)
            log.error("run ended: %s", err.message)
            coord.await_farewell(min(settings.heartbeat_timeout, ABORT_GRACE))
            raise
        not_told = coord.await_farewell(settings.heartbeat_timeout)
        log.info("model transfers: at most %d at once (network.settings.max_concurrent_transfers: %d)",
                 servicer.transfers.peak, servicer.transfers.limit)
        if not_told:
            log.warning("collaborators %s were not told the run finished (no contact)", ", ".join(not_told))
    return reports, not_told


def _size(nbytes: int) -> str:
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale and nbytes % scale == 0:
            return f"{nbytes // scale:,} {unit}"
    return f"{nbytes:,} bytes"


def _server_security(plan: Plan) -> tuple[grpc.ServerCredentials | None, bool]:
    """(server credentials or None for plain TCP, whether callers are identified by certificate)."""
    net = plan.network
    if not net.use_tls:
        log.warning("network.settings.use_tls is false: collaborators connect over PLAIN TCP, unencrypted and "
                    "without certificates; use this only on a trusted network")
        return None, False
    from fx_cli.pki.tls import server_credentials

    creds = server_credentials(plan.workspace, net.agg_addr, net.require_client_auth, cert_folder=net.cert_folder)
    return creds, net.require_client_auth
