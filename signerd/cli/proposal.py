"""``signerctl proposal``: governance proposals, decided with the operator's own key after
the proposal statement checks out here (``verify``)."""
from __future__ import annotations

from signerd.core import approval, authority
from signerd.cli.args import Commands, command, decision_commands, group
from signerd.cli.context import Context
from signerd.cli.deciding import confirm_shown, start_decision
from signerd.cli.documents import proposal_json
from signerd.cli.errors import CliError
from signerd.cli.render import Output, proposal_output, proposal_text, safe, table
from signerd.cli.verify import verify_proposal_statement
from signerd.core.model import Decision
from signerd.v1 import signerd_pb2 as pb


def cmd_proposal_list(ctx: Context) -> Output:
    state = ctx.args.state or ""
    found = ctx.pages(ctx.governance().ListProposals,
                      lambda page: pb.ListProposalsRequest(state=state, page=page), "proposals")
    ps = [proposal_json(p) for p in found]
    return Output({"proposals": ps}, lambda: table(
        ["ID", "STATE", "KIND", "CHANGE", "REMAINING"],
        [[p["id"], p["state"], p["kind"], p["summary"],
          p["remaining"] if p["state"] == "PENDING_APPROVAL" else ""] for p in ps]))


def cmd_proposal_show(ctx: Context) -> Output:
    p = proposal_json(ctx.call(ctx.governance().GetProposal,
                               pb.GetProposalRequest(proposal_id=ctx.args.id)))
    return Output(p, lambda: proposal_text(p))


def cmd_proposal_cancel(ctx: Context) -> Output:
    return proposal_output(ctx.call(ctx.governance().CancelProposal, pb.CancelProposalRequest(
        proposal_id=ctx.args.id, reason=ctx.args.reason or "")))


def cmd_proposal_decide(ctx: Context) -> Output:
    a = ctx.args
    decision, key = start_decision(ctx, "proposal")
    st = ctx.call(ctx.governance().GetProposalStatement, pb.GetProposalStatementRequest(
        proposal_id=a.id, decision=pb.Decision.Value(decision.value)))
    instance = ctx.config.instance_id if ctx.config is not None else None
    try:
        doc = verify_proposal_statement(st, a.id, decision, instance_id=instance)
    except CliError as e:
        raise CliError(f"{e}; refusing to sign") from None
    shown = authority.render_proposal(doc, decision, requirement_text=st.proposal.requirement)
    confirm_shown(ctx, shown, decision)
    statement = bytes(st.statement)
    p = proposal_json(ctx.call(ctx.governance().DecideProposal, pb.DecideProposalRequest(
        proposal_id=a.id, operator_id=ctx.principal,
        decision=pb.Decision.Value(decision.value),
        signature=key.sign_digest(approval.statement_digest(statement)), reason=a.reason or "",
        statement_sha256=approval.statement_digest(statement))))
    verb = "approved" if decision is Decision.APPROVE else "rejected"
    return Output(p, lambda: f"{verb} as {ctx.principal}; proposal {safe(p['id'])}: {p['state']}"
                  + (f"; remaining: {safe(p['remaining'])}" if p["state"] == "PENDING_APPROVAL"
                     and p["remaining"] else "")
                  + (f"; {safe(p['failure'])}" if p["failure"] else "") + "\n")


def register(commands: Commands) -> None:
    g = group(commands, "proposal", "governance proposals")
    sp = command(g, "list", cmd_proposal_list, "list proposals", "admin")
    states = ["PENDING_APPROVAL", "APPROVED", "REJECTED", "EXPIRED", "CANCELLED", "FAILED"]
    sp.add_argument("--state", choices=states, type=str.upper, metavar="STATE",
                    help="only this state: " + ", ".join(states) + " (any case)")
    sp = command(g, "show", cmd_proposal_show, "show a proposal", "admin")
    sp.add_argument("id", help="the proposal's id (p_...)")
    decision_commands(g, "proposal", cmd_proposal_decide)
    sp = command(g, "cancel", cmd_proposal_cancel,
                 "withdraw a pending proposal you submitted (others reject it)", "admin")
    sp.add_argument("id", help="the proposal's id (p_...)")
    sp.add_argument("--reason", metavar="TEXT", help="why, kept with the proposal")
