"""The committed generated protobuf modules match protos/*.proto."""
from __future__ import annotations

from pathlib import Path

from fx_cli.proto import generate


def test_generated_modules_match_the_proto_sources():
    fresh = generate.generated_text()
    assert fresh, "no .proto sources found"
    for name, text in fresh.items():
        committed = Path(generate.OUT / name)
        assert committed.exists(), f"{name} not committed: run make protos"
        assert committed.read_text() == text, f"{name} is stale: run make protos"
