"""``fx simulate`` on the analytics templates: the same engine, one virtual site per data file."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.analytics_helpers import diabetes_columns
from tests.runtime_helpers import fx_in
from tests.test_star import plain_recomputation

pytestmark = pytest.mark.slow


def simulate(root: Path, template: str) -> dict[str, object]:
    ws = root / "ws"
    fx_in(root, "workspace", "create", "--prefix", str(ws), "--template", template)
    fx_in(ws, "plan", "initialize", "-a", "localhost")
    proc = subprocess.run([sys.executable, "-m", "fx_cli", "simulate", "--workers", "2"], cwd=ws, text=True,
                          capture_output=True, timeout=300, env={**os.environ, "FQDN": "localhost"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    closing = " ".join((proc.stdout + proc.stderr).split())  # the console wraps long lines
    assert f"simulation complete: results in {ws / 'save' / 'analytics.json'}" in closing, closing
    assert "final aggregated model" not in closing  # the model file only holds the analysis' state
    result: dict[str, object] = json.loads((ws / "save" / "analytics.json").read_text())
    return result


def test_star_mean_under_fx_simulate_equals_the_plain_recomputation(tmp_path: Path) -> None:
    expected, iterations = plain_recomputation([[1, 2, 3, 4], [5, 6, 7, 8]], stop_at=5)
    assert simulate(tmp_path, "star/mean") == {"iterations": iterations, "converged": True, "result": expected}


def test_tabular_template_under_fx_simulate_equals_pooled_numpy(tmp_path: Path) -> None:
    res = simulate(tmp_path, "analytics/tabular")
    cols = diabetes_columns()
    assert res["patients"]["value"] == len(cols["age"])  # type: ignore[index]
    assert res["mean bmi"]["value"] == pytest.approx(cols["bmi"].mean(), rel=1e-9)  # type: ignore[index]
    assert res["std bmi"]["value"] == pytest.approx(np.std(cols["bmi"], ddof=1), rel=1e-9)  # type: ignore[index]
    groups = res["progression by sex"]["groups"]  # type: ignore[index]
    for sex in (1, 2):
        assert groups[str(sex)]["value"] == pytest.approx(cols["progression"][cols["sex"] == sex].mean(), rel=1e-9)
    assert list(res["bmi quartiles"]["quantiles"].values()) == pytest.approx(  # type: ignore[index]
        np.quantile(cols["bmi"], [0.25, 0.5, 0.75]), rel=1e-12)
