"""cols.yaml and data.yaml: OpenFL formats, edited without losing comments."""
from __future__ import annotations

import pytest

from fx_cli.errors import PlanError
from fx_cli.plan.participants import add_col, read_cols, read_data, remove_col, set_data


def test_cols_add_and_remove_keep_comments(tmp_path):
    path = tmp_path / "cols.yaml"
    path.write_text("# who may join\ncollaborators: []\n# trailing note\n")
    assert add_col(path, "one") and add_col(path, "two")
    assert not add_col(path, "one")
    assert read_cols(path) == ["one", "two"]
    assert remove_col(path, "one") and not remove_col(path, "one")
    text = path.read_text()
    assert "# who may join" in text and "# trailing note" in text
    assert read_cols(path) == ["two"]


def test_cols_rejects_bad_names_and_duplicates(tmp_path):
    path = tmp_path / "cols.yaml"
    path.write_text("collaborators:\n- Bad_Name\n- ok\n- ok\n")
    with pytest.raises(PlanError) as info:
        read_cols(path)
    assert len(info.value.problems) == 2
    assert "collaborators[0]: 'Bad_Name' is not a valid name" in info.value.problems[0]


def test_data_yaml_parsing_skips_comments_and_reports_bad_lines(tmp_path):
    path = tmp_path / "data.yaml"
    path.write_text("# name,path\none,1\n\ntwo , data/two,with,commas\n")
    assert read_data(path) == {"one": "1", "two": "data/two,with,commas"}
    path.write_text("one,1\nbroken line\none,2\n")
    with pytest.raises(PlanError) as info:
        read_data(path)
    assert [p.split(": ", 1)[1] for p in info.value.problems] == [
        "line 2: expected 'name,data_path', got 'broken line'",
        "line 3: collaborator 'one' is listed twice"]


def test_set_data_replaces_in_place_and_keeps_other_lines(tmp_path):
    path = tmp_path / "data.yaml"
    path.write_text("# header, with a comma\none,1\ntwo,2\n")
    set_data(path, "one", "data/one")
    set_data(path, "three", "3")
    assert path.read_text() == "# header, with a comma\none,data/one\ntwo,2\nthree,3\n"


def test_missing_files_are_errors_not_empty(tmp_path):
    with pytest.raises(PlanError, match="not found"):
        read_cols(tmp_path / "cols.yaml")
    with pytest.raises(PlanError, match="not found"):
        read_data(tmp_path / "data.yaml")


def test_files_that_are_not_utf8_are_plan_errors_naming_the_file(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("collaborators: [caf\u00e9]\n".encode("latin-1"))
    for call in (read_cols, read_data, lambda p: set_data(p, "one", "1"), lambda p: add_col(p, "one")):
        with pytest.raises(PlanError) as info:
            call(path)
        assert info.value.problems == [f"{path}: " + info.value.problems[0].split(": ", 1)[1]]
        assert "is not UTF-8 text (byte 19: invalid continuation byte)" in info.value.problems[0]


@pytest.mark.parametrize("data_path", ["", "  ", "2\nevil,/etc", "1\r"])
def test_set_data_refuses_empty_or_multi_line_paths_and_writes_nothing(tmp_path, data_path):
    path = tmp_path / "data.yaml"
    path.write_text("one,1\n")
    with pytest.raises(PlanError, match="is empty or spans lines"):
        set_data(path, "two", data_path)
    assert path.read_text() == "one,1\n"
