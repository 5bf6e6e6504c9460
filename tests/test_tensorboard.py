"""The hand-written TensorBoard event files are read back by TensorFlow's own reader."""
from __future__ import annotations

import math
import subprocess
import sys
import time

import pytest

from fx_cli.metrics.crc32c import crc32c, masked_crc32c
from fx_cli.metrics.tensorboard import ScalarWriter, encode_event, frame_record


def _read_events(path):
    """Every event of ``path`` via TensorFlow (imported here only: the writer never imports it)."""
    import tensorflow as tf

    return list(tf.compat.v1.train.summary_iterator(str(path)))


def test_crc32c_matches_published_check_values():
    assert crc32c(b"") == 0
    assert crc32c(b"123456789") == 0xE3069283  # the CRC catalogue's check value for CRC-32C
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4, 32 bytes of zeros
    assert crc32c(bytes([0xFF] * 32)) == 0x62A8AB43
    assert masked_crc32c(b"") == 0xA282EAD8


@pytest.mark.tensorflow
def test_scalars_read_back_with_tensorflow(tmp_path):
    before = time.time()
    with ScalarWriter(tmp_path / "logs" / "tb") as writer:
        for step in range(1, 4):
            writer.add_scalars(step, {"aggregated_model_validation/accuracy": 0.5 + step / 10,
                                      "train/loss": 1.0 / step})
        path = writer.path
    assert path.name.startswith("events.out.tfevents.")
    events = _read_events(path)
    assert events[0].file_version == "brain.Event:2"
    assert before - 1 <= events[0].wall_time <= time.time() + 1
    steps = [(e.step, {v.tag: v.simple_value for v in e.summary.value}) for e in events[1:]]
    assert [s for s, _ in steps] == [1, 2, 3]
    for step, values in steps:
        assert values["aggregated_model_validation/accuracy"] == pytest.approx(0.5 + step / 10, rel=1e-7)
        assert values["train/loss"] == pytest.approx(1.0 / step, rel=1e-7)


@pytest.mark.tensorflow
def test_special_values_and_large_steps_survive(tmp_path):
    with ScalarWriter(tmp_path) as writer:
        writer.add_scalars(2**40, {"nan": math.nan, "big": 1e39, "neg": -1e39, "tiny": -2.5, "ünïcode": 1})
        path = writer.path
    event = _read_events(path)[1]
    values = {v.tag: v.simple_value for v in event.summary.value}
    assert event.step == 2**40 and math.isnan(values["nan"])
    assert values["big"] == math.inf and values["neg"] == -math.inf
    assert values["tiny"] == -2.5 and values["ünïcode"] == 1.0


@pytest.mark.tensorflow
def test_tensorflow_rejects_a_corrupted_record_so_our_checksums_are_real(tmp_path):
    with ScalarWriter(tmp_path) as writer:
        writer.add_scalars(1, {"acc": 0.25})
        path = writer.path
    data = bytearray(path.read_bytes())
    data[-6] ^= 0x01  # inside the last record's float value
    path.write_bytes(bytes(data))
    with pytest.raises(Exception, match="(?i)corrupt|checksum|crc|data ?loss"):
        _read_events(path)


def test_record_framing_layout():
    record = frame_record(b"abc")
    assert record[:8] == (3).to_bytes(8, "little")
    assert int.from_bytes(record[8:12], "little") == masked_crc32c(record[:8])
    assert record[12:15] == b"abc"
    assert int.from_bytes(record[15:], "little") == masked_crc32c(b"abc")
    assert encode_event(0.0, step=0)[-2:] == b"\x10\x00"


def test_two_writers_in_one_directory_use_separate_files(tmp_path):
    with ScalarWriter(tmp_path) as a, ScalarWriter(tmp_path) as b:
        a.add_scalars(1, {"x": 1.0})
        b.add_scalars(1, {"x": 2.0})
    assert a.path != b.path and len(list(tmp_path.iterdir())) == 2


def test_writing_after_close_is_refused(tmp_path):
    writer = ScalarWriter(tmp_path)
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.add_scalars(1, {"x": 1.0})


def test_unwritable_logdir_is_an_fx_error(tmp_path):
    from fx_cli.errors import FxError

    blocker = tmp_path / "logs"
    blocker.write_text("a file where the directory should be")
    with pytest.raises(FxError, match="cannot create a TensorBoard event file") as err:
        ScalarWriter(blocker / "tb")
    assert "write_logs" in err.value.hint


def test_writer_does_not_import_tensorflow(tmp_path):
    code = ("import sys\nfrom fx_cli.metrics.tensorboard import ScalarWriter\n"
            f"w = ScalarWriter({str(tmp_path)!r}); w.add_scalars(1, {{'a': 1.0}}); w.close()\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorboard', 'keras'))\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)
