"""Compression pipelines: exact lossless round trips, stated error bounds for lossy ones, clear errors."""
from __future__ import annotations

import zlib

import numpy as np
import pytest

from fx_cli.compression import (Float16Pipeline, Int8QuantizationPipeline, NoCompressionPipeline, ZlibPipeline,
                                pipeline_by_name, resolve_pipeline)
from fx_cli.compression import shuffle
from fx_cli.errors import FxError

ALL = [NoCompressionPipeline(), ZlibPipeline(), Float16Pipeline(), Int8QuantizationPipeline()]
LOSSLESS = [NoCompressionPipeline(), ZlibPipeline(level=6)]
LOSSY = [Float16Pipeline(), Int8QuantizationPipeline()]
RNG = np.random.default_rng(0)


def _round_trip(pipeline, array):
    """Encode, copy to bytes as the wire would, decode with the receiver's pipeline."""
    payload, metadata = pipeline.encode(array)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    receiver = pipeline_by_name(pipeline.name)
    return receiver.decode(bytes(payload), dict(metadata), array.dtype, array.shape), payload, metadata


SAMPLES = {
    "float32 odd shape": RNG.normal(size=(3, 1, 7)).astype(np.float32),
    "float32 0-d": np.array(-2.75, np.float32),
    "float32 empty": np.zeros((0, 5), np.float32),
    "float64": RNG.normal(size=(11,)),
    "float16": RNG.normal(size=(4, 4)).astype(np.float16),
    "int64": np.arange(-5, 12, dtype=np.int64).reshape(17, 1),
    "uint8": np.arange(250, dtype=np.uint8),
    "int32 0-d": np.array(7, np.int32),
    "bool": np.array([[True, False, True]]),
    "complex64": (RNG.normal(size=5) + 1j * RNG.normal(size=5)).astype(np.complex64),
    "big-endian float32": RNG.normal(size=(2, 3)).astype(">f4"),
    "non-contiguous": RNG.normal(size=(6, 8)).astype(np.float32)[::2, 1::3].T,
}


@pytest.mark.parametrize("pipeline", LOSSLESS, ids=lambda p: p.name)
@pytest.mark.parametrize("name", SAMPLES)
def test_lossless_round_trip_is_exact(pipeline, name):
    array = SAMPLES[name]
    out, _, _ = _round_trip(pipeline, array)
    assert out.shape == array.shape and out.dtype == array.dtype.newbyteorder("=")
    np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize("pipeline", LOSSY, ids=lambda p: p.name)
@pytest.mark.parametrize("name", ["int64", "uint8", "int32 0-d", "bool", "float32 empty"])
def test_lossy_pipelines_pass_non_float_and_empty_tensors_unchanged(pipeline, name):
    array = SAMPLES[name]
    out, payload, metadata = _round_trip(pipeline, array)
    assert metadata["encoding"] == "raw" and memoryview(payload).nbytes == array.nbytes
    np.testing.assert_array_equal(out, array)
    assert out.dtype == array.dtype


def test_no_compression_is_zero_copy_both_ways():
    array = RNG.normal(size=(64, 33)).astype(np.float32)
    payload, metadata = NoCompressionPipeline().encode(array)
    assert metadata == {} and np.shares_memory(np.frombuffer(payload, np.uint8), array)
    wire = bytearray(payload)
    out = NoCompressionPipeline().decode(wire, {}, np.float32, array.shape)
    assert np.shares_memory(out, np.frombuffer(wire, np.uint8))
    np.testing.assert_array_equal(out, array)


def test_no_compression_payload_is_little_endian_c_order():
    array = np.array([[1, 2], [3, 4]], dtype=">i2").T
    payload, _ = NoCompressionPipeline().encode(array)
    assert bytes(payload) == bytes([1, 0, 3, 0, 2, 0, 4, 0])


def test_zlib_shrinks_redundant_tensors_and_level_is_a_setting():
    sparse = np.zeros(100_000, np.float32)
    sparse[::1000] = 1.0
    fast, _ = ZlibPipeline(level=1).encode(sparse)
    best, _ = ZlibPipeline(level=9).encode(sparse)
    assert len(best) <= len(fast) < sparse.nbytes / 50
    with pytest.raises(ValueError, match="0-9"):
        ZlibPipeline(level=12)


