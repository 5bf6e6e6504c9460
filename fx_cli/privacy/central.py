"""Central DP at round close: clip each update's delta, sum, add Gaussian noise, average (DP-FedAvg).

Two streaming passes over the spilled updates, one tensor at a time: the first measures each update's
L2 norm over all tensors (the clip needs the whole update), the second writes the next model,
``base + (Σ_i f_i (x_i - base) + N(0, (z_Δ C)²)) / m`` with ``f_i = min(1, C / ‖x_i - base‖)`` and ``m``
the number of collaborators asked to train (fixed, so a dropout does not change the noise's share).
Updates are weighted equally: a data-size weight would let one site's update exceed the clip bound.

The noise stream is seeded from a per-run secret (``local_state/privacy/noise.key``, 0600) and the round,
so a round redone after a crash produces the same model (nothing was released before the commit),
and nobody without that file can predict the noise.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from fx_cli.aggregator.intake import load_spilled
from fx_cli.aggregator.modelstore import RoundModel, write_round_model
from fx_cli.aggregator.state import UpdateRecord
from fx_cli.errors import FxError
from fx_cli.privacy.clipping import clip_factor
from fx_cli.privacy.noise import gaussian, noise_generator

Loader = Callable[[UpdateRecord, str], np.ndarray]


def noise_secret(path: Path) -> bytes:
    """The run's noise seed secret at ``path``, created once (O_EXCL, 0600) and never overwritten."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        data = path.read_bytes()
        if len(data) != 32:
            raise FxError(f"{path}: the differential-privacy noise seed is damaged ({len(data)} bytes, not 32)",
                          "run `fx aggregator reset` to start a new run") from None
        return data
    secret = os.urandom(32)
    try:
        os.write(fd, secret)
        os.fsync(fd)
    finally:
        os.close(fd)
    return secret


def spilled_loader(model: RoundModel) -> Loader:
    """Read tensor ``name`` of a spilled update, checked against its CRC."""
    index = {e.name: i for i, e in enumerate(model.entries)}

    def load(update: UpdateRecord, name: str) -> np.ndarray:
        try:
            return load_spilled(Path(str(update.path)), model, name, update.crcs[index[name]])
        except OSError as err:
            raise FxError(f"round {model.round + 1}: the update of '{update.collaborator}' cannot be read: {err}",
                          "the aggregator's local_state/ disk is damaged; restore it or start a new run") from None
    return load


def update_norms(model: RoundModel, updates: Sequence[UpdateRecord], load: Loader) -> list[float]:
    """‖x_i - base‖₂ over all tensors, for each update."""
    sums = [0.0] * len(updates)
    for name, base in model.tensors():
        b = base.astype(np.float64).ravel()
        for i, u in enumerate(updates):
            d = load(u, name).astype(np.float64).ravel() - b
            sums[i] += float(np.dot(d, d))
    return [math.sqrt(s) for s in sums]


def dp_fedavg_model(model: RoundModel, updates: Sequence[UpdateRecord], target: Path, *, clip_norm: float,
                    noise_std: float, denominator: int, rng: np.random.Generator,
                    load: Loader | None = None) -> tuple[RoundModel, list[float]]:
    """Write the next model (clipped sum + noise, over ``denominator``); return it and the updates' norms."""
    load = load or spilled_loader(model)
    norms = update_norms(model, updates, load)
    factors = [clip_factor(n, clip_norm) for n in norms]

    def tensors() -> Iterator[tuple[str, np.ndarray]]:
        for name, base in model.tensors():
            b = base.astype(np.float64)
            total = gaussian(base.shape, noise_std, rng)
            for u, f in zip(updates, factors):
                total += f * (load(u, name).astype(np.float64) - b)
            yield name, (b + total / denominator).astype(np.float32)

    return write_round_model(target, tensors(), model.round + 1), norms


def round_generator(secret: bytes, round_num: int) -> np.random.Generator:
    """The noise stream of one round."""
    return noise_generator(secret + b"fx-dp-round:" + str(round_num).encode())
