"""The plan engine: merging, validation (all problems at once), allow-listing, identity."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from fx_cli.errors import FxError, PlanError
from fx_cli.plan import load_plan
from fx_cli.plan.identity import derived_port, differing_keys, plan_hash
from fx_cli.plan.merge import deep_merge
from fx_cli.plan.templates import resolve_class

MINIMAL = {
    "aggregator": {"defaults": "plan/defaults/aggregator.yaml", "settings": {"rounds_to_train": 2}},
    "data_loader": {"template": "fx_cli.runners.synthetic.SyntheticData"},
    "task_runner": {"template": "fx_cli.runners.synthetic.SyntheticRunner", "settings": {"num_params": 10}},
    "network": {"defaults": "plan/defaults/network.yaml", "settings": {"agg_addr": "localhost"}},
    "tasks": {"defaults": "plan/defaults/tasks_numpy.yaml"},
}


def write_plan(tmp_path: Path, config: dict, text: str | None = None) -> Path:
    path = tmp_path / "ws" / "plan" / "plan.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text is not None else yaml.safe_dump(config))
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(PlanError) as info:
        load_plan(path)
    return info.value.problems


def test_deep_merge_merges_nested_settings_and_never_mutates_inputs():
    base = {"settings": {"a": 1, "nested": {"x": 1, "y": 2}}, "template": "t"}
    over = {"settings": {"nested": {"y": 3}, "b": [1]}}
    before = copy.deepcopy((base, over))
    merged = deep_merge(base, over)
    assert merged == {"settings": {"a": 1, "nested": {"x": 1, "y": 3}, "b": [1]}, "template": "t"}
    assert (base, over) == before
    merged["settings"]["b"].append(2)
    assert over["settings"]["b"] == [1]


def test_defaults_are_merged_and_section_settings_win(tmp_path):
    plan = load_plan(write_plan(tmp_path, MINIMAL))
    agg = plan.aggregator
    assert agg.rounds_to_train == 2  # from the plan
    assert agg.init_state_path == "save/init.pbuf"  # from the packaged defaults
    assert set(plan.tasks) == {"aggregated_model_validation", "train", "locally_tuned_model_validation"}
    assert "defaults" not in plan.config["aggregator"]


def test_workspace_defaults_file_wins_over_packaged_one(tmp_path):
    path = write_plan(tmp_path, MINIMAL)
    override = path.parent / "defaults" / "aggregator.yaml"
    override.parent.mkdir()
    override.write_text("settings:\n  rounds_to_train: 7\n  best_state_path: save/champion.pbuf\n")
    plan = load_plan(path)
    assert plan.aggregator.best_state_path == "save/champion.pbuf"
    assert plan.aggregator.rounds_to_train == 2  # the plan itself still wins
    assert plan.aggregator.init_state_path == "save/init.pbuf"  # not in the override: default class value


def test_loading_does_not_mutate_between_calls(tmp_path):
    path = write_plan(tmp_path, MINIMAL)
    a, b = load_plan(path), load_plan(path)
    assert a.config == b.config and a.hash == b.hash


def test_unknown_key_names_file_key_path_and_suggestion(tmp_path):
    config = deep_merge(MINIMAL, {"aggregator": {"settings": {"rounds_to_trian": 3}}})
    path = write_plan(tmp_path, config)
    assert problems_of(path) == [
        f"{path}: aggregator.settings.rounds_to_trian: unknown key (did you mean rounds_to_train?)"]


def test_every_problem_is_reported_at_once(tmp_path):
    config = deep_merge(MINIMAL, {
        "aggregator": {"settings": {"rounds_to_train": "three"}},
        "network": {"settings": {"use_tls": "yes"}},
        "task_runner": {"settings": {"num_parms": 5}},
        "colaborator": {"settings": {}},
        "tasks": {"train": {"function": "train_task", "kwarg": {}}},
    })
    problems = problems_of(write_plan(tmp_path, config))
    text = "\n".join(problems)
    assert len(problems) == 5, text
    assert "aggregator.settings.rounds_to_train: expected int, got 'three'" in text
    assert "network.settings.use_tls: expected bool, got 'yes'" in text
    assert "task_runner.settings.num_parms: unknown key (did you mean num_params?)" in text
    assert "colaborator: unknown section (did you mean collaborator?)" in text
    assert "tasks.train.kwarg: unknown key (did you mean kwargs?)" in text


def test_missing_defaults_file_is_an_error_not_empty(tmp_path):
    config = deep_merge(MINIMAL, {"assigner": {"defaults": "plan/defaults/assigner_typo.yaml"}})
    (problem,) = problems_of(write_plan(tmp_path, config))
    assert "assigner.defaults: defaults file 'plan/defaults/assigner_typo.yaml' not found" in problem


def test_missing_plan_file_and_bad_yaml_name_the_file(tmp_path):
    assert problems_of(tmp_path / "nope.yaml") == [f"{tmp_path / 'nope.yaml'}: plan file not found"]
    path = write_plan(tmp_path, {}, text="aggregator: [unclosed\n")
    (problem,) = problems_of(path)
    assert str(path) in problem and "not valid YAML" in problem and "line" in problem


def test_required_sections_and_wrong_section_types(tmp_path):
    config = {"aggregator": ["not", "a", "mapping"], "network": {"settings": {"agg_addr": "x"}}}
    problems = problems_of(write_plan(tmp_path, config))
    assert any("aggregator: expected a mapping, got list" in p for p in problems)
    assert any("data_loader.template: required key missing" in p for p in problems)
    assert any("task_runner.template: required key missing" in p for p in problems)


@pytest.mark.parametrize("template", ["os.system", "subprocess.Popen", "builtins.eval", "nodots"])
def test_templates_outside_the_allowed_packages_are_refused(tmp_path, template):
    config = deep_merge(MINIMAL, {"task_runner": {"template": template}})
    (problem,) = problems_of(write_plan(tmp_path, config))
    assert "task_runner.template" in problem
    assert "outside the allowed packages" in problem or "dotted class path" in problem


def test_resolve_class_refuses_disallowed_paths_directly(tmp_path):
    with pytest.raises(FxError, match="outside the allowed packages"):
        resolve_class("os.path.join", tmp_path, "x.template")


def test_workspace_src_classes_resolve_and_are_validated(tmp_path):
    config = dict(MINIMAL, task_runner={"template": "src.myrunner.MyRunner", "settings": {"size": 3, "colour": 1}})
    path = write_plan(tmp_path, config)
    src = path.parent.parent / "src"
    src.mkdir()
    (src / "myrunner.py").write_text(
        "from fx_cli.runners.synthetic import SyntheticRunner\n"
        "class MyRunner(SyntheticRunner):\n"
        "    def __init__(self, data_loader=None, size: int = 1):\n"
        "        super().__init__(data_loader, num_params=size, num_tensors=1)\n")
    (problem,) = problems_of(path)
    assert problem.endswith("task_runner.settings.colour: unknown key")
    config["task_runner"] = {"template": "src.myrunner.MyRunner", "settings": {"size": 4}}
    write_plan(tmp_path, config)
    assert load_plan(path).settings("task_runner") == {"size": 4}


def test_openfl_class_paths_are_translated(tmp_path):
    config = deep_merge(MINIMAL, {"straggler_handling_policy": {
        "template": "openfl.component.PercentagePolicy",
        "settings": {"percent_collaborators_needed": 0.5, "minimum_reporting": 1}}})
    plan = load_plan(write_plan(tmp_path, config))
    cls = resolve_class(plan.template("straggler_handling_policy"), plan.workspace, "x")
    assert cls.__name__ == "PercentagePolicy"


def test_hash_ignores_yaml_formatting_and_key_order(tmp_path):
    a = write_plan(tmp_path, MINIMAL)
    reordered = dict(reversed(list(MINIMAL.items())))
    b_dir = tmp_path / "other"
    b = b_dir / "ws" / "plan" / "plan.yaml"
    b.parent.mkdir(parents=True)
    b.write_text("# a comment\n" + yaml.safe_dump(reordered, default_flow_style=True, sort_keys=False))
    assert load_plan(a).hash == load_plan(b).hash
    changed = write_plan(tmp_path / "third", deep_merge(MINIMAL, {"aggregator": {"settings": {"rounds_to_train": 3}}}))
    assert load_plan(changed).hash != load_plan(a).hash


def test_hash_is_a_stable_sha384_of_canonical_json():
    assert plan_hash({"b": 1, "a": [1, 2]}) == plan_hash({"a": [1, 2], "b": 1})
    assert len(plan_hash({})) == 96


def test_auto_address_uses_fqdn_env_and_port_is_derived_from_hash(tmp_path, monkeypatch):
    config = deep_merge(MINIMAL, {"network": {"settings": {"agg_addr": "auto", "agg_port": "auto"}}})
    path = write_plan(tmp_path, config)
    monkeypatch.setenv("FQDN", "agg.example.org")
    plan = load_plan(path)
    net = plan.network
    assert net.agg_addr == "agg.example.org"
    assert 49152 <= net.agg_port <= 60998
    unresolved = load_plan(path, resolve=False).config
    unresolved["network"]["settings"]["agg_addr"] = "agg.example.org"
    assert net.agg_port == derived_port(plan_hash(unresolved))
    monkeypatch.setenv("FQDN", "other.example.org")
    assert load_plan(path).network.agg_port != net.agg_port  # the port follows the address


def test_explicit_port_is_kept(tmp_path):
    plan = load_plan(write_plan(tmp_path, deep_merge(MINIMAL, {"network": {"settings": {"agg_port": 50123}}})))
    assert plan.network.agg_port == 50123


def test_differing_keys_names_changed_paths():
    a = {"aggregator": {"settings": {"rounds_to_train": 2, "x": 1}}}
    b = {"aggregator": {"settings": {"rounds_to_train": 3, "x": 1}}, "extra": {"k": 1}}
    assert differing_keys(a, b) == ["aggregator.settings.rounds_to_train", "extra.k"]


@pytest.mark.parametrize("template, message", [
    ("fx_cli.plan.templates.Path", "pathlib.Path, a class from outside the allowed packages"),
    ("fx_cli.plan.templates.sys", "is a module, not a class"),
    ("fx_cli.cli.main.entry", "is a function, not a class"),
])
def test_templates_reaching_outside_through_an_allowed_module_are_refused(tmp_path, template, message):
    config = deep_merge(MINIMAL, {"data_loader": {"template": template}})
    (problem,) = problems_of(write_plan(tmp_path, config))
    assert problem.startswith(f"{tmp_path / 'ws' / 'plan' / 'plan.yaml'}: data_loader.template: ")
    assert message in problem
    with pytest.raises(FxError, match="not a class|outside the allowed packages"):
        resolve_class(template, tmp_path, "x.template")


def test_a_plan_that_is_not_utf8_is_reported_not_a_traceback(tmp_path, fx):
    path = write_plan(tmp_path, {}, text="aggregator: {}\n# caf\u00e9\n")
    path.write_bytes(path.read_text().encode("utf-16"))
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: plan file is not UTF-8 text")
    res = fx("plan", "print", "-p", str(path))
    assert res.exit_code == 1 and "is not UTF-8 text" in res.stderr


def test_a_misspelt_data_loader_setting_of_a_shipped_loader_is_reported(tmp_path):
    config = deep_merge(MINIMAL, {"data_loader": {"settings": {"samples_per_shrad": 10}}})
    (problem,) = problems_of(write_plan(tmp_path, config))
    assert problem.endswith("data_loader.settings.samples_per_shrad: unknown key (did you mean samples_per_shard?)")


@pytest.mark.parametrize("settings, expected", [
    ({"agg_port": "abc"}, "network.settings.agg_port: expected 'auto' or a port number from 1 to 65535, got 'abc'"),
    ({"agg_port": 70000}, "network.settings.agg_port: expected 'auto' or a port number from 1 to 65535, got 70000"),
    ({"agg_port": 0}, "network.settings.agg_port: expected 'auto' or a port number from 1 to 65535, got 0"),
    ({"agg_addr": "bad host!"}, "network.settings.agg_addr: invalid aggregator address 'bad host!'"),
])
def test_aggregator_address_and_port_values_are_checked(tmp_path, settings, expected):
    (problem,) = problems_of(write_plan(tmp_path, deep_merge(MINIMAL, {"network": {"settings": settings}})))
    assert expected in problem


def test_valid_addresses_and_ports_pass(tmp_path):
    for addr, port in (("10.0.0.5", 1), ("::1", 65535), ("Agg.Example.org", "auto")):
        path = write_plan(tmp_path / addr.replace(":", "_"), deep_merge(MINIMAL, {"network": {"settings": {
            "agg_addr": addr, "agg_port": port}}}))
        assert load_plan(path).network.agg_addr == addr


@pytest.mark.parametrize("bomb", [
    # ten levels of ten aliases: 10**10 values once expanded, a few hundred bytes of YAML
    "\n      k0: &l0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"      k{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 11)),
    " &loop {again: *loop}\n",  # a cycle
])
def test_yaml_alias_bombs_and_cycles_are_refused_quickly(tmp_path, bomb):
    import time

    text = yaml.safe_dump(MINIMAL).replace("    num_params: 10\n", "    num_params: 10\n    x_bomb:" + bomb, 1)
    path = write_plan(tmp_path, {}, text=text)
    start = time.perf_counter()
    with pytest.raises(PlanError) as info:  # as import reads an archive's plan: settings are not checked
        load_plan(path, check_classes=False).hash
    assert "expands to over 200,000 values (nested or recursive YAML aliases?)" in info.value.problems[0]
    assert time.perf_counter() - start < 20  # milliseconds when idle; an unguarded bomb takes minutes


def test_a_task_function_the_runner_does_not_have_is_reported_with_a_suggestion(tmp_path):
    config = deep_merge(MINIMAL, {"tasks": {"train": {"function": "trian_task"}}})
    (problem,) = problems_of(write_plan(tmp_path, config))
    assert problem.endswith("tasks.train.function: the task runner SyntheticRunner has no method 'trian_task' "
                            "(did you mean train_task?)")
    assert load_plan(write_plan(tmp_path, config), check_classes=False).tasks["train"].function == "trian_task"
