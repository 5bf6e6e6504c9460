"""The .pbuf model-file format: streaming, OpenFL byte compatibility, clear errors."""
from __future__ import annotations

import numpy as np
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from fx_cli import load_tensors, save_tensors
from fx_cli.errors import ModelFileError
from fx_cli.tensors.pbuf import model_headers, read_model, write_model


def reference_model_proto():
    """ModelProto built from the reference's field table (OpenFL base.proto: no package)."""
    f = descriptor_pb2.FileDescriptorProto(name="openfl_reference_base.proto", syntax="proto3")
    T = descriptor_pb2.FieldDescriptorProto
    meta = f.message_type.add(name="MetadataProto")
    entry = meta.nested_type.add(name="IntToFloatEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=T.TYPE_INT32, label=T.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=T.TYPE_FLOAT, label=T.LABEL_OPTIONAL)
    meta.field.add(name="int_to_float", number=1, type=T.TYPE_MESSAGE, label=T.LABEL_REPEATED,
                   type_name=".MetadataProto.IntToFloatEntry")
    meta.field.add(name="int_list", number=2, type=T.TYPE_INT32, label=T.LABEL_REPEATED)
    meta.field.add(name="bool_list", number=3, type=T.TYPE_BOOL, label=T.LABEL_REPEATED)
    nt = f.message_type.add(name="NamedTensor")
    for name, number, kind, label in [("name", 1, T.TYPE_STRING, T.LABEL_OPTIONAL),
                                      ("round_number", 2, T.TYPE_INT32, T.LABEL_OPTIONAL),
                                      ("lossless", 3, T.TYPE_BOOL, T.LABEL_OPTIONAL),
                                      ("report", 4, T.TYPE_BOOL, T.LABEL_OPTIONAL),
                                      ("tags", 5, T.TYPE_STRING, T.LABEL_REPEATED),
                                      ("data_bytes", 7, T.TYPE_BYTES, T.LABEL_OPTIONAL)]:
        nt.field.add(name=name, number=number, type=kind, label=label)
    nt.field.add(name="transformer_metadata", number=6, type=T.TYPE_MESSAGE, label=T.LABEL_REPEATED,
                 type_name=".MetadataProto")
    mp = f.message_type.add(name="ModelProto")
    mp.field.add(name="tensors", number=1, type=T.TYPE_MESSAGE, label=T.LABEL_REPEATED, type_name=".NamedTensor")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("ModelProto"))


TENSORS = {
    "conv/kernel": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
    "scalar": np.array(1.5, dtype=np.float32),
    "empty": np.zeros((0, 3), dtype=np.float32),
    "ints": np.array([1, 2, 3], dtype=np.int64),  # stored as float32, like OpenFL
}


def test_round_trip_keeps_names_shapes_values_and_round(tmp_path):
    path = tmp_path / "m.pbuf"
    write_model(path, TENSORS, round_number=4)
    model = read_model(path)
    assert model.round_number == 4
    assert list(model.tensors) == list(TENSORS)
    for name, array in TENSORS.items():
        assert model.tensors[name].shape == array.shape
        np.testing.assert_array_equal(model.tensors[name], array.astype(np.float32))


def test_fx_file_parses_with_reference_model_proto_and_is_canonical(tmp_path):
    path = tmp_path / "m.pbuf"
    write_model(path, TENSORS, round_number=2)
    raw = path.read_bytes()
    ModelProto = reference_model_proto()
    msg = ModelProto.FromString(raw)
    assert [t.name for t in msg.tensors] == list(TENSORS)
    kernel = msg.tensors[0]
    assert kernel.round_number == 2 and kernel.lossless and not kernel.report and list(kernel.tags) == ["model"]
    assert list(kernel.transformer_metadata[0].int_list) == [2, 3, 4]
    assert np.frombuffer(kernel.data_bytes, "<f4").tolist() == list(range(24))
    assert len(msg.tensors[1].transformer_metadata) == 1  # 0-d: empty but present metadata
    assert msg.SerializeToString() == raw  # byte-identical to protobuf's own encoding


def test_file_written_by_reference_proto_reads_in_fx(tmp_path):
    ModelProto = reference_model_proto()
    msg = ModelProto()
    for name, shape in [("dense/kernel", (3, 2)), ("dense/bias", (2,))]:
        t = msg.tensors.add(name=name, round_number=7, lossless=True, tags=["model"])
        t.transformer_metadata.add().int_list.extend(shape)
        t.data_bytes = np.full(shape, 0.25, dtype="<f4").tobytes()
    path = tmp_path / "openfl.pbuf"
    path.write_bytes(msg.SerializeToString())
    model = read_model(path)
    assert model.round_number == 7
    np.testing.assert_array_equal(model.tensors["dense/kernel"], np.full((3, 2), 0.25, np.float32))


def test_noop_init_is_openfls_33_bytes_then_fxs_checksum_record(tmp_path):
    path = tmp_path / "init.pbuf"
    write_model(path, {"dummy_tensor": np.array(1.0, np.float32)})
    raw = path.read_bytes()
    assert raw[:33].endswith(bytes.fromhex("0000803f"))
    assert raw[33:35] == bytes.fromhex("9203")  # field 50, length-delimited: OpenFL keeps it as an unknown field


def test_public_api_save_and_load_tensors(tmp_path):
    save_tensors(str(tmp_path / "a.pbuf"), {"x": np.ones(3, np.float32)})
    assert load_tensors(str(tmp_path / "a.pbuf"))["x"].tolist() == [1.0, 1.0, 1.0]


