"""Checking settings mappings against dataclasses and constructor signatures."""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import typing
from typing import Any, Iterable

_NO_CHECK = object()


def suggest(key: str, known: Iterable[str]) -> str:
    """`` (did you mean X?)`` when a close match exists, else empty."""
    match = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
    return f" (did you mean {match[0]}?)" if match else ""


def describe(tp: Any) -> str:
    """A short human name for a type annotation."""
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        return " or ".join(describe(a) for a in typing.get_args(tp))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def type_ok(value: Any, tp: Any) -> bool:
    """Whether a YAML value fits a (simple) annotation."""
    if tp is Any or tp is _NO_CHECK or tp is inspect.Parameter.empty:
        return True
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        return any(type_ok(value, a) for a in typing.get_args(tp))
    if origin is typing.Literal:
        return value in typing.get_args(tp)
    if origin in (list, tuple, typing.Sequence):
        return isinstance(value, (list, tuple))
    if origin is dict:
        return isinstance(value, dict)
    if tp is type(None):
        return value is None
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(tp, type):
        return isinstance(value, tp)
    return True


def schema_of(cls: type) -> tuple[dict[str, Any], set[str], bool]:
    """(annotations by key, required keys, open) for a settings dataclass or a class constructor."""
    if dataclasses.is_dataclass(cls):
        hints = typing.get_type_hints(cls)
        needed = {f.name for f in dataclasses.fields(cls)
                  if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls)}, needed, False
    signature = inspect.signature(cls)
    try:
        hints = typing.get_type_hints(getattr(cls, "__init__"))
    except Exception:  # unresolvable annotations: check names only
        hints = {}
    params: dict[str, Any] = {}
    required: set[str] = set()
    open_ = False
    for name, p in signature.parameters.items():
        if p.kind is p.VAR_KEYWORD:
            open_ = True
        elif p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            params[name] = hints.get(name, _NO_CHECK)
            if p.default is p.empty:
                required.add(name)
    return params, required, open_


def check_settings(settings: dict[str, Any], cls: type, where: str,
                   injected: Iterable[str] = ()) -> list[str]:
    """Problems of ``settings`` against ``cls``; ``injected`` keys are supplied by fx itself."""
    params, required, open_ = schema_of(cls)
    injected = set(injected)
    problems = []
    for key, value in settings.items():
        if key not in params:
            if not open_:
                problems.append(f"{where}.{key}: unknown key{suggest(key, params)}")
            continue
        if key in injected:
            problems.append(f"{where}.{key}: set by fx at run time; remove it from the plan")
        elif not type_ok(value, params[key]):
            problems.append(f"{where}.{key}: expected {describe(params[key])}, got {value!r}")
    for key in sorted(required - injected - set(settings)):
        problems.append(f"{where}.{key}: required key missing")
    return problems
