"""Governance attacks: one insider (or the platform plus one insider) tries to get a signature or
to loosen a rule alone. Real daemons, real SoftHSM, real gRPC over mTLS, SQLite store.

Each attack ends with NO signature: the signatures table has no row for the transfer and it has
no raw_tx. Where the store was written behind signerd's back, the transfer also ends FAILED
with an "authority violation: ..." reason, an ``authority.violation`` audit event (read through
Audit/ListEvents as the auditor) and ``signerd_authority_violations_total{kind}`` counted. Every
legitimate counterpart is shown to succeed, its signed output checked by an independent
library (eth-account for Ethereum, python-bitcointx for Bitcoin).

1. A store writer alone (direct SQL on the daemon's database; no HSM, no operator key):
   a. two approval rows (inv1, cust1) with all-zero signatures, transfer set to APPROVED;
   b. two ``operators`` rows with every role and the writer's own keys, plus approvals
      correctly signed by those keys over the real statement, transfer set to APPROVED;
   c. a wallet's ``policies`` row rewritten to a one-approver policy;
   d. a wallet frozen by FreezeWallet (a ledger entry), then ``UPDATE wallets SET status =
      'ACTIVE'``;
   e. a wallet row without a seal at a transfer's destination, to make it ``own_wallet``;
   f. a forged ``authority_log`` entry (a proposal registering the writer as an operator with
      fake admin approvals, the head row moved to it);
   g. the genesis row replaced by a genesis the writer made and signed with keys of their own;
   h. (not in the issue) a judge's veto erased: the REJECT row deleted, the state set back to
      PENDING_APPROVAL, before an honest custody officer approves; also with the rejection's
      audit events deleted, across a restart (with an ending event altered), and for a
      rejected governance proposal.
   Each is an ``attack_...(daemon, store_writer)`` function; every one of them is repeated on
   PostgreSQL in test_governance_postgres.py (f, g and h across a restart on a daemon and a
   database of their own, since they stop and restart it).
2. One admin alone: (a) registers an operator with every role; (b) sets a policy naming an
   operator nobody registered; (c) unfreezes by an order of their own; (d) registers another
   operator's public key under a new id; (e) approves the proposal they submitted themselves.
3. The platform plus one custody officer: (a) a "seized" 1-of-2 multisig whose outside key alone
   can spend, as the destination of a one-officer sweep; (b) wallets with policy text of their
   own, with an unknown template, and with every template, sending out with one approval.
4. Bad proposals: malformed (unknown role, bad operator id), one that would loosen a pending
   transfer, one approved by its own submitter; each refused with its status and message, and
   nothing changed.
5. kill -9 right after (and during) the decision that completes a proposal's quorum: the effect
   is in the decision's store transaction, so after the restart it happened exactly once (or,
   killed before the commit, not at all).
"""
from __future__ import annotations

import json
import re
import secrets
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import coincurve
import grpc
import pytest
from eth_account import Account

from signerd.core import authority as AU
from signerd.core import canonical
from signerd.core import engine as E
from signerd.core.approval import (SignedDecision, build_statement, genesis_statement,
                                   proposal_statement, sign_statement, statement_digest)
from signerd.core.bitcoin.address import address_to_script
from signerd.core.model import Decision
from signerd.adapters.key_files import load_private
from signerd.core.operator_keys import generate, public_pem
from signerd.services.transfers import movement_from_json
from tests.support.daemon import Daemon, edit_config, init_state, signerd_cmd
from tests.support.governance import decide, decide_proposal, govern, register_operator, set_policy
from tests.support.rpc import pb, rpc_error
from tests.support.bitcoin import build_psbt, verify_with_bitcointx
from tests.support.ethereum import submit, tx_fields
from tests.support.attacks import (ALL_ROLES, ONE_APPROVER, SqliteWriter, StoreWriter,
                                   approve_with_key, assert_eth_signed, assert_no_signature,
                                   attack_erased_proposal_rejection, attack_erased_veto,
                                   attack_erased_veto_across_a_restart,
                                   attack_erased_veto_and_its_audit_events,
                                   attack_fake_wallet_at_the_destination,
                                   attack_forged_authority_ledger_entry, attack_forged_operators,
                                   attack_one_approver_policy_row, attack_replaced_genesis,
                                   attack_safe_owners_and_threshold,
                                   attack_thawed_frozen_wallet, attack_zero_signature_approvals,
                                   audit_events, daemon_and_writer_fixtures, eth_transfer,
                                   eth_wallet, fresh_daemon, monitor_ticks, multisig,
                                   operator_cert, run_on_a_fresh_daemon, seized_btc_wallet,
                                   sqlite_writer, sweep, transfer, wait_state)


