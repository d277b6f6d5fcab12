"""Transfer rows are sealed, and a transfer is judged against what it was submitted as and what
its destinations are now (a real daemon, a real SoftHSM token, a real SQLite store; the
store-writer attack runs on PostgreSQL too, in test_governance_postgres.py).

- A store writer who rewrites a pending transfer's stored movement (its destination classes,
  so that an outside address reads as one of signerd's own wallets and one officer suffices),
  or inserts a transfer row of their own, gets nothing: the row no longer carries signerd's
  seal over what was submitted, so no operator is shown its statement, no approval is taken
  and the transfer ends FAILED, unsigned.
- A destination that becomes one of signerd's own wallets while a transfer waits does not void
  the approvals already given (they bind the movement as submitted), and does not lighten the
  transfer either: it needs the strictest of what the movement needs as submitted and now.
- A policy the governance quorum approves that no longer allows a waiting transfer at all ends
  it (CANCELLED by signerd, naming the policy version), whether it waits for approvals or is
  approved and waits for a court-ordered freeze to lift.
"""
from __future__ import annotations

import json
import secrets
from typing import Iterator

import grpc
import pytest

from tests.support.daemon import Daemon
from tests.support.governance import decide, govern, set_policy
from tests.support.rpc import pb, rpc_error
from tests.integration.test_bitcoin_e2e import verify_with_bitcointx
from tests.integration.test_ethereum_e2e import submit, tx_fields
from tests.integration.test_governance_attacks import (StoreWriter, _nonce, assert_eth_signed,
                                                       assert_no_signature, assert_violation,
                                                       eth_transfer, eth_wallet, fresh_daemon,
                                                       monitor_ticks, multisig,
                                                       seized_btc_wallet, sqlite_writer, sweep,
                                                       violation_metric)

SEAL = "does not carry signerd's seal"
_order = iter(range(1, 10**6))


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = fresh_daemon(tmp_path_factory.mktemp("seal") / "state")
    yield d
    d.stop()


@pytest.fixture
def db(daemon: Daemon) -> StoreWriter:
    return sqlite_writer(daemon)


# ---------------------------------------------------------------- a store writer alone

def attack_reclassified_destination(d: Daemon, db: StoreWriter) -> None:
    """A seized-sweep wallet: one custody officer may sweep into signerd's own wallets, an
    outside address needs three approvers with a prosecutor. The writer rewrites the pending
    transfer's stored movement so the outside address reads as own_wallet, and its
    requirement to one officer."""
    w = eth_wallet(d, template="seized-sweep")
    own = eth_wallet(d)
    t = eth_transfer(d, w)
    assert t.movement.outputs[0].destination_class == "external"
    assert t.requirement.startswith("3 approvers"), t.requirement
    genuine = d.approval("cust1").GetStatement(pb.GetStatementRequest(
        transfer_id=t.id, decision=pb.APPROVE)).statement
    row = db.one("SELECT movement, requirement FROM transfers WHERE id = ?", (t.id,))
    sweep_row = eth_transfer(d, w, to=own.address)  # a genuine one-officer requirement
    one_officer = db.one("SELECT requirement FROM transfers WHERE id = ?",
                         (sweep_row.id,))["requirement"]
    movement = json.loads(row["movement"])
    movement["outputs"][0].update(destination_class="own_wallet", wallet_id=own.id,
                                  category="seized")
    db.run(("UPDATE transfers SET movement = ?, requirement = ? WHERE id = ?",
            (json.dumps(movement, sort_keys=True), one_officer, t.id)))
    # No operator is shown the rewritten statement.
    e = rpc_error(d.approval("cust1").GetStatement, pb.GetStatementRequest(
        transfer_id=t.id, decision=pb.APPROVE))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and SEAL in e.details(), e.details()
    # An officer's approval (over the statement they were shown before) is refused, and the
    # transfer ends FAILED as an authority violation.
    before = violation_metric(d, "transfer")
    e = rpc_error(decide, d, t.id, "cust1", statement=genuine)
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and SEAL in e.details(), e.details()
    assert_violation(d, db, t.id, "transfer", SEAL, before)
    # The legitimate counterpart: the genuine sweep into the own wallet, one officer.
    assert sweep_row.requirement.startswith("1 approver"), sweep_row.requirement
    assert_eth_signed(decide(d, sweep_row.id, "cust1"), w)


