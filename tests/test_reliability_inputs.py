"""Malformed start-up inputs: problems in plan.yaml, cols.yaml and data.yaml are listed together, at once."""
from __future__ import annotations

import contextlib
from pathlib import Path

import yaml
from click.testing import CliRunner

from fx_cli.cli.main import cli
from tests.runtime_helpers import make_workspace


def fx(ws: Path, *args: str) -> tuple[int, str]:
    with contextlib.chdir(ws):
        res = CliRunner().invoke(cli, list(args))
    return res.exit_code, " ".join((res.output + res.stderr).split())


def break_plan(ws: Path) -> None:
    path = ws / "plan" / "plan.yaml"
    plan = yaml.safe_load(path.read_text())
    plan["aggregator"]["settings"]["rounds_to_trian"] = 3  # a typo
    plan["network"]["settings"]["use_tls"] = "sometimes"  # a wrong type
    path.write_text(yaml.safe_dump(plan))


def test_aggregator_start_lists_plan_and_cols_problems_together(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one", "two"], rounds=1, tls=False)
    break_plan(ws)
    (ws / "plan" / "cols.yaml").write_text("collaborators:\n  - one\n  - Bad Name\n  - one\n")
    code, out = fx(ws, "aggregator", "start")
    assert code == 1 and "problems:" in out
    for problem in ("rounds_to_trian", "use_tls", "'Bad Name' is not a valid name", "a name is listed twice"):
        assert problem in out, (problem, out)


def test_aggregator_start_with_an_unreadable_cols_file_still_reports_the_plan(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one"], rounds=1, tls=False)
    break_plan(ws)
    (ws / "plan" / "cols.yaml").write_text("collaborators: [one\n")
    code, out = fx(ws, "aggregator", "start")
    assert code == 1 and "rounds_to_trian" in out and "cols.yaml" in out and "not valid YAML" in out


def test_an_empty_cols_file_is_one_of_the_listed_problems(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one"], rounds=1, tls=False)
    break_plan(ws)
    (ws / "plan" / "cols.yaml").write_text("collaborators: []\n")
    code, out = fx(ws, "aggregator", "start")
    assert code == 1 and "rounds_to_trian" in out and "lists no collaborators" in out


def test_collaborator_start_lists_plan_and_data_problems_together(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one"], rounds=1, tls=False)
    break_plan(ws)
    (ws / "plan" / "data.yaml").write_text("one,1\nno comma here\none,2\n")
    code, out = fx(ws, "collaborator", "start", "-n", "one")
    assert code == 1 and "rounds_to_trian" in out and "use_tls" in out
    assert "line 2: expected 'name,data_path'" in out and "line 3: collaborator 'one' is listed twice" in out


def test_collaborator_start_names_a_missing_data_line_next_to_plan_problems(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one"], rounds=1, tls=False)
    break_plan(ws)
    code, out = fx(ws, "collaborator", "start", "-n", "two")
    assert code == 1 and "rounds_to_trian" in out and "collaborator 'two' has no line in plan/data.yaml" in out
