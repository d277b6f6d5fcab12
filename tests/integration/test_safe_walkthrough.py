"""scripts/safe_walkthrough.py runs as written: two signerd daemons record one 2-of-3 Safe on
anvil, approve one SafeTx each with signerctl, combine their owner signatures, and an executor
wallet's signed EIP-1559 transaction calling execTransaction is mined, moving 1 ETH (read back
from anvil)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import evm

pytestmark = evm.needs_evm()

ROOT = Path(__file__).resolve().parents[2]


def test_the_safe_walkthrough_reaches_a_mined_exec_transaction(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "safe_walkthrough.py"),
                        "--work", str(tmp_path / "demo")], capture_output=True, text=True,
                       timeout=600, cwd=tmp_path, env=dict(os.environ))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["mined"] is True and summary["moved_wei"] == 10**18
    assert summary["safe_nonce"] == 1
    for step in ("wallet create --kind safe", "wallet safe-deploy", "--safe-tx",
                 "transfer combine", "--as cust1 transfer approve", "transfer execute"):
        assert step in r.stdout, step
