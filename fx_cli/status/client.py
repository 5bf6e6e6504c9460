"""``fx aggregator status``: the documents from the running aggregator's API, else from the saved state."""
from __future__ import annotations

import json
import ssl
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fx_cli.status.binding import read_pointer
from fx_cli.status.saved import read_saved
from fx_cli.status.views import Facts, clients_doc, metrics_doc, status_doc


@dataclass(frozen=True)
class StatusReport:
    source: str  # "live <url>" or "saved state <path>"
    status: dict[str, Any]
    clients: list[dict[str, Any]]
    metrics: list[dict[str, Any]]


def gather(plan: Any, cols: list[str], timeout: float = 5.0) -> StatusReport:
    """Ask the running aggregator (found through local_state/status_server.json); read the saved state if none."""
    from fx_cli.aggregator.operate import pointer_path

    pointer = read_pointer(pointer_path(plan))
    if pointer is not None:
        live = _fetch_all(pointer, plan, timeout)
        if live is not None:
            return live
    db = Path(plan.resolve_path(plan.aggregator.persistent_db_path))
    saved = read_saved(db, plan.workspace / "logs" / "audit.jsonl")
    facts = Facts.from_plan(plan, cols)
    return StatusReport(f"saved state {db}", status_doc(facts, saved, None), clients_doc(facts, saved, None),
                        metrics_doc(saved))


def _fetch_all(pointer: dict[str, Any], plan: Any, timeout: float) -> StatusReport | None:
    url, token = str(pointer["url"]), pointer.get("token")
    context = None
    if url.startswith("https:"):
        from fx_cli.pki.store import Layout

        context = ssl.create_default_context(cafile=str(Layout(plan.workspace, plan.network.cert_folder).chain))
        context.check_hostname = False  # the pointer may name a wildcard bind address; the CA still vouches
    try:
        docs = [_get(f"{url}/{name}", token, context, timeout) for name in ("status", "clients", "metrics")]
    except (OSError, ValueError):
        return None  # not running any more (a stale pointer after kill -9): fall back to the saved state
    return StatusReport(f"live {url}", docs[0], docs[1], docs[2])


def _get(url: str, token: Any, context: ssl.SSLContext | None, timeout: float) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=timeout, context=context) as res:  # noqa: S310 - our own URL
        return json.loads(res.read())
