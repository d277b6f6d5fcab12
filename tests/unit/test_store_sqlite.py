"""The SQLite store after the PostgreSQL work: migration 3 (the audit head row from the start),
the append that only updates it, upgrades of existing stores, meta upserts, nonce locks."""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from signerd.core import audit
from signerd.core.errors import Conflict, SignerError
from signerd.adapters.store import Tx
from signerd.adapters.store.factory import open_store
from signerd.adapters.store.migrations import MIGRATIONS, migrate
from signerd.adapters.store.sqlite import SqliteStore


def _store(tmp_path: Path) -> Any:
    return open_store(f"sqlite:///{tmp_path / 'signerd.db'}")


def test_fresh_store_has_every_migration_and_a_genesis_head(tmp_path: Path) -> None:
    st = _store(tmp_path)
    with st.read() as tx:
        versions = [r["version"] for r in tx.all("SELECT version FROM schema_version")]
        assert versions == [v for v, _, _ in MIGRATIONS] and versions[-1] >= 3
        assert tx.audit_head() == (0, audit.GENESIS)
        row = tx.one("SELECT seq, hash FROM audit_head WHERE id = 1")
        assert row is not None and (row["seq"], row["hash"]) == (0, "00" * 32)
    with st.transaction() as tx:
        first = tx.append_audit("t", "a", "o", {})
        second = tx.append_audit("t", "b", "o", {"n": 1})
    assert (first.seq, first.prev_hash) == (1, audit.GENESIS)
    assert (second.seq, second.prev_hash) == (2, first.hash)
    with st.read() as tx:
        assert tx.audit_head() == (2, second.hash)
        assert tx.one("SELECT COUNT(*) AS n FROM audit_head")["n"] == 1  # type: ignore[index]
    st.close()