# ---------------------------------------------------------------- making things


def authority_snapshot(d: Daemon) -> tuple[Any, ...]:
    """Everything a governance act could change, as the daemon proves it, plus the store's
    proposal count."""
    a = d.governance().GetAuthority(pb.GetAuthorityRequest())
    proposals = d.governance().ListProposals(pb.ListProposalsRequest(
        page=pb.Page(page_size=1000))).proposals
    return (a.seq, a.head, a.governance_toml,
            tuple((t.name, t.sha256) for t in a.templates),
            tuple((o.id, tuple(o.roles), o.status, o.fingerprint) for o in a.operators),
            tuple((f.wallet_id, f.order_ref) for f in a.frozen),
            len(proposals))


# ---------------------------------------------------------------- fixtures

daemon, db = daemon_and_writer_fixtures("govattack")


# ---------------------------------------------------------------- 1. a store writer alone

def test_store_writer_zero_signature_approvals(daemon: Daemon, db: SqliteWriter) -> None:
    attack_zero_signature_approvals(daemon, db)


def test_store_writer_safe_owners_and_threshold(daemon: Daemon, db: SqliteWriter) -> None:
    attack_safe_owners_and_threshold(daemon, db)


def test_store_writer_forged_operators_with_every_role(daemon: Daemon, db: SqliteWriter
                                                        ) -> None:
    attack_forged_operators(daemon, db)


def test_store_writer_one_approver_policy_row(daemon: Daemon, db: SqliteWriter) -> None:
    attack_one_approver_policy_row(daemon, db)


def test_store_writer_unfreezes_by_sql(daemon: Daemon, db: SqliteWriter) -> None:
    attack_thawed_frozen_wallet(daemon, db)


def test_store_writer_fake_wallet_at_the_destination(daemon: Daemon, db: SqliteWriter) -> None:
    attack_fake_wallet_at_the_destination(daemon, db)


def test_store_writer_erases_a_veto(daemon: Daemon, db: SqliteWriter) -> None:
    """Not in the issue's list (found while writing these): see attack_erased_veto."""
    attack_erased_veto(daemon, db)


def test_store_writer_erases_a_veto_from_the_audit_chain_too(daemon: Daemon,
                                                           db: SqliteWriter) -> None:
    attack_erased_veto_and_its_audit_events(daemon, db)


def test_store_writer_erases_a_veto_then_the_daemon_restarts(tmp_path: Path) -> None:
    run_on_a_fresh_daemon(tmp_path / "state", attack_erased_veto_across_a_restart)


def test_store_writer_erases_a_proposal_rejection(daemon: Daemon, db: SqliteWriter) -> None:
    attack_erased_proposal_rejection(daemon, db)


def test_store_writer_forged_authority_ledger_entry(tmp_path: Path) -> None:
    run_on_a_fresh_daemon(tmp_path / "state", attack_forged_authority_ledger_entry)


def test_store_writer_replaced_genesis(tmp_path: Path) -> None:
    run_on_a_fresh_daemon(tmp_path / "state", attack_replaced_genesis)


# ---------------------------------------------------------------- 2. one admin alone

