"""Value ranges of every number in a plan, checked with the other plan problems.

Types are checked against the settings dataclasses (``schema.py``); this
module checks values: a count must be at least one and fit the protocol's
int32 fields, a timeout or deadline must be a positive finite number of
seconds (not zero, negative or NaN), a chunk must fit a gRPC message.  NaN is
refused anywhere in a plan.  Plugin classes (straggler policies, runners,
aggregation functions) declare their own ranges as ``SETTING_RANGES``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

DAY = 86_400.0


@dataclass(frozen=True)
class Range:
    """An inclusive range; ``low_open`` excludes ``low``; ``allow_inf`` accepts +infinity ('no limit')."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    allow_inf: bool = False
    what: str = ""

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is out of range (None when it fits, or is not a number: types are checked elsewhere)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        if isinstance(value, float) and math.isnan(value):
            return f"expected {self.describe()}, got NaN"
        if isinstance(value, float) and math.isinf(value):
            return None if self.allow_inf and value > 0 else f"expected {self.describe()}, got {value}"
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        too_high = self.high is not None and value > self.high
        return f"expected {self.describe()}, got {value!r}" if too_low or too_high else None

    def describe(self) -> str:
        low = "" if self.low is None else (f"above {_fmt(self.low)}" if self.low_open else f"at least {_fmt(self.low)}")
        high = "" if self.high is None else f"at most {_fmt(self.high)}"
        text = " and ".join(p for p in (low, high) if p) or "a finite number"
        if self.allow_inf:
            text += " (or .inf for no limit)"
        return f"{self.what} {text}".strip()


def _fmt(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


def count(high: float, low: float = 1, what: str = "a whole number") -> Range:
    return Range(low, high, what=what)


def seconds(high: float = 30 * DAY, allow_inf: bool = False) -> Range:
    return Range(0, high, low_open=True, allow_inf=allow_inf, what="seconds")


INT32 = 2**31 - 1
CORE_RANGES: dict[str, dict[str, Range]] = {
    "upstream": {"local_rounds": count(10_000)},
    "aggregator": {
        "rounds_to_train": count(1_000_000),
        "join_deadline": seconds(),
        "heartbeat_timeout": seconds(7 * DAY),
        "rejoin_deadline": seconds(30 * DAY),
        "round_deadline": seconds(),
        "db_store_rounds": count(1_000, low=0),
        "data_size_median_multiple": Range(1, 1e6, what="a factor"),
    },
    "collaborator": {
        "heartbeat_interval": seconds(DAY),
        "db_store_rounds": count(1_000, low=0),
    },
    "network": {
        "client_reconnect_interval": seconds(DAY),
        "reconnect_deadline": seconds(),
        "chunk_size_mib": Range(0, 256, low_open=True, what="MiB"),
        "max_concurrent_transfers": count(1_024),
        "stream_window_mib": Range(0, 4_096, what="MiB"),
        "upload_connection_mib": Range(0, 2**30, what="MiB"),
    },
}
TASK_KWARG_RANGES: dict[str, Range] = {
    "epochs": count(100_000),
    "batch_size": count(2**24),
}
# (section, smaller key, section, larger key): the first must be below the second.
ORDERED = (
    ("collaborator", "heartbeat_interval", "aggregator", "heartbeat_timeout"),
    ("network", "client_reconnect_interval", "network", "reconnect_deadline"),
)


def settings_problems(settings: Mapping[str, Any], ranges: Mapping[str, Range], where: str) -> list[str]:
    """Out-of-range values of ``settings`` (keys without a range are not checked here)."""
    return [f"{where}.{key}: {problem}" for key, rng in ranges.items()
            if key in settings and (problem := rng.problem(settings[key])) is not None]


def class_problems(cls: type, settings: Mapping[str, Any], where: str) -> list[str]:
    """Values of a plugin's settings against the ranges the class declares."""
    ranges = getattr(cls, "SETTING_RANGES", None)
    return settings_problems(settings, ranges, where) if isinstance(ranges, dict) else []


def _nans(value: Any, path: str) -> Iterator[str]:
    if isinstance(value, float) and math.isnan(value):
        yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _nans(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _nans(item, f"{path}[{i}]")


def _settings(config: Mapping[str, Any], section: str) -> Mapping[str, Any]:
    value = (config.get(section) or {}).get("settings") if isinstance(config.get(section), dict) else None
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_ranges(config: Mapping[str, Any], file: str) -> list[str]:
    """Every out-of-range number of a merged plan, each with its file and key path."""
    problems: list[str] = []
    for section, ranges in CORE_RANGES.items():
        settings = _settings(config, section)
        problems += settings_problems(settings, ranges, f"{file}: {section}.settings")
        problems += [f"{file}: {section}.settings.{key}: expected a finite number, got {value}"
                     for key, value in settings.items()
                     if key not in ranges and isinstance(value, float) and math.isinf(value)]
    for small_sec, small, big_sec, big in ORDERED:
        a, b = _settings(config, small_sec).get(small), _settings(config, big_sec).get(big)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and _number(a) and _number(b) \
                and 0 < b <= a:
            problems.append(f"{file}: {small_sec}.settings.{small}: {a!r} must be below {big_sec}.settings.{big} "
                            f"({b!r})")
    limits = _settings(config, "aggregator").get("data_size_limits")
    if isinstance(limits, dict):
        problems += [f"{file}: aggregator.settings.data_size_limits.{name}: expected a whole number of samples from "
                     f"1 to 2**53, got {value!r}" for name, value in limits.items()
                     if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 2**53]
    tasks = config.get("tasks")
    for task, spec in (tasks.items() if isinstance(tasks, dict) else ()):
        kwargs = spec.get("kwargs") if isinstance(spec, dict) else None
        if isinstance(kwargs, dict):
            problems += settings_problems(kwargs, TASK_KWARG_RANGES, f"{file}: tasks.{task}.kwargs")
            problems += [f"{file}: tasks.{task}.kwargs.{k}: expected a finite number, got {v!r}"
                         for k, v in kwargs.items() if isinstance(v, float) and math.isinf(v)]
    named = {p.split(": ")[1] for p in problems}
    problems += [f"{file}: {path}: NaN is not a valid value" for path in _nans(dict(config), "") if path not in named]
    return problems
