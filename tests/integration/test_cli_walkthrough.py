"""The README walkthrough, command for command, through signerctl against a real daemon."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from eth_account import Account

from tests.helpers import Daemon, init_state, signerctl_cmd


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    d = Daemon(init_state(tmp_path_factory.mktemp("cli") / "signerd-state")).start()
    yield d
    d.stop()


def ctl(d: Daemon, *args: str, ok: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
    # The config names port 0; point signerctl at the port the daemon printed.
    r = subprocess.run(
        signerctl_cmd("--config", str(d.config), "--server", f"127.0.0.1:{d.port}", *args),
        capture_output=True, text=True, timeout=60, input=stdin, cwd=d.state.parent,
        env=dict(os.environ))
    if ok:
        assert r.returncode == 0, r.stderr
    return r


def test_walkthrough_ethereum(env: Daemon, tmp_path: Path) -> None:
    w = json.loads(ctl(env, "--json", "wallet", "create", "--chain", "ethereum", "--chain-id",
                       "1", "--category", "seized", "--case", "CASE-2026-001").stdout)
    assert w["chain"] == "ethereum" and w["status"] == "ACTIVE" and w["category"] == "seized"
    tx = tmp_path / "tx.json"
    tx.write_text(json.dumps({
        "chainId": 1, "nonce": 0, "maxPriorityFeePerGas": 1000000000,
        "maxFeePerGas": 30000000000, "gas": 21000,
        "to": "0x000000000000000000000000000000000000dEaD", "value": "0x38d7ea4c68000",
        "data": "0x", "accessList": []}))
    t = json.loads(ctl(env, "--json", "transfer", "submit", w["id"], "--eth-tx", str(tx)).stdout)
    assert t["state"] == "PENDING_APPROVAL" and t["wallet_id"] == w["id"]
    show = ctl(env, "--as", "inv1", "transfer", "show", t["id"]).stdout
    assert "0x000000000000000000000000000000000000dEaD" in show and "1000000000000000 wei" in show
    assert "it matches" in show
    # Without a terminal and without --yes, approve refuses with one line.
    r = ctl(env, "--as", "inv1", "transfer", "approve", t["id"], "--key",
            str(env.state / "operators/inv1.key"), ok=False, stdin="")
    assert r.returncode != 0 and r.stderr.strip().splitlines()[-1].startswith("signerctl: ")
    ctl(env, "--as", "inv1", "transfer", "approve", t["id"], "--key",
        str(env.state / "operators/inv1.key"), "--yes")
    ctl(env, "--as", "cust1", "transfer", "approve", t["id"], "--key",
        str(env.state / "operators/cust1.key"), "--yes")
    raw = ctl(env, "transfer", "result", t["id"]).stdout.strip()
    assert Account.recover_transaction(bytes.fromhex(raw.removeprefix("0x"))) == w["address"]
    final = json.loads(ctl(env, "--json", "transfer", "show", t["id"]).stdout)
    assert final["state"] == "SIGNED" and final["raw_tx"].removeprefix("0x") == raw.removeprefix("0x")


def test_failures_are_one_line_and_nonzero(env: Daemon) -> None:
    r = ctl(env, "wallet", "create", "--chain", "doge", "--category", "seized", "--case", "C",
            ok=False)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("signerctl: ")
    r = ctl(env, "wallet", "show", "w_nothere", ok=False)
    assert r.returncode != 0 and "NOT_FOUND" in r.stderr


def test_audit_export_and_offline_verify(env: Daemon, tmp_path: Path) -> None:
    out = tmp_path / "audit.jsonl"
    ctl(env, "--as", "auditor", "audit", "export", str(out))
    ok = subprocess.run(signerctl_cmd("audit", "verify", str(out)), capture_output=True,
                        text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    lines = out.read_bytes().split(b"\n")
    doc = json.loads(lines[3])
    doc["actor"] = "mallory"
    lines[3] = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    bad = tmp_path / "tampered.jsonl"
    bad.write_bytes(b"\n".join(lines))
    r = subprocess.run(signerctl_cmd("audit", "verify", str(bad)), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0 and "3" in (r.stdout + r.stderr)
