"""Plan validation of the operations rules: early stopping, eligibility, client selection, status address."""
from __future__ import annotations

from typing import Any, Mapping

from fx_cli.errors import FxError, PlanError


def check_ops_rules(config: Mapping[str, Any], file: str) -> list[str]:
    """Problems of ``aggregator.settings.{early_stopping, eligibility, selection, status_address}``."""
    from fx_cli.aggregator.eligibility import Eligibility
    from fx_cli.aggregator.selection import check_rule
    from fx_cli.aggregator.stopping import EarlyStopping
    from fx_cli.status.binding import parse_address

    settings = ((config.get("aggregator") or {}).get("settings") or {})
    if not isinstance(settings, dict):
        return []
    checks = (
        lambda: EarlyStopping.from_settings(settings.get("early_stopping"), ["validation"], "accuracy", True),
        lambda: Eligibility.from_settings(settings.get("eligibility")),
        lambda: check_rule(settings.get("selection")),
        lambda: parse_address(str(settings.get("status_address", "127.0.0.1:0"))),
    )
    problems: list[str] = []
    for check in checks:
        try:
            check()
        except PlanError as err:
            problems += [f"{file}: {p}" for p in err.problems]
        except FxError as err:
            problems.append(f"{file}: {err.message}")
    return problems
