"""Quorum is never short-circuited: each case ends with NO signature in the store."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
import time

import grpc
import pytest

from signerd.core.approval import (StatementContext, build_statement, sign_statement,
                                   statement_digest)
from signerd.core.chains import EthereumAdapter, classify_outputs
from signerd.adapters.config import Limits
from signerd.core.model import Decision
from signerd.adapters.key_files import load_private
from tests.support.daemon import Daemon, init_state
from tests.support.governance import decide, govern, register_operator
from tests.support.rpc import pb, rpc_error
from tests.support.ethereum import eth_wallet, submit, tx_fields
from tests.support.fixtures import DaemonFactory


@pytest.fixture(scope="module")
def daemon(daemon_factory: DaemonFactory):
    yield from daemon_factory.run("quorum")
    # inv1, inv2 investigators; cust1, cust2 custody officers; judge1 judge (veto)


def signature_rows(d: Daemon, transfer_id: str) -> int:
    with sqlite3.connect(d.state / "signerd.db") as c:
        return c.execute("SELECT COUNT(*) FROM signatures WHERE transfer_id = ?",
                         (transfer_id,)).fetchone()[0]


def assert_unsigned(d: Daemon, transfer_id: str) -> pb.Transfer:
    t = d.custody().GetTransfer(pb.GetTransferRequest(transfer_id=transfer_id))
    assert t.state != pb.SIGNED and not t.raw_tx
    assert signature_rows(d, transfer_id) == 0
    return t


_nonce = iter(range(1000, 10**6))


def fresh(d: Daemon, policy: str = "", **over) -> tuple[pb.Wallet, pb.Transfer]:
    w = eth_wallet(d, policy=policy)
    return w, submit(d, w.id, tx_fields(nonce=next(_nonce), **over))


def test_one_approval_of_two(daemon: Daemon) -> None:
    _, t = fresh(daemon)
    decide(daemon, t.id, "inv1")
    assert assert_unsigned(daemon, t.id).state == pb.PENDING_APPROVAL


def test_same_operator_twice(daemon: Daemon) -> None:
    _, t = fresh(daemon)
    decide(daemon, t.id, "inv1")
    e = rpc_error(decide, daemon, t.id, "inv1")
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and "already decided" in e.details()
    assert_unsigned(daemon, t.id)


def test_two_investigators_where_a_custody_officer_is_required(daemon: Daemon) -> None:
    _, t = fresh(daemon)
    decide(daemon, t.id, "inv1")
    t = decide(daemon, t.id, "inv2")
    assert t.state == pb.PENDING_APPROVAL and "custody_officer x1" in t.remaining
    assert_unsigned(daemon, t.id)


def test_approval_over_another_transfers_statement(daemon: Daemon) -> None:
    _, t1 = fresh(daemon)
    _, t2 = fresh(daemon)
    other = daemon.approval("cust1").GetStatement(pb.GetStatementRequest(
        transfer_id=t2.id, decision=pb.APPROVE)).statement
    decide(daemon, t1.id, "inv1")
    e = rpc_error(decide, daemon, t1.id, "cust1", statement=other)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "different statement" in e.details()
    assert_unsigned(daemon, t1.id)


@pytest.mark.parametrize("field,delta", [("maxFeePerGas", 1), ("value", 1), ("chainId", 1),
                                         ("nonce", 1), ("to", None)])
def test_statement_off_by_one_unit_is_refused(daemon: Daemon, field: str, delta) -> None:
    w, t = fresh(daemon)
    fields = json.loads(t.payload)
    if field == "to":
        fields["to"] = "0x000000000000000000000000000000000000deae"
    else:
        fields[field] = int(str(fields[field]), 0) + delta
    wallet = dataclasses.replace(_wallet_model(w), chain_ids=(fields["chainId"],))
    mv = classify_outputs(EthereumAdapter().decode(
        wallet, json.dumps(fields).encode(), Limits()).movement, {}, ())
    ctx = StatementContext(instance_id=t.instance_id, transfer_id=t.id, wallet_id=w.id,
                           policy_version=t.policy_version, expires_at=t.expires_at_unix,
                           payload_sha256=hashlib.sha256(t.payload).digest(),
                           submitter=t.submitter)
    forged = build_statement(ctx, mv, Decision.APPROVE)
    decide(daemon, t.id, "inv1")
    e = rpc_error(decide, daemon, t.id, "cust1", statement=forged)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert_unsigned(daemon, t.id)


def _wallet_model(w: pb.Wallet):
    from signerd.core.model import Category, Chain, KeyRef, ScriptType, Wallet, WalletStatus

    return Wallet(id=w.id, chain=Chain.ETHEREUM, network="ethereum", script_type=ScriptType.EOA,
                  category=Category.SEIZED, case_ref=w.case_ref, legal_basis="",
                  status=WalletStatus.ACTIVE, address=w.address,
                  keys=tuple(KeyRef(k.key_id, k.label, k.public_key) for k in w.keys),
                  chain_ids=tuple(w.chain_ids))


def test_revoked_operator(daemon: Daemon, tmp_path) -> None:
    from signerd.adapters.key_files import write_keypair
    from signerd.core.operator_keys import generate, public_pem

    key = generate()
    write_keypair(key, daemon.state / "operators" / "cust9.key",
                  daemon.state / "operators" / "cust9.pub", None)
    # cust9 needs a client certificate too: issue one from the dev CA.
    from signerd.adapters import pki

    from tests.support.daemon import dev_ca

    ck, cc = pki.issue_client(*dev_ca(daemon.state), "cust9")
    pki.write_pem_key(daemon.state / "pki" / "clients" / "cust9.key", ck)
    pki.write_pem_cert(daemon.state / "pki" / "clients" / "cust9.pem", cc)
    register_operator(daemon, "cust9", ["custody_officer"], public_pem(key))
    _, t = fresh(daemon)
    decide(daemon, t.id, "inv1")
    statement = daemon.approval("cust9").GetStatement(pb.GetStatementRequest(
        transfer_id=t.id, decision=pb.APPROVE)).statement
    p = daemon.admin().RevokeOperator(pb.RevokeOperatorRequest(id="cust9",
                                                               reason="left the unit"))
    assert govern(daemon, p).state == "APPROVED"
    e = rpc_error(decide, daemon, t.id, "cust9", statement=statement)
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED and "revoked" in e.details()
    assert_unsigned(daemon, t.id)


@pytest.mark.parametrize("mangle", ["flip", "truncate", "empty", "other_key"])
def test_forged_or_truncated_signature(daemon: Daemon, mangle: str) -> None:
    _, t = fresh(daemon)
    decide(daemon, t.id, "inv1")
    st = daemon.approval("cust1").GetStatement(pb.GetStatementRequest(
        transfer_id=t.id, decision=pb.APPROVE)).statement
    sig = sign_statement(load_private(daemon.state / "operators" / "cust1.key"), st)
    sig = {"flip": bytes([sig[0] ^ 1]) + sig[1:], "truncate": sig[:63], "empty": b"",
           "other_key": sign_statement(load_private(daemon.state / "operators" / "cust2.key"),
                                       st)}[mangle]
    e = rpc_error(daemon.approval("cust1").SubmitApproval, pb.SubmitApprovalRequest(
        transfer_id=t.id, operator_id="cust1", decision=pb.APPROVE, signature=sig,
        statement_sha256=statement_digest(st)))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "signature" in e.details()
    assert_unsigned(daemon, t.id)


def test_operator_id_must_match_the_tls_identity(daemon: Daemon) -> None:
    _, t = fresh(daemon)
    st = daemon.approval("cust1").GetStatement(pb.GetStatementRequest(
        transfer_id=t.id, decision=pb.APPROVE)).statement
    sig = sign_statement(load_private(daemon.state / "operators" / "cust1.key"), st)
    e = rpc_error(daemon.approval("inv1").SubmitApproval, pb.SubmitApprovalRequest(
        transfer_id=t.id, operator_id="cust1", decision=pb.APPROVE, signature=sig))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    assert_unsigned(daemon, t.id)


def test_approval_after_expiry(daemon: Daemon) -> None:
    policy = ('name = "fast"\nexpiry = "3s"\n[[rule]]\nname = "all"\nasset = "*"\n'
              'approvers = 2\nroles = { investigator = 1, custody_officer = 1 }\n')
    _, t = fresh(daemon, policy=policy)
    decide(daemon, t.id, "inv1")  # within 3 s of the submission, even on a loaded machine
    time.sleep(3.5)
    e = rpc_error(decide, daemon, t.id, "cust1")
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and "expired" in e.details().lower()
    assert assert_unsigned(daemon, t.id).state == pb.EXPIRED


def test_approval_after_a_veto_rejection(daemon: Daemon) -> None:
    _, t = fresh(daemon)
    decide(daemon, t.id, "inv1")
    t2 = decide(daemon, t.id, "judge1", pb.REJECT, reason="court order pending")
    assert t2.state == pb.REJECTED
    e = rpc_error(decide, daemon, t.id, "cust1")
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and "REJECTED" in e.details()
    assert_unsigned(daemon, t.id)


def test_reject_needs_a_reason(daemon: Daemon) -> None:
    _, t = fresh(daemon)
    e = rpc_error(decide, daemon, t.id, "judge1", pb.REJECT, reason="")
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "reason" in e.details()


def test_platform_cannot_approve_and_operator_cannot_submit(daemon: Daemon) -> None:
    w, t = fresh(daemon)
    e = rpc_error(daemon.approval("platform").GetStatement,
                  pb.GetStatementRequest(transfer_id=t.id))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    e = rpc_error(daemon.custody("inv1").SubmitTransfer, pb.SubmitTransferRequest(
        wallet_id=w.id, ethereum=pb.EthereumTransaction(json="{}")))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED


def test_policy_change_never_loosens_a_pending_transfer(daemon: Daemon) -> None:
    w, t = fresh(daemon)
    assert t.requirement.startswith("2 approvers")
    stricter = ('name = "three"\n[[rule]]\nname = "all"\nasset = "*"\napprovers = 3\n'
                'roles = { investigator = 1, custody_officer = 1, prosecutor = 1 }\n'
                'veto = ["judge", "prosecutor"]\n')
    looser = 'name = "one"\n[[rule]]\nname = "all"\nasset = "*"\napprovers = 1\n'
    p = govern(daemon, daemon.admin().SetPolicy(pb.SetPolicyRequest(wallet_id=w.id,
                                                                    toml=stricter)))
    assert p.state == "APPROVED"
    assert daemon.admin().GetPolicy(pb.GetPolicyRequest(wallet_id=w.id)).version == 2
    t = daemon.custody().GetTransfer(pb.GetTransferRequest(transfer_id=t.id))
    assert t.requirement.startswith("3 approvers") and "prosecutor x1" in t.requirement
    # A looser policy would loosen the pending transfer: refused, nothing changed.
    e = rpc_error(daemon.admin().SetPolicy, pb.SetPolicyRequest(wallet_id=w.id, toml=looser))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and t.id in e.details()
    assert "loosen" in e.details()
    t = daemon.custody().GetTransfer(pb.GetTransferRequest(transfer_id=t.id))
    assert t.requirement.startswith("3 approvers")
    decide(daemon, t.id, "inv1")
    assert decide(daemon, t.id, "cust1").state == pb.PENDING_APPROVAL
    assert assert_unsigned(daemon, t.id)
    daemon.custody().CancelTransfer(pb.CancelTransferRequest(transfer_id=t.id, reason="x"))
    assert govern(daemon, daemon.admin().SetPolicy(pb.SetPolicyRequest(
        wallet_id=w.id, toml=looser))).state == "APPROVED"
    history = daemon.admin().PolicyHistory(pb.GetPolicyRequest(wallet_id=w.id))
    assert [h.version for h in history.versions] == [1, 2, 3]
    new = submit(daemon, w.id, tx_fields(nonce=next(_nonce)))
    # One approver by the policy, but the floor holds for an outside destination.
    assert new.requirement.startswith("2 approvers") and new.policy_version == 3
    assert "2 different roles" in new.requirement
    e = rpc_error(daemon.admin().SetPolicy, pb.SetPolicyRequest(wallet_id=w.id,
                                                                toml="name = 1\n"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "name" in e.details()


def test_list_pages_show_each_transfer_as_get_does(daemon: Daemon) -> None:
    """ListTransfers and ListPending evaluate a page's quorums together (shared per page):
    every listed transfer must equal GetTransfer of it (which evaluates it alone), the pages
    come in id order, and the page tokens walk the whole list."""
    three = ('name = "three"\n[[rule]]\nname = "all"\nasset = "*"\napprovers = 3\n'
             'roles = { investigator = 1, custody_officer = 1 }\n')
    w2, w3 = eth_wallet(daemon), eth_wallet(daemon, policy=three)
    ids = []
    for i in range(4):
        for w in (w2, w3):
            t = submit(daemon, w.id, tx_fields(nonce=next(_nonce)))
            ids.append(t.id)
            if i == 1:
                decide(daemon, t.id, "inv1")
            elif i == 2:
                decide(daemon, t.id, "inv2", pb.REJECT, reason="not this one")
            elif i == 3:
                decide(daemon, t.id, "cust1")
                decide(daemon, t.id, "inv2")

    def get(tid: str) -> pb.Transfer:
        return daemon.custody().GetTransfer(pb.GetTransferRequest(transfer_id=tid))

    for wallet in (w2, w3):
        listed, token = [], ""
        while True:
            r = daemon.custody().ListTransfers(pb.ListTransfersRequest(
                wallet_id=wallet.id, page=pb.Page(page_size=3, page_token=token)))
            assert len(r.transfers) <= 3
            listed.extend(r.transfers)
            token = r.next_page_token
            assert token == (r.transfers[-1].id if len(r.transfers) == 3 else "")
            if not token:
                break
        assert [t.id for t in listed] == sorted(t for t in ids if get(t).wallet_id == wallet.id)
        assert listed == [get(t.id) for t in listed]
        assert {t.remaining for t in listed} - {""}  # some still wait for approvers

    pending = daemon.custody().ListTransfers(pb.ListTransfersRequest(
        state=pb.PENDING_APPROVAL, page=pb.Page(page_size=1000))).transfers
    assert [t.id for t in pending] == sorted(t.id for t in pending)
    assert all(t.state == pb.PENDING_APPROVAL for t in pending)
    assert {t for t in ids if get(t).state == pb.PENDING_APPROVAL} <= {t.id for t in pending}
    assert list(pending) == [get(t.id) for t in pending]

    for op in ("inv1", "cust2"):
        mine = daemon.approval(op).ListPending(pb.ListPendingRequest(
            page=pb.Page(page_size=1000))).transfers
        assert [t.id for t in mine] == sorted(t.id for t in mine)
        assert all(op not in [a.operator_id for a in t.approvals] for t in mine)
        assert list(mine) == [get(t.id) for t in mine]
        assert {t.id for t in mine} == {t.id for t in pending
                                        if op not in [a.operator_id for a in t.approvals]}