def attack_inserted_transfer_row(d: Daemon, db: StoreWriter) -> None:
    """The writer copies a genuine pending transfer into a new row of their own, with another
    destination in its payload and movement: nobody is shown it, nothing is signed."""
    w = eth_wallet(d)
    t = eth_transfer(d, w)
    row = db.one("SELECT * FROM transfers WHERE id = ?", (t.id,))
    fake_id = "t_" + secrets.token_hex(10)
    mine = "0x" + "ab" * 20
    payload = json.loads(bytes(row["payload"]))
    payload.update(to=mine, nonce=payload["nonce"] + 10_000)
    movement = json.loads(row["movement"])
    movement["outputs"][0]["address"] = mine
    row.update(id=fake_id, payload=json.dumps(payload).encode(),
               movement=json.dumps(movement, sort_keys=True), idempotency_key=fake_id)
    cols = list(row)
    db.run((f"INSERT INTO transfers ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})",
            tuple(row[c] for c in cols)))
    e = rpc_error(d.approval("inv1").GetStatement, pb.GetStatementRequest(
        transfer_id=fake_id, decision=pb.APPROVE))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and SEAL in e.details(), e.details()
    before = violation_metric(d, "transfer")
    genuine = d.approval("inv1").GetStatement(pb.GetStatementRequest(
        transfer_id=t.id, decision=pb.APPROVE)).statement
    e = rpc_error(decide, d, fake_id, "inv1", statement=genuine)
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and SEAL in e.details(), e.details()
    assert_violation(d, db, fake_id, "transfer", SEAL, before)
    # The genuine transfer is untouched by it and is signed by its quorum.
    decide(d, t.id, "inv1")
    assert_eth_signed(decide(d, t.id, "cust1"), w)


def test_store_writer_reclassifies_a_destination(daemon: Daemon, db: StoreWriter) -> None:
    attack_reclassified_destination(daemon, db)


def test_store_writer_inserts_a_transfer_row(daemon: Daemon, db: StoreWriter) -> None:
    attack_inserted_transfer_row(daemon, db)


def test_store_writer_extends_the_window(daemon: Daemon, db: StoreWriter) -> None:
    """The approval window is part of what is sealed: pushed out by the writer (to keep a
    transfer approvable after its window), the transfer stands no more."""
    w = eth_wallet(daemon)
    t = eth_transfer(daemon, w)
    genuine = daemon.approval("inv1").GetStatement(pb.GetStatementRequest(
        transfer_id=t.id, decision=pb.APPROVE)).statement
    db.run(("UPDATE transfers SET expires_at = expires_at + 86400 WHERE id = ?", (t.id,)))
    before = violation_metric(daemon, "transfer")
    e = rpc_error(decide, daemon, t.id, "inv1", statement=genuine)
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and SEAL in e.details(), e.details()
    assert_violation(daemon, db, t.id, "transfer", SEAL, before)


# ---------------------------------------------------------------- the ledger moves meanwhile

