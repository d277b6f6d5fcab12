"""The committed generated code is exactly what protoc makes from proto/signerd/v1/signerd.proto."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_matches_the_proto(tmp_path: Path) -> None:
    protoc = pytest.importorskip("grpc_tools.protoc")
    rc = protoc.main(["protoc", f"-I{ROOT / 'proto'}", f"--python_out={tmp_path}",
                      f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}",
                      str(ROOT / "proto/signerd/v1/signerd.proto")])
    assert rc == 0
    for name in ("signerd_pb2.py", "signerd_pb2.pyi", "signerd_pb2_grpc.py"):
        fresh = (tmp_path / "signerd/v1" / name).read_text()
        committed = (ROOT / "signerd/v1" / name).read_text()
        assert fresh == committed, f"signerd/v1/{name} is stale: regenerate it (README)"
