"""Server-optimiser aggregation (FedAvgM, FedAdam, FedYogi, FedAdagrad) over several rounds, against references."""
from __future__ import annotations

import io
import math

import numpy as np
import pytest

from fx_cli.aggregation import FedAdagrad, FedAdam, FedAvgM, FedYogi, WeightedAverage
from fx_cli.errors import FxError
from tests.aggregation_helpers import contributions

SHAPE = (4, 3)
WEIGHTS = [60.0, 25.0, 15.0]
ROUNDS = 5


def _offsets(seed=0):
    """offsets[r][i]: how far collaborator i moves from the global model in round r."""
    rng = np.random.default_rng(seed)
    return [[(0.05 * rng.normal(size=SHAPE)).astype(np.float32) for _ in WEIGHTS] for _ in range(ROUNDS)]


def _run(fn, offsets, x0, rounds):
    """Our function over ``rounds``; returns the global tensor after each round."""
    x, history = x0, []
    for r in rounds:
        updates = [x + off for off in offsets[r]]
        x = fn.aggregate("dense/kernel", x, contributions(updates, WEIGHTS), r + 1)
        history.append(x)
    return history


def _mean_offsets(offsets):
    """The pseudo-gradient of each round: it does not depend on the global model."""
    w = np.asarray(WEIGHTS) / sum(WEIGHTS)
    return [sum(wi * off.astype(np.float64) for wi, off in zip(w, offs)) for offs in offsets]


X0 = np.random.default_rng(42).normal(size=SHAPE).astype(np.float32)


def test_fedavgm_matches_the_closed_form_momentum_sum():
    offsets = _offsets()
    ours = _run(FedAvgM(server_learning_rate=0.7, momentum=0.9), offsets, X0, range(ROUNDS))
    deltas, x = _mean_offsets(offsets), X0.astype(np.float64)
    for t in range(ROUNDS):
        velocity = sum(0.9 ** (t - k) * deltas[k] for k in range(t + 1))
        x = x + 0.7 * velocity
        np.testing.assert_allclose(ours[t], x, rtol=1e-5, atol=1e-6)


def test_fedavgm_without_momentum_is_fedavg():
    offsets = _offsets(1)
    plain = _run(WeightedAverage(), offsets, X0, range(ROUNDS))
    fedavgm = _run(FedAvgM(server_learning_rate=1.0, momentum=0.0), offsets, X0, range(ROUNDS))
    for a, b in zip(plain, fedavgm):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_fedadam_matches_the_closed_form_moments():
    offsets, lr, b1, b2, tau = _offsets(2), 0.05, 0.9, 0.99, 1e-3
    ours = _run(FedAdam(learning_rate=lr, beta_1=b1, beta_2=b2, tau=tau), offsets, X0, range(ROUNDS))
    deltas, x = _mean_offsets(offsets), X0.astype(np.float64)
    for t in range(ROUNDS):
        m = (1 - b1) * sum(b1 ** (t - k) * deltas[k] for k in range(t + 1))
        v = b2 ** (t + 1) * tau ** 2 + (1 - b2) * sum(b2 ** (t - k) * deltas[k] ** 2 for k in range(t + 1))
        x = x + lr * m / (np.sqrt(v) + tau)
        np.testing.assert_allclose(ours[t], x, rtol=1e-4, atol=1e-6)


def test_fedadagrad_matches_the_closed_form_accumulator():
    offsets, lr, tau = _offsets(3), 0.05, 1e-3
    ours = _run(FedAdagrad(learning_rate=lr, tau=tau), offsets, X0, range(ROUNDS))
    deltas, x = _mean_offsets(offsets), X0.astype(np.float64)
    for t in range(ROUNDS):
        v = tau ** 2 + sum(deltas[k] ** 2 for k in range(t + 1))
        x = x + lr * deltas[t] / (np.sqrt(v) + tau)  # beta_1 = 0: the step uses this round's delta
        np.testing.assert_allclose(ours[t], x, rtol=1e-4, atol=1e-6)


def _yogi_reference(deltas, x0, lr, b1, b2, tau):
    """Element by element with Python floats."""
    flat_x = [float(v) for v in x0.reshape(-1)]
    m = [0.0] * len(flat_x)
    v = [tau * tau] * len(flat_x)
    history = []
    for delta in deltas:
        d = delta.reshape(-1)
        for j in range(len(flat_x)):
            g2 = float(d[j]) ** 2
            m[j] = b1 * m[j] + (1 - b1) * float(d[j])
            v[j] = v[j] - (1 - b2) * g2 * math.copysign(1.0, v[j] - g2) * (v[j] != g2)
            flat_x[j] += lr * m[j] / (math.sqrt(v[j]) + tau)
        history.append(np.array(flat_x).reshape(x0.shape))
    return history


