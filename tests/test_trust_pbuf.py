""".pbuf files that are not what they claim: malformed varints, empty and cut files, flipped bytes, a model
made for another plan.  Every one is a ModelFileError/FxError naming the file, never a traceback, and the
aggregator refuses it at start (not after heartbeat_timeout)."""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest

from fx_cli.errors import ModelFileError
from fx_cli.tensors import varint
from fx_cli.tensors.pbuf import MODEL_TENSORS_KEY, iter_model, model_headers, model_trailer, read_model, write_model
from tests.conftest import run_fx
from tests.fault_helpers import flat, processes
from tests.runtime_helpers import edit_plan, make_workspace

TENSORS = {f"t{i}": np.arange(6 * (i + 1), dtype=np.float32) for i in range(3)}
TOO_LONG = b"\xff" * 11  # a varint of more than 10 bytes


def _fx_file(tmp_path: Path) -> tuple[Path, bytes]:
    path = tmp_path / "m.pbuf"
    write_model(path, TENSORS)
    return path, path.read_bytes()


def _boundaries(raw: bytes) -> list[int]:
    """Byte offsets where each NamedTensor record starts, plus where the checksum record starts."""
    import io
    fh, out = io.BytesIO(raw), []
    while True:
        out.append(fh.tell())
        key = varint.read(fh)
        if key != MODEL_TENSORS_KEY:
            return out
        fh.seek(varint.read(fh) or 0, 1)