def test_zlib_byte_shuffle_round_trips_across_blocks_and_beats_plain_zlib():
    weights = (RNG.normal(size=300_001) * 0.05).astype(np.float32)  # more than one shuffle block
    shuffled, metadata = ZlibPipeline().encode(weights)
    plain, plain_meta = ZlibPipeline(shuffle=False).encode(weights)
    assert metadata == {"shuffle": str(shuffle.BLOCK)} and plain_meta == {}
    assert len(shuffled) < 0.9 * weights.nbytes and len(shuffled) < len(plain)
    for payload, meta in ((shuffled, metadata), (plain, plain_meta)):
        np.testing.assert_array_equal(ZlibPipeline().decode(payload, meta, np.float32, weights.shape), weights)


def test_unshuffle_inverts_shuffle_for_any_block_size():
    array = np.arange(23, dtype=np.int64) * 1_000_003
    for block in (1, 5, 23, 100):
        raw = b"".join(bytes(b) for b in shuffle.shuffled_blocks(memoryview(array.view(np.uint8)), 8, block))
        assert (raw == array.tobytes()) == (block == 1)  # one element per block: nothing to shuffle
        np.testing.assert_array_equal(shuffle.unshuffle(raw, np.dtype("<i8"), (23,), block), array)


def test_zlib_bad_shuffle_metadata_is_refused():
    payload, _ = ZlibPipeline().encode(np.ones(4, np.float32))
    with pytest.raises(FxError, match="'shuffle' must be a positive block size, got '-1'"):
        ZlibPipeline().decode(payload, {"shuffle": "-1"}, np.float32, (4,))


def test_fp16_error_is_within_half_precision_rounding():
    magnitudes = 10.0 ** RNG.uniform(-9, 4.5, size=20_000)
    array = (magnitudes * RNG.choice([-1.0, 1.0], size=magnitudes.size)).astype(np.float32)
    out, payload, metadata = _round_trip(Float16Pipeline(), array)
    assert metadata == {"encoding": "fp16"} and len(payload) == array.nbytes // 2
    bound = np.maximum(2.0 ** -11 * np.abs(array.astype(np.float64)), 2.0 ** -25)
    assert np.all(np.abs(out.astype(np.float64) - array) <= bound)
    assert out.dtype == np.float32


def test_fp16_keeps_nan_and_infinities_and_float64_dtype():
    array = np.array([1.0, np.nan, np.inf, -np.inf, -0.5])
    out, _, metadata = _round_trip(Float16Pipeline(), array)
    assert metadata["encoding"] == "fp16" and out.dtype == np.float64
    np.testing.assert_array_equal(out, array)


def test_fp16_sends_out_of_range_tensors_raw_rather_than_infinite():
    array = np.array([1.0, 70000.0, -3.0], np.float32)
    out, payload, metadata = _round_trip(Float16Pipeline(), array)
    assert metadata["encoding"] == "raw" and memoryview(payload).nbytes == array.nbytes
    np.testing.assert_array_equal(out, array)


def test_int8_error_is_within_half_a_quantisation_step():
    array = (RNG.normal(size=(257, 31)) * 3 + 1).astype(np.float32)
    out, payload, metadata = _round_trip(Int8QuantizationPipeline(), array)
    assert metadata["encoding"] == "int8" and len(payload) == array.size
    step = (float(array.max()) - float(array.min())) / 255
    error = np.abs(out.astype(np.float64) - array.astype(np.float64))
    assert np.all(error <= step / 2 + np.spacing(np.abs(array)))
    assert error.max() > step / 4  # it really is lossy
    assert out.min() == array.min() and out.max() == pytest.approx(array.max(), rel=1e-7)


def test_int8_constant_and_scalar_tensors_are_exact():
    for array in (np.full((3, 3), 0.125, np.float32), np.array(-4.5, np.float32), np.array([2.0], np.float64)):
        out, _, metadata = _round_trip(Int8QuantizationPipeline(), array)
        assert metadata["encoding"] == "int8" and metadata["scale"] == (0.0).hex()
        np.testing.assert_array_equal(out, array)
        assert out.shape == array.shape and out.dtype == array.dtype


