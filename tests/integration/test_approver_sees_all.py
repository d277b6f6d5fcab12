"""What the approver sees is all that can happen (issue 13): a real daemon, real SoftHSM, gRPC
over mTLS, signerctl as a subprocess; signed output checked with eth-account and
python-bitcointx, never with signerd's own code.

1. A replacement's statement binds and shows what it replaces: the replaced transfer, its state
   at submission and the fee change. signerctl rebuilds it byte for byte and shows the same
   line; a store writer who changes any of the three after the approvals voids them (the sign
   step refuses as an authority violation).
2. Locks follow the transaction: a replacement that ends unsigned (cancelled, rejected by a
   veto, expired, failed) gives its nonce or outpoints back to the transfer it replaced when
   that one is signed (or live), walking the chain of replacements; only what no transfer of
   the chain claims is released. Without that, replacing a signed transfer and cancelling the
   replacement freed its nonce for a transaction not marked as a replacement: two different
   transactions signed for one nonce (a double spend by signature).
3. A vetoed transaction cannot come back without the vetoing role: submitted again (as it was,
   or in another encoding), it needs an approval by the role that vetoed it on top of its
   policy, and its statement says it was vetoed before. The record of the veto is an audit
   event the checkpoints commit to: a store writer who deletes it, or strips it from the
   resubmission's row, gets no lighter quorum.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import grpc
import pytest
from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from hexbytes import HexBytes

from signerd.core.bitcoin.psbt import Psbt, PsbtOutput
from signerd.core.bitcoin.tx import Transaction, TxOut
from tests.support.daemon import Daemon
from tests.support.governance import decide, govern, set_policy
from tests.support.rpc import pb, rpc_error
from tests.support import bitcoin as btc
from tests.support.cli import ctl
from tests.support.ethereum import submit, tx_fields
from tests.support.attacks import (SqliteWriter, assert_no_signature, assert_violation,
                                   audit_events, daemon_and_writer_fixtures, eth_wallet,
                                   fresh_daemon, insert_approval, monitor_ticks, sqlite_writer,
                                   store_statement, violation_metric, wait_state)

GWEI = 10**9
_nonce = iter(range(1, 10**6))
_order = iter(range(1, 10**6))


daemon, db = daemon_and_writer_fixtures("sees")


def statement_doc(d: Daemon, transfer_id: str, operator: str = "cust1") -> tuple[dict[str, Any],
                                                                                  str]:
    st = d.approval(operator).GetStatement(pb.GetStatementRequest(transfer_id=transfer_id,
                                                                  decision=pb.APPROVE))
    tag, _, body = st.statement.partition(b"\n")
    assert tag == b"signerd-approval/v1"
    return json.loads(body), st.rendered


def signed_eth(d: Daemon, w: pb.Wallet, nonce: int, **over: Any) -> pb.Transfer:
    t = submit(d, w.id, tx_fields(nonce=nonce, **over))
    decide(d, t.id, "inv1")
    t = decide(d, t.id, "cust1")
    assert t.state == pb.SIGNED and Account.recover_transaction(bytes.fromhex(t.raw_tx)) == \
        w.address
    return t


def replace_eth(d: Daemon, w: pb.Wallet, replaces: str, fields: dict[str, Any]) -> pb.Transfer:
    return d.custody().SubmitTransfer(pb.SubmitTransferRequest(
        wallet_id=w.id, replaces=replaces, ethereum=pb.EthereumTransaction(
            json=json.dumps(fields))))


# ---------------------------------------------------------------- 1. replacements bound, shown

def test_replacement_binds_and_shows_what_it_replaces(daemon: Daemon) -> None:
    w = eth_wallet(daemon)
    nonce = next(_nonce)
    t1 = signed_eth(daemon, w, nonce)
    bump = tx_fields(nonce=nonce, maxFeePerGas=3 * GWEI)
    t2 = replace_eth(daemon, w, t1.id, bump)
    delta = 21_000 * (3 - 2) * GWEI  # gas x the max fee per gas it adds
    assert (t2.replaces, t2.replaces_state, t2.replaces_fee_delta) == (t1.id, "SIGNED",
                                                                       str(delta))
    doc, rendered = statement_doc(daemon, t2.id)
    assert doc["replaces"] == {"transfer_id": t1.id, "state": "SIGNED", "fee_delta": str(delta)}
    line = f"replaces:        {t1.id} (SIGNED), fee +21,000,000,000,000 wei"
    assert line in rendered.splitlines()
    # signerctl rebuilds the statement from the raw transaction and the Transfer message (it
    # refuses unless byte for byte equal) and shows the same line.
    shown = ctl(daemon, "--as", "inv1", "transfer", "show", t2.id).stdout
    assert "it matches" in shown
    assert f"replaces:         {t1.id} (SIGNED), fee +21,000,000,000,000 wei" in shown
    # A lower fee shows as negative; a pending transfer replaced shows its state.
    t3 = replace_eth(daemon, w, t2.id, tx_fields(nonce=nonce, maxFeePerGas=2 * GWEI + 1))
    assert (t3.replaces_state, t3.replaces_fee_delta) == ("PENDING_APPROVAL",
                                                          str(-(21_000 * (GWEI - 1))))
    _, rendered = statement_doc(daemon, t3.id)
    assert f"replaces:        {t2.id} (PENDING_APPROVAL), fee -20,999,999,979,000 wei" in \
        rendered.splitlines()
    # Approved through signerctl (which checks the statement itself), then signed.
    for op in ("inv1", "cust1"):
        ctl(daemon, "--as", op, "transfer", "approve", t3.id, "--key",
            str(daemon.state / "operators" / f"{op}.key"), "--yes")
    t3 = daemon.custody().GetTransfer(pb.GetTransferRequest(transfer_id=t3.id))
    assert t3.state == pb.SIGNED
    signed = Account.recover_transaction(bytes.fromhex(t3.raw_tx))
    assert signed == w.address
    # The transaction signed is the one shown: nonce, max fee.
    fields = TypedTransaction.from_bytes(HexBytes(t3.raw_tx)).as_dict()
    assert fields["nonce"] == nonce and fields["maxFeePerGas"] == 2 * GWEI + 1


def test_a_plain_transfer_replaces_nothing(daemon: Daemon) -> None:
    w = eth_wallet(daemon)
    t = submit(daemon, w.id, tx_fields(nonce=next(_nonce)))
    assert (t.replaces, t.replaces_state, t.replaces_fee_delta) == ("", "", "0")
    doc, rendered = statement_doc(daemon, t.id)
    assert doc["replaces"] is None and "replaces:" not in rendered


@pytest.mark.parametrize("column, value", [
    ("replaces_state", "PENDING_APPROVAL"),
    ("replaces_fee_delta", "1"),
    ("replaces", "t_0000000000000000000000"),
    (None, None),  # the honest counterpart: untouched, it is signed
])
def test_replacement_fields_changed_after_approval_void_it(daemon: Daemon, db: SqliteWriter,
                                                            column: str | None,
                                                            value: str | None) -> None:
    """The replacement is approved while its wallet is frozen by court order (so the quorum is
    recorded and nothing is signed yet); a store writer changes one of the bound fields; once
    the governance quorum unfreezes the wallet, the sign step finds the row no longer carries
    signerd's seal over what was submitted, and the transfer ends FAILED unsigned."""
    w = eth_wallet(daemon)
    nonce = next(_nonce)
    t1 = signed_eth(daemon, w, nonce)
    t2 = replace_eth(daemon, w, t1.id, tx_fields(nonce=nonce, maxFeePerGas=5 * GWEI))
    daemon.admin().FreezeWallet(pb.FreezeWalletRequest(wallet_id=w.id,
                                                       order_ref=f"ORDER-{next(_order)}"))
    decide(daemon, t2.id, "inv1")
    assert decide(daemon, t2.id, "cust1").state == pb.APPROVED
    before = violation_metric(daemon, "transfer")
    if column is not None:
        db.run((f"UPDATE transfers SET {column} = ? WHERE id = ?", (value, t2.id)))
    p = daemon.admin().UnfreezeWallet(pb.FreezeWalletRequest(wallet_id=w.id,
                                                             order_ref=f"ORDER-{next(_order)}"))
    assert govern(daemon, p).state == "APPROVED"
    if column is None:
        t2 = wait_state(daemon, t2.id, pb.SIGNED)
        assert Account.recover_transaction(bytes.fromhex(t2.raw_tx)) == w.address
        return
    # signerd's seal over the submitted row no longer verifies (the approvals would not
    # verify over the statement either: engine.judge, tests/unit/test_engine.py).
    assert_violation(daemon, db, t2.id, "transfer", "does not carry signerd's seal", before)