MALFORMED = {
    "record key too long": lambda raw: TOO_LONG + raw,
    "record length too long": lambda raw: bytes([MODEL_TENSORS_KEY]) + TOO_LONG + raw,
    "field key inside a record too long": lambda raw: bytes([MODEL_TENSORS_KEY, 12]) + TOO_LONG + b"\0",
    "file ends inside the length varint": lambda raw: bytes([MODEL_TENSORS_KEY, 0x80]),
    "file ends inside the key varint": lambda raw: raw[:_boundaries(raw)[1]] + b"\x8a",
    "group wire type": lambda raw: bytes([MODEL_TENSORS_KEY, 2, 0x0B, 0x0C]) + raw,
    "checksum record of garbage": lambda raw: raw[:_boundaries(raw)[-1]] + bytes.fromhex("9203") + b"\x03abc",
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_bytes_are_a_model_file_error_not_a_value_error(case, tmp_path):
    path, raw = _fx_file(tmp_path)
    path.write_bytes(MALFORMED[case](raw))
    for read in (read_model, model_headers):
        with pytest.raises(ModelFileError) as caught:
            read(path)
        assert str(path) in caught.value.message
    res = run_fx("model", "info", "-i", str(path))
    assert res.exit_code == 1 and "Traceback" not in res.all and str(path) in res.stderr


def test_an_empty_file_is_not_a_model(tmp_path):
    path = tmp_path / "empty.pbuf"
    path.write_bytes(b"")
    with pytest.raises(ModelFileError, match="holds no tensors"):
        read_model(path)
    res = run_fx("model", "info", "-i", str(path))
    assert res.exit_code == 1 and "holds no tensors" in res.stderr


def test_a_checksum_record_alone_is_not_a_model(tmp_path):
    path, raw = _fx_file(tmp_path)
    write_model(path, {})
    with pytest.raises(ModelFileError, match="holds no tensors"):
        read_model(path)


def test_every_cut_at_a_record_boundary_is_detected(tmp_path):
    path, raw = _fx_file(tmp_path)
    cuts = _boundaries(raw)
    assert len(cuts) == len(TENSORS) + 1
    for cut in cuts:
        path.write_bytes(raw[:cut])
        with pytest.raises(ModelFileError) as caught:
            read_model(path, require_checksum=True)
        assert "holds no tensors" in caught.value.message or "no fx checksum record" in caught.value.message
        if cut:
            assert model_trailer(path) is None  # OpenFL-style file: readable, but says it has no checksum


def test_a_checksum_record_moved_onto_fewer_tensors_is_detected(tmp_path):
    path, raw = _fx_file(tmp_path)
    cuts = _boundaries(raw)
    path.write_bytes(raw[:cuts[1]] + raw[cuts[-1]:])  # first tensor, then the original checksum record
    with pytest.raises(ModelFileError, match="expects 3 tensors .* the file holds 1"):
        model_headers(path)


def test_a_flipped_byte_anywhere_is_detected(tmp_path):
    path, raw = _fx_file(tmp_path)
    # every byte of tensor data and of the records' headers (flipping some header bytes is a parse error instead)
    for offset in range(0, _boundaries(raw)[-1]):
        damaged = bytearray(raw)
        damaged[offset] ^= 0x01
        path.write_bytes(bytes(damaged))
        with pytest.raises(ModelFileError):
            read_model(path)


def test_openfl_reads_fx_files_and_keeps_the_checksum_record(tmp_path):
    from tests.test_pbuf import reference_model_proto

    path, raw = _fx_file(tmp_path)
    msg = reference_model_proto().FromString(raw)
    assert [t.name for t in msg.tensors] == list(TENSORS)
    assert msg.SerializeToString() == raw  # an OpenFL round trip keeps the unknown field, so the check survives
    assert read_model(path).trailer is not None


def test_model_info_says_whether_the_file_has_fxs_checksum(tmp_path):
    path, raw = _fx_file(tmp_path)
    res = run_fx("model", "info", "-i", str(path))
    assert res.exit_code == 0 and "fx checksum record: 3 tensors" in res.output
    path.write_bytes(raw[:_boundaries(raw)[-1]])
    res = run_fx("model", "info", "-i", str(path))
    assert res.exit_code == 0 and "no fx checksum record" in res.output


# Aggregator start, as a real process: each damaged initial model is named at once.
INIT_DAMAGE = {
    "cut at the last record boundary": lambda raw: raw[:_boundaries(raw)[-1]],
    "cut at the first record boundary": lambda raw: raw[:_boundaries(raw)[1]],
    "empty": lambda raw: b"",
    "flipped tensor byte": lambda raw: raw[:40] + bytes([raw[40] ^ 0x10]) + raw[41:],
    "malformed varint": lambda raw: TOO_LONG + raw,
}


@pytest.fixture(scope="module")
def init_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_workspace(tmp_path_factory.mktemp("init"), ["one"], rounds=1)


@pytest.mark.parametrize("case", sorted(INIT_DAMAGE))
def test_aggregator_start_refuses_a_damaged_initial_model_at_once(case, init_ws):
    init = init_ws / "save" / "init.pbuf"
    good = init.read_bytes()
    init.write_bytes(INIT_DAMAGE[case](good))
    try:
        with processes(init_ws) as procs:
            agg = procs.aggregator()
            assert agg.wait(60) == 1, agg.output()
        text = flat(agg.output())
    finally:
        init.write_bytes(good)
    assert "init.pbuf" in text and "Traceback" not in text, text
    assert "last heard" not in text and "heartbeat" not in text


@pytest.mark.parametrize("change, fits", [({"task_runner": {"num_params": 2000}}, False),
                                          ({"task_runner": {"num_tensors": 3}}, False),
                                          ({"data_loader": {"samples_per_shard": 50}}, True)])
def test_an_initial_model_made_for_another_plan_model_is_refused(change, fits, tmp_path, monkeypatch):
    ws = make_workspace(tmp_path, ["one"], rounds=1, tls=False)
    edit_plan(ws, **change)
    monkeypatch.chdir(ws)
    for command in (("aggregator", "start"), ("workspace", "export")):
        res = run_fx(*command)
        assert res.exit_code == 1 and "was made for another model" in res.stderr, res.all
        assert "fx plan initialize" in res.stderr
    # Re-initialising from the old weights checks every tensor against the plan's model.
    res = run_fx("plan", "initialize", "-i", "save/init.pbuf")
    if fits:  # same tensors: the weights are kept and the model is now the plan's
        assert res.exit_code == 0, res.all
        assert run_fx("workspace", "export").exit_code == 0
    else:
        assert res.exit_code == 1 and "does not fit the plan's model" in res.stderr, res.all


def test_plan_initialize_from_a_file_cut_at_a_record_boundary_names_the_missing_tensors(tmp_path):
    ws = make_workspace(tmp_path, ["one"], rounds=1, tls=False)
    init = ws / "save" / "init.pbuf"
    raw = init.read_bytes()
    cut = tmp_path / "cut.pbuf"
    cut.write_bytes(raw[:_boundaries(raw)[-2]])
    with contextlib.chdir(ws):
        res = run_fx("plan", "initialize", "-i", str(cut))
    assert res.exit_code == 1 and "does not fit the plan's model" in res.stderr, res.all
    assert list(iter_model(init))  # the good initial model was not touched