def test_int8_sends_tensors_with_nan_or_inf_raw():
    for bad in (np.nan, np.inf):
        array = np.array([0.5, bad, -1.0], np.float32)
        out, _, metadata = _round_trip(Int8QuantizationPipeline(), array)
        assert metadata["encoding"] == "raw"
        np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize("pipeline", ALL, ids=lambda p: p.name)
def test_wrong_length_payload_is_a_clear_error(pipeline):
    array = RNG.normal(size=(4, 5)).astype(np.float32)
    payload, metadata = pipeline.encode(array)
    short = bytes(payload)[:-3]
    with pytest.raises(FxError, match=f"'{pipeline.name}' payload for a float32\\[4, 5\\] tensor") as err:
        pipeline.decode(short, metadata, np.float32, (4, 5))
    assert "hint" in str(err.value)
    with pytest.raises(FxError):
        pipeline.decode(bytes(payload) + b"\0\0\0\0", metadata, np.float32, (4, 5))


def test_zlib_refuses_a_payload_that_inflates_past_the_tensor():
    payload, _ = ZlibPipeline().encode(np.zeros(10_000, np.float32))
    with pytest.raises(FxError, match="inflates to more than the 40 bytes"):
        ZlibPipeline().decode(payload, {}, np.float32, (10,))
    with pytest.raises(FxError, match="corrupt"):
        ZlibPipeline().decode(b"not zlib at all", {}, np.float32, (10,))
    with pytest.raises(FxError, match="bytes follow the compressed stream"):
        ZlibPipeline().decode(zlib.compress(bytes(40)) + b"extra", {}, np.float32, (10,))


def test_lossy_metadata_problems_name_the_key():
    payload, metadata = Int8QuantizationPipeline().encode(np.arange(4, dtype=np.float32))
    with pytest.raises(FxError, match="lacks 'scale'"):
        Int8QuantizationPipeline().decode(payload, {"encoding": "int8", "min": metadata["min"]}, np.float32, (4,))
    with pytest.raises(FxError, match="'min' is not a hex float"):
        Int8QuantizationPipeline().decode(payload, {**metadata, "min": "1e400x"}, np.float32, (4,))
    with pytest.raises(FxError, match="unknown encoding 'zstd'"):
        Float16Pipeline().decode(payload, {"encoding": "zstd"}, np.float32, (4,))


def test_unknown_wire_pipeline_is_refused_with_the_known_ones():
    with pytest.raises(FxError, match=r"unknown pipeline 'eden' \(this fx knows: none, zlib, fp16, int8\)"):
        pipeline_by_name("eden")


def test_object_arrays_are_refused_never_pickled():
    with pytest.raises(FxError, match="dtype object cannot travel"):
        NoCompressionPipeline().encode(np.array([{"a": 1}], dtype=object))
    with pytest.raises(FxError, match="negative dimension"):
        NoCompressionPipeline().decode(b"", {}, np.float32, (-1, 0))


def test_plan_names_build_pipelines_with_settings(tmp_path):
    zl = resolve_pipeline("fx_cli.compression.ZlibPipeline", {"level": 4}, tmp_path)
    assert isinstance(zl, ZlibPipeline) and zl.level == 4 and zl.lossless
    assert isinstance(resolve_pipeline("openfl.pipelines.NoCompressionPipeline", {}, tmp_path), NoCompressionPipeline)
    assert not resolve_pipeline("fx_cli.compression.Int8QuantizationPipeline", None, tmp_path).lossless
    assert isinstance(resolve_pipeline(None, None, tmp_path), NoCompressionPipeline)
    with pytest.raises(FxError, match="compression_pipeline.settings: cannot build"):
        resolve_pipeline("fx_cli.compression.ZlibPipeline", {"level": 99}, tmp_path)
    with pytest.raises(FxError, match="is not a fx_cli.compression.Pipeline"):
        resolve_pipeline("fx_cli.aggregation.Median", {}, tmp_path)