def test_one_admin_registers_an_operator_with_every_role(daemon: Daemon, db: SqliteWriter
                                                         ) -> None:
    name = f"rogue{secrets.token_hex(3)}"
    key = generate()
    operator_cert(daemon, name)
    p = daemon.admin().RegisterOperator(pb.RegisterOperatorRequest(
        id=name, roles=ALL_ROLES, public_key_pem=public_pem(key)))
    assert p.kind == "operator.register" and p.state == "PENDING_APPROVAL"
    assert "admin x2" in p.remaining, p.remaining
    ids = {o.id for o in daemon.admin().ListOperators(pb.ListOperatorsRequest()).operators}
    assert name not in ids
    # The would-be operator, with a valid client certificate, can approve nothing.
    w = eth_wallet(daemon)
    t = eth_transfer(daemon, w)
    decide(daemon, t.id, "inv1")
    statement = daemon.approval("cust1").GetStatement(pb.GetStatementRequest(
        transfer_id=t.id, decision=pb.APPROVE)).statement
    e = rpc_error(daemon.approval(name).SubmitApproval, pb.SubmitApprovalRequest(
        transfer_id=t.id, operator_id=name, decision=pb.APPROVE,
        signature=sign_statement(key, statement), statement_sha256=statement_digest(statement)))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    assert e.details() == f"principal {name} is not known to this signerd"
    e = rpc_error(daemon.approval(name).GetStatement, pb.GetStatementRequest(
        transfer_id=t.id, decision=pb.APPROVE))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    # ... not even the proposal that would register them.
    doc = json.loads(p.body_json)
    e = rpc_error(daemon.governance(name).DecideProposal, pb.DecideProposalRequest(
        proposal_id=p.id, operator_id=name, decision=pb.APPROVE,
        signature=sign_statement(key, proposal_statement(doc, Decision.APPROVE))))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    assert daemon.governance().GetProposal(pb.GetProposalRequest(
        proposal_id=p.id)).state == "PENDING_APPROVAL"
    assert_no_signature(daemon, db, t.id)
    assert db.one("SELECT COUNT(*) AS n FROM operators WHERE id = ?", (name,))["n"] == 0
    # The legitimate counterpart: the governance quorum approves; then their approval counts.
    assert govern(daemon, p).state == "APPROVED"
    assert_eth_signed(approve_with_key(daemon, t.id, name, key), w)
    revoke = daemon.admin().RevokeOperator(pb.RevokeOperatorRequest(id=name, reason="test"))
    assert govern(daemon, revoke).state == "APPROVED"  # leave the shared daemon as it was


def test_one_admin_policy_naming_an_unregistered_operator(daemon: Daemon) -> None:
    w = eth_wallet(daemon)
    before = authority_snapshot(daemon)
    policy = ('name = "grouped"\n[[rule]]\nname = "all"\nasset = "*"\napprovers = 2\n'
              'roles = { investigator = 1, custody_officer = 1 }\n'
              'group = ["inv1", "cust1", "ghost"]\n')
    e = rpc_error(daemon.admin().SetPolicy, pb.SetPolicyRequest(wallet_id=w.id, toml=policy))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details() == ("document: names operator 'ghost', who is not a registered "
                           "operator"), e.details()
    assert authority_snapshot(daemon) == before
    assert daemon.admin().GetPolicy(pb.GetPolicyRequest(wallet_id=w.id)).version == 1
    # The legitimate counterpart: a group of registered operators, through the quorum.
    set_policy(daemon, w.id, policy.replace(', "ghost"', ""))
    assert daemon.admin().GetPolicy(pb.GetPolicyRequest(wallet_id=w.id)).version == 2
    t = eth_transfer(daemon, w)
    decide(daemon, t.id, "inv1")
    assert_eth_signed(decide(daemon, t.id, "cust1"), w)


