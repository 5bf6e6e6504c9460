"""Regenerate the protobuf modules (and their ``.pyi`` type stubs) from ``protos/*.proto``.

Needs grpcio-tools.

The generated files are committed so a fresh clone works without grpcio-tools.
The gencode runtime-version assertion is removed so the modules load on every
protobuf release from 4.21 on (they use only the descriptor-pool builder API);
``tests/test_protos.py`` checks the committed files match this output.
"""
from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTOS = ROOT / "protos"
OUT = ROOT / "fx_cli" / "proto"

_VERSION_CHECK = re.compile(
    r"from google\.protobuf import runtime_version as _runtime_version\n|"
    r"_runtime_version\.ValidateProtobufRuntimeVersion\(\n(?:.*\n)*?\)\n")


def generate(out: Path) -> list[Path]:
    """Compile every .proto into ``out``; returns the written files."""
    sources = sorted(p.name for p in PROTOS.glob("*.proto"))
    # A child process: grpc_tools' embedded protoc crashes a process that has loaded TensorFlow.
    args = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTOS}", f"--python_out={out}",
            f"--pyi_out={out}", *sources]
    if subprocess.run(args).returncode != 0:
        raise SystemExit("protoc failed")
    written = []
    for name in sources:
        for suffix in ("_pb2.py", "_pb2.pyi"):
            path = out / (Path(name).stem + suffix)
            text = _VERSION_CHECK.sub("", path.read_text())
            text = re.sub(r"^import (\w+_pb2) as", r"from fx_cli.proto import \1 as", text, flags=re.M)
            path.write_text(text)
            written.append(path)
    return written


def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    for path in generate(target):
        print(f"wrote {path}")


def generated_text() -> dict[str, str]:
    """The generated files as they would be written now, by file name."""
    with tempfile.TemporaryDirectory() as tmp:
        return {p.name: p.read_text() for p in generate(Path(tmp))}


if __name__ == "__main__":
    main()