def test_bad_replacements_are_refused_naming_the_problem(daemon: Daemon) -> None:
    w, other = eth_wallet(daemon), eth_wallet(daemon)
    nonce = next(_nonce)
    t1 = signed_eth(daemon, w, nonce)
    e = rpc_error(replace_eth, daemon, w, "t_nothere", tx_fields(nonce=nonce))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    assert e.details() == "replaces: transfer t_nothere not found", e.details()
    e = rpc_error(replace_eth, daemon, other, t1.id, tx_fields(nonce=nonce))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"replaces: transfer {t1.id} belongs to wallet {w.id}, not {other.id}" == e.details()
    e = rpc_error(replace_eth, daemon, w, t1.id, tx_fields(nonce=nonce + 1))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.details() == f"replaces: transfer {t1.id} does not spend the same nonce or outputs"
    t2 = replace_eth(daemon, w, t1.id, tx_fields(nonce=nonce, maxFeePerGas=3 * GWEI))
    e = rpc_error(replace_eth, daemon, w, t1.id, tx_fields(nonce=nonce, maxFeePerGas=4 * GWEI))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.details() == (f"replaces: transfer {t1.id} no longer holds its nonce or outputs: "
                           f"transfer {t2.id} replaced it; replace that one instead")
    daemon.custody().CancelTransfer(pb.CancelTransferRequest(transfer_id=t2.id, reason="x"))
    e = rpc_error(replace_eth, daemon, w, t2.id, tx_fields(nonce=nonce, maxFeePerGas=4 * GWEI))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.details() == (f"replaces: transfer {t2.id} is CANCELLED; only a live or signed "
                           "transfer can be replaced")


