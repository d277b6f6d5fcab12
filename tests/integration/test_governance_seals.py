"""signerd's seals on the authority ledger and on proposals, and what one person can no longer
do to a proposal: real daemons (SoftHSM, gRPC over mTLS, SQLite store; PostgreSQL in
test_governance_postgres.py) and a real in-process App for the paths the health monitor would
race.

1. A ledger entry needs signerd's seal at its place. A reinstatement that gathered its quorum
   but that signerd refused to apply (FAILED: the operator had been reinstated meanwhile) would
   apply again after a later suspension; a store writer appends it, hash-chained, with its
   genuine approvals and the seal of the entry before it. The running daemon refuses every act
   that reads the ledger (the operator's approval included), signs nothing, counts a ``ledger``
   violation, and a restarted one refuses the store with one line. The legitimate counterpart:
   a new reinstatement through the quorum, then the operator's approval signs.
2. A proposal row needs signerd's seal over its document. (a) A row inserted by the writer "by
   admin1" is shown as not signerd's, ended FAILED by the health monitor as a ``proposal``
   violation, and never decided; (b) a pending row whose submitter the writer changed, so that
   the real submitter can vote, is refused its statement and its decision, and ends FAILED;
   (c) the window and submitter are the sealed document's, whatever the columns say.
3. Only the submitter cancels: an admin cannot quietly block the revocation of a compromised
   operator that someone else proposed (PERMISSION_DENIED naming the rule); a submitter can
   withdraw their own. A seized key whose import ended without approval can be imported again
   (the same wallet, proposed anew, the same HSM key), and a key share and an outside
   cosigner's key taken by a wallet whose proposal ended without approval are free for another
   wallet; none of these comes into force without a quorum.
"""
from __future__ import annotations

import json
import secrets
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any, Iterator

import coincurve
import grpc
import pytest

from signerd.core import authority as AU
from signerd.core.approval import SignedDecision, proposal_statement, sign_statement
from signerd.core.errors import AuthorityViolation, FailedPrecondition, PermissionDenied
from signerd.core.model import Decision
from signerd.adapters.key_files import load_private, write_keypair
from signerd.core.operator_keys import generate, public_pem
from tests.support.daemon import Daemon
from tests.support.governance import decide, decide_proposal, govern, register_operator
from tests.support.rpc import pb, rpc_error
from tests.support.bitcoin import verify_with_bitcointx
from tests.support.attacks import (ALL_ROLES, SqliteWriter, attack_failed_proposal_appended,
                                   attack_forged_proposal_row, audit_events, canon,
                                   daemon_and_writer_fixtures, fresh_daemon, operator_cert,
                                   proposal, sqlite_writer, sweep)
from tests.support.fixtures import in_process_app


# ---------------------------------------------------------------- fixtures

daemon, db = daemon_and_writer_fixtures("govseal")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """An in-process App on its own state folder: no health monitor runs, so what a decision
    does with a row is seen before any probe could act on it."""
    yield from in_process_app(tmp_path_factory.mktemp("govsealapp") / "state")


