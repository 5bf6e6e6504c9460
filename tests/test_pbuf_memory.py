"""Model files stream: memory stays about one tensor whatever the file size (the >2 GiB run is in benchmarks/)."""
from __future__ import annotations

from benchmarks.bench_pbuf_large import measure


def test_streaming_read_and_write_use_memory_bounded_by_a_tensor(tmp_path):
    result = measure(total_bytes=384 * 2**20, tensor_bytes=16 * 2**20, directory=str(tmp_path))
    assert result["tensors"] == 24 and result["file_bytes"] > 384 * 2**20
    growth = result["peak_rss"] - result["baseline_rss"]
    # numpy + protobuf import (~30 MiB) plus two 16 MiB tensors, far below the 384 MiB file.
    assert growth < 96 * 2**20, growth
