"""The budget check at start: the warning for a meaningless ε, max_epsilon below one round, resuming from records."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fx_cli.errors import FxError
from fx_cli.privacy.run import RunPrivacy, sampling_rate, start_privacy
from fx_cli.privacy.settings import PrivacySettings


def config(**settings: object) -> dict:
    return {"privacy": {"settings": settings}}


def test_a_large_epsilon_is_warned_about_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "fx.aggregator")
    privacy, rounds = start_privacy(config(noise_multiplier=1.0), [["a", "b"]], ["a", "b"], [],
                                    tmp_path / "noise.key", 50, 0)
    assert privacy is not None and rounds == 50
    assert "ε will reach 57.3 (δ=1e-05) after 50 round(s) with q=1" in caplog.text
    caplog.clear()
    start_privacy(config(noise_multiplier=20.0), [["a", "b"]], ["a", "b"], [], tmp_path / "noise.key", 50, 0)
    assert "ε will reach" not in caplog.text


def test_max_epsilon_below_one_round_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FxError, match="max_epsilon 1 is below the ε of a single round"):
        start_privacy(config(noise_multiplier=1.0, max_epsilon=1.0), [["a"]], ["a"], [], tmp_path / "k", 5, 0)


def test_the_accountant_and_clip_norm_come_back_from_the_saved_records(tmp_path: Path) -> None:
    first = RunPrivacy.from_history(PrivacySettings(noise_multiplier=2.0), 0.5, [], tmp_path / "k")
    records = []
    for r in range(3):
        first.clip_norm = 0.5 + r  # as adaptive clipping would leave it
        records.append({"round": r + 1, "final": False, "privacy": first.account()})
    again = RunPrivacy.from_history(PrivacySettings(noise_multiplier=2.0), 0.5, records, tmp_path / "k")
    assert again.accountant.epsilon() == first.accountant.epsilon() and again.accountant.rounds == 3
    assert again.clip_norm == 2.5 and again.secret == first.secret
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600


def test_sampling_rate_comes_from_who_trains_and_is_one_in_local_mode() -> None:
    cols = ["a", "b", "c", "d"]
    assert sampling_rate(PrivacySettings(), [["a"], ["b", "c"]], cols) == 0.5
    assert sampling_rate(PrivacySettings(mode="local"), [["a"]], cols) == 1.0
    assert sampling_rate(PrivacySettings(sampling_rate=0.1), [cols], cols) == 0.1
