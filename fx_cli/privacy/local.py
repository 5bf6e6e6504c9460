"""Local DP at the collaborator: its update is clipped and noised before it leaves the site.

The aggregator (or anyone who sees the upload) then only learns ``base + clip(x - base) + N(0, (zC)²)``;
each round is one Gaussian mechanism on the site's whole data, accounted with q = 1 (the aggregator
knows who took part, so sampling amplifies nothing against it).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from fx_cli.privacy.clipping import clip
from fx_cli.privacy.noise import gaussian, noise_generator


@dataclass
class LocalPrivacy:
    clip_norm: float
    noise_multiplier: float
    rng: np.random.Generator = field(default_factory=noise_generator)

    def apply(self, tensors: Mapping[str, np.ndarray], base: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``base`` + clipped delta + Gaussian noise, tensor by tensor (float32 like the model)."""
        delta = {k: np.asarray(v, np.float64) - np.asarray(base[k], np.float64) for k, v in tensors.items()}
        clipped, _ = clip(delta, self.clip_norm)
        std = self.noise_multiplier * self.clip_norm
        return {k: (np.asarray(base[k], np.float64) + clipped[k] + gaussian(clipped[k].shape, std, self.rng))
                .astype(np.float32) for k in tensors}


def local_privacy(config: Mapping[str, Any]) -> LocalPrivacy | None:
    """The collaborator's local DP step when the plan says ``privacy.settings.mode: local``."""
    from fx_cli.privacy.settings import privacy_of

    settings = privacy_of(config)
    if settings is None or settings.mode != "local":
        return None
    return LocalPrivacy(settings.clip_norm, settings.noise_multiplier)