def app_sql(app: Any, query: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    with closing(sqlite3.connect(Path(app.config.store_url[len("sqlite:///"):]))) as c:
        c.row_factory = sqlite3.Row
        with c:
            return c.execute(query, params).fetchall()


def app_key(app: Any, op_id: str) -> Any:
    return load_private(Path(app.config.path).parent / "operators" / f"{op_id}.key")


def third_admin(app: Any) -> None:
    """Register admin3 (proposed by the admin principal, approved by admin1 and admin2), so
    that admin1 may propose: a proposal its submitter alone could pass is refused at once."""
    from signerd.services.admin import AdminService

    with app.store.read() as tx:
        if "admin3" in app.ledger.state(tx).operators:
            return
    key = generate()
    folder = Path(app.config.path).parent / "operators"
    write_keypair(key, folder / "admin3.key", folder / "admin3.pub")
    view = AdminService(app).register_operator("admin", "admin3", ["admin"], public_pem(key))
    for op in ("admin1", "admin2"):
        statement, _, _ = app.proposals.statement(view.id, Decision.APPROVE)
        view = app.proposals.decide(op, view.id, op, Decision.APPROVE,
                                    sign_statement(app_key(app, op), statement))
    assert view.state == "APPROVED", (view.state, view.row.get("failure"))


def violations(app: Any, kind: str) -> float:
    return float(app.metrics.authority_violations.labels(kind)._value.get())


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


# ---------------------------------------------------------------- 2. proposal rows

def test_store_writer_inserts_a_proposal_by_admin1(daemon: Daemon, db: SqliteWriter) -> None:
    attack_forged_proposal_row(daemon, db)


def test_store_writer_changes_a_pending_proposals_submitter(app: Any) -> None:
    """2b: admin1 proposes (and so cannot approve); the writer names another submitter in the
    row's document and column, so that admin1's approval would count with admin2's."""
    from signerd.services.admin import AdminService

    third_admin(app)  # so that a proposal by admin1 could pass (admin2 and admin3)
    name = f"friend{secrets.token_hex(3)}"
    view = AdminService(app).register_operator("admin1", name, ALL_ROLES,
                                               public_pem(generate()))
    assert view.sealed and view.row["submitter"] == "admin1"
    doc = dict(view.doc, submitter="admin")
    app_sql(app, "UPDATE proposals SET body = ?, submitter = 'admin' WHERE id = ?",
            (canon(doc), view.id))
    shown = app.proposals.get(view.id)
    assert not shown.sealed and shown.summary.startswith("NOT SIGNERD'S PROPOSAL")
    assert "does not carry signerd's seal" in shown.row["failure"]
    with pytest.raises(AuthorityViolation, match="does not carry signerd's seal") as e:
        app.proposals.statement(view.id, Decision.APPROVE)
    assert e.value.kind == "proposal"
    before = violations(app, "proposal")
    statement = proposal_statement(doc, Decision.APPROVE)  # what the writer would show admin1
    with pytest.raises(AuthorityViolation, match="does not carry signerd's seal"):
        app.proposals.decide("admin1", view.id, "admin1", Decision.APPROVE,
                             sign_statement(app_key(app, "admin1"), statement))
    assert violations(app, "proposal") == before + 1
    ended = app.proposals.get(view.id)
    assert ended.state == "FAILED" and "does not carry signerd's seal" in ended.row["failure"]
    assert not ended.approvals
    actions = [r["action"] for r in app_sql(
        app, "SELECT action FROM audit_events WHERE object = ? ORDER BY seq", (view.id,))]
    assert actions == ["proposal.created", "proposal.failed", "authority.violation"]
    with app.store.read() as tx:
        assert name not in app.ledger.state(tx).operators
    # Put back as signerd wrote it, it stays ended: the verified audit chain records the end.
    app_sql(app, "UPDATE proposals SET body = ?, submitter = 'admin1', state ="
            " 'PENDING_APPROVAL', failure = '' WHERE id = ?", (canon(view.doc), view.id))
    with pytest.raises(AuthorityViolation, match="ended before"):
        app.proposals.decide("admin2", view.id, "admin2", Decision.APPROVE, sign_statement(
            app_key(app, "admin2"), proposal_statement(view.doc, Decision.APPROVE)))
    # The legitimate counterpart: proposed by the admin principal, approved by both admins.
    ok = AdminService(app).register_operator("admin", name, ["investigator"],
                                             public_pem(generate()))
    for op in ("admin1", "admin2"):
        statement, _, _ = app.proposals.statement(ok.id, Decision.APPROVE)
        ok = app.proposals.decide(op, ok.id, op, Decision.APPROVE,
                                  sign_statement(app_key(app, op), statement))
    assert ok.state == "APPROVED"


def test_the_sealed_document_names_the_window_and_the_submitter(app: Any) -> None:
    """2c: the columns a writer can change without touching the document (the expiry, the
    submitter) are not what signerd goes by."""
    from signerd.services.admin import AdminService

    old = time.time() - 4 * 24 * 3600  # made four days ago: its 72 h window has passed
    view = app.proposals.propose("admin", "operator.revoke",
                                 {"operator_id": "inv2", "reason": "left"}, now=old)
    app_sql(app, "UPDATE proposals SET expires_at = ?, submitter = 'admin1' WHERE id = ?",
            (time.time() + 3600, view.id))
    shown = app.proposals.get(view.id)
    assert shown.sealed and shown.row["submitter"] == "admin"
    assert shown.row["expires_at"] == view.doc["expires_at"] < time.time()
    with pytest.raises(PermissionDenied, match="only the submitter"):
        app.proposals.cancel("admin1", view.id)
    with pytest.raises(FailedPrecondition, match="has expired"):
        app.proposals.decide("admin1", view.id, "admin1", Decision.APPROVE, sign_statement(
            app_key(app, "admin1"), proposal_statement(view.doc, Decision.APPROVE)))
    assert app.proposals.get(view.id).state == "EXPIRED"
    with app.store.read() as tx:
        assert app.ledger.state(tx).operators["inv2"].status.value == "active"
    # A sealed proposal the monitor reaches is expired by its sealed window, a forged one
    # ended as a violation; a live one is left alone.
    live = AdminService(app).revoke_operator("admin", "inv2", "left")
    forged = dict(live.doc, id="p_" + secrets.token_hex(10))
    app_sql(app, "INSERT INTO proposals (id, kind, body, state, submitter, subject, expires_at,"
            " created_at, updated_at, seal) SELECT ?, kind, ?, state, submitter, subject,"
            " expires_at, created_at, updated_at, seal FROM proposals WHERE id = ?",
            (forged["id"], canon(forged), live.id))
    before = violations(app, "proposal")
    app.proposals.tick()
    assert app.proposals.get(forged["id"]).state == "FAILED"
    assert violations(app, "proposal") == before + 1
    assert app.proposals.get(live.id).state == "PENDING_APPROVAL"
    app.proposals.cancel("admin", live.id, "done")


# ---------------------------------------------------------------- 3. one person and a proposal

def test_only_the_submitter_cancels_a_proposal(daemon: Daemon) -> None:
    """An admin cannot block the revocation of a compromised operator that someone else
    proposed; they can reject it with a signed decision, which the quorum then weighs."""
    name = f"leaked{secrets.token_hex(3)}"
    register_operator(daemon, name, ["investigator"], public_pem(generate()))
    p = daemon.admin().RevokeOperator(pb.RevokeOperatorRequest(id=name, reason="key leaked"))
    assert p.submitter == "admin" and p.state == "PENDING_APPROVAL"
    rule = (f"only the submitter of proposal {p.id} (admin) may cancel it; to stop it, reject "
            f"it with a signed decision (signerctl proposal reject {p.id} --key KEY --reason "
            "TEXT)")
    for who in ("admin1", "admin2", "inv1"):
        e = rpc_error(daemon.governance(who).CancelProposal, pb.CancelProposalRequest(
            proposal_id=p.id, reason="not now"))
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED and e.details() == rule, \
            (who, e.details())
    assert proposal(daemon, p.id).state == "PENDING_APPROVAL"
    assert govern(daemon, p).state == "APPROVED"
    assert {o.id: o.status for o in daemon.admin().ListOperators(
        pb.ListOperatorsRequest()).operators}[name] == "revoked"
    # The submitter may withdraw their own (with a third admin, so that admin1 may propose).
    key = generate()
    write_keypair(key, daemon.state / "operators" / "admin3.key",
                  daemon.state / "operators" / "admin3.pub")
    operator_cert(daemon, "admin3")
    register_operator(daemon, "admin3", ["admin"], public_pem(key))
    own = daemon.admin("admin1").RevokeOperator(pb.RevokeOperatorRequest(id="inv2", reason="x"))
    e = rpc_error(daemon.governance().CancelProposal, pb.CancelProposalRequest(
        proposal_id=own.id))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED and "(admin1)" in e.details()
    done = daemon.governance("admin1").CancelProposal(pb.CancelProposalRequest(
        proposal_id=own.id, reason="typo"))
    assert done.state == "CANCELLED" and done.failure == "typo"
    # The module's daemon goes back to two admins (one rejection ends a proposal again).
    assert govern(daemon, daemon.admin().RevokeOperator(pb.RevokeOperatorRequest(
        id="admin3", reason="test over"))).state == "APPROVED"


def test_a_seized_key_whose_import_was_rejected_can_be_imported_again(daemon: Daemon,
                                                                      db: SqliteWriter) -> None:
    secret = coincurve.PrivateKey(secrets.token_bytes(32)).secret.hex()
    req = dict(hex=secret, chain=pb.BITCOIN, network="regtest", case_ref="CASE-AGAIN-1",
               seizure_record="SR-AGAIN-1")
    keys_before = daemon.admin().KeyStatus(pb.KeyStatusRequest()).key_count
    first = daemon.admin().ImportKey(pb.ImportKeyRequest(**req))
    wallet_id = json.loads(first.body_json)["change"]["wallet"]["id"]
    assert daemon.admin().KeyStatus(pb.KeyStatusRequest()).key_count == keys_before + 1
    # While its proposal is pending, the key is refused as held.
    e = rpc_error(daemon.admin().ImportKey, pb.ImportKeyRequest(**req))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"already held by signerd (wallet {wallet_id}, AWAITING_APPROVAL)" in e.details()
    rejected = decide_proposal(daemon, first.id, "admin1", pb.REJECT, reason="wrong case")
    assert rejected.state == "REJECTED"
    retired = daemon.custody().GetWallet(pb.GetWalletRequest(wallet_id=wallet_id))
    assert retired.status == pb.RETIRED
    # A writer who sets the retired wallet ACTIVE gets nothing: no proposal approved it.
    db.run(("UPDATE wallets SET status = 'ACTIVE' WHERE id = ?", (wallet_id,)))
    e = rpc_error(daemon.custody().GetWallet, pb.GetWalletRequest(wallet_id=wallet_id))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and "no approved proposal" in \
        e.details(), e.details()
    db.run(("UPDATE wallets SET status = 'RETIRED' WHERE id = ?", (wallet_id,)))
    # Imported again: the same wallet around the same HSM key, under a new proposal.
    again = daemon.admin().ImportKey(pb.ImportKeyRequest(**dict(
        req, case_ref="CASE-AGAIN-2", seizure_record="SR-AGAIN-2")))
    record = json.loads(again.body_json)["change"]["wallet"]
    assert again.state == "PENDING_APPROVAL" and again.id != first.id
    assert record["id"] == wallet_id and record["address"] == retired.address
    assert record["keys"][0]["key_id"] == retired.keys[0].key_id
    assert record["case_ref"] == "CASE-AGAIN-2" and record["proposal"] == again.id
    assert daemon.admin().KeyStatus(pb.KeyStatusRequest()).key_count == keys_before + 1
    w = daemon.custody().GetWallet(pb.GetWalletRequest(wallet_id=wallet_id))
    assert w.status == pb.AWAITING_APPROVAL and w.case_ref == "CASE-AGAIN-2"
    assert govern(daemon, again).state == "APPROVED"
    w = daemon.custody().GetWallet(pb.GetWalletRequest(wallet_id=wallet_id))
    assert w.status == pb.ACTIVE and w.template == "seized-sweep"
    # It signs: a sweep into a custody wallet of its own category, one custody officer.
    own = daemon.custody().CreateWallet(pb.CreateWalletRequest(
        chain=pb.BITCOIN, network="regtest", category=pb.SEIZED, case_ref="CASE-AGAIN-DEST"))
    t, prev = sweep(daemon, w, own, 10**6)
    t = decide(daemon, t.id, "cust1")
    assert t.state == pb.SIGNED and verify_with_bitcointx(t.raw_tx, prev) == 1
    # Approved once, the key is held for good.
    e = rpc_error(daemon.admin().ImportKey, pb.ImportKeyRequest(**req))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"already held by signerd (wallet {wallet_id}, ACTIVE)" in e.details()


def test_a_key_share_of_a_rejected_wallet_is_free_again(daemon: Daemon, db: SqliteWriter
                                                        ) -> None:
    share = daemon.custody().CreateKeyShare(pb.CreateKeyShareRequest(
        category=pb.SEIZED, case_ref="CASE-SHARE"))
    outside = coincurve.PrivateKey(secrets.token_bytes(32)).public_key.format().hex()
    req = dict(chain=pb.BITCOIN, network="regtest", category=pb.SEIZED, case_ref="CASE-SHARE",
               script_type=pb.P2WSH_SORTEDMULTI, threshold=2, hsm_key_ids=[share.key_id],
               cosigners=[outside])
    first = daemon.custody().CreateWallet(pb.CreateWalletRequest(**req))
    assert first.status == pb.AWAITING_APPROVAL
    assert db.one("SELECT wallet_id FROM key_shares WHERE key_id = ?",
                  (share.key_id,))["wallet_id"] == first.id
    p = proposal(daemon, first.proposal_id)
    assert decide_proposal(daemon, p.id, "admin1", pb.REJECT, reason="wrong cosigner").state \
        == "REJECTED"
    assert daemon.custody().GetWallet(pb.GetWalletRequest(
        wallet_id=first.id)).status == pb.RETIRED
    assert db.one("SELECT wallet_id FROM key_shares WHERE key_id = ?",
                  (share.key_id,))["wallet_id"] == ""
    (released,) = audit_events(daemon, action="key_share.released", obj=share.key_id)
    assert json.loads(released.details_json) == {"wallet_id": first.id, "proposal": p.id}
    # The retired wallet keeps its address: exactly the same key set is not a new wallet.
    e = rpc_error(daemon.custody().CreateWallet, pb.CreateWalletRequest(**req))
    assert e.code() == grpc.StatusCode.ALREADY_EXISTS and first.address in e.details()
    assert db.one("SELECT wallet_id FROM key_shares WHERE key_id = ?",
                  (share.key_id,))["wallet_id"] == ""
    # The share, and the outside key, serve a new wallet (with one more cosigner this time),
    # which waits for its own proposal.
    right = coincurve.PrivateKey(secrets.token_bytes(32)).public_key.format().hex()
    second = daemon.custody().CreateWallet(pb.CreateWalletRequest(**dict(
        req, cosigners=[outside, right])))
    assert second.id != first.id and second.status == pb.AWAITING_APPROVAL
    assert {share.public_key, bytes.fromhex(outside)} <= {k.public_key for k in second.keys}
    assert govern(daemon, proposal(daemon, second.proposal_id)).state == "APPROVED"
    assert daemon.custody().GetWallet(pb.GetWalletRequest(
        wallet_id=second.id)).status == pb.ACTIVE
    # Taken by an approved wallet, it stays taken.
    third = coincurve.PrivateKey(secrets.token_bytes(32)).public_key.format().hex()
    e = rpc_error(daemon.custody().CreateWallet, pb.CreateWalletRequest(**dict(
        req, cosigners=[third])))
    assert e.code() == grpc.StatusCode.ALREADY_EXISTS and second.id in e.details()
