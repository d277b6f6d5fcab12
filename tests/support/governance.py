"""Operators deciding through the real daemon as signerctl does, and governance through the demo
quorum: transfer decisions, proposal decisions, policies, operator registration; and the same
in process, through signerd's App."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.daemon import Daemon
from tests.support.rpc import pb


def decide(d: Daemon, transfer_id: str, operator: str, decision: int = pb.APPROVE,
           reason: str = "", statement: bytes | None = None) -> pb.Transfer:
    """An operator's approval as signerctl makes it: fetch the statement, sign SHA-256 of it
    with the operator's own Ed25519 key from the state folder, send it."""
    from signerd.core.approval import sign_statement, statement_digest
    from signerd.adapters.key_files import load_private

    if statement is None:
        st = d.approval(operator).GetStatement(pb.GetStatementRequest(
            transfer_id=transfer_id, decision=decision))
        statement = st.statement
    key = load_private(d.state / "operators" / f"{operator}.key")
    return d.approval(operator).SubmitApproval(pb.SubmitApprovalRequest(
        transfer_id=transfer_id, operator_id=operator, decision=decision,
        signature=sign_statement(key, statement), reason=reason,
        statement_sha256=statement_digest(statement)))


GOVERNORS = ("admin1", "admin2")  # the demo governance quorum (two operators with the admin role)


def decide_proposal(d: Daemon, proposal_id: str, operator: str, decision: int = pb.APPROVE,
                    reason: str = "") -> pb.Proposal:
    """An operator's decision on a governance proposal, as signerctl makes it: the statement
    from the daemon, signed with the operator's own key from the state folder."""
    from signerd.core.approval import sign_statement, statement_digest
    from signerd.adapters.key_files import load_private

    st = d.governance(operator).GetProposalStatement(pb.GetProposalStatementRequest(
        proposal_id=proposal_id, decision=decision))
    key = load_private(d.state / "operators" / f"{operator}.key")
    return d.governance(operator).DecideProposal(pb.DecideProposalRequest(
        proposal_id=proposal_id, operator_id=operator, decision=decision,
        signature=sign_statement(key, st.statement), reason=reason,
        statement_sha256=statement_digest(st.statement)))


def govern(d: Daemon, proposal: pb.Proposal, approvers: tuple[str, ...] = GOVERNORS
           ) -> pb.Proposal:
    """Approve a proposal with the demo governance quorum; returns it as the last decision
    left it (APPROVED when it applied)."""
    p = proposal
    for op in approvers:
        if op == proposal.submitter:
            continue
        p = decide_proposal(d, proposal.id, op)
    return p


def set_policy(d: Daemon, wallet_id: str, toml: str = "", template: str = "") -> pb.Proposal:
    """A wallet's next policy, through a proposal the demo governance quorum approves."""
    p = govern(d, d.admin().SetPolicy(pb.SetPolicyRequest(wallet_id=wallet_id, toml=toml,
                                                          template=template)))
    assert p.state == "APPROVED", (p.state, p.failure)
    return p


def register_operator(d: Daemon, op_id: str, roles: list[str], pem: bytes) -> pb.Proposal:
    p = govern(d, d.admin().RegisterOperator(pb.RegisterOperatorRequest(
        id=op_id, roles=roles, public_key_pem=pem)))
    assert p.state == "APPROVED", (p.state, p.failure)
    return p


def app_govern(app: Any, view: Any, approvers: tuple[str, ...] = GOVERNORS) -> Any:
    """In-process: approve a proposal with the demo governance quorum's keys from the state
    folder (the path the gRPC DecideProposal takes)."""
    from signerd.core.approval import sign_statement
    from signerd.core.model import Decision
    from signerd.adapters.key_files import load_private

    state = Path(app.config.path).parent
    for op in approvers:
        if op == view.row["submitter"]:
            continue
        statement, _, _ = app.proposals.statement(view.id, Decision.APPROVE)
        key = load_private(state / "operators" / f"{op}.key")
        view = app.proposals.decide(op, view.id, op, Decision.APPROVE,
                                    sign_statement(key, statement))
    return view


def app_wallet(app: Any, policy: str = "", **kw: Any) -> Any:
    """In-process: a platform Ethereum wallet (chain id 1); with ``policy``, that text becomes
    its policy through an approved proposal."""
    from signerd.services.admin import AdminService
    from signerd.services.wallets import WalletRequest

    req = dict(chain="ethereum", network="", category="seized", case_ref="APP", chain_ids=(1,))
    req.update(kw)
    w = app.wallets.create("platform", WalletRequest(**req))
    if policy:
        v = app_govern(app, AdminService(app).set_policy("admin", w.id, policy))
        assert v.state == "APPROVED", (v.state, v.row["failure"])
    return w
