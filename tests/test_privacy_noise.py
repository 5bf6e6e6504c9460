"""The shared noise module and update clipping (fixed and adaptive)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from fx_cli.privacy.clipping import AdaptiveClipNorm, clip, delta_noise_multiplier, l2_norm
from fx_cli.privacy.noise import (gaussian, gaussian_delta, gaussian_std, gaussian_std_for, laplace, laplace_scale,
                                  noise_generator)


def test_gaussian_and_laplace_have_the_asked_spread():
    rng = noise_generator(b"seed")
    g, lap = gaussian(200_000, 2.5, rng), laplace(200_000, 1.5, rng)
    assert abs(g.mean()) < 0.03 and g.std() == pytest.approx(2.5, rel=0.01)
    assert abs(lap.mean()) < 0.03 and lap.std() == pytest.approx(1.5 * math.sqrt(2), rel=0.01)
    assert not gaussian((3, 4), 0.0, rng).any()


def test_seeded_generators_repeat_and_unseeded_ones_differ():
    a, b = gaussian(5, 1.0, noise_generator(b"x")), gaussian(5, 1.0, noise_generator(b"x"))
    assert np.array_equal(a, b)
    assert not np.array_equal(gaussian(5, 1.0, noise_generator()), gaussian(5, 1.0, noise_generator()))


def test_scales_and_bad_values():
    assert gaussian_std(2.0, 1.5) == 3.0
    assert laplace_scale(1.0, 0.5) == 2.0
    with pytest.raises(ValueError):
        laplace_scale(1.0, 0.0)
    with pytest.raises(ValueError):
        gaussian(3, -1.0, noise_generator())


def test_analytic_gaussian_is_tighter_than_the_classic_bound_and_exact():
    sigma = gaussian_std_for(0.5, 1e-5)
    assert gaussian_delta(sigma, 0.5) == pytest.approx(1e-5, rel=1e-4)
    assert sigma < math.sqrt(2 * math.log(1.25 / 1e-5)) / 0.5
    assert gaussian_std_for(5.0, 1e-5) < gaussian_std_for(1.0, 1e-5)


def test_clipping_bounds_the_norm_of_every_update():
    rng = np.random.default_rng(0)
    for scale in (1e-3, 0.3, 1.0, 7.0, 1e4):
        delta = {"a": rng.normal(0, scale, (30, 20)).astype(np.float32), "b": rng.normal(0, scale, 7).astype(np.float32)}
        clipped, norm = clip(delta, 1.0)
        assert l2_norm(clipped) <= 1.0 + 1e-12
        assert norm == pytest.approx(math.sqrt(sum(float((v.astype(np.float64) ** 2).sum()) for v in delta.values())))
        if norm <= 1.0:  # small updates pass unchanged
            assert all(np.allclose(clipped[k], delta[k]) for k in delta)


def test_adaptive_clip_norm_moves_towards_the_target_quantile():
    rng = np.random.default_rng(1)
    norms = list(rng.lognormal(mean=math.log(3.0), sigma=0.3, size=200))
    clipper = AdaptiveClipNorm(clip_norm=0.1, target_quantile=0.5, learning_rate=0.2, count_std=0.0)
    for _ in range(200):
        clipper.update(norms, noise_generator(b"r"))
    assert clipper.clip_norm == pytest.approx(float(np.median(norms)), rel=0.1)


def test_the_count_noise_is_paid_for_by_a_larger_update_noise():
    z = delta_noise_multiplier(1.0, 5.0)
    assert z > 1.0 and (z ** -2 + (2 * 5.0) ** -2) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        delta_noise_multiplier(1.0, 0.4)
