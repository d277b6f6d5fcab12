"""The type checker runs in CI: strict on the pure core, default settings on the rest."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STRICT = ["signerd/core/bitcoin", "signerd/core/ethereum", "signerd/core/policy.py",
        "signerd/core/approval.py", "signerd/core/audit.py", "signerd/core/operator_keys.py",
        "signerd/adapters/key_files.py",
        "signerd/core/seized.py", "signerd/core/authority.py", "signerd/core/canonical.py",
        "signerd/core/seal.py", "signerd/core/tokens.py", "signerd/core/legal_basis.py",
        "signerd/core/movement_json.py", "signerd/core/anchor.py"]


@pytest.mark.parametrize("args", [["--strict", *STRICT], ["signerd"]], ids=["strict", "all"])
def test_mypy(args: list[str]) -> None:
    pytest.importorskip("mypy")
    r = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:]