def test_a_store_from_before_migration_3_keeps_its_chain(tmp_path: Path) -> None:
    """A version-2 store whose head row was inserted by the first append: migration 3 leaves
    it alone and the chain goes on from it."""
    path = tmp_path / "old.db"
    c = sqlite3.connect(path, isolation_level=None)
    cur = c.cursor()
    cur.execute("BEGIN")
    tx = Tx(cur, "sqlite")
    tx.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, description TEXT NOT "
               "NULL, applied_at DOUBLE PRECISION NOT NULL)")
    for version, description, statements in MIGRATIONS[:2]:
        for sql in statements:
            tx.execute(sql)
        tx.execute("INSERT INTO schema_version VALUES (?, ?, ?)", (version, description, 0.0))
    ev = audit.new_event(None, time=1, actor="old", action="instance.created", object="i",
                         details={})
    tx.execute("INSERT INTO audit_events VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               (1, 1, "old", "instance.created", "i", "{}", ev.prev_hash.hex(), ev.hash.hex()))
    tx.execute("INSERT INTO audit_head (id, seq, hash) VALUES (1, 1, ?)", (ev.hash.hex(),))
    cur.execute("COMMIT")
    c.close()

    st = SqliteStore(str(path))
    with st.transaction() as tx:
        assert tx.audit_head() == (1, ev.hash)
        nxt = tx.append_audit("new", "x", "o", {})
    assert (nxt.seq, nxt.prev_hash) == (2, ev.hash)
    with st.read() as tx:
        events = tx.audit_events(0, 100)
        assert audit.verify_chain(events, expected_head=nxt.hash, expected_count=2).ok
        assert migrate(tx) == MIGRATIONS[-1][0]  # nothing left to apply
    st.close()


def test_append_refuses_to_start_a_second_chain(tmp_path: Path) -> None:
    st = _store(tmp_path)
    with st.transaction() as tx:
        tx.append_audit("t", "a", "o", {})
        tx.append_audit("t", "b", "o", {})
    with st.transaction() as tx:
        tx.execute("DELETE FROM audit_events WHERE seq = 2")
    with pytest.raises(SignerError, match="seq 2 .*missing"):
        with st.transaction() as tx:
            tx.append_audit("t", "c", "o", {})
    with st.transaction() as tx:
        tx.execute("DELETE FROM audit_head")
    with pytest.raises(SignerError, match="head row is missing"):
        with st.transaction() as tx:
            tx.append_audit("t", "c", "o", {})
    st.close()


def test_set_meta_inserts_then_replaces(tmp_path: Path) -> None:
    st = _store(tmp_path)
    with st.transaction() as tx:
        assert tx.get_meta("k") is None
        tx.set_meta("k", "1")
        tx.set_meta("k", "2")
    with st.read() as tx:
        assert tx.get_meta("k") == "2"
        assert tx.all("SELECT key FROM meta WHERE key = 'k'") != []
        assert len(tx.all("SELECT key FROM meta WHERE key = 'k'")) == 1
    st.close()


def _wallet(tx: Tx) -> None:
    tx.insert_wallet({"id": "w1", "chain": "ethereum", "network": "x", "script_type": "eoa",
                      "category": "SEIZED", "case_ref": "C", "legal_basis": "",
                      "status": "ACTIVE", "address": "0xabc", "descriptor": "", "threshold": 1,
                      "chain_ids": [1], "cosigners": [], "created_at": time.time()})


def _transfer(tid: str, replaces: str = "") -> dict[str, Any]:
    now = time.time()
    return {"id": tid, "wallet_id": "w1", "chain": "ethereum", "state": "PENDING_APPROVAL",
            "payload": b"\x00p", "movement": "{}", "submitter": "platform", "policy_version": 1,
            "requirement": "{}", "expires_at": now + 60, "created_at": now, "updated_at": now,
            "replaces": replaces}


def test_nonce_locks_conflict_except_for_the_replaced_transfer(tmp_path: Path) -> None:
    st = _store(tmp_path)
    with st.transaction() as tx:
        _wallet(tx)
        tx.insert_transfer(_transfer("t1"), ["eth:w1:1:0"])
    with pytest.raises(Conflict, match="eth:w1:1:0 is already held by live transfer t1"):
        with st.transaction() as tx:
            tx.insert_transfer(_transfer("t2"), ["eth:w1:1:0"])
    with st.transaction() as tx:  # a declared replacement: the lock stays with t1
        tx.insert_transfer(_transfer("t3", replaces="t1"), ["eth:w1:1:0", "eth:w1:1:1"])
    with st.read() as tx:
        assert tx.transfer_lock_keys("t1") == ["eth:w1:1:0"]
        assert tx.transfer_lock_keys("t3") == ["eth:w1:1:1"]
        assert tx.one("SELECT id FROM transfers WHERE id = 't2'") is None
        assert tx.get_transfer("t1").payload == b"\x00p"
    st.close()


def test_audit_checkpoints_append_in_order_and_read_back(tmp_path: Path) -> None:
    """Migration 9: checkpoints are stored as given, read back equal, and an append that does
    not follow the latest one (another replica got there first) is refused, not forked."""
    import coincurve
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    from signerd.core.errors import AuditChainViolation, StoreUnavailable

    key = coincurve.PrivateKey(b"\x01" * 32)
    st = _store(tmp_path)
    with st.transaction() as tx:
        events = [tx.append_audit("t", "a", "o", {"n": i}) for i in range(5)]
    cps: list[audit.Checkpoint] = []
    for head in (2, 5):
        unsigned = audit.next_checkpoint(cps[-1] if cps else None, "inst", head_seq=head,
                                         head_hash=events[head - 1].hash, time=1000 + head)
        r, s = decode_dss_signature(key.sign(unsigned.digest("inst"), hasher=None))
        cps.append(unsigned.signed(r.to_bytes(32, "big") + s.to_bytes(32, "big"), "inst",
                                   key.public_key.format()))
    with st.read() as tx:
        assert tx.latest_audit_checkpoint() is None and tx.audit_checkpoints() == []
    for cp in cps:
        with st.transaction() as tx:
            tx.append_audit_checkpoint(cp)
    with pytest.raises(StoreUnavailable, match="another replica"):
        with st.transaction() as tx:
            tx.append_audit_checkpoint(cps[1])
    with st.read() as tx:
        assert tx.latest_audit_checkpoint() == cps[1]
        assert tx.audit_checkpoints() == cps and tx.audit_checkpoints(1) == cps[1:]
        assert tx.audit_checkpoints(0, 1) == cps[:1] and tx.audit_checkpoint(2) == cps[1]
        assert tx.audit_checkpoint(3) is None
        assert [e.seq for e in tx.audit_events_at([5, 2, 9, 2])] == [2, 5]
        assert audit.verify_checkpoints(tx.audit_checkpoints(), tx.audit_events(0, 10),
                                        instance_id="inst",
                                        audit_public_key=key.public_key.format()).ok
    with st.transaction() as tx:
        tx.execute("UPDATE audit_checkpoints SET head_hash = 'zz' WHERE seq = 2")
    with st.read() as tx:
        with pytest.raises(AuditChainViolation, match="audit checkpoint 2 is malformed"):
            tx.latest_audit_checkpoint()
    st.close()


def test_on_commit_runs_after_the_write_lock_is_released(tmp_path: Path) -> None:
    """What runs on commit takes the daemon's own locks (the ended set under the checkpoint
    lock, the HSM anchors), and the audit checkpoint holds that lock while it waits for a
    write: run under the write lock, the two deadlocked (every gRPC thread then waited). So
    another thread must be able to write while the on-commit hook runs."""
    import threading

    st = _store(tmp_path)
    seen: list[str] = []

    def other_writer() -> None:
        with st.transaction() as tx:
            tx.set_meta("other", "written")
        seen.append("other wrote")

    def on_commit(tx: Tx) -> None:
        t = threading.Thread(target=other_writer)
        t.start()
        t.join(timeout=5)
        seen.append("joined" if not t.is_alive() else "blocked")

    st.on_commit = on_commit
    with st.transaction() as tx:
        tx.append_audit("t", "a", "o", {})
    assert seen == ["other wrote", "joined"]


def test_a_schema_newer_than_this_signerd_is_refused(tmp_path: Path) -> None:
    """An older signerd started on a store a newer one migrated would read tables it does not
    know the meaning of: it refuses, naming both versions, and writes nothing."""
    from signerd.core.errors import FailedPrecondition

    st = _store(tmp_path)
    newest = MIGRATIONS[-1][0]
    with st.transaction() as tx:
        tx.execute("INSERT INTO schema_version (version, description, applied_at)"
                   " VALUES (?, ?, ?)", (newest + 1, "from a newer signerd", time.time()))
    st.close()
    with pytest.raises(FailedPrecondition, match=f"version {newest + 1}, newer than this signerd "
                                                 rf"knows \({newest}\)"):
        _store(tmp_path)