# ---------------------------------------------------------------- 2. locks follow the transaction

SHORT = ('name = "short"\nexpiry = "3s"\n[[rule]]\nname = "all"\nasset = "*"\napprovers = 2\n'
         'roles = { investigator = 1, custody_officer = 1 }\nveto = ["judge"]\n')


def end_unsigned(d: Daemon, db: SqliteWriter, t: pb.Transfer, how: str) -> pb.Transfer:
    """End a pending transfer without a signature: cancelled by the platform, rejected by the
    judge's veto, expired (its wallet's policy gives 3 s), or failed (a store writer's forged
    approvals, found by the monitor)."""
    if how == "cancelled":
        d.custody().CancelTransfer(pb.CancelTransferRequest(transfer_id=t.id, reason="x"))
        return wait_state(d, t.id, pb.CANCELLED)
    if how == "rejected":
        return decide(d, t.id, "judge1", pb.REJECT, reason="no")
    if how == "expired":
        return wait_state(d, t.id, pb.EXPIRED, timeout=20)
    assert how == "failed"
    statement = store_statement(db, t.instance_id, t.id)
    db.run(insert_approval(db, t.id, "inv1", bytes(64), statement),
           insert_approval(db, t.id, "cust1", bytes(64), statement),
           ("UPDATE transfers SET state = ? WHERE id = ?", ("APPROVED", t.id)))
    return wait_state(d, t.id, pb.FAILED)