def test_a_destination_that_becomes_our_own_wallet_meanwhile(daemon: Daemon,
                                                             db: StoreWriter) -> None:
    """A sweep to a 2-of-2 multisig (one outside key) that awaits the governance quorum is
    external (three approvers); the quorum approves the multisig while the sweep waits, which
    makes it one of signerd's own wallets (one officer would do for a new sweep). The
    approvals given before stand, and the sweep still needs its three."""
    seized = seized_btc_wallet(daemon)
    safe = multisig(daemon, threshold=2)
    t, prev = sweep(daemon, seized, safe, 4 * 10**8)
    assert t.movement.outputs[0].destination_class == "external"
    assert t.requirement.startswith("3 approvers") and "prosecutor x1" in t.requirement
    decide(daemon, t.id, "cust1")
    decide(daemon, t.id, "inv1")
    assert govern(daemon, daemon.governance().GetProposal(pb.GetProposalRequest(
        proposal_id=safe.proposal_id))).state == "APPROVED"
    fresh, _ = sweep(daemon, seized, safe, 10**8)
    assert fresh.movement.outputs[0].destination_class == "own_wallet"
    assert fresh.requirement.startswith("1 approver"), fresh.requirement
    got = daemon.custody().GetTransfer(pb.GetTransferRequest(transfer_id=t.id))
    assert got.state == pb.PENDING_APPROVAL and "prosecutor x1" in got.remaining, got.remaining
    assert got.movement.outputs[0].destination_class == "external"  # as approved
    t = decide(daemon, t.id, "pros1")
    assert t.state == pb.SIGNED, (t.state, t.failure)
    assert verify_with_bitcointx(t.raw_tx, prev) == 1


# A policy that covers only tiny amounts: a waiting transfer of 0.001 ETH is no longer allowed.
TINY_ONLY = """\
name = "tiny-only"
expiry = "24h"

[[rule]]
name = "tiny"
asset = "*"
max_amount = "1000"
category_change = ["none"]
approvers = 2
roles = { investigator = 1, custody_officer = 1 }
"""


def test_a_policy_that_no_longer_allows_a_waiting_transfer_ends_it(daemon: Daemon,
                                                                   db: StoreWriter) -> None:
    w = eth_wallet(daemon)
    t = eth_transfer(daemon, w)  # 0.001 ETH
    decide(daemon, t.id, "inv1")
    p = set_policy(daemon, w.id, TINY_ONLY)
    version = json.loads(p.body_json)["change"]["base_version"] + 1
    got = daemon.custody().GetTransfer(pb.GetTransferRequest(transfer_id=t.id))
    assert got.state == pb.CANCELLED, got
    assert f"policy version {version} no longer allows this transfer" in got.failure, got.failure
    assert not db.rows("SELECT * FROM transfer_locks WHERE transfer_id = ?", (t.id,))
    e = rpc_error(decide, daemon, t.id, "cust1")
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert_no_signature(daemon, db, t.id)


def test_a_policy_that_no_longer_allows_an_approved_transfer_ends_it(daemon: Daemon,
                                                                     db: StoreWriter) -> None:
    """Approved while its wallet is frozen by court order (nothing signed yet); the quorum then
    approves a policy that no longer allows it: it ends at once, and the unfreeze signs
    nothing. A transfer the new policy allows is signed."""
    w = eth_wallet(daemon)
    t = eth_transfer(daemon, w)
    daemon.admin().FreezeWallet(pb.FreezeWalletRequest(wallet_id=w.id,
                                                       order_ref=f"ORDER-S-{next(_order)}"))
    decide(daemon, t.id, "inv1")
    assert decide(daemon, t.id, "cust1").state == pb.APPROVED
    set_policy(daemon, w.id, TINY_ONLY)
    got = daemon.custody().GetTransfer(pb.GetTransferRequest(transfer_id=t.id))
    assert got.state == pb.CANCELLED and "no longer allows this transfer" in got.failure, got
    p = daemon.admin().UnfreezeWallet(pb.FreezeWalletRequest(wallet_id=w.id,
                                                             order_ref=f"ORDER-S-{next(_order)}"))
    assert govern(daemon, p).state == "APPROVED"
    monitor_ticks(2)
    assert assert_no_signature(daemon, db, t.id).state == pb.CANCELLED
    ok = submit(daemon, w.id, tx_fields(nonce=next(_nonce), value=500))
    decide(daemon, ok.id, "inv1")
    assert_eth_signed(decide(daemon, ok.id, "cust1"), w)
