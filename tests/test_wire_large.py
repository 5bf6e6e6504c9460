"""A single tensor larger than 4 GiB: every size on its way is a Python int or a 64-bit field.

The real >4 GiB run is ``python -m benchmarks.bench_wire --huge`` (too slow and too big for CI); these
tests take the same code paths with sizes past 2**32 that cost no memory, and a federation whose one
tensor crosses thousands of chunk boundaries.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest

from fx_cli.tensors import varint
from fx_cli.tensors.pbuf import DATA_BYTES_KEY, MODEL_TENSORS_KEY, _named_tensor_head, model_headers
from fx_cli.transport import serde
from fx_cli.transport.chunks import check_meta, trailer_of
from fx_cli.transport.frames import (download_frame_from_bytes, download_frame_to_bytes, upload_frame_from_bytes,
                                     upload_frame_to_bytes)
from fx_cli.transport.serde import ModelMeta, TensorMeta, Trailer
from tests.runtime_helpers import final_model, make_workspace, reference_fedavg, run_in_process

HUGE = 1_250_000_000  # float32 elements: 5,000,000,000 bytes, past 2**32
HUGE_BYTES = HUGE * 4


def test_headers_and_trailers_of_a_5_gb_tensor_keep_their_sizes_on_the_wire() -> None:
    meta = TensorMeta("w", "<f4", (HUGE,), HUGE_BYTES, 0xFFFFFFFF)
    assert check_meta(meta, HUGE_BYTES) == np.dtype("<f4")  # shape x itemsize in Python ints, no overflow
    for to_bytes, from_bytes in ((upload_frame_to_bytes, upload_frame_from_bytes),
                                 (download_frame_to_bytes, download_frame_from_bytes)):
        assert from_bytes(to_bytes(meta)) == meta
        assert from_bytes(to_bytes(trailer_of([meta, meta]))) == Trailer(2, 2 * HUGE_BYTES)
    assert download_frame_from_bytes(download_frame_to_bytes(ModelMeta(3, 1, HUGE_BYTES))) == \
        ModelMeta(3, 1, HUGE_BYTES)
    assert math.ceil(HUGE_BYTES / (4 << 20)) == 1193  # chunks of the default size: an ordinary loop count


def test_a_model_file_with_a_5_gb_tensor_is_indexed_without_reading_it(tmp_path: Path) -> None:
    head = _named_tensor_head("w", (HUGE,), 0, ["model"])
    data_key = varint.encode(DATA_BYTES_KEY) + varint.encode(HUGE_BYTES)
    record = varint.encode(MODEL_TENSORS_KEY) + varint.encode(len(head) + len(data_key) + HUGE_BYTES)
    path = tmp_path / "huge.pbuf"
    with open(path, "wb") as fh:  # a sparse file: the 5 GB of zeros take no disk space
        fh.write(record + head + data_key)
        fh.truncate(len(record) + len(head) + len(data_key) + HUGE_BYTES)
    (header,) = model_headers(path)
    assert header.name == "w" and header.shape == (HUGE,) and header.nbytes == HUGE_BYTES


def test_one_tensor_in_thousands_of_chunks_goes_through_a_federation(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    # 4 KiB chunks (the smallest) and one 2.4 MB tensor: about 600 chunks each way per collaborator and round,
    # through the smallest flow-control window (two chunks in flight per stream)
    ws = make_workspace(tmp_path, ["one", "two"], rounds=2, num_params=600_000, num_tensors=1,
                        network={"chunk_size_mib": 0.004, "stream_window_mib": 0.001})
    fx_log = logging.getLogger("fx")  # fx's loggers do not propagate to the root logger
    fx_log.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="fx"):
            out = run_in_process(ws, ["one", "two"], timeout=120)
    finally:
        fx_log.removeHandler(caplog.handler)
    assert not out.errors, out.errors
    assert "streams: chunks of 4,192 bytes; at most 8,384 bytes in flight per stream" in caplog.text
    reference = reference_fedavg(ws, {"one": 1, "two": 2}, rounds=2)
    for name, array in final_model(ws).items():
        np.testing.assert_allclose(array, reference[name], rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("final_evaluation", [True, False])
def test_spills_recycled_across_rounds_give_the_same_model_and_none_is_left_at_the_end(
        tmp_path: Path, final_evaluation: bool) -> None:
    from fx_cli.aggregator.layout import SPARE_MIN_BYTES

    params = SPARE_MIN_BYTES // 4 + 1000  # spills just over the size that is recycled
    ws = make_workspace(tmp_path, ["one", "two"], rounds=3, num_params=params, num_tensors=3,
                        aggregator={"final_evaluation": final_evaluation})
    out = run_in_process(ws, ["one", "two"], timeout=120)
    assert not out.errors, out.errors
    reference = reference_fedavg(ws, {"one": 1, "two": 2}, rounds=3)
    for name, array in final_model(ws).items():
        np.testing.assert_allclose(array, reference[name], rtol=2e-6, atol=1e-6)
    assert not [p for p in (ws / "local_state").rglob("*") if p.is_file() and "updates" in p.parts]