def test_one_admin_unfreezes_by_an_order_of_their_own(daemon: Daemon, db: SqliteWriter
                                                      ) -> None:
    w = eth_wallet(daemon)
    t = eth_transfer(daemon, w)
    daemon.admin().FreezeWallet(pb.FreezeWalletRequest(wallet_id=w.id, order_ref="ORDER-7"))
    p = daemon.admin().UnfreezeWallet(pb.FreezeWalletRequest(wallet_id=w.id,
                                                             order_ref="anything"))
    assert p.kind == "wallet.unfreeze" and p.state == "PENDING_APPROVAL"
    assert daemon.custody().GetWallet(pb.GetWalletRequest(wallet_id=w.id)).status == pb.FROZEN
    frozen = daemon.governance().GetAuthority(pb.GetAuthorityRequest()).frozen
    assert (w.id, "ORDER-7") in {(f.wallet_id, f.order_ref) for f in frozen}
    decide(daemon, t.id, "inv1")
    assert decide(daemon, t.id, "cust1").state == pb.APPROVED
    monitor_ticks()
    assert assert_no_signature(daemon, db, t.id).state == pb.APPROVED
    # The legitimate counterpart: the governance quorum approves the unfreeze; it signs.
    assert govern(daemon, p).state == "APPROVED"
    assert_eth_signed(wait_state(daemon, t.id, pb.SIGNED), w)


def test_one_admin_registers_another_operators_key(daemon: Daemon) -> None:
    before = authority_snapshot(daemon)
    pem = (daemon.state / "operators" / "cust1.pub").read_bytes()
    e = rpc_error(daemon.admin().RegisterOperator, pb.RegisterOperatorRequest(
        id="cust1b", roles=["custody_officer", "investigator"], public_key_pem=pem))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "already registered to operator cust1" in e.details(), e.details()
    assert authority_snapshot(daemon) == before


def test_one_admin_approves_their_own_proposal(tmp_path: Path) -> None:
    """With the demo governance (two of the two admins), a proposal by one of them could never
    pass (the submitter never counts): refused at once, naming why. With a third admin, one
    admin's proposal is made, its submitter's own decision is refused, and the other two pass
    it."""
    from signerd.adapters.key_files import write_keypair

    d = fresh_daemon(tmp_path / "state")
    try:
        before = authority_snapshot(d)
        request = pb.RegisterOperatorRequest(id=f"friend{secrets.token_hex(3)}", roles=ALL_ROLES,
                                             public_key_pem=public_pem(generate()))
        e = rpc_error(d.admin("admin1").RegisterOperator, request)
        assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e.details()
        assert e.details() == (
            "operator.register proposals need 2 approvers (admin x2), and the submitter never "
            "counts: the active operators other than admin1 cannot meet it, so this proposal "
            "could never pass; let another operator propose it"), e.details()
        assert authority_snapshot(d) == before
        key = generate()
        write_keypair(key, d.state / "operators" / "admin3.key",
                      d.state / "operators" / "admin3.pub")
        operator_cert(d, "admin3")
        register_operator(d, "admin3", ["admin"], public_pem(key))
        p = d.admin("admin1").RegisterOperator(request)
        assert p.submitter == "admin1" and p.state == "PENDING_APPROVAL"
        e = rpc_error(decide_proposal, d, p.id, "admin1")
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED
        assert e.details() == f"operator admin1 submitted proposal {p.id} and cannot decide on it"
        assert not d.governance().GetProposal(pb.GetProposalRequest(proposal_id=p.id)).approvals
        assert decide_proposal(d, p.id, "admin2").state == "PENDING_APPROVAL"
        assert decide_proposal(d, p.id, "admin3").state == "APPROVED"
    finally:
        d.stop()


# ---------------------------------------------------------------- 3. the platform + one officer


