"""The RDP accountant written in fx against two independent references: Google's dp-accounting and quadrature."""
from __future__ import annotations

import math

import pytest

from fx_cli.privacy.accountant import GaussianEvent, RdpAccountant
from fx_cli.privacy.rdp import epsilon_from_rdp, log_erfc, rdp_curve, rdp_subsampled_gaussian

# Test-only reference (pins attrs<24, so it is not one of fx's requirements): `make install` installs it
# from requirements-dp-reference.txt.
import dp_accounting
import mpmath
from dp_accounting.rdp import rdp_privacy_accountant

SETTINGS = [  # (z, q, rounds): full participation, cross-device scale, tiny q with many rounds, few rounds
    (1.0, 1.0, 50),
    (1.1, 0.01, 1000),
    (2.0, 0.001, 10_000),
    (5.0, 0.05, 5000),
    (0.7, 0.02, 3),
    (1.3, 0.25, 40),
]


def reference_epsilon(z: float, q: float, rounds: int, delta: float) -> float:
    acc = rdp_privacy_accountant.RdpAccountant()
    event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z))
    acc.compose(dp_accounting.SelfComposedDpEvent(event, rounds))
    return float(acc.get_epsilon(delta))


@pytest.mark.parametrize("z,q,rounds", SETTINGS)
def test_epsilon_matches_google_dp_accounting_within_one_percent(z, q, rounds):
    acc = RdpAccountant(delta=1e-5)
    acc.compose(q, z, rounds)
    ours, ref = acc.epsilon(), reference_epsilon(z, q, rounds, 1e-5)
    assert ref > 0
    assert abs(ours - ref) / ref < 0.01, (ours, ref)


def test_the_issue_example_q1_z1_50_rounds_is_about_57():
    acc = RdpAccountant(delta=1e-5)
    acc.compose(1.0, 1.0, 50)
    assert acc.epsilon() == pytest.approx(57.3, abs=0.05)


@pytest.mark.parametrize("q,z,order", [(0.1, 0.8, 1.1), (0.1, 0.8, 1.5), (0.3, 0.5, 1.3), (0.01, 1.1, 2.5),
                                       (0.3, 0.5, 7.5), (0.02, 0.7, 30.5), (0.05, 2.0, 12.0)])
def test_fractional_and_integer_orders_match_numerical_integration(q, z, order):
    """Where dp-accounting gives up (small z, orders near 1) fx's series still converges to the true value."""
    mp = mpmath
    mp.mp.dps = 30

    def density_ratio_moment(x):  # E_{x~N(0,z²)} [((1-q) + q·exp((2x-1)/(2z²)))^α]
        return mp.npdf(x, 0, z) * ((1 - q) + q * mp.exp((2 * x - 1) / (2 * z * z))) ** order

    a = mp.quad(density_ratio_moment, [-mp.inf, -10, 0, 0.5, 1, 10, 40, mp.inf])
    assert rdp_subsampled_gaussian(q, z, order) == pytest.approx(float(mp.log(a) / (order - 1)), rel=1e-9)


def test_extreme_settings_stay_finite_and_monotone():
    eps = [epsilon_from_rdp(rdp_curve(1e-4, z, 10**6), 1e-6)[0] for z in (0.3, 0.6, 1.0, 3.0, 10.0)]
    assert all(math.isfinite(e) and e >= 0 for e in eps)
    assert eps == sorted(eps, reverse=True)
    assert log_erfc(40.0) == pytest.approx(-1600 - math.log(40 * math.sqrt(math.pi)), abs=1e-3)
    assert rdp_subsampled_gaussian(0.0, 1.0, 2.0) == 0.0
    assert rdp_subsampled_gaussian(0.5, 0.0, 2.0) == math.inf


def test_state_round_trips_and_composition_is_additive():
    acc = RdpAccountant(delta=1e-5)
    for _ in range(30):
        acc.compose(0.1, 1.2)
    acc.compose(1.0, 3.0, 5)
    again = RdpAccountant.from_state(1e-5, acc.state())
    assert again.events == [GaussianEvent(0.1, 1.2, 30), GaussianEvent(1.0, 3.0, 5)]
    assert again.epsilon() == acc.epsilon()
    assert acc.rounds == 35


def test_rounds_within_is_the_last_round_under_the_budget():
    acc = RdpAccountant(delta=1e-5)
    acc.compose(1.0, 1.0, 3)
    allowed = acc.rounds_within(20.0, 1.0, 1.0, 100)
    assert acc.epsilon([GaussianEvent(1.0, 1.0, allowed)]) <= 20.0
    assert acc.epsilon([GaussianEvent(1.0, 1.0, allowed + 1)]) > 20.0
    assert acc.rounds_within(1000.0, 1.0, 1.0, 7) == 7
    assert acc.rounds_within(0.1, 1.0, 1.0, 7) == 0