@pytest.mark.parametrize("how", ["cancelled", "rejected", "expired", "failed"])
def test_nonce_returns_to_the_signed_transfer_when_its_replacement_ends(
        daemon: Daemon, db: SqliteWriter, how: str) -> None:
    """T1 signed for nonce n; T2 replaces it and ends unsigned. A fresh transaction for n that
    is not marked as a replacement is refused, naming T1 and saying it is SIGNED (before the
    fix it was accepted: the nonce had been released with T2); replacing T1 explicitly is
    accepted and signed."""
    w = eth_wallet(daemon)
    if how == "expired":
        set_policy(daemon, w.id, SHORT)
    nonce = next(_nonce)
    t1 = signed_eth(daemon, w, nonce)
    t2 = replace_eth(daemon, w, t1.id, tx_fields(nonce=nonce, maxFeePerGas=3 * GWEI))
    assert end_unsigned(daemon, db, t2, how).state != pb.SIGNED
    other = tx_fields(nonce=nonce, value=1, to="0x00000000000000000000000000000000000000AA")
    e = rpc_error(submit, daemon, w.id, other)
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e.details()
    assert e.details() == (f"eth:{w.address.lower()}:{other['chainId']}:{nonce} is already held "
                           f"by transfer {t1.id}, which is SIGNED: another transaction for it "
                           f"must replace that transfer (replaces = {t1.id})"), e.details()
    t3 = replace_eth(daemon, w, t1.id, dict(other, maxFeePerGas=4 * GWEI))
    assert (t3.replaces, t3.replaces_state) == (t1.id, "SIGNED")
    decide(daemon, t3.id, "inv1")
    t3 = decide(daemon, t3.id, "cust1")
    assert t3.state == pb.SIGNED
    assert Account.recover_transaction(bytes.fromhex(t3.raw_tx)) == w.address
    fields = TypedTransaction.from_bytes(HexBytes(t3.raw_tx)).as_dict()
    assert fields["nonce"] == nonce and fields["value"] == 1


def test_nonce_returns_along_the_chain_of_replacements(daemon: Daemon) -> None:
    """T0 signed; T1 replaces it (pending); T2 replaces T1, which is cancelled as superseded;
    T2 is cancelled: the nonce goes back past T1 to T0."""
    w = eth_wallet(daemon)
    nonce = next(_nonce)
    t0 = signed_eth(daemon, w, nonce)
    t1 = replace_eth(daemon, w, t0.id, tx_fields(nonce=nonce, maxFeePerGas=3 * GWEI))
    t2 = replace_eth(daemon, w, t1.id, tx_fields(nonce=nonce, maxFeePerGas=4 * GWEI))
    t1 = daemon.custody().GetTransfer(pb.GetTransferRequest(transfer_id=t1.id))
    assert t1.state == pb.CANCELLED and t2.replaces_state == "PENDING_APPROVAL"
    daemon.custody().CancelTransfer(pb.CancelTransferRequest(transfer_id=t2.id, reason="x"))
    e = rpc_error(submit, daemon, w.id, tx_fields(nonce=nonce, value=7))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"already held by transfer {t0.id}, which is SIGNED" in e.details(), e.details()
    assert replace_eth(daemon, w, t0.id, tx_fields(nonce=nonce, value=7)).replaces == t0.id


def test_a_plain_transfer_cancelled_still_frees_its_nonce(daemon: Daemon) -> None:
    """Nothing else changes: what no signed or live transfer claims is released."""
    w = eth_wallet(daemon)
    nonce = next(_nonce)
    t = submit(daemon, w.id, tx_fields(nonce=nonce))
    e = rpc_error(submit, daemon, w.id, tx_fields(nonce=nonce, value=1))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"already held by live transfer {t.id}" in e.details(), e.details()
    daemon.custody().CancelTransfer(pb.CancelTransferRequest(transfer_id=t.id, reason="x"))
    assert submit(daemon, w.id, tx_fields(nonce=nonce, value=1)).state == pb.PENDING_APPROVAL


def _spending(psbt: Psbt, inputs: list[int], outputs: list[tuple[bytes, int]]) -> Psbt:
    """A PSBT spending the given inputs of ``psbt`` to ``outputs``."""
    tx = Transaction(2, tuple(psbt.tx.inputs[i] for i in inputs),
                     tuple(TxOut(v, s) for s, v in outputs), 0)
    return Psbt(tx, tuple(psbt.inputs[i] for i in inputs), tuple(PsbtOutput() for _ in outputs))


def _psbt_submit(d: Daemon, w: pb.Wallet, psbt: Psbt, replaces: str = "") -> pb.Transfer:
    return d.custody().SubmitTransfer(pb.SubmitTransferRequest(
        wallet_id=w.id, psbt=psbt.to_base64().encode(), replaces=replaces))


