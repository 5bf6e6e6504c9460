"""Splitting one data set N ways for a simulation: ``iid``, ``dirichlet:ALPHA`` (label skew), ``shards:K``.

A data loader opts in with one class method, the *split hook* (``SPLIT_HOOK``)::

    class MyData:
        @classmethod
        def simulation_split(cls, partition: Partition, **settings) -> list[str]:
            labels = my_labels(**settings)           # one label (or 0) per training sample
            sizes = partition.check(labels, "my data set")   # FxError when a collaborator would get nothing
            return [partition.data_path(i) for i in range(partition.count)]

        def __init__(self, data_path=None, **settings):
            if data_path is not None and Partition.is_data_path(data_path):
                partition, index = Partition.from_data_path(data_path)
                rows = partition.indices(my_labels(**settings), index)   # this collaborator's rows
                ...

The hook returns one ``data.yaml``-style value per virtual collaborator; each is then given to the loader's
own constructor, exactly as ``fx collaborator start`` does. Everything is seeded: the same
``(scheme, count, seed)`` gives the same shards in every process.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np

from fx_cli.errors import FxError

SPLIT_HOOK = "simulation_split"
SCHEMES = ("iid", "dirichlet", "shards")
_PREFIX = "partition:"
_SPLITS: dict[tuple["Partition", int, int], list[np.ndarray]] = {}


@dataclass(frozen=True)
class Partition:
    scheme: str  # iid | dirichlet | shards
    count: int  # number of collaborators
    seed: int = 0
    alpha: float = 0.0  # dirichlet concentration (> 0)
    shards_per_collaborator: int = 0  # shards:K

    @classmethod
    def parse(cls, text: str, count: int, seed: int = 0) -> "Partition":
        """``iid``, ``dirichlet:ALPHA`` or ``shards:K``; ``FxError`` with what to write otherwise."""
        scheme, _, arg = text.strip().partition(":")
        hint = "use --partition iid, --partition dirichlet:0.5 (ALPHA > 0) or --partition shards:2 (K >= 1)"
        if count < 1:
            raise FxError(f"--collaborators must be at least 1, got {count}", "simulate 1 or more collaborators")
        if scheme == "iid" and not arg:
            return cls("iid", count, seed)
        if scheme == "dirichlet":
            try:
                alpha = float(arg)
            except ValueError:
                raise FxError(f"--partition {text}: ALPHA must be a number", hint) from None
            if not (alpha > 0 and math.isfinite(alpha)):
                raise FxError(f"--partition {text}: ALPHA must be > 0 (got {arg})", hint)
            return cls("dirichlet", count, seed, alpha=alpha)
        if scheme == "shards":
            try:
                k = int(arg)
            except ValueError:
                raise FxError(f"--partition {text}: K must be a whole number", hint) from None
            if k < 1:
                raise FxError(f"--partition {text}: K must be at least 1 (got {k})", hint)
            return cls("shards", count, seed, shards_per_collaborator=k)
        raise FxError(f"unknown partition scheme {text!r} (known: iid, dirichlet:ALPHA, shards:K)", hint)

    def describe(self) -> str:
        arg = f":{self.alpha:g}" if self.scheme == "dirichlet" else (
            f":{self.shards_per_collaborator}" if self.scheme == "shards" else "")
        return f"{self.scheme}{arg}"

    # --- data paths handed to loaders ---------------------------------------------------------

    def data_path(self, index: int) -> str:
        """The data path that names collaborator ``index`` (0-based) of this partition."""
        return f"{_PREFIX}{self.describe()}:{self.count}:{self.seed}:{index}"

    @staticmethod
    def is_data_path(value: object) -> bool:
        return isinstance(value, str) and value.startswith(_PREFIX)

    @classmethod
    def from_data_path(cls, value: str) -> tuple["Partition", int]:
        try:
            *spec, count, seed, index = value[len(_PREFIX):].split(":")
            return cls.parse(":".join(spec), int(count), int(seed)), int(index)
        except ValueError:
            raise FxError(f"malformed simulation data path {value!r}", "data paths of this form are made by "
                          "fx simulate; do not write them by hand") from None

    # --- the split ----------------------------------------------------------------------------

    def assignment(self, labels: np.ndarray) -> np.ndarray:
        """The collaborator (0..count-1) of every sample, as a deterministic function of labels and seed."""
        labels = np.asarray(labels).reshape(-1)
        n = len(labels)
        rng = np.random.default_rng(self.seed)
        owner = np.empty(n, dtype=np.int64)
        if self.scheme == "iid":
            order = rng.permutation(n)
            for col, part in enumerate(np.array_split(order, self.count)):
                owner[part] = col
        elif self.scheme == "dirichlet":
            for value in np.unique(labels):
                rows = rng.permutation(np.flatnonzero(labels == value))
                shares = rng.dirichlet(np.full(self.count, self.alpha))
                cuts = (np.cumsum(shares)[:-1] * len(rows)).astype(np.int64)
                for col, part in enumerate(np.split(rows, cuts)):
                    owner[part] = col
        else:
            order = np.argsort(labels, kind="stable")
            pieces = np.array_split(order, self.count * self.shards_per_collaborator)
            for slot, piece in enumerate(rng.permutation(len(pieces))):
                owner[pieces[piece]] = slot // self.shards_per_collaborator
        return owner

    def indices(self, labels: np.ndarray, index: int) -> np.ndarray:
        """The rows of collaborator ``index`` (the split is computed once per process and data set)."""
        labels = np.ascontiguousarray(labels).reshape(-1)
        key = (self, len(labels), zlib.crc32(labels.data.cast("B")))
        rows = _SPLITS.get(key)
        if rows is None:
            owner = self.assignment(labels)
            order = np.argsort(owner, kind="stable")
            bounds = np.searchsorted(owner[order], np.arange(self.count + 1))
            rows = [order[bounds[i]:bounds[i + 1]] for i in range(self.count)]
            _SPLITS.clear()  # one data set at a time: a worker runs one plan
            _SPLITS[key] = rows
        return rows[index]

    def check(self, labels: np.ndarray, what: str) -> list[int]:
        """Samples per collaborator; ``FxError`` naming the numbers when any collaborator would get none."""
        sizes = np.bincount(self.assignment(labels), minlength=self.count).tolist()
        empty = [i for i, size in enumerate(sizes) if size == 0]
        if empty:
            raise FxError(f"{len(empty)} of {self.count} collaborators would get no data under --partition "
                          f"{self.describe()} ({what}: {len(np.asarray(labels).reshape(-1))} samples; first empty: "
                          f"collaborator {empty[0] + 1})",
                          "simulate fewer collaborators (--collaborators), use a larger ALPHA or fewer shards per "
                          "collaborator, or use --partition iid")
        return [int(s) for s in sizes]


def split_data_paths(loader_cls: type, partition: Partition, settings: dict[str, object]) -> list[str]:
    """Each virtual collaborator's data path from the loader's split hook; ``FxError`` naming it when missing."""
    hook = getattr(loader_cls, SPLIT_HOOK, None)
    if not callable(hook):
        raise FxError(f"the data loader {loader_cls.__module__}.{loader_cls.__qualname__} has no '{SPLIT_HOOK}' "
                      "class method, so fx simulate cannot split its data",
                      f"add `@classmethod def {SPLIT_HOOK}(cls, partition, **settings) -> list[str]` to it (see "
                      "fx_cli/simulate/partition.py and README: Simulation), or run without --collaborators/"
                      "--partition to use the collaborators and data paths of plan/data.yaml")
    paths = hook(partition, **settings)
    if not isinstance(paths, list) or len(paths) != partition.count or not all(isinstance(p, str) for p in paths):
        raise FxError(f"{loader_cls.__qualname__}.{SPLIT_HOOK} must return a list of {partition.count} data paths "
                      "(strings)", "return one data path per collaborator, e.g. partition.data_path(i)")
    return paths
