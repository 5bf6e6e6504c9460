"""Hostile and broken uploads: each refused with a precise status code and reason; the round goes on."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from fx_cli.aggregator.intake import UpdateIntake, load_spilled
from fx_cli.aggregator.modelstore import write_round_model
from fx_cli.collaborator.loop import CollaboratorRun, client_credentials_for, run_collaborator
from fx_cli.collaborator.session import AggregatorClient
from fx_cli.plan import load_plan
from fx_cli.transport import codec
from fx_cli.transport.chunks import StreamError, tensor_frames, trailer_of
from fx_cli.transport.serde import Caller, Frame, TensorMeta, Trailer, UploadMeta
from tests.runtime_helpers import aggregator_thread, final_model, make_workspace, reference_fedavg

MODEL = {"w0": np.arange(6, dtype=np.float32).reshape(2, 3), "w1": np.ones(5000, np.float32)}


def upload_frames(tensors: dict[str, np.ndarray], chunk: int = 1024, *, pipeline: Any = None,
                  trailer: bool = True) -> list[Frame]:
    frames: list[Frame] = []
    metas = []
    for name, array in tensors.items():
        meta, payload = codec.encode(name, array, pipeline)
        metas.append(meta)
        frames.extend(tensor_frames(meta, payload, chunk))
    return frames + ([trailer_of(metas)] if trailer else [])


@pytest.fixture
def model(tmp_path: Path) -> Any:
    return write_round_model(tmp_path / "round_0.pbuf", MODEL.items(), 0)


def receive(model: Any, tmp_path: Path, frames: list[Frame]) -> Any:
    return UpdateIntake(model, tmp_path / "updates" / "one.train.f32", set()).receive(iter(frames))


def test_a_good_update_is_spilled_in_model_layout_and_reads_back_verified(model: Any, tmp_path: Path) -> None:
    update = {"w1": MODEL["w1"] * 2, "w0": MODEL["w0"] + 1}  # any order on the wire
    spilled = receive(model, tmp_path, upload_frames(update))
    assert spilled.path.stat().st_size == model.nbytes and spilled.wire_bytes == model.nbytes
    for i, entry in enumerate(model.entries):
        np.testing.assert_array_equal(load_spilled(spilled.path, model, entry.name, spilled.crcs[i]),
                                      update[entry.name])


def test_the_audit_digest_covers_names_and_payloads_and_is_skipped_without_an_audit_log(model: Any,
                                                                                      tmp_path: Path) -> None:
    import blake3

    update = {"w1": MODEL["w1"] * 2, "w0": MODEL["w0"] + 1}
    frames = upload_frames(update)
    audited = receive(model, tmp_path, frames)
    expected = blake3.blake3(b"".join(n.encode() + b"\0" + update[n].tobytes() for n in update)).hexdigest()
    assert audited.blake3 == expected
    bare = UpdateIntake(model, tmp_path / "updates" / "two.train.f32", set(), digest=False).receive(iter(frames))
    assert bare.blake3 == "" and bare.crcs == audited.crcs
    assert bare.path.read_bytes() == audited.path.read_bytes()


def test_a_metrics_only_result_keeps_no_file(model: Any, tmp_path: Path) -> None:
    spilled = receive(model, tmp_path, [Trailer(0, 0)])
    assert spilled.path is None and not (tmp_path / "updates").exists()  # not even a folder is made


def nan_update() -> dict[str, np.ndarray]:
    bad = MODEL["w1"].copy()
    bad[4321] = np.nan
    return {"w0": MODEL["w0"], "w1": bad}


@pytest.mark.parametrize("frames,reason", [
    (lambda: upload_frames(nan_update()), "NaN or Inf"),
    (lambda: upload_frames({"w0": MODEL["w0"], "w1": np.full(5000, np.inf, np.float32)}), "NaN or Inf"),
    (lambda: upload_frames({"w0": MODEL["w0"].reshape(3, 2), "w1": MODEL["w1"]}), "the global model has"),
    (lambda: upload_frames({"w0": MODEL["w0"].astype(np.float64), "w1": MODEL["w1"]}), "the global model has"),
    (lambda: upload_frames({"w0": MODEL["w0"], "w1": MODEL["w1"], "extra": MODEL["w0"]}), "not in the global model"),
    (lambda: upload_frames({"w0": MODEL["w0"]}), "missing w1"),
    (lambda: upload_frames(MODEL)[:-3], "truncated"),
    (lambda: upload_frames(MODEL, trailer=False), "without its trailer"),
    (lambda: upload_frames(MODEL)[:-1] + upload_frames({"w0": MODEL["w0"]}), "sent twice"),
    (lambda: [TensorMeta("w1", "<f4", (5000,), 10**9, 0)], "exceed the limit"),
    (lambda: upload_frames({"w0": MODEL["w0"], "w1": MODEL["w1"]}, pipeline=__import__(
        "fx_cli.compression", fromlist=["x"]).pipeline_by_name("fp16")), "not the plan's"),
])
def test_broken_updates_are_refused_and_leave_nothing_behind(model: Any, tmp_path: Path, frames: Any,
                                                             reason: str) -> None:
    with pytest.raises(StreamError, match=reason):
        receive(model, tmp_path, frames())
    assert not list((tmp_path / "updates").glob("*")), "a refused update must leave no file"


def test_a_delta_update_through_a_lossy_pipeline_is_rebuilt_against_the_global_model(model: Any,
                                                                                        tmp_path: Path) -> None:
    from fx_cli.compression import pipeline_by_name

    trained = {"w0": MODEL["w0"] * 0.5, "w1": MODEL["w1"] * 3}
    frames: list[Frame] = []
    metas = []
    for name, array in trained.items():
        meta, payload = codec.encode(name, array - MODEL[name], pipeline_by_name("fp16"), delta=True)
        metas.append(meta)
        frames.extend(tensor_frames(meta, payload, 1024))
    spilled = UpdateIntake(model, tmp_path / "u.f32", {"fp16"}).receive(iter(frames + [trailer_of(metas)]))
    for i, entry in enumerate(model.entries):
        np.testing.assert_allclose(load_spilled(spilled.path, model, entry.name, spilled.crcs[i]),
                                   trained[entry.name], rtol=1e-3)
    assert spilled.wire_bytes < model.nbytes * 0.6


# --- through gRPC: status codes, and the federation carries on -----------------------------

def hostile_calls(ws: Path) -> dict[str, tuple[grpc.StatusCode, str]]:
    """Send broken uploads as 'one' (with one's certificate); return code and details per case."""
    plan = load_plan(ws / "plan" / "plan.yaml")
    results: dict[str, tuple[grpc.StatusCode, str]] = {}
    with AggregatorClient(plan, "one", client_credentials_for(plan, "one")) as client:
        init = {k: v for k, v in __import__("fx_cli").load_tensors(str(ws / "save" / "init.pbuf")).items()}
        me = client.caller
        bad = dict(init, w0=np.full_like(init["w0"], np.nan))

        def call(case: str, frames: list[Frame]) -> None:
            try:
                client.stub.upload_results(iter(frames), timeout=10)
                results[case] = (grpc.StatusCode.OK, "")
            except grpc.RpcError as err:
                results[case] = (err.code(), err.details())

        header = UploadMeta(me, 0, "train", 100, {"loss": 0.5}, tensor_count=len(init))
        call("no header", upload_frames(init))
        call("future round", [UploadMeta(me, 5, "train", 100, {})] + upload_frames(init))
        call("unassigned task", [UploadMeta(me, 0, "bogus", 100, {})] + upload_frames(init))
        call("nan tensor", [header] + upload_frames(bad))
        call("nan metric", [UploadMeta(me, 0, "train", 100, {"loss": float("nan")}, 4)] + upload_frames(init))
        call("unannounced tensors", [UploadMeta(me, 0, "train", 100, {})] + upload_frames(init))
        call("zero data size", [UploadMeta(me, 0, "train", 0, {})] + upload_frames(init))
        call("truncated", [header] + upload_frames(init)[:-2])
        call("other plan", [UploadMeta(Caller("one", "0" * 96), 0, "train", 100, {})] + upload_frames(init))
        call("claims to be two", [UploadMeta(Caller("two", plan.hash), 0, "train", 100, {})] + upload_frames(init))
        validation = [UploadMeta(me, 0, "aggregated_model_validation", 50, {"accuracy": 0.5}), Trailer(0, 0)]
        call("first validation", validation)
        call("duplicate", validation)
    return results


def test_hostile_uploads_get_precise_codes_and_the_federation_completes(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path, ["one", "two"], rounds=2)
    with aggregator_thread(ws) as state:
        results = hostile_calls(ws)
        errors: dict[str, BaseException] = {}

        def collaborate(name: str) -> None:
            try:
                run_collaborator(CollaboratorRun(name, ws / "plan" / "plan.yaml", ws / "plan" / "data.yaml"))
            except BaseException as err:  # noqa: BLE001
                errors[name] = err
        threads = [threading.Thread(target=collaborate, args=(n,)) for n in ("one", "two")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert not errors and "error" not in state, (errors, state)
    code = grpc.StatusCode
    expected = {"no header": (code.INVALID_ARGUMENT, "must start with its header"),
                "future round": (code.FAILED_PRECONDITION, "round 6 has not started"),
                "unassigned task": (code.FAILED_PRECONDITION, "task 'bogus' is not assigned to 'one'"),
                "nan tensor": (code.INVALID_ARGUMENT, "update from 'one' rejected: tensor 'w0' contains NaN"),
                "nan metric": (code.INVALID_ARGUMENT, "metric 'loss' of task 'train' is nan"),
                "zero data size": (code.INVALID_ARGUMENT, "data_size 0"),
                "truncated": (code.INVALID_ARGUMENT, "truncated"),
                "unannounced tensors": (code.INVALID_ARGUMENT, "announced 0 tensors; more arrived"),
                "other plan": (code.FAILED_PRECONDITION, "restart the collaborator with the aggregator's plan"),
                "claims to be two": (code.UNAUTHENTICATED, "does not match the claimed collaborator name 'two'"),
                "first validation": (code.OK, ""),
                "duplicate": (code.ALREADY_EXISTS, "already received; it is not counted twice")}
    for case, (want_code, text) in expected.items():
        got_code, details = results[case]
        assert got_code == want_code and text in details, (case, got_code, details)
    final = final_model(ws)
    for name, array in reference_fedavg(ws, {"one": 1, "two": 2}, 2).items():
        np.testing.assert_allclose(final[name], array, rtol=2e-6, atol=1e-6)


def test_a_spilled_update_damaged_on_disk_is_caught_while_aggregating(model: Any, tmp_path: Path) -> None:
    from fx_cli.aggregation import WeightedAverage
    from fx_cli.aggregator.combine import next_model
    from fx_cli.aggregator.state import UpdateRecord
    from fx_cli.errors import FxError

    spilled = receive(model, tmp_path, upload_frames({"w0": MODEL["w0"] * 3, "w1": MODEL["w1"] * 2}))
    record = UpdateRecord(0, "one", "train", 10, {}, str(spilled.path), spilled.nbytes, spilled.crcs)
    good = next_model(model, [record], WeightedAverage(), tmp_path / "round_1.pbuf")
    np.testing.assert_array_equal(good.read("w1"), MODEL["w1"] * 2)  # streamed slice by slice, CRC-checked
    with open(spilled.path, "r+b") as fh:  # flip one byte inside w1
        fh.seek(model.by_name["w0"].nbytes + 100)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0x40]))
    with pytest.raises(FxError, match="update of 'one' cannot be read.*'w1' does not match its checksum"):
        next_model(model, [record], WeightedAverage(), tmp_path / "round_1b.pbuf")