def test_fedyogi_matches_an_elementwise_reference():
    offsets, lr, b1, b2, tau = _offsets(4), 0.05, 0.9, 0.99, 1e-3
    ours = _run(FedYogi(learning_rate=lr, beta_1=b1, beta_2=b2, tau=tau), offsets, X0, range(ROUNDS))
    expected = _yogi_reference(_mean_offsets(offsets), X0, lr, b1, b2, tau)
    for a, b in zip(ours, expected):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_fedyogi_second_moment_grows_slower_than_fedadam_on_a_large_update():
    big = [[np.full(SHAPE, 1.0, np.float32)] * 3]
    adam, yogi = FedAdam(), FedYogi()
    _run(adam, big, X0, range(1))
    _run(yogi, big, X0, range(1))
    v_adam, v_yogi = adam.state()["v:dense/kernel"], yogi.state()["v:dense/kernel"]
    # Adam: 0.99 tau^2 + 0.01; Yogi: tau^2 + 0.01 (sign +1 while v < delta^2)
    np.testing.assert_allclose(v_adam, 0.99e-6 + 0.01, rtol=1e-5)
    np.testing.assert_allclose(v_yogi, 1e-6 + 0.01, rtol=1e-5)


def _through_npz(state):
    """What the runtime does: persist the arrays and read them back."""
    buf = io.BytesIO()
    np.savez(buf, **state)
    buf.seek(0)
    with np.load(buf) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize("make", [lambda: FedAvgM(0.5, 0.8), lambda: FedAdam(0.02), lambda: FedYogi(0.02),
                                  lambda: FedAdagrad(0.02, beta_1=0.5)], ids=["fedavgm", "adam", "yogi", "adagrad"])
def test_state_round_trip_mid_training_gives_identical_results(make):
    offsets = _offsets(5)
    straight = _run(make(), offsets, X0, range(ROUNDS))
    first = make()
    halfway = _run(first, offsets, X0, range(2))
    saved = _through_npz(first.state())
    assert saved and all(k.split(":", 1)[1] == "dense/kernel" for k in saved)
    resumed = make()
    resumed.load_state(saved)
    rest = _run(resumed, offsets, halfway[-1], range(2, ROUNDS))
    for a, b in zip(straight, halfway + rest):
        assert a.tobytes() == b.tobytes()


def test_fresh_function_without_state_differs_from_a_resumed_one():
    offsets = _offsets(6)
    first = FedAvgM(1.0, 0.9)
    halfway = _run(first, offsets, X0, range(2))
    resumed, fresh = FedAvgM(1.0, 0.9), FedAvgM(1.0, 0.9)
    resumed.load_state(_through_npz(first.state()))
    a = _run(resumed, offsets, halfway[-1], range(2, 3))[0]
    b = _run(fresh, offsets, halfway[-1], range(2, 3))[0]
    assert not np.allclose(a, b)


def test_state_from_another_function_is_refused_with_a_hint():
    adam = FedAdam()
    _run(adam, _offsets(), X0, range(1))
    with pytest.raises(FxError, match="does not use") as err:
        FedAvgM().load_state(adam.state())
    assert "aggregation_type changed" in err.value.hint


def test_state_with_a_different_shape_is_refused():
    adam = FedAdam()
    adam.load_state({"m:dense/kernel": np.zeros((2, 2), np.float32), "v:dense/kernel": np.ones((2, 2), np.float32)})
    with pytest.raises(FxError, match=r"shape \(2, 2\).*'dense/kernel' has shape \(4, 3\)"):
        _run(adam, _offsets(), X0, range(1))


def test_optimisers_keep_float32_and_average_integer_tensors():
    for fn in (FedAvgM(), FedAdam(), FedYogi(), FedAdagrad()):
        out = fn.aggregate("w", X0, contributions([X0 + 1, X0 - 1, X0], WEIGHTS), 1)
        assert out.dtype == np.float32
        counters = fn.aggregate("step", np.array(10, np.int64),
                                contributions([np.array(12), np.array(14), np.array(14)], WEIGHTS), 1)  # 12.8
        assert counters.dtype == np.int64 and int(counters) == 13
        assert "m:step" not in fn.state() and "momentum:step" not in fn.state()


@pytest.mark.parametrize("make", [lambda: FedAvgM(momentum=1.0), lambda: FedAvgM(server_learning_rate=0),
                                  lambda: FedAdam(beta_2=1.0), lambda: FedYogi(tau=0),
                                  lambda: FedAdagrad(learning_rate=-1)])
def test_invalid_settings_are_refused(make):
    with pytest.raises(ValueError):
        make()
