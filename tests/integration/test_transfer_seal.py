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

import grpc

from tests.support.daemon import Daemon
from tests.support.governance import decide, govern, set_policy
from tests.support.rpc import pb, rpc_error
from tests.support.bitcoin import verify_with_bitcointx
from tests.support.ethereum import submit, tx_fields
from tests.support.attacks import (SEAL, StoreWriter, TINY_ONLY, _nonce, assert_eth_signed,
                                   assert_no_signature, assert_violation,
                                   attack_inserted_transfer_row, attack_reclassified_destination,
                                   daemon_and_writer_fixtures, eth_transfer, eth_wallet,
                                   monitor_ticks, multisig, seized_btc_wallet, sweep,
                                   violation_metric)

_order = iter(range(1, 10**6))


daemon, db = daemon_and_writer_fixtures("seal")


# ---------------------------------------------------------------- a store writer alone


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
