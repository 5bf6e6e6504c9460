"""The STAR pattern: FLAME's classes and tester semantics, pitfalls, bound, noise and result files."""
from __future__ import annotations

import pickle
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fx_cli.errors import FxError
from fx_cli.star import StarAggregator, StarAnalyzer, StarIterationBound, StarModelTester
from fx_cli.star.release import add_laplace
from fx_cli.star.wire import WireError, decode, encode

SEED_EXAMPLE = Path(__file__).parent / "data" / "flame_star_seed_example.py"


def plain_recomputation(splits: list[list[float]], stop_at: int) -> tuple[float, int]:
    """The seed example's logic without any framework: iterate until num_iterations >= stop_at (not at 0)."""
    aggregate, iterations = None, 0
    while True:
        results = []
        for data in splits:
            local = sum(data) / len(data)
            results.append(local if aggregate is None else (local + aggregate) / 2 + 0.5)
        new = sum(results) / len(results)
        done = iterations != 0 and iterations >= stop_at
        aggregate, iterations = new, iterations + 1
        if done:
            return aggregate, iterations


def test_seed_example_runs_with_only_the_import_changed(tmp_path: Path) -> None:
    original = SEED_EXAMPLE.read_text().splitlines()
    ported = [line.replace("from flame.star import", "from fx_cli.star import") for line in original]
    assert sum(a != b for a, b in zip(original, ported)) == 1
    script = tmp_path / "example.py"
    script.write_text("\n".join(ported) + "\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    expected, iterations = plain_recomputation([[1, 2, 3, 4], [5, 6, 7, 8]], stop_at=5)
    assert f"STAR analysis: {iterations} iteration(s), converged" in proc.stdout
    final = float(re.search(r"Final result: (\S+)", proc.stdout).group(1))  # type: ignore[union-attr]
    assert final == expected == 5.46875


class Mean(StarAnalyzer):
    def __init__(self, flame: Any, offset: float = 0.0) -> None:
        super().__init__(flame)
        self.offset = offset

    def analysis_method(self, data: Any, aggregator_results: Any) -> Any:
        self.flame.flame_log(f"{self.id} {self.role} {self.num_iterations}", log_type="debug")
        return sum(data) / len(data) + self.offset


class Average(StarAggregator):
    def __init__(self, flame: Any, stop: int = 0) -> None:
        super().__init__(flame)
        self.stop = stop
        self.seen: list[tuple[Any, Any, int]] = []

    def aggregation_method(self, analysis_results: list[Any]) -> Any:
        return sum(analysis_results) / len(analysis_results)

    def has_converged(self, result: Any, last_result: Any) -> bool:
        self.seen.append((result, last_result, self.num_iterations))
        return self.num_iterations >= self.stop


class Never(Average):
    def has_converged(self, result: Any, last_result: Any) -> bool:
        return False


BACKENDS = pytest.mark.parametrize("backend", ["engine", "local"])


@BACKENDS
def test_simple_analysis_is_one_iteration_with_kwargs_and_properties(capsys: pytest.CaptureFixture[str],
                                                                     backend: str) -> None:
    t = StarModelTester([[1, 2], [3, 5]], Mean, Average, "s3", analyzer_kwargs={"offset": 1.0}, backend=backend)
    assert (t.result, t.iterations, t.converged) == (3.75, 1, True)
    assert t.aggregator.id == "aggregator" and t.aggregator.role == "aggregator"
    assert t.aggregator.latest_result == 3.75
    assert "Final result: 3.75" in capsys.readouterr().out


@BACKENDS
def test_has_converged_sees_last_result_and_a_true_at_the_first_iteration_is_ignored(backend: str) -> None:
    t = StarModelTester([[1.0], [3.0]], Mean, Average, "fhir", query="Patient?_count=1", simple_analysis=False,
                        backend=backend)
    agg = t.aggregator
    assert isinstance(agg, Average)
    assert agg.seen == [(2.0, None, 0), (2.0, 2.0, 1)] and t.iterations == 2


@BACKENDS
def test_iteration_bound_stops_a_never_converging_analysis_with_a_warning(backend: str) -> None:
    with pytest.warns(StarIterationBound, match="max_iterations=7"):
        t = StarModelTester([[1.0], [2.0]], Mean, Never, "s3", simple_analysis=False, max_iterations=7,
                            backend=backend)
    assert (t.iterations, t.converged) == (7, False)
    with pytest.warns(StarIterationBound, match="max_iterations=100"):
        assert StarModelTester([[1.0]], Mean, Never, "s3", simple_analysis=False, backend=backend).iterations == 100


class Forgetful(StarAnalyzer):
    def __init__(self, flame: Any) -> None:
        pass

    def analysis_method(self, data: Any, aggregator_results: Any) -> Any:
        return 0


class Incomplete(StarAggregator):
    pass


@pytest.mark.parametrize("kwargs, message", [
    ({"analyzer": "MyAnalyzer"}, "must be a subclass of StarAnalyzer"),
    ({"analyzer": Forgetful}, r"did not call super\(\).__init__\(flame\)"),
    ({"aggregator": Incomplete}, "implement the methods"),
    ({"data_type": "csv"}, "data_type must be 'fhir' or 's3'"),
    ({"output_type": "json"}, "output_type must be one of"),
    ({"epsilon": 1.0}, "epsilon and sensitivity go together"),
    ({"data_splits": []}, "non-empty list"),
    ({"max_iterations": 0}, "max_iterations must be"),
    ({"backend": "ray"}, "backend must be one of"),
])
def test_common_pitfalls_are_clear_errors(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"data_splits": [[1.0]], "analyzer": Mean, "aggregator": Average, "data_type": "s3"}
    args.update(kwargs)
    with pytest.raises(FxError, match=message):
        StarModelTester(**args)


def test_an_instance_instead_of_the_class_is_named() -> None:
    from fx_cli.star.flame import Flame

    instance = Mean(Flame("x", "default"))
    with pytest.raises(FxError, match=r"instance of Mean.*") as err:
        StarModelTester([[1.0]], instance, Average, "s3")  # type: ignore[arg-type]
    assert "analyzer=Mean (not Mean())" in str(err.value)


def test_flame_log_rejects_unknown_log_types() -> None:
    from fx_cli.star.flame import Flame

    flame = Flame("site-1", "default")
    flame.flame_log("hello", log_type="notice")
    with pytest.raises(FxError, match="unknown log_type"):
        flame.flame_log("x", log_type="shout")
    assert flame.lines == [("notice", "hello")]


class Weird(StarAnalyzer):
    def analysis_method(self, data: Any, aggregator_results: Any) -> Any:
        return {"fine": [1, 2.5, None, "x"], "bad": {1, 2}}


def test_a_result_that_cannot_travel_is_refused_with_its_type() -> None:
    for backend in ("engine", "local"):
        with pytest.raises(FxError, match=r"result\['bad'\] is a builtins.set, which cannot travel"):
            StarModelTester([[1]], Weird, Average, "s3", backend=backend)


def test_wire_roundtrip_keeps_values_and_arrays_and_refuses_malformed_bytes() -> None:
    value = {"a": np.arange(6, dtype=np.int32).reshape(2, 3), "t": (1, float("nan")), 3: [True, None, "s"],
             "$x": np.float64(2.5)}
    back = decode(encode(value))
    assert back.keys() == value.keys() and back[3] == [True, None, "s"] and back["$x"] == 2.5
    assert np.array_equal(back["a"], value["a"]) and back["a"].dtype == np.int32
    assert back["t"][0] == 1 and np.isnan(back["t"][1])
    with pytest.raises(WireError, match="dtype object"):
        encode(np.array([object()]))
    blob = bytearray(encode(np.zeros(4)))
    for bad in (b"nope", bytes(blob[:-8]), bytes(blob).replace(b'"<f8"', b'"|O8"')):
        with pytest.raises(WireError):
            decode(bad)


def test_epsilon_adds_laplace_noise_of_the_stated_scale(capsys: pytest.CaptureFixture[str]) -> None:
    t = StarModelTester([[1.0, 2.0], [3.0]], Mean, Average, "s3", epsilon=0.5, sensitivity=2.0)
    out = capsys.readouterr().out
    assert "Laplace noise: epsilon=0.5, sensitivity=2.0 (scale 4)" in out
    assert t.result != 2.25
    draws = np.array([add_laplace(0.0, 0.5, 2.0) for _ in range(4000)])
    assert abs(np.mean(np.abs(draws)) - 4.0) < 0.4  # E|Laplace(b)| = b
    arr = add_laplace({"v": np.zeros(3), "w": [1, 2]}, 1.0, 1.0)
    assert arr["v"].shape == (3,) and len(arr["w"]) == 2
    with pytest.raises(FxError, match="type str cannot carry"):
        add_laplace("text", 1.0, 1.0)


@pytest.mark.parametrize("output_type", ["str", "bytes", "pickle"])
def test_result_file_in_each_output_type(tmp_path: Path, output_type: str) -> None:
    path = tmp_path / "out" / "result.bin"
    t = StarModelTester([[1.0], [2.0]], Mean, Average, "s3", output_type=output_type, result_filepath=str(path))
    data = path.read_bytes()
    expected = {"str": b"1.5", "bytes": b"1.5", "pickle": pickle.dumps(1.5)}[output_type]
    assert data == expected and t.result_path == path


NODES_SRC = """
from fx_cli.star import StarAggregator, StarAnalyzer


class Mean(StarAnalyzer):
    def analysis_method(self, data, aggregator_results):
        return sum(data) / len(data)


class Weird(StarAnalyzer):
    def analysis_method(self, data, aggregator_results):
        return {1, 2}


class Never(StarAggregator):
    def __init__(self, flame):
        super().__init__(flame)
        self.history = []
        self.lock = object()

    def aggregation_method(self, analysis_results):
        self.history.append(len(self.history))
        return sum(analysis_results) / len(analysis_results)

    def has_converged(self, result, last_result):
        return False
"""


def test_star_runner_refuses_a_result_that_cannot_travel_and_the_aggregation_state_round_trips(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fx_cli.aggregation.base import Contribution
    from fx_cli.star import tensorblob
    from fx_cli.star.federated import StarAggregation, StarData, StarRunner

    monkeypatch.chdir(tmp_path)  # the workspace: user classes come from its src/ (fx's allow-list)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "__init__.py").write_text("")
    (tmp_path / "src" / "nodes.py").write_text(NODES_SRC)
    (tmp_path / "d.json").write_text("[1, 2, 3]")
    runner = StarRunner(StarData(str(tmp_path / "d.json")), analyzer="src.nodes.Weird")
    runner.bind("site-a", "RESET")
    with pytest.raises(WireError, match="builtins.set"):
        runner.train_task(0)
    runner = StarRunner(StarData(str(tmp_path / "d.json")), analyzer="src.nodes.Mean")
    payload = runner.train_task(0).tensors[tensorblob.TENSOR]
    agg = StarAggregation(aggregator="src.nodes.Never", max_iterations=2, result_path="out.json",
                          epsilon=1.0, sensitivity=0.5)
    contribution = Contribution("site-a", 1.0, lambda: payload)
    base = runner.get_tensors()[tensorblob.TENSOR]
    first = agg.aggregate(tensorblob.TENSOR, base, [contribution], 0)
    assert tensorblob.unpack(first) == {"iteration": 1, "result": 2.0, "done": False} and not agg.finished()
    restarted = StarAggregation(aggregator="src.nodes.Never", max_iterations=2, result_path="out.json",
                                epsilon=1.0, sensitivity=0.5)
    restarted.load_state(agg.state())
    with pytest.warns(StarIterationBound, match="max_iterations=2"):
        second = restarted.aggregate(tensorblob.TENSOR, first, [contribution], 1)
    assert tensorblob.unpack(second)["done"] and restarted.finished()
    assert restarted.node is not None and restarted.node.history == [0, 1]  # type: ignore[attr-defined]
    assert "lock" not in restarted.saved["attrs"]
    import json

    doc = json.loads((tmp_path / "out.json").read_text())
    assert doc["iterations"] == 2 and doc["converged"] is False and doc["privacy"]["epsilon"] == 1.0
    assert doc["result"] != 2.0


def test_tensorblob_refuses_oversized_and_malformed_payloads() -> None:
    from fx_cli.star import tensorblob

    cap = tensorblob.capacity_for(1)
    assert tensorblob.unpack(tensorblob.pack({"x": np.arange(10)}, cap))["x"].tolist() == list(range(10))
    with pytest.raises(WireError, match="larger than this plan allows"):
        tensorblob.pack(np.zeros(1000), cap)
    bad = tensorblob.pack([1, 2], cap)
    bad[1] = 0.5
    with pytest.raises(WireError, match="24-bit"):
        tensorblob.unpack(bad)
    bad[0] = 1e9
    with pytest.raises(WireError, match="does not fit"):
        tensorblob.unpack(bad)