def test_outpoint_returns_to_the_signed_transfer_when_its_replacement_is_cancelled(
        daemon: Daemon) -> None:
    """Bitcoin: T1 spends outpoint A and is signed; T2 replaces it spending A and B; T2 is
    cancelled. A goes back to T1: a fresh spend of A without ``replaces`` is refused naming T1;
    B, which no signed transfer spends, is free. Replacing T1 is accepted and signed, and the
    network transaction verifies in python-bitcointx."""
    w = btc.wallet(daemon)
    both, prev = btc.build_psbt(w, [50_000, 30_000], [(btc.EXTERNAL, 40_000)])
    a_only = _spending(both, [0], [(btc.EXTERNAL, 40_000)])
    t1 = btc.approve_both(daemon, _psbt_submit(daemon, w, a_only))
    assert t1.state == pb.SIGNED and btc.verify_with_bitcointx(t1.raw_tx, prev) == 1
    t2 = _psbt_submit(daemon, w, _spending(both, [0, 1], [(btc.EXTERNAL, 75_000)]), t1.id)
    assert (t2.replaces_state, t2.replaces_fee_delta) == ("SIGNED", str(5_000 - 10_000))
    daemon.custody().CancelTransfer(pb.CancelTransferRequest(transfer_id=t2.id, reason="x"))
    a = f"btc:regtest:{prev.txid_hex}:0"
    e = rpc_error(_psbt_submit, daemon, w, _spending(both, [0], [(btc.EXTERNAL, 45_000)]))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e.details()
    assert e.details() == (f"{a} is already held by transfer {t1.id}, which is SIGNED: another "
                           f"transaction for it must replace that transfer (replaces = "
                           f"{t1.id})"), e.details()
    b_only = _psbt_submit(daemon, w, _spending(both, [1], [(btc.EXTERNAL, 25_000)]))
    assert b_only.state == pb.PENDING_APPROVAL and not b_only.replaces
    daemon.custody().CancelTransfer(pb.CancelTransferRequest(transfer_id=b_only.id, reason="x"))
    t3 = _psbt_submit(daemon, w, _spending(both, [0], [(btc.EXTERNAL, 45_500)]), t1.id)
    assert (t3.replaces, t3.replaces_state, t3.replaces_fee_delta) == (t1.id, "SIGNED",
                                                                       "-5500")
    t3 = btc.approve_both(daemon, t3)
    assert t3.state == pb.SIGNED and btc.verify_with_bitcointx(t3.raw_tx, prev) == 1


# ---------------------------------------------------------------- 3. a veto sticks

def vetoed_by_judge(d: Daemon, w: pb.Wallet, payload: str) -> pb.Transfer:
    t = d.custody().SubmitTransfer(pb.SubmitTransferRequest(
        wallet_id=w.id, ethereum=pb.EthereumTransaction(json=payload)))
    decide(d, t.id, "inv1")
    t = decide(d, t.id, "judge1", pb.REJECT, reason="court order pending")
    assert t.state == pb.REJECTED and "veto of judge1" in t.failure
    return t


def resubmit(d: Daemon, w: pb.Wallet, payload: str) -> pb.Transfer:
    return d.custody().SubmitTransfer(pb.SubmitTransferRequest(
        wallet_id=w.id, ethereum=pb.EthereumTransaction(json=payload)))


