"""Reading the JSON-lines logs that ``fx plot`` draws (no matplotlib here)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fx_cli.errors import FxError

SITE_SUFFIX = "_metrics.jsonl"
AGGREGATOR_FILE = "aggregator" + SITE_SUFFIX


@dataclass
class Series:
    """x (rounds) and y values of one line in a chart."""

    x: list[int] = field(default_factory=list)
    y: list[float] = field(default_factory=list)

    def add(self, x: int, y: float) -> None:
        self.x.append(x)
        self.y.append(y)


@dataclass
class RunData:
    """Everything ``fx plot`` draws."""

    metrics: dict[str, Series] = field(default_factory=dict)  # "task/metric" -> per round (training rounds only)
    final: dict[str, float] = field(default_factory=dict)  # the final model's evaluation
    seconds: Series = field(default_factory=Series)
    bytes_in: Series = field(default_factory=Series)
    bytes_out: Series = field(default_factory=Series)
    participants: Series = field(default_factory=Series)
    sites: dict[str, dict[str, Series]] = field(default_factory=dict)  # site -> "task/metric" -> per round


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines file; an incomplete last line (a killed writer) is skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FxError(f"{path}: not found", "run it in the aggregator's workspace after at least one round, or "
                                            "give --metrics") from None
    out: list[dict[str, Any]] = []
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            if number == len(lines):
                break
            raise FxError(f"{path}:{number}: not a JSON record", "repair or remove that line") from None
        if isinstance(record, dict):
            out.append(record)
    return out


def load_run(aggregator: Path, sites: dict[str, Path]) -> RunData:
    """The aggregator's per-round records plus each site's task records."""
    data = RunData()
    for rec in read_jsonl(aggregator):
        if rec.get("final"):
            data.final.update({k: float(v) for k, v in rec.get("metrics", {}).items()})
            continue
        r = int(rec["round"])
        for key, value in rec.get("metrics", {}).items():
            data.metrics.setdefault(key, Series()).add(r, float(value))
        data.seconds.add(r, float(rec.get("seconds", 0.0)))
        data.bytes_in.add(r, float(rec.get("bytes_in", 0)))
        data.bytes_out.add(r, float(rec.get("bytes_out", 0)))
        data.participants.add(r, float(len(rec.get("participants", []))))
    for site, path in sorted(sites.items()):
        per: dict[str, Series] = {}
        for rec in read_jsonl(path):
            if rec.get("final"):
                continue
            for key, value in rec.get("metrics", {}).items():
                per.setdefault(f"{rec.get('task', '?')}/{key}", Series()).add(int(rec["round"]), float(value))
        data.sites[site] = per
    return data


def site_logs(logs: Path) -> dict[str, Path]:
    """``<name>_metrics.jsonl`` files of collaborators run from this workspace (not the aggregator's)."""
    return {p.name[:-len(SITE_SUFFIX)]: p for p in sorted(logs.glob("*" + SITE_SUFFIX)) if p.name != AGGREGATOR_FILE}
