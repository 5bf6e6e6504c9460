"""The closing line about differential privacy, for ``fx aggregator start`` and ``fx simulate``."""
from __future__ import annotations

from typing import Any, Mapping, Sequence


def summary_line(records: Sequence[Mapping[str, Any] | None]) -> str | None:
    """``differential privacy (central): ε=… at δ=… after N round(s), …`` from the last round's privacy record."""
    dp = next((r for r in reversed(records) if r), None)
    if dp is None:
        return None
    rounds = sum(int(e["rounds"]) for e in dp["accountant"])
    return (f"differential privacy ({dp['mode']}): ε={dp['epsilon']:.4g} at δ={dp['delta']:g} after {rounds} "
            f"round(s), noise_multiplier {dp['noise_multiplier']:g}, q={dp['sampling_rate']:.3g}")
