"""The plan's ``simulation`` section (used by ``fx simulate`` only; real federations ignore it).

Importing this module is cheap: plan validation runs it for every plan.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

# Settings that only mean something when collaborators connect over the network: a simulation has no sockets
# and no certificates, so naming them under ``simulation.settings`` is a mistake worth a clear message.
REAL_FEDERATION_KEYS = ("agg_addr", "agg_port", "use_tls", "require_client_auth", "cert_folder", "certificate",
                        "certificates", "cert", "key", "ca", "tls_ciphers", "hash_salt", "client_reconnect_interval",
                        "reconnect_deadline", "heartbeat_interval", "heartbeat_timeout", "join_deadline",
                        "single_col_cert_common_name", "max_concurrent_transfers", "chunk_size_mib",
                        "stream_window_mib", "upload_connection_mib")


@dataclass(frozen=True)
class SimulationSettings:
    # Resources of one worker (a Ray actor with --backend ray; a process otherwise).
    worker_cpus: float = 1.0
    worker_memory_mb: int = 0  # 0: no memory reservation


def simulation_of(config: Mapping[str, Any]) -> SimulationSettings:
    section = config.get("simulation") or {}
    values = section.get("settings") or {} if isinstance(section, Mapping) else {}
    known = {f.name for f in fields(SimulationSettings)}
    return SimulationSettings(**{k: v for k, v in values.items() if k in known})


def check_simulation(config: Mapping[str, Any], file: str) -> list[str]:
    """Problems of the ``simulation`` section (empty when absent or valid)."""
    from fx_cli.plan.schema import check_settings

    section = config.get("simulation")
    settings = section.get("settings") if isinstance(section, Mapping) else None
    if not isinstance(settings, Mapping):
        return []  # the section's shape is reported with every other section's
    problems: list[str] = []
    real = [k for k in settings if k in REAL_FEDERATION_KEYS]
    problems += [f"{file}: simulation.settings.{key}: a real-federation setting (ports, certificates, "
                 "connections); a simulation opens no sockets and uses no certificates: remove it here "
                 "(network/aggregator settings keep it for fx aggregator start)" for key in real]
    rest = {k: v for k, v in settings.items() if k not in real}
    problems += check_settings(rest, SimulationSettings, f"{file}: simulation.settings")
    values = simulation_of({"simulation": {"settings": rest}}) if not problems else SimulationSettings()
    if values.worker_cpus <= 0:
        problems.append(f"{file}: simulation.settings.worker_cpus: must be > 0, got {values.worker_cpus}")
    if values.worker_memory_mb < 0:
        problems.append(f"{file}: simulation.settings.worker_memory_mb: must be >= 0, got {values.worker_memory_mb}")
    return problems