def test_a_vetoed_transaction_resubmitted_needs_the_vetoing_role(daemon: Daemon,
                                                                  db: SqliteWriter) -> None:
    """Vetoed by judge1, submitted again unchanged: inv1 and cust1 no longer suffice (before
    the fix they did, in a fresh approval round); the statement and both renderings say it was
    vetoed before; judge1's approval completes it, and eth-account checks what was signed."""
    w = eth_wallet(daemon)
    nonce = next(_nonce)
    payload = json.dumps(tx_fields(nonce=nonce))
    t1 = vetoed_by_judge(daemon, w, payload)
    t2 = resubmit(daemon, w, payload)
    assert t2.payload == t1.payload and t2.state == pb.PENDING_APPROVAL
    assert [(v.role, v.transfer_id) for v in t2.vetoed] == [("judge", t1.id)]
    assert t2.requirement.startswith("3 approvers (custody_officer x1, investigator x1, judge "
                                     "x1)"), t2.requirement
    doc, rendered = statement_doc(daemon, t2.id)
    assert doc["vetoed"] == [{"role": "judge", "transfer_id": t1.id}]
    warning = (f"WARNING: previously vetoed by judge in {t1.id}; this transfer needs an "
               "approval by a judge as well")
    assert warning in rendered.splitlines()
    shown = ctl(daemon, "--as", "cust1", "transfer", "show", t2.id).stdout
    assert "it matches" in shown and warning in shown.splitlines() and "judge x1" in shown
    decide(daemon, t2.id, "inv1")
    t2 = decide(daemon, t2.id, "cust1")
    assert t2.state == pb.PENDING_APPROVAL and t2.remaining == "1 more approver: judge x1"
    monitor_ticks(1)
    assert_no_signature(daemon, db, t2.id)
    # The record is the audit event, naming the wallet, the transaction, the role, the transfer.
    (event,) = audit_events(daemon, action="transfer.vetoed")[-1:]
    assert event.object.startswith(f"veto/{w.id}/") and event.object.endswith(f"/judge/{t1.id}")
    details = json.loads(event.details_json)
    assert details["operator_id"] == "judge1" and details["payload_sha256"] == \
        hashlib.sha256(payload.encode()).hexdigest()
    t2 = decide(daemon, t2.id, "judge1")
    assert t2.state == pb.SIGNED
    assert Account.recover_transaction(bytes.fromhex(t2.raw_tx)) == w.address
    fields = TypedTransaction.from_bytes(HexBytes(t2.raw_tx)).as_dict()
    assert fields["nonce"] == nonce and fields["value"] == 10**15


def test_a_vetoed_transaction_in_another_encoding_is_the_same_transaction(
        daemon: Daemon) -> None:
    """The platform re-encodes the vetoed transaction (keys reordered, integers as hex,
    spacing): another payload, the same transaction (the same digest to sign). It is held to
    the veto all the same. A different transaction is not: its own approval round."""
    w = eth_wallet(daemon)
    fields = tx_fields(nonce=next(_nonce))
    t1 = vetoed_by_judge(daemon, w, json.dumps(fields))
    encoded = json.dumps({k: hex(v) if isinstance(v, int) else v
                          for k, v in reversed(list(fields.items()))}, indent=1)
    t2 = resubmit(daemon, w, encoded)
    assert t2.payload != t1.payload and t2.movement.digests == t1.movement.digests
    assert [(v.role, v.transfer_id) for v in t2.vetoed] == [("judge", t1.id)]
    assert "judge x1" in t2.requirement
    daemon.custody().CancelTransfer(pb.CancelTransferRequest(transfer_id=t2.id, reason="x"))
    other = resubmit(daemon, w, json.dumps(dict(fields, value=fields["value"] + 1)))
    assert not other.vetoed and other.requirement.startswith("2 approvers"), other.requirement


def test_a_store_writer_strips_the_veto_from_the_resubmission(daemon: Daemon,
                                                             db: SqliteWriter) -> None:
    """The row of the resubmission loses its record of the veto and its judge demand, before
    anyone approves. The row no longer carries signerd's seal over what was submitted: the
    operators are not even shown its statement, the first approval is refused as an authority
    violation and the transfer ends FAILED, unsigned. (Behind the seal, the judge also holds
    the statement to the vetoes the verified audit chain records: tests/unit/test_engine.py.)"""
    w = eth_wallet(daemon)
    payload = json.dumps(tx_fields(nonce=next(_nonce)))
    t1 = vetoed_by_judge(daemon, w, payload)
    t2 = resubmit(daemon, w, payload)
    genuine = daemon.approval("inv1").GetStatement(pb.GetStatementRequest(
        transfer_id=t2.id, decision=pb.APPROVE)).statement
    plain = db.one("SELECT requirement FROM transfers WHERE id = ?", (t1.id,))["requirement"]
    db.run(("UPDATE transfers SET vetoed = '[]', requirement = ? WHERE id = ?", (plain, t2.id)))
    needle = "does not carry signerd's seal"
    e = rpc_error(statement_doc, daemon, t2.id)
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and needle in e.details(), e.details()
    before = violation_metric(daemon, "transfer")
    e = rpc_error(decide, daemon, t2.id, "inv1", statement=genuine)
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e.details()
    assert needle in e.details(), e.details()
    assert_violation(daemon, db, t2.id, "transfer", needle, before)


