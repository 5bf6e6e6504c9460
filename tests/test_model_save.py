"""``fx model save``: .keras that plain Keras evaluates, .npz of named arrays, refusals with reasons."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fx_cli import load_tensors, save_tensors
from fx_cli.plan import load_plan
from fx_cli.runners.build import build_runner
from tests.keras_helpers import check_saved_model, create_workspace, fx_in_process

pytestmark = pytest.mark.tensorflow  # Keras/TensorFlow or scikit-learn: the tensorflow extra


def aggregated_accuracy(ws: Path, tensors: dict[str, np.ndarray]) -> float:
    """Validation accuracy as a federation reports it: each shard's, weighted by its size."""
    plan = load_plan(ws / "plan" / "plan.yaml")
    scores = []
    for shard in (1, 2):
        runner = build_runner(plan, data_path=str(shard))
        runner.set_tensors(tensors)
        scores.append((runner.valid_data_size(), runner.validate_task(0, metrics=["accuracy"]).metrics["accuracy"]))
    return sum(n * a for n, a in scores) / sum(n for n, _ in scores)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, float]:
    """A digits workspace, a trained (one local epoch, 2 collaborators' data) model file, its accuracy."""
    ws = create_workspace(tmp_path_factory.mktemp("save") / "ws", "keras/digits")
    plan = load_plan(ws / "plan" / "plan.yaml")
    runner = build_runner(plan, data_path="1")
    tensors = runner.train_task(0, epochs=1, batch_size=32).tensors
    model = ws / "save" / "trained.pbuf"
    save_tensors(str(model), tensors, round_number=1)
    return ws, model, aggregated_accuracy(ws, tensors)


def save(ws: Path, *args: str) -> tuple[int, str]:
    return fx_in_process("model", "save", "-p", str(ws / "plan" / "plan.yaml"), *args)


def test_saved_keras_model_reproduces_the_accuracy_in_a_keras_only_process(trained: tuple[Path, Path, float]) -> None:
    ws, model, expected = trained
    assert 0.3 < expected < 1.0  # a model that learned something, so the check can tell models apart
    accuracy = check_saved_model(ws, model, expected)
    assert abs(accuracy - expected) <= 0.005
    with pytest.raises(AssertionError):  # the untrained init model must not pass for the trained one
        check_saved_model(ws, ws / "save" / "init.pbuf", expected)


def test_npz_format_holds_the_named_arrays_of_the_pbuf(trained: tuple[Path, Path, float], tmp_path: Path) -> None:
    ws, model, _ = trained
    code, out = save(ws, "-i", str(model), "-o", str(tmp_path / "weights"), "--format", "npz")
    assert code == 0, out
    assert "round 1" in out
    expected = load_tensors(str(model))
    with np.load(tmp_path / "weights.npz", allow_pickle=False) as npz:
        assert list(npz.files) == list(expected)
        for name, array in expected.items():
            np.testing.assert_array_equal(npz[name], array)


def test_existing_output_is_refused_without_force(trained: tuple[Path, Path, float], tmp_path: Path) -> None:
    ws, model, _ = trained
    out_file = tmp_path / "final.npz"
    out_file.write_bytes(b"keep me")
    code, out = save(ws, "-i", str(model), "-o", str(out_file))
    assert code == 1 and "final.npz already exists" in out and "--force" in out
    assert out_file.read_bytes() == b"keep me"
    code, out = save(ws, "-i", str(model), "-o", str(out_file), "--force")
    assert code == 0, out
    assert np.load(out_file)["conv1/bias"].shape == (16,)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final.npz"]  # no temporary file left behind


def test_pbuf_with_a_wrong_shape_names_the_tensor_and_both_shapes(trained: tuple[Path, Path, float],
                                                                 tmp_path: Path) -> None:
    ws, model, _ = trained
    tensors = load_tensors(str(model))
    tensors["output/kernel"] = np.zeros((64, 3), np.float32)
    bad = tmp_path / "bad.pbuf"
    save_tensors(str(bad), tensors)
    code, out = save(ws, "-i", str(bad), "-o", str(tmp_path / "x.keras"))
    assert code == 1
    assert "bad.pbuf does not fit the plan's model" in out
    assert "tensor 'output/kernel': the model expects shape (64, 10), found (64, 3)" in out
    assert not (tmp_path / "x.keras").exists()


def test_pbuf_with_missing_and_unknown_tensors_names_them(trained: tuple[Path, Path, float], tmp_path: Path) -> None:
    ws, model, _ = trained
    tensors = load_tensors(str(model))
    tensors["extra/kernel"] = tensors.pop("dense1/bias")
    bad = tmp_path / "renamed.pbuf"
    save_tensors(str(bad), tensors)
    code, out = save(ws, "-i", str(bad), "-o", str(tmp_path / "x.npz"))
    assert code == 1
    assert "tensor 'dense1/bias': missing (the model expects shape (64,))" in out
    assert "tensor 'extra/kernel': unknown to the model (found shape (64,))" in out


def test_model_with_optimizer_state_saves_in_both_formats(trained: tuple[Path, Path, float], tmp_path: Path) -> None:
    """Under CONTINUE_GLOBAL the aggregated model carries optimizer tensors too."""
    ws, _, _ = trained
    runner = build_runner(load_plan(ws / "plan" / "plan.yaml"), data_path="2")
    runner.train_task(0, epochs=1, batch_size=64)
    with_opt = tmp_path / "with_opt.pbuf"
    save_tensors(str(with_opt), runner.get_tensors(with_opt_vars=True))
    code, out = save(ws, "-i", str(with_opt), "-o", str(tmp_path / "opt.npz"))
    assert code == 0, out
    assert "optimizer/iteration" in np.load(tmp_path / "opt.npz").files
    code, out = save(ws, "-i", str(with_opt), "-o", str(tmp_path / "opt.keras"))
    assert code == 0, out


@pytest.mark.parametrize("output,fmt,message", [("model.h5", None, "a keras model file must end in .keras"),
                                                ("model.keras", "npz", "a npz model file must end in .npz")])
def test_output_name_that_does_not_match_the_format_is_refused(trained: tuple[Path, Path, float], tmp_path: Path,
                                                               output: str, fmt: str | None, message: str) -> None:
    ws, model, _ = trained
    code, out = save(ws, "-i", str(model), "-o", str(tmp_path / output), *(["--format", fmt] if fmt else []))
    assert code == 1 and message in out


def test_missing_input_or_plan_file_is_refused(trained: tuple[Path, Path, float], tmp_path: Path) -> None:
    ws, _, _ = trained
    code, out = save(ws, "-i", str(tmp_path / "nope.pbuf"), "-o", str(tmp_path / "x.keras"))
    assert code == 1 and "model file not found" in out and "nope.pbuf" in out
    code, out = fx_in_process("model", "save", "-p", str(tmp_path / "plan.yaml"), "-i", str(ws / "save" / "init.pbuf"),
                              "-o", str(tmp_path / "x.keras"))
    assert code == 1 and "plan not found" in out and "-p WORKSPACE/plan/plan.yaml" in out


def test_runner_without_native_format_suggests_npz(tmp_path: Path) -> None:
    ws = create_workspace(tmp_path / "syn", "numpy/synthetic")
    init = ws / "save" / "init.pbuf"
    code, out = save(ws, "-i", str(init), "-o", str(tmp_path / "syn.keras"))
    assert code == 1 and "--format npz" in out
    code, out = save(ws, "-i", str(init), "-o", str(tmp_path / "syn.npz"))
    assert code == 0, out
    assert np.load(tmp_path / "syn.npz").files == list(load_tensors(str(init)))
