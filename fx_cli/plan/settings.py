"""Typed settings of the core sections (aggregator, collaborator, network).

These dataclasses are the schema: unknown keys and wrong types in
``<section>.settings`` are reported against them.  Keys OpenFL accepts but fx
does not need are kept for compatibility and documented as ignored.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal, Optional, TypeVar, Union

from fx_cli.privacy.settings import PrivacySettings
from fx_cli.secagg.settings import SecAggSettings

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


@dataclass(frozen=True)
class AggregatorSettings:
    rounds_to_train: int = 10
    init_state_path: str = "save/init.pbuf"
    best_state_path: str = "save/best.pbuf"
    last_state_path: str = "save/last.pbuf"
    persist_checkpoint: bool = True
    persistent_db_path: str = "local_state/aggregator.db"
    write_logs: bool = False
    log_memory_usage: bool = False
    save_native_model: bool = False
    # Which aggregated metric picks best_state_path, and which direction is better.
    best_metric: str = "accuracy"
    best_metric_higher_is_better: bool = True
    # Seconds to wait for a collaborator that never joined before ending the run.
    join_deadline: float = 600.0
    # Seconds without a heartbeat after which a collaborator is considered gone.
    heartbeat_timeout: float = 120.0
    # Seconds a collaborator silent past heartbeat_timeout (paused, asleep, cut off) may take to come back before
    # a run that needs it fails; policies that tolerate absentees go on without it meanwhile.
    rejoin_deadline: float = 600.0
    # Upper bound on one round, in seconds (None: no bound beyond heartbeats).
    round_deadline: Optional[float] = None
    # After the last round, every collaborator validates the final aggregated model (reported as "final").
    final_evaluation: bool = True
    # How claimed data sizes become weights (fx_cli/aggregator/claims.py): clip_to_median, equal or claimed.
    data_size_policy: Literal["clip_to_median", "equal", "claimed"] = "clip_to_median"
    data_size_median_multiple: float = 10.0
    # Declared maximum data size per collaborator ("*": everyone not listed).
    data_size_limits: dict[str, int] = field(default_factory=dict)
    # Accepted for OpenFL compatibility; fx keeps no tensor DB rounds.
    db_store_rounds: int = 2
    use_delta_updates: bool = False
    secure_aggregation: bool = False
    single_col_cert_common_name: Optional[str] = None
    # Read-only status API and live page: "HOST:PORT" (port 0: any free port) or "off". Loopback is plain HTTP;
    # any other host needs use_tls and is served over TLS (client certificate of this CA, or the start token).
    status_address: str = "127.0.0.1:0"
    # Tamper-evident audit log in logs/audit.jsonl, its head signed by the aggregator's key at each round end.
    audit_log: bool = True
    # {metric, mode: max|min, min_delta, patience, target}: end the run early (fx_cli/aggregator/stopping.py).
    early_stopping: Optional[dict[str, Any]] = None
    # {min_samples, fx_versions: ">=0.1,<2", max_update_norm, max_data_size}: who may take part
    # (fx_cli/aggregator/eligibility.py); checked at join and on every training result.
    eligibility: Optional[dict[str, Any]] = None
    # {strategy: random|performance|resource, ...}: each round's cohort (fx_cli/aggregator/selection.py).
    selection: Optional[dict[str, Any]] = None


@dataclass(frozen=True)
class CollaboratorSettings:
    opt_treatment: Literal["RESET", "CONTINUE_LOCAL", "CONTINUE_GLOBAL"] = "RESET"
    use_delta_updates: bool = False
    heartbeat_interval: float = 5.0
    write_logs: bool = False
    log_memory_usage: bool = False
    db_store_rounds: int = 1


@dataclass(frozen=True)
class NetworkSettings:
    agg_addr: str = "auto"
    agg_port: Union[int, str] = "auto"
    use_tls: bool = True
    require_client_auth: bool = True
    cert_folder: str = "cert"
    # First retry delay in seconds; retries back off exponentially with jitter.
    client_reconnect_interval: float = 1.0
    # Give up reconnecting after this many seconds without reaching the aggregator.
    reconnect_deadline: float = 300.0
    # Largest chunk of a streamed tensor, in MiB.
    chunk_size_mib: float = 4.0
    # Model downloads/uploads the aggregator serves at once (memory vs. parallelism; others queue).
    max_concurrent_transfers: int = 2
    # What a receiver buffers of each stream it has not read yet, in MiB (at least two chunks); 0: gRPC sizes it
    # from the measured bandwidth-delay product (faster on long fast links; memory grows with it).
    stream_window_mib: float = 8.0
    # A collaborator's upload of at least this many MiB goes over a connection of its own, closed after it: the
    # aggregator's gRPC keeps a few MiB of what each connection received until it closes, which would grow its
    # memory with the number of collaborators. 0: every upload over the collaborator's one connection.
    upload_connection_mib: float = 16.0
    transport_protocol: Literal["grpc"] = "grpc"
    hash_salt: Any = "auto"
    enable_atomic_connections: bool = False
    tls_ciphers: Optional[str] = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class UpstreamSettings:
    """A middle (regional) aggregator: this workspace's aggregator is a collaborator of the level above."""

    # The parent's plan (from the parent's workspace archive), relative to the workspace.
    plan: str = "plan/upstream.yaml"
    # This region's collaborator name at the parent (the name in its client certificate and the parent's cols.yaml).
    name: str = ""
    # Rounds with this region's sites for each round of the parent.
    local_rounds: int = 1


CORE_SETTINGS: dict[str, type] = {
    "aggregator": AggregatorSettings,
    "collaborator": CollaboratorSettings,
    "network": NetworkSettings,
    "privacy": PrivacySettings,
    "upstream": UpstreamSettings,
    "secure_aggregation": SecAggSettings,
}


_S = TypeVar("_S", bound="DataclassInstance")


def settings_from(cls: type[_S], values: dict[str, Any]) -> _S:
    """Build a settings dataclass from an already validated mapping."""
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in known})