def test_a_store_writer_deletes_the_record_of_the_veto(daemon: Daemon, db: SqliteWriter) -> None:
    """The record is the ``transfer.vetoed`` audit event: deleted, the chain no longer verifies
    and the resubmission is refused (FAILED_PRECONDITION naming the audit chain) instead of
    getting a lighter quorum; restored, it needs the judge again."""
    w = eth_wallet(daemon)
    payload = json.dumps(tx_fields(nonce=next(_nonce)))
    t1 = vetoed_by_judge(daemon, w, payload)
    (row,) = db.rows("SELECT * FROM audit_events WHERE action = 'transfer.vetoed' AND object"
                     " LIKE ?", (f"%/{t1.id}",))
    db.run(("DELETE FROM audit_events WHERE seq = ?", (row["seq"],)))
    try:
        e = rpc_error(resubmit, daemon, w, payload)
        assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e.details()
        assert "audit" in e.details() and "does not verify" in e.details(), e.details()
    finally:
        cols = list(row)
        db.run((f"INSERT INTO audit_events ({', '.join(cols)}) VALUES"
                f" ({', '.join('?' for _ in cols)})", tuple(row[c] for c in cols)))
    t2 = resubmit(daemon, w, payload)
    assert [(v.role, v.transfer_id) for v in t2.vetoed] == [("judge", t1.id)]


def test_the_veto_is_known_again_after_a_restart(tmp_path: Path) -> None:
    """After a restart the daemon reads the vetoes through the index of ending events and
    checks them against the latest HSM-signed checkpoint, which commits to them."""
    d = fresh_daemon(tmp_path / "state")
    try:
        w = eth_wallet(d)
        payload = json.dumps(tx_fields(nonce=next(_nonce)))
        t1 = vetoed_by_judge(d, w, payload)
        eth_wallet(d)  # so that the veto is not the checkpoint's head event
        d.audit("auditor").GetHead(pb.GetHeadRequest())  # a checkpoint covering the veto
        d.stop()
        d.start()
        t2 = resubmit(d, w, payload)
        assert [(v.role, v.transfer_id) for v in t2.vetoed] == [("judge", t1.id)]
        assert "judge x1" in t2.requirement
        d.custody().CancelTransfer(pb.CancelTransferRequest(transfer_id=t2.id, reason="x"))
        # Stopped, the writer turns the judge's veto into an investigator's (which inv1 would
        # meet): the ending events no longer match the checkpoint, and nothing is accepted.
        d.stop()
        db = sqlite_writer(d)
        db.run(("UPDATE audit_events SET object = replace(object, '/judge/', '/investigator/')"
                " WHERE action = 'transfer.vetoed'", ()))
        d.start()
        e = rpc_error(resubmit, d, w, payload)
        assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e.details()
        assert "not those it signed" in e.details(), e.details()
    finally:
        d.stop()


def test_a_vetoed_psbt_resubmitted_in_binary_needs_the_judge(daemon: Daemon) -> None:
    """Bitcoin: vetoed as base64, submitted again as binary (another payload, the same
    transaction): inv1 and cust1 do not suffice, judge1 completes it, and python-bitcointx
    verifies the network transaction."""
    w = btc.wallet(daemon)
    psbt, prev = btc.build_psbt(w, [50_000], [(btc.EXTERNAL, 40_000)])
    t1 = btc.submit(daemon, w, psbt)
    decide(daemon, t1.id, "inv1")
    assert decide(daemon, t1.id, "judge1", pb.REJECT, reason="no").state == pb.REJECTED
    t2 = btc.submit(daemon, w, psbt, b64=False)
    assert t2.payload != t1.payload
    assert [(v.role, v.transfer_id) for v in t2.vetoed] == [("judge", t1.id)]
    decide(daemon, t2.id, "inv1")
    assert decide(daemon, t2.id, "cust1").state == pb.PENDING_APPROVAL
    t2 = decide(daemon, t2.id, "judge1")
    assert t2.state == pb.SIGNED and btc.verify_with_bitcointx(t2.raw_tx, prev) == 1