def test_platform_and_one_officer_sweep_into_a_one_of_two_multisig(daemon: Daemon,
                                                                   db: SqliteWriter) -> None:
    seized = seized_btc_wallet(daemon)
    trap = multisig(daemon, threshold=1)  # its outside key alone can spend
    t, _ = sweep(daemon, seized, trap, 5 * 10**8)
    assert t.movement.outputs[0].destination_class == "external"  # while awaiting approval
    daemon.custody().CancelTransfer(pb.CancelTransferRequest(transfer_id=t.id, reason="x"))
    # Even approved by the governance, it is not one of signerd's own wallets.
    p = daemon.governance().GetProposal(pb.GetProposalRequest(proposal_id=trap.proposal_id))
    assert p.kind == "wallet.create" and govern(daemon, p).state == "APPROVED"
    assert daemon.custody().GetWallet(pb.GetWalletRequest(
        wallet_id=trap.id)).status == pb.ACTIVE
    t, _ = sweep(daemon, seized, trap, 5 * 10**8)
    (out,) = t.movement.outputs
    assert out.destination_class == "external" and out.wallet_id == trap.id, out
    assert t.requirement.startswith("3 approvers") and "prosecutor x1" in t.requirement
    t = decide(daemon, t.id, "cust1")
    assert t.state == pb.PENDING_APPROVAL and "investigator x1" in t.remaining
    assert_no_signature(daemon, db, t.id)
    # The legitimate counterpart: a 2-of-2 with one outside key, approved by the governance,
    # cannot be spent without signerd's key: own_wallet, and one officer's sweep is signed.
    safe = multisig(daemon, threshold=2)
    assert govern(daemon, daemon.governance().GetProposal(pb.GetProposalRequest(
        proposal_id=safe.proposal_id))).state == "APPROVED"
    ok, prev = sweep(daemon, seized, safe, 5 * 10**8)
    assert ok.movement.outputs[0].destination_class == "own_wallet"
    assert ok.requirement.startswith("1 approver"), ok.requirement
    ok = decide(daemon, ok.id, "cust1")
    assert ok.state == pb.SIGNED and verify_with_bitcointx(ok.raw_tx, prev) == 1


