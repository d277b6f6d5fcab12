"""The type checker runs in CI: strict on the pure core, default settings on the rest."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE = ["signerd/bitcoin", "signerd/ethereum", "signerd/policy.py", "signerd/approval.py",
        "signerd/audit.py", "signerd/operator_keys.py", "signerd/seized.py",
        "signerd/authority.py", "signerd/canonical.py", "signerd/seal.py", "signerd/tokens.py",
        "signerd/legal_basis.py", "signerd/movement_json.py", "signerd/anchor.py"]


@pytest.mark.parametrize("args", [["--strict", *PURE], ["signerd"]], ids=["pure-strict", "all"])
def test_mypy(args: list[str]) -> None:
    pytest.importorskip("mypy")
    r = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", *args], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:]
