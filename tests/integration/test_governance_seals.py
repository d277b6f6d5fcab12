"""signerd's seal on the authority ledger: a real daemon (SoftHSM, gRPC over mTLS, SQLite store;
PostgreSQL in test_governance_postgres.py).

1. A ledger entry needs signerd's seal at its place. A reinstatement that gathered its quorum
   but that signerd refused to apply (FAILED: the operator had been reinstated meanwhile) would
   apply again after a later suspension; a store writer appends it, hash-chained, with its
   genuine approvals and the seal of the entry before it. The running daemon refuses every act
   that reads the ledger (the operator's approval included), signs nothing, counts a ``ledger``
   violation, and a restarted one refuses the store with one line. The legitimate counterpart:
   a new reinstatement through the quorum, then the operator's approval signs.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import grpc

from signerd import authority as AU
from signerd.approval import SignedDecision
from signerd.model import Decision
from tests.helpers import Daemon, decide, govern, pb, rpc_error
from tests.integration.test_governance_attacks import (StoreWriter, assert_eth_signed,
                                                       assert_no_signature, canon, eth_transfer,
                                                       eth_wallet, fresh_daemon, monitor_ticks,
                                                       refused_start, sqlite_writer,
                                                       violation_metric)


# ---------------------------------------------------------------- helpers

def suspend(d: Daemon, op_id: str, reason: str) -> None:
    d.admin().SuspendOperator(pb.RevokeOperatorRequest(id=op_id, reason=reason))


def reinstate(d: Daemon, op_id: str) -> pb.Proposal:
    return d.admin().ReinstateOperator(pb.RevokeOperatorRequest(id=op_id, reason="cleared"))


def stored_decisions(db: StoreWriter, proposal_id: str) -> list[SignedDecision]:
    return [SignedDecision(r["operator_id"], Decision(r["decision"]),
                           bytes.fromhex(r["signature"]))
            for r in db.rows("SELECT * FROM proposal_approvals WHERE proposal_id = ?",
                             (proposal_id,))]


def signature_rows(db: StoreWriter, transfer_id: str) -> int:
    return int(db.one("SELECT COUNT(*) AS n FROM signatures WHERE transfer_id = ?",
                      (transfer_id,))["n"])


# ---------------------------------------------------------------- attacks shared with PostgreSQL

def attack_failed_proposal_appended(d: Daemon, db: StoreWriter, op_id: str = "cust2", *,
                                    restart: bool = False) -> None:
    """1: a FAILED reinstatement, with its genuine quorum, appended to the ledger after the
    operator was suspended again."""
    w = eth_wallet(d)
    suspend(d, op_id, "inquiry")
    stale, fresh = reinstate(d, op_id), reinstate(d, op_id)
    assert govern(d, fresh).state == "APPROVED"
    failed = govern(d, stale)
    assert failed.state == "FAILED" and "not suspended" in failed.failure, failed.failure
    assert len(stored_decisions(db, stale.id)) == 2  # its quorum, signed, is in the store
    suspend(d, op_id, "key compromised")
    t = eth_transfer(d, w)
    decide(d, t.id, "inv1")
    before = violation_metric(d, "ledger")
    # The writer: the reinstatement as the store holds it, its approvals, hashed and linked
    # exactly as signerd would, carrying the seal of the genuine entry before it; the head row
    # moved to it and the copies in the tables made to match.
    head = db.one("SELECT seq, hash FROM authority_head WHERE id = 1")
    last = db.one("SELECT seal FROM authority_log WHERE seq = ?", (head["seq"],))
    assert last["seal"]  # signerd sealed the suspension
    doc = json.loads(db.one("SELECT body FROM proposals WHERE id = ?", (stale.id,))["body"])
    entry = AU.make_entry(int(head["seq"]), bytes.fromhex(head["hash"]), AU.PROPOSAL, doc,
                          stored_decisions(db, stale.id))
    db.run(("INSERT INTO authority_log (seq, kind, body, approvals, prev_hash, hash,"
            " created_at, seal) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (entry.seq, entry.kind, canon(doc), canon(entry.approvals_json()),
             entry.prev_hash.hex(), entry.hash.hex(), time.time(), last["seal"])),
           ("UPDATE authority_head SET seq = ?, hash = ? WHERE id = 1",
            (entry.seq, entry.hash.hex())),
           ("UPDATE operators SET status = 'active' WHERE id = ?", (op_id,)),
           ("UPDATE proposals SET state = 'APPROVED', failure = '', applied_seq = ?"
            " WHERE id = ?", (entry.seq, stale.id)))
    needle = (f"authority ledger entry {entry.seq} (proposal {stale.id}): signerd's seal does "
              "not verify for this entry at this place")
    stopped = False
    try:
        # The reinstated-by-SQL operator's approval is refused, and so is every act reading the
        # ledger; nothing is signed.
        e = rpc_error(decide, d, t.id, op_id)
        assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e.details()
        assert needle in e.details(), e.details()
        e = rpc_error(d.governance().GetAuthority, pb.GetAuthorityRequest())
        assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and needle in e.details()
        monitor_ticks()
        assert signature_rows(db, t.id) == 0
        assert db.one("SELECT state, raw_tx FROM transfers WHERE id = ?", (t.id,)) == {
            "state": "PENDING_APPROVAL", "raw_tx": ""}
        assert violation_metric(d, "ledger") >= before + 1
        if restart:
            stopped = True
            assert d.stop() == 0
            r = refused_start(d.config)
            lines = r.stderr.strip().splitlines()
            assert r.returncode == 2 and len(lines) == 1, r.stderr
            assert lines[0].startswith("signerd: refusing to serve this store: " + needle), lines
    finally:  # the writer's rows gone, the ledger is the one signerd wrote
        db.run(("DELETE FROM authority_log WHERE seq = ?", (entry.seq,)),
               ("UPDATE authority_head SET seq = ?, hash = ? WHERE id = 1",
                (head["seq"], head["hash"])),
               ("UPDATE operators SET status = 'suspended' WHERE id = ?", (op_id,)),
               ("UPDATE proposals SET state = 'FAILED', failure = ?, applied_seq = 0"
                " WHERE id = ?", (failed.failure, stale.id)))
        if stopped:
            d.start()
    assert_no_signature(d, db, t.id)
    assert {o.id: o.status for o in d.admin().ListOperators(
        pb.ListOperatorsRequest()).operators}[op_id] == "suspended"
    # The legitimate counterpart: a reinstatement the quorum approves now; then it counts.
    assert govern(d, reinstate(d, op_id)).state == "APPROVED"
    assert_eth_signed(decide(d, t.id, op_id), w)


# ---------------------------------------------------------------- 1. ledger entries

def test_store_writer_appends_a_failed_proposal_to_the_ledger(tmp_path: Path) -> None:
    d = fresh_daemon(tmp_path / "state")
    try:
        attack_failed_proposal_appended(d, sqlite_writer(d), restart=True)
        # Every entry signerd appended after the genesis carries its seal; the genesis none.
        rows = sqlite_writer(d).rows("SELECT seq, seal FROM authority_log ORDER BY seq")
        assert rows[0] == {"seq": 1, "seal": ""} and len(rows) == 5
        assert all(len(r["seal"]) == 128 for r in rows[1:])
    finally:
        d.stop()
