"""Tampering with the audit trail in the embedded SQLite store is found: edits, deletions,
reordering and truncation, through an export verified offline by `signerctl audit verify`."""
from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from signerd.core.audit import verify_chain
from signerd.adapters.store import row_to_event
from signerd.adapters.store.sqlite import SqliteStore
from tests.support.daemon import Daemon, init_state, signerctl_cmd
from tests.support.governance import decide
from tests.support.rpc import pb
from tests.support.ethereum import tx_fields


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, int]:
    """A state folder with some history, and the audit head an auditor fetched earlier."""
    d = Daemon(init_state(tmp_path_factory.mktemp("tamper") / "state")).start()
    w = d.custody().CreateWallet(pb.CreateWalletRequest(
        chain=pb.ETHEREUM, chain_ids=[1], category=pb.SEIZED, case_ref="T"))
    for n in range(3):
        t = d.custody().SubmitTransfer(pb.SubmitTransferRequest(wallet_id=w.id, ethereum=
                                       pb.EthereumTransaction(json=json.dumps(
                                           tx_fields(chainId=1, nonce=n)))))
        decide(d, t.id, "inv1")
        decide(d, t.id, "cust1")
    head = d.audit().GetHead(pb.GetHeadRequest())
    d.stop()
    return d.state, head.hash, head.seq


def tampered_copy(pristine: tuple[Path, bytes, int], tmp_path: Path, sql: list[str]) -> Path:
    state = tmp_path / "state"
    shutil.copytree(pristine[0], state)
    with sqlite3.connect(state / "signerd.db") as c:
        for s in sql:
            c.execute(s)
    return state


def export_and_verify(state: Path) -> subprocess.CompletedProcess:
    d = Daemon(state / "signerd.toml").start()
    try:
        out = state / "audit.jsonl"
        data = b"".join(c.data for c in d.audit().Export(pb.ExportRequest()))
        out.write_bytes(data)
    finally:
        d.stop()
    return subprocess.run(signerctl_cmd("audit", "verify", str(out)), capture_output=True,
                          text=True, timeout=60)


def store_chain(state: Path, head: bytes | None = None, count: int | None = None):
    store = SqliteStore(str(state / "signerd.db"))
    with store.read() as tx:
        events = [row_to_event(r) for r in tx.all("SELECT * FROM audit_events ORDER BY seq")]
    store.close()
    return verify_chain(events, expected_head=head, expected_count=count)


def test_untouched_store_verifies(pristine, tmp_path: Path) -> None:
    state = tampered_copy(pristine, tmp_path, [])
    assert store_chain(state, pristine[1], pristine[2]).ok
    r = export_and_verify(state)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("name,sql,bad_seq", [
    ("edit details", ["UPDATE audit_events SET details = '{\"reason\":\"x\"}' WHERE seq = 5"], 5),
    ("edit actor", ["UPDATE audit_events SET actor = 'mallory' WHERE seq = 7"], 7),
    ("delete one", ["DELETE FROM audit_events WHERE seq = 6"], 6),
    ("reorder", ["UPDATE audit_events SET seq = -1 WHERE seq = 8",
                 "UPDATE audit_events SET seq = 8 WHERE seq = 9",
                 "UPDATE audit_events SET seq = 9 WHERE seq = -1"], 8),
])
def test_tampering_is_found_in_the_store_and_the_export(pristine, tmp_path: Path, name: str,
                                                        sql: list[str], bad_seq: int) -> None:
    state = tampered_copy(pristine, tmp_path, sql)
    result = store_chain(state)
    assert not result.ok and result.first_bad_seq == bad_seq, result
    r = export_and_verify(state)
    assert r.returncode != 0 and str(bad_seq) in (r.stdout + r.stderr)


def test_truncation_is_found_against_an_earlier_head(pristine, tmp_path: Path) -> None:
    state = tampered_copy(pristine, tmp_path, [
        f"DELETE FROM audit_events WHERE seq > {pristine[2] - 3}",
        f"UPDATE audit_head SET seq = {pristine[2] - 3}, hash = (SELECT hash FROM audit_events "
        f"WHERE seq = {pristine[2] - 3})"])
    result = store_chain(state, pristine[1], pristine[2])
    assert not result.ok and "truncated" in result.problem