@pytest.fixture
def spares_for_any_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spills of the small test model are recycled as large ones are (``SPARE_MIN_BYTES``)."""
    monkeypatch.setattr("fx_cli.aggregator.intake.SPARE_MIN_BYTES", 0)


@pytest.mark.usefixtures("spares_for_any_size")
def test_a_finished_rounds_spills_are_overwritten_by_the_next_rounds_uploads(model: Any, tmp_path: Path) -> None:
    from fx_cli.aggregator.layout import SPARE_SPILLS, StateLayout

    layout = StateLayout(tmp_path / "state")
    first = UpdateIntake(model, layout.new_update(0, "one", "train"), set()).receive(iter(upload_frames(MODEL)))
    layout.round_updates(0).joinpath("junk.f32.part-1-2").write_bytes(b"x")  # a stray: not kept
    spare_inode = first.path.stat().st_ino
    layout.drop_round_updates(0, keep_spares=True)
    spares = layout.updates / SPARE_SPILLS
    (spare,) = spares.iterdir()
    assert not layout.round_updates(0).exists() and spare.stat().st_ino == spare_inode
    with open(spare, "ab") as fh:  # longer than a spill: the next one is cut to its own length
        fh.write(b"\xff" * 4096)
    update = {"w0": MODEL["w0"] * 3, "w1": MODEL["w1"] - 7}
    second = UpdateIntake(model, layout.new_update(1, "one", "train"), set()).receive(iter(upload_frames(update)))
    assert second.path.stat().st_ino == spare_inode and not list(spares.iterdir())  # the same file, renamed
    assert second.path.stat().st_size == model.nbytes
    for i, entry in enumerate(model.entries):
        np.testing.assert_array_equal(load_spilled(second.path, model, entry.name, second.crcs[i]), update[entry.name])
    third = UpdateIntake(model, layout.new_update(1, "two", "train"), set()).receive(iter(upload_frames(update)))
    assert third.path.stat().st_ino != spare_inode  # no spare left: a new file
    assert third.path.read_bytes() == second.path.read_bytes()


@pytest.mark.usefixtures("spares_for_any_size")
def test_spares_are_one_rounds_worth_and_go_at_the_end_or_with_a_refused_upload(model: Any, tmp_path: Path) -> None:
    from fx_cli.aggregator.layout import SPARE_SPILLS, StateLayout

    layout = StateLayout(tmp_path / "state")
    spares = layout.updates / SPARE_SPILLS
    for col in ("one", "two", "three"):
        UpdateIntake(model, layout.new_update(0, col, "train"), set()).receive(iter(upload_frames(MODEL)))
    layout.drop_round_updates(0, keep_spares=True)
    assert len(list(spares.iterdir())) == 3
    UpdateIntake(model, layout.new_update(1, "one", "train"), set()).receive(iter(upload_frames(MODEL)))
    with pytest.raises(StreamError, match="NaN or Inf"):  # the spare it took is deleted with its .part
        UpdateIntake(model, layout.new_update(1, "two", "train"), set()).receive(iter(upload_frames(nan_update())))
    assert len(list(spares.iterdir())) == 1 and len(list(layout.round_updates(1).iterdir())) == 1
    layout.drop_round_updates(1, keep_spares=True)  # round 0's unused spare goes
    assert [p.suffix for p in spares.iterdir()] == [".spare"] and len(list(spares.iterdir())) == 1
    layout.drop_spare_spills()
    assert not list(spares.iterdir())


def test_spills_of_a_small_model_are_deleted_not_kept(model: Any, tmp_path: Path) -> None:
    from fx_cli.aggregator.layout import SPARE_MIN_BYTES, SPARE_SPILLS, StateLayout

    assert model.nbytes < SPARE_MIN_BYTES
    layout = StateLayout(tmp_path / "state")
    UpdateIntake(model, layout.new_update(0, "one", "train"), set()).receive(iter(upload_frames(MODEL)))
    layout.drop_round_updates(0)
    assert not layout.round_updates(0).exists() and not (layout.updates / SPARE_SPILLS).exists()