def test_platform_policy_text_unknown_template_and_the_floor(daemon: Daemon, db: SqliteWriter
                                                             ) -> None:
    keys_before = daemon.admin().KeyStatus(pb.KeyStatusRequest()).key_count
    req: dict[str, Any] = dict(chain=pb.ETHEREUM, chain_ids=[1], category=pb.SEIZED,
                               case_ref="CASE-PLAT")
    e = rpc_error(daemon.custody().CreateWallet, pb.CreateWalletRequest(
        **req, policy_toml=ONE_APPROVER))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details().startswith("policy_toml: the platform names a governance-approved "
                                  "template"), e.details()
    e = rpc_error(daemon.custody().CreateWallet, pb.CreateWalletRequest(**req, template="free"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details().startswith("template: 'free' is not a policy template"), e.details()
    assert daemon.admin().KeyStatus(pb.KeyStatusRequest()).key_count == keys_before
    # A template of one approver, legitimately added by the governance quorum: the floor in
    # code still holds for an outside destination.
    p = daemon.admin().SetTemplate(pb.SetTemplateRequest(name="single", toml=ONE_APPROVER))
    assert govern(daemon, p).state == "APPROVED"
    templates = [t.name for t in daemon.admin("platform").ListTemplates(
        pb.ListTemplatesRequest()).templates]
    assert {"two-key", "tiered", "seized-sweep", "category-movement", "single"} <= set(templates)
    for name in templates:
        w = eth_wallet(daemon, template=name)
        assert w.template == name
        t = eth_transfer(daemon, w)
        assert t.movement.outputs[0].destination_class == "external"
        approvers = int(t.requirement.split()[0])
        assert approvers >= 2, (name, t.requirement)
        t = decide(daemon, t.id, "cust1")
        assert t.state == pb.PENDING_APPROVAL, (name, t.state)
        assert_no_signature(daemon, db, t.id)
        if name == "single":
            assert "2 different roles" in t.requirement, t.requirement
            # The legitimate counterpart: two people of two roles sign it.
            assert_eth_signed(decide(daemon, t.id, "inv1"), w)


# ---------------------------------------------------------------- 4. bad proposals

@pytest.mark.parametrize("request_, needle", [
    (dict(id="newop", roles=["overlord"]),
     "roles: 'overlord' is not a role of the governance policy"),
    (dict(id="Bad Id!", roles=["investigator"]),
     "operator_id: 'Bad Id!' is not an operator id"),
    (dict(id="newop", roles=[]), "roles: at least one role is required"),
])
def test_malformed_proposal_is_refused_and_changes_nothing(daemon: Daemon, request_: dict,
                                                           needle: str) -> None:
    before = authority_snapshot(daemon)
    e = rpc_error(daemon.admin().RegisterOperator, pb.RegisterOperatorRequest(
        public_key_pem=public_pem(generate()), **request_))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and needle in e.details(), e.details()
    e = rpc_error(daemon.admin().SetOperatorRoles, pb.SetOperatorRolesRequest(
        id="inv1", roles=["overlord"]))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "overlord" in e.details()
    assert authority_snapshot(daemon) == before


def test_proposal_that_would_loosen_a_pending_transfer(daemon: Daemon, db: SqliteWriter
                                                       ) -> None:
    w, own = eth_wallet(daemon), eth_wallet(daemon)
    t = eth_transfer(daemon, w, to=own.address)
    before = authority_snapshot(daemon)
    e = rpc_error(daemon.admin().SetPolicy, pb.SetPolicyRequest(wallet_id=w.id,
                                                                 toml=ONE_APPROVER))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.details() == (f"document: the new policy would loosen live transfer(s) {t.id} of "
                           f"wallet {w.id}; let them finish or cancel them first"), e.details()
    assert authority_snapshot(daemon) == before
    assert transfer(daemon, t.id).requirement.startswith("2 approvers")
    assert decide(daemon, t.id, "cust1").state == pb.PENDING_APPROVAL
    assert_no_signature(daemon, db, t.id)


def test_proposal_approved_by_its_own_submitter(daemon: Daemon) -> None:
    w = eth_wallet(daemon)
    before = authority_snapshot(daemon)
    # An operator may put a proposal forward through the Admin service.
    p = daemon.admin("inv1").SetPolicy(pb.SetPolicyRequest(wallet_id=w.id, template="tiered"))
    assert p.submitter == "inv1" and p.state == "PENDING_APPROVAL"
    e = rpc_error(decide_proposal, daemon, p.id, "inv1")
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    assert e.details() == f"operator inv1 submitted proposal {p.id} and cannot decide on it"
    got = daemon.governance().GetProposal(pb.GetProposalRequest(proposal_id=p.id))
    assert got.state == "PENDING_APPROVAL" and not got.approvals
    after = authority_snapshot(daemon)
    assert after[:-1] == before[:-1] and after[-1] == before[-1] + 1
    assert daemon.admin().GetPolicy(pb.GetPolicyRequest(wallet_id=w.id)).version == 1
    daemon.governance("inv1").CancelProposal(pb.CancelProposalRequest(proposal_id=p.id,
                                                                      reason="x"))


# ---------------------------------------------------------------- 5. crash at the quorum

def ledger_entries_for(db: StoreWriter, proposal_id: str) -> int:
    return sum(1 for r in db.rows("SELECT kind, body FROM authority_log")
               if r["kind"] == "proposal" and json.loads(r["body"])["id"] == proposal_id)


def effect_count(d: Daemon, db: StoreWriter, op_id: str, proposal_id: str) -> dict[str, int]:
    """Every trace of an operator.register proposal's effect, counted."""
    listed = [o.id for o in d.admin().ListOperators(pb.ListOperatorsRequest()).operators]
    return {
        "listed": listed.count(op_id),
        "operators_rows": db.one("SELECT COUNT(*) AS n FROM operators WHERE id = ?",
                                 (op_id,))["n"],
        "ledger_entries": ledger_entries_for(db, proposal_id),
        "applied_events": len(audit_events(d, action="proposal.applied", obj=proposal_id)),
    }


def test_kill_right_after_the_quorum_making_decision(tmp_path: Path) -> None:
    d = fresh_daemon(tmp_path / "state")
    db = sqlite_writer(d)
    try:
        p = d.admin().RegisterOperator(pb.RegisterOperatorRequest(
            id="crash1", roles=["investigator"], public_key_pem=public_pem(generate())))
        assert decide_proposal(d, p.id, "admin1").state == "PENDING_APPROVAL"
        done = decide_proposal(d, p.id, "admin2")
        d.kill()  # SIGKILL the moment the quorum-making decision returned
        assert done.state == "APPROVED" and done.applied_seq > 0
        d.start()
        got = d.governance().GetProposal(pb.GetProposalRequest(proposal_id=p.id))
        assert got.state == "APPROVED" and got.applied_seq == done.applied_seq
        assert effect_count(d, db, "crash1", p.id) == {
            "listed": 1, "operators_rows": 1, "ledger_entries": 1, "applied_events": 1}
        listed = d.governance().ListProposals(pb.ListProposalsRequest(state="APPROVED"))
        assert [x.id for x in listed.proposals].count(p.id) == 1
        e = rpc_error(decide_proposal, d, p.id, "admin2")
        assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and "APPROVED" in e.details()
        assert effect_count(d, db, "crash1", p.id)["ledger_entries"] == 1
    finally:
        d.stop()


def test_kill_during_the_quorum_making_decision_is_all_or_nothing(tmp_path: Path) -> None:
    """SIGKILL at a few points while the quorum-making DecideProposal is in flight (no fault
    point inside signerd: the kill lands wherever it lands). After each restart the proposal
    is either APPROVED with its effect exactly once, or still pending with no effect and no
    trace of the killed decision."""
    d = fresh_daemon(tmp_path / "state")
    db = sqlite_writer(d)
    outcomes = []
    try:
        for i, delay in enumerate((0.0, 0.001, 0.002, 0.003, 0.005, 0.008)):
            op_id = f"crash{i}"
            p = d.admin().RegisterOperator(pb.RegisterOperatorRequest(
                id=op_id, roles=["investigator"], public_key_pem=public_pem(generate())))
            decide_proposal(d, p.id, "admin1")
            st = d.governance("admin2").GetProposalStatement(pb.GetProposalStatementRequest(
                proposal_id=p.id, decision=pb.APPROVE)).statement
            key = load_private(d.state / "operators" / "admin2.key")
            req = pb.DecideProposalRequest(
                proposal_id=p.id, operator_id="admin2", decision=pb.APPROVE,
                signature=sign_statement(key, st), statement_sha256=statement_digest(st))
            killer = threading.Timer(delay, d.proc.kill)  # type: ignore[union-attr]
            killer.start()
            future = d.governance("admin2").DecideProposal.future(req, timeout=30)
            killer.join()
            try:
                future.result()
            except grpc.RpcError:
                pass
            assert d.stop() == -9
            d.start()
            got = d.governance().GetProposal(pb.GetProposalRequest(proposal_id=p.id))
            counts = effect_count(d, db, op_id, p.id)
            deciders = sorted(a.operator_id for a in got.approvals)
            if got.state == "APPROVED":
                assert counts == {"listed": 1, "operators_rows": 1, "ledger_entries": 1,
                                  "applied_events": 1}, counts
                assert deciders == ["admin1", "admin2"]
            else:
                assert got.state == "PENDING_APPROVAL", got.state
                assert counts == {"listed": 0, "operators_rows": 0, "ledger_entries": 0,
                                  "applied_events": 0}, counts
                assert deciders == ["admin1"]
                assert [json.loads(e.details_json)["operator_id"] for e in audit_events(
                    d, action="proposal.approve", obj=p.id)] == ["admin1"]
                # ... and the decision can simply be made again: then exactly once.
                assert decide_proposal(d, p.id, "admin2").state == "APPROVED"
                assert effect_count(d, db, op_id, p.id) == {
                    "listed": 1, "operators_rows": 1, "ledger_entries": 1, "applied_events": 1}
            outcomes.append(got.state)
        print(f"\n[kill during DecideProposal] outcomes after restart: {outcomes}")
    finally:
        d.stop()
