"""The README walkthrough, command for command, through signerctl against a real daemon."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from eth_account import Account

from tests.support.daemon import Daemon, init_state, signerctl_cmd
from tests.support.cli import ctl


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    d = Daemon(init_state(tmp_path_factory.mktemp("cli") / "signerd-state")).start()
    yield d
    d.stop()


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
    raw = ctl(env, "-q", "transfer", "result", t["id"]).stdout.strip()  # the transaction alone
    assert Account.recover_transaction(bytes.fromhex(raw.removeprefix("0x"))) == w["address"]
    final = json.loads(ctl(env, "--json", "transfer", "show", t["id"]).stdout)
    assert final["state"] == "SIGNED" and final["raw_tx"].removeprefix("0x") == raw.removeprefix("0x")
    labelled = ctl(env, "transfer", "result", t["id"]).stdout
    assert labelled == f"raw transaction: {raw}\ntx hash:         {final['tx_hash']}\n"
    # The same transaction again: its nonce is held by the signed transfer, and the refusal
    # says so (not "live") and what would be accepted instead.
    r = ctl(env, "transfer", "submit", w["id"], "--eth-tx", str(tx), ok=False)
    assert r.returncode == 1 and r.stderr.startswith("signerctl: FAILED_PRECONDITION: "), r.stderr
    assert f"is already held by transfer {t['id']}, which is SIGNED: another transaction for " \
           f"it must replace that transfer" in r.stderr
    # A category change that the destinations do not fit names what would fit.
    r = ctl(env, "transfer", "submit", w["id"], "--eth-tx", str(tx), "--category-change",
            "seized_to_confiscated", "--legal-basis", "Regional Court Berlin; 4 K 12/26; "
            "2026-11-20", ok=False)
    assert r.returncode == 1 and "FAILED_PRECONDITION: category change seized_to_confiscated " \
        "needs a seized source wallet and an output to a confiscated wallet of this signerd; " \
        "this transfer goes from a seized wallet to outside" in r.stderr, r.stderr


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


def test_walkthrough_seized_key_import_names_its_legal_basis(env: Daemon, tmp_path: Path
                                                              ) -> None:
    """The README's seized-key import: the key from a file, the legal basis as the court
    decision; free text there is refused in one line naming the field and the form."""
    keys = env.state / "operators"
    words = tmp_path / "seized-words.txt"
    words.write_text("abandon abandon abandon abandon abandon abandon abandon abandon abandon "
                     "abandon abandon about\n")
    r = ctl(env, "key", "import", "CASE-2026-003", "--chain", "bitcoin", "--network", "mainnet",
            "--seizure-record", "SR-0042", "--legal-basis", "seizure order of 2 March",
            "--mnemonic", str(words), "--path", "m/84'/0'/0'/0/0", ok=False)
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1, r.stderr
    assert "legal_basis: " in lines[0] and "COURT; CASE NUMBER; YYYY-MM-DD" in lines[0]
    p = json.loads(ctl(env, "--json", "key", "import", "CASE-2026-003", "--chain", "bitcoin",
                       "--network", "mainnet", "--seizure-record", "SR-0042",
                       "--legal-basis", "Local Court Munich; ER VI Gs 311/26; 2026-03-02",
                       "--mnemonic", str(words), "--path", "m/84'/0'/0'/0/0").stdout)
    assert p["kind"] == "wallet.import" and p["state"] == "PENDING_APPROVAL"
    for admin in ("admin1", "admin2"):
        ctl(env, "--as", admin, "proposal", "approve", p["id"], "--key",
            str(keys / f"{admin}.key"), "--yes")
    w = json.loads(ctl(env, "--json", "wallet", "show", p["change"]["wallet"]["id"]).stdout)
    assert w["status"] == "ACTIVE" and w["category"] == "seized"
    assert w["address"] == "bc1qcr8te4kr609gcawutmrza0j4xv80jy8z306fyu"  # BIP-84's vector
    assert w["legal_basis"] == "Local Court Munich; ER VI Gs 311/26; 2026-03-02"


def test_walkthrough_governance(env: Daemon, tmp_path: Path) -> None:
    """The README's governance steps: an admin proposes, two admins approve with their own
    keys, and only then does the change take effect."""
    keys = env.state / "operators"
    key = tmp_path / "inv3.key"
    out = json.loads(ctl(env, "--json", "operator", "keygen", "--out", str(key)).stdout)
    p = json.loads(ctl(env, "--json", "operator", "add", "inv3", "--role", "investigator",
                       "--pubkey", out["public_key"]).stdout)
    assert p["state"] == "PENDING_APPROVAL" and p["kind"] == "operator.register"
    assert p["change"]["operator_id"] == "inv3" and p["id"].startswith("p_")
    human = ctl(env, "proposal", "show", p["id"]).stdout
    assert "register operator inv3 as investigator" in human and "2 approvers" in human
    listed = json.loads(ctl(env, "--json", "proposal", "list", "--state",
                            "pending_approval").stdout)
    assert p["id"] in [x["id"] for x in listed["proposals"]]
    ops = json.loads(ctl(env, "--json", "operator", "list").stdout)["operators"]
    assert "inv3" not in [o["id"] for o in ops]  # not yet: the quorum has not approved it
    # Without a terminal and without --yes, approving refuses rather than waits.
    r = ctl(env, "--as", "admin1", "proposal", "approve", p["id"], "--key",
            str(keys / "admin1.key"), ok=False, stdin="")
    assert r.returncode != 0 and "refusing to ask" in r.stderr
    first = ctl(env, "--as", "admin1", "proposal", "approve", p["id"], "--key",
                str(keys / "admin1.key"), "--yes").stdout
    assert "You are about to APPROVE this governance proposal" in first
    assert "register operator inv3 as investigator" in first and "PENDING_APPROVAL" in first
    done = json.loads(ctl(env, "--json", "--as", "admin2", "proposal", "approve", p["id"],
                          "--key", str(keys / "admin2.key"), "--yes").stdout)
    assert done["state"] == "APPROVED" and done["applied_seq"] >= 2
    ops = json.loads(ctl(env, "--json", "operator", "list").stdout)["operators"]
    assert {"id": "inv3", "roles": ["investigator"], "status": "active"}.items() <= next(
        o for o in ops if o["id"] == "inv3").items()
    # A policy change shows the old and the new text side by side to the approver.
    w = json.loads(ctl(env, "--json", "wallet", "create", "--chain", "ethereum", "--chain-id",
                       "1", "--category", "seized", "--case", "CASE-GOV",
                       "--template", "tiered").stdout)
    assert w["template"] == "tiered" and w["policy_version"] == 1
    pol = tmp_path / "strict.toml"
    pol.write_text((env.state / "policies" / "tiered.toml").read_text().replace(
        "approvers = 3", "approvers = 4").replace(
        "prosecutor = 1 }", "prosecutor = 1, judge = 1 }"))
    p = json.loads(ctl(env, "--json", "policy", "set", w["id"], str(pol)).stdout)
    shown = ctl(env, "--as", "admin1", "proposal", "approve", p["id"], "--key",
                str(keys / "admin1.key"), "--yes").stdout
    assert "old (version 1)" in shown and "approvers = 3" in shown and "approvers = 4" in shown
    ctl(env, "--as", "admin2", "proposal", "approve", p["id"], "--key",
        str(keys / "admin2.key"), "--yes")
    shown = json.loads(ctl(env, "--json", "policy", "show", w["id"]).stdout)
    assert shown["version"] == 2 and "approvers = 4" in shown["toml"]
    # Freezing is immediate; lifting it needs the quorum.
    ctl(env, "wallet", "freeze", w["id"], "--order", "ORDER 2026/17")
    p = json.loads(ctl(env, "--json", "wallet", "unfreeze", w["id"], "--order",
                       "ORDER 2026/18").stdout)
    assert p["state"] == "PENDING_APPROVAL" and p["kind"] == "wallet.unfreeze"
    shown = json.loads(ctl(env, "--json", "wallet", "show", w["id"]).stdout)
    assert (shown["status"], shown["freeze_order"]) == ("FROZEN", "ORDER 2026/17")
    listed = json.loads(ctl(env, "--json", "wallet", "list", "--case", "CASE-GOV").stdout)
    assert listed["wallets"] == [shown]  # list and show say the same, policy version included
    r = ctl(env, "--as", "admin1", "proposal", "reject", p["id"], "--key",
            str(keys / "admin1.key"), "--reason", "the order is not final", "--yes")
    assert "rejected as admin1" in r.stdout
    gov = ctl(env, "governance", "show").stdout
    assert "two-admins" in gov and w["id"] in gov  # the frozen wallet is listed