def test_headers_are_read_without_tensor_data(tmp_path):
    path = tmp_path / "m.pbuf"
    write_model(path, TENSORS)
    headers = model_headers(path)
    assert [(h.name, h.shape, h.nbytes) for h in headers][:2] == [("conv/kernel", (2, 3, 4), 96), ("scalar", (), 4)]


def _corrupt(tmp_path, mutate) -> str:
    path = tmp_path / "m.pbuf"
    write_model(path, {"a": np.ones(4, np.float32), "b": np.ones(4, np.float32)})
    path.write_bytes(mutate(path.read_bytes()))
    with pytest.raises(ModelFileError) as info:
        read_model(path)
    assert str(path) in info.value.message
    return info.value.message


def _records_end(raw: bytes) -> int:
    """Where fx's checksum record starts (the tensor records end)."""
    return raw.rindex(bytes.fromhex("9203"), 0, len(raw) - 40)


def test_truncated_file_names_file_and_tensor(tmp_path):
    message = _corrupt(tmp_path, lambda raw: raw[:_records_end(raw) - 3])
    assert "tensor #1" in message and "truncated" in message


def test_truncated_checksum_record_is_named(tmp_path):
    message = _corrupt(tmp_path, lambda raw: raw[:-3])
    assert "checksum record" in message


def test_garbage_file_is_refused(tmp_path):
    assert "not a ModelProto" in _corrupt(tmp_path, lambda raw: b"\x12\x05hello" + raw)


def test_shape_that_does_not_match_the_bytes_is_refused(tmp_path):
    def bump_shape(raw: bytes) -> bytes:  # int_list [4] -> [5] in the first tensor's metadata
        return raw.replace(bytes([0x32, 0x03, 0x12, 0x01, 0x04]), bytes([0x32, 0x03, 0x12, 0x01, 0x05]), 1)
    message = _corrupt(tmp_path, bump_shape)
    assert "tensor 'a'" in message and "shape (5,)" in message


def test_mixed_round_numbers_are_refused(tmp_path):
    ModelProto = reference_model_proto()
    msg = ModelProto()
    for name, rnd in [("a", 1), ("b", 2)]:
        t = msg.tensors.add(name=name, round_number=rnd, tags=["model"])
        t.transformer_metadata.add().int_list.append(1)
        t.data_bytes = b"\x00\x00\x80\x3f"
    path = tmp_path / "mixed.pbuf"
    path.write_bytes(msg.SerializeToString())
    with pytest.raises(ModelFileError, match=r"tensor 'b': mixed round numbers \[1, 2\]"):
        read_model(path)


def test_unknown_encoding_is_refused(tmp_path):
    ModelProto = reference_model_proto()
    msg = ModelProto()
    t = msg.tensors.add(name="lossy", tags=["model"])
    m = t.transformer_metadata.add()
    m.int_to_float[0] = 0.5
    m.int_list.append(1)
    t.data_bytes = b"\x00"
    path = tmp_path / "lossy.pbuf"
    path.write_bytes(msg.SerializeToString())
    with pytest.raises(ModelFileError, match="tensor 'lossy': unknown encoding"):
        read_model(path)


def test_missing_file_has_a_hint(tmp_path):
    with pytest.raises(ModelFileError) as info:
        read_model(tmp_path / "nope.pbuf")
    assert "not found" in info.value.message and "fx plan initialize" in info.value.hint


def test_failed_write_leaves_the_previous_file_intact(tmp_path):
    path = tmp_path / "m.pbuf"
    write_model(path, {"a": np.ones(2, np.float32)})

    def items():
        yield "a", np.zeros(2, np.float32)
        raise OSError("disk full")
    with pytest.raises(OSError):
        write_model(path, items())
    assert read_model(path).tensors["a"].tolist() == [1.0, 1.0]
    assert [p.name for p in tmp_path.iterdir()] == ["m.pbuf"]


def test_a_shape_whose_size_overflows_int64_is_refused_not_read_as_empty(tmp_path):
    from fx_cli.proto import base_pb2

    model = base_pb2.ModelProto()
    tensor = model.tensors.add(name="huge", lossless=True)
    tensor.transformer_metadata.add().int_list.extend([2 ** 30] * 3)  # 2**90 values: 0 in int64 arithmetic
    path = tmp_path / "huge.pbuf"
    path.write_bytes(model.SerializeToString())
    for read in (read_model, model_headers):
        with pytest.raises(ModelFileError, match=r"tensor 'huge': shape \(1073741824, 1073741824, 1073741824\) "
                                                 r"needs 4,951,760,157,141,521,099,596,496,896 bytes"):
            read(path)


def test_model_info_on_a_damaged_file_exits_1_naming_the_file_and_tensor(tmp_path, fx):
    path = tmp_path / "m.pbuf"
    write_model(path, {"a": np.ones(4, np.float32), "b": np.ones(4, np.float32)})
    raw = path.read_bytes()
    path.write_bytes(raw[:_records_end(raw) - 3])
    res = fx("model", "info", "-i", str(path))
    assert res.exit_code == 1
    assert f"error: {path}: tensor #1: truncated" in res.stderr and "what to do:" in res.stderr
    res = fx("model", "info", "-i", str(tmp_path / "missing.pbuf"))
    assert res.exit_code == 1 and "model file not found" in res.stderr
