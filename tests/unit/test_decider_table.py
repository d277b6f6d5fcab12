"""The decider as a table: signerd.core.engine's ``judge`` (and ``effective_requirement``, which
it applies) turns a transfer's requirement, its signed decisions, the operators and their
statuses, and the vetoes into a verdict: sign, wait, lost, denied or violation.

Each row is a case: the wallet's policy (the templates ``signerd init`` writes; a row may
change it by a governance proposal after submission), changes to operators before the verdict
(revoked, suspended, roles), the decisions in the order they were stored, the submitter, what
the store says (approved or not) and the vetoes; and what must come out: the verdict, whether
the quorum is rejected, the requirement, the remaining text, a word of the reason.

The pure core only: the authority state is folded from a genesis made here with the demo
operators, governance and templates of ``signerd init``, decisions are Ed25519 signatures over
statements built by the core. tests/integration/test_quorum_cases.py runs the same situations
through the real daemon (SoftHSM, gRPC, store) and checks nothing is signed; the rows named
``quorum_cases:`` are its cases. What that file checks at the API (a second decision by the same
operator is refused, the TLS identity must be the operator, a rejection needs a reason, an
expired transfer is refused, the platform may not call the approval service) is not the
decider's and has no row here; the decider's share of each (a duplicate counts once, a decision
signed with another key or by a principal that is not an operator is a violation) does.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from functools import cache

import pytest

from signerd.core import authority as AU
from signerd.core import engine as E
from signerd.core.approval import (SignedDecision, StatementContext, build_statement,
                                   genesis_statement, proposal_statement, sign_statement)
from signerd.core.errors import PolicyDenied
from signerd.core.model import (Category, Chain, Decision, DestinationClass, KeyRef, Movement,
                                Output, ScriptType, Wallet, WalletStatus)
from signerd.core.operator_keys import generate, public_pem
from signerd.daemon import DEMO_GOVERNANCE, DEMO_OPERATORS, DEMO_POLICIES
from tests.support.authority import PINNED_AUDIT, entry, proposal, sealer

# ---------------------------------------------------------------- the demo authority, in process

# The demo operators of `signerd init`: inv1, inv2 investigators; cust1, cust2 custody officers;
# pros1 prosecutor; judge1 judge; admin1, admin2 the governance quorum; audit1 auditor. And
# cust9, a custody officer registered later (as test_revoked_operator registers one).
OPERATORS = {**DEMO_OPERATORS, "cust9": ["custody_officer"]}
KEYS = {op: generate() for op in OPERATORS}
TEMPLATES = {name.removesuffix(".toml"): text for name, text in DEMO_POLICIES.items()}
GOVERNORS = ("admin1", "admin2")

# Policies a row may set after submission (tests/integration/test_quorum_cases.py's texts).
THREE = ('name = "three"\n[[rule]]\nname = "all"\nasset = "*"\napprovers = 3\n'
         'roles = { investigator = 1, custody_officer = 1, prosecutor = 1 }\n'
         'veto = ["judge", "prosecutor"]\n')
ONE = 'name = "one"\n[[rule]]\nname = "all"\nasset = "*"\napprovers = 1\n'
TINY_ONLY = ('name = "tiny-only"\n[[rule]]\nname = "tiny"\nasset = "*"\nmax_amount = "1000"\n'
             'approvers = 2\nroles = { investigator = 1, custody_officer = 1 }\n')
THREE_OF_TWO_ROLES = ('name = "three"\n[[rule]]\nname = "all"\nasset = "*"\napprovers = 3\n'
                      'roles = { investigator = 1, custody_officer = 1 }\n')
POLICIES = {"three": THREE, "one": ONE, "tiny-only": TINY_ONLY,
            "three-of-two-roles": THREE_OF_TWO_ROLES}


def genesis_state() -> AU.AuthorityState:
    doc = AU.make_genesis(
        instance_id="signerd-test", created_at=1_700_000_000,
        operators=[{"id": op, "roles": roles, "public_key_pem": public_pem(KEYS[op]).decode()}
                   for op, roles in DEMO_OPERATORS.items()],
        governance=DEMO_GOVERNANCE, templates=TEMPLATES, audit_key_id="aa" * 16,
        audit_public_key=PINNED_AUDIT)
    st = genesis_statement(doc)
    return AU.start(AU.genesis_entry(doc, [SignedDecision(op, Decision.APPROVE,
                                                          sign_statement(KEYS[op], st))
                                           for op in DEMO_OPERATORS]), AU.genesis_digest(doc))


def governed(state: AU.AuthorityState, kind: str, change: dict[str, object]
             ) -> AU.AuthorityState:
    """``state`` after a proposal the governance quorum (admin1, admin2) approved."""
    doc = proposal(kind, change, submitter="admin")
    st = proposal_statement(doc, Decision.APPROVE)
    decisions = [SignedDecision(op, Decision.APPROVE, sign_statement(KEYS[op], st))
                 for op in GOVERNORS]
    return AU.advance(state, entry(state, AU.PROPOSAL, doc, decisions))


@cache
def base_state() -> AU.AuthorityState:
    """The demo genesis, and cust9 registered by the governance."""
    return governed(genesis_state(), "operator.register", {
        "operator_id": "cust9", "roles": ["custody_officer"],
        "public_key_pem": public_pem(KEYS["cust9"]).decode()})


def wallet(template: str) -> Wallet:
    return Wallet(id="w_" + "5" * 16, chain=Chain.ETHEREUM, network="ethereum",
                  script_type=ScriptType.EOA, category=Category.SEIZED, case_ref="C",
                  legal_basis="", status=WalletStatus.ACTIVE, address="0x" + "ab" * 20,
                  keys=(KeyRef("aa", "k", b"\x02" * 33),), chain_ids=(1,), template=template,
                  policy_sha256=base_state().templates[template].sha256)


EXTERNAL = Output("0x000000000000000000000000000000000000dEaD", 10**15, "ETH")
OWN = replace(EXTERNAL, address="0x" + "cd" * 20, destination_class=DestinationClass.OWN_WALLET,
              wallet_id="w_" + "6" * 16, category="seized")
MOVEMENT = Movement(Chain.ETHEREUM, "ethereum", 1, (EXTERNAL,), 21000 * 2 * 10**9, "ETH",
                    (hashlib.sha256(b"digest").digest(),), nonce=7)
# The same transaction one unit off in each field an operator reads (the statement binds all).
OFF_BY_ONE = {
    "value": replace(MOVEMENT, outputs=(replace(EXTERNAL, amount=EXTERNAL.amount + 1),)),
    "to": replace(MOVEMENT, outputs=(replace(
        EXTERNAL, address="0x000000000000000000000000000000000000deae"),)),
    "fee": replace(MOVEMENT, fee=MOVEMENT.fee + 1),
    "nonce": replace(MOVEMENT, nonce=MOVEMENT.nonce + 1),
    "chain_id": replace(MOVEMENT, chain_id=MOVEMENT.chain_id + 1),
}


# ---------------------------------------------------------------- the table

@dataclass(frozen=True)
class Case:
    name: str
    votes: tuple[str, ...]  # "inv1" approves, "-judge1" rejects; "cust1~flip" a bad signature
    outcome: str  # E.SIGN, E.WAIT, E.LOST, E.DENIED or E.VIOLATION
    requirement: str = ""  # the verdict's requirement, described ("" when not checked)
    remaining: str = ""  # the quorum's remaining text
    reason: str = ""  # a part of the verdict's reason
    rejected: bool = False  # the quorum says rejected (by a veto, or it can no longer be met)
    policy: str = "two-key"  # the wallet's template (policy version 1, bound at submission)
    later: tuple[str, ...] = ()  # policies set by proposals (versions 2, ...)
    bound: int = 1  # the policy version in force at submission, which the statement binds
    operators: tuple[tuple[str, str], ...] = ()  # (operator, "revoked" | "suspended" | roles)
    submitter: str = "platform"
    approved: bool = False  # the store says the quorum was met
    own_wallet: bool = False  # the one output goes to a wallet of ours
    vetoed: tuple[tuple[str, str], ...] = ()  # earlier vetoes the statement binds
    verified_vetoes: tuple[tuple[str, str], ...] = ()  # earlier vetoes the audit chain records
    violation_kind: str = ""


TWO_KEY = "2 approvers (custody_officer x1, investigator x1); veto: judge, prosecutor"
NEED_CUST = "1 more approver: custody_officer x1"
NEED_INV = "1 more approver: investigator x1"
FLOOR = "2 approvers of 2 different roles"

CASES = [
    # -- tests/integration/test_quorum_cases.py, case by case
    Case("quorum_cases: one approval of two", ("inv1",), E.WAIT, TWO_KEY, NEED_CUST),
    Case("quorum_cases: the same operator twice counts once", ("inv1", "inv1"), E.WAIT,
         TWO_KEY, NEED_CUST),
    Case("quorum_cases: two investigators where a custody officer is required",
         ("inv1", "inv2"), E.WAIT, TWO_KEY, NEED_CUST),
    Case("quorum_cases: an approval over another transfer's statement",
         ("inv1", "cust1~other_transfer"), E.VIOLATION, remaining=NEED_CUST,
         reason="cust1", violation_kind="approval"),
    *[Case(f"quorum_cases: a statement one unit off ({f})", ("inv1", f"cust1~off_{f}"),
           E.VIOLATION, remaining=NEED_CUST, reason="cust1", violation_kind="approval")
      for f in OFF_BY_ONE],
    Case("quorum_cases: a revoked operator's approval does not count",
         ("inv1", "cust9"), E.WAIT, TWO_KEY, NEED_CUST, operators=(("cust9", "revoked"),)),
    *[Case(f"quorum_cases: a forged or truncated signature ({m})", ("inv1", f"cust1~{m}"),
           E.VIOLATION, remaining=NEED_CUST, reason="cust1", violation_kind="approval")
      for m in ("flip", "truncate", "empty", "other_key")],
    Case("quorum_cases: an approval after a veto rejection", ("inv1", "-judge1", "cust1"),
         E.WAIT, TWO_KEY, "", "rejected by veto of judge1 (judge)", rejected=True),
    Case("quorum_cases: the platform's approval (not an operator)", ("inv1", "platform"),
         E.VIOLATION, remaining=NEED_CUST, reason="platform is not an operator",
         violation_kind="approval"),
    Case("quorum_cases: a stricter policy after submission tightens the transfer",
         ("inv1", "cust1"), E.WAIT,
         "3 approvers (custody_officer x1, investigator x1, prosecutor x1); veto: judge, "
         "prosecutor", "1 more approver: prosecutor x1", later=("three",)),
    Case("quorum_cases: ... and the approvals it had then no longer make it approved",
         ("inv1", "cust1"), E.LOST, remaining="1 more approver: prosecutor x1",
         later=("three",), approved=True),
    Case("quorum_cases: a policy of one approver keeps the floor for an outside destination",
         ("inv1",), E.WAIT, FLOOR, "1 more approver of another role", later=("three", "one"),
         bound=3),
    Case("quorum_cases: listed: a rejection without a veto role", ("-inv2",), E.WAIT,
         remaining="2 more approvers: custody_officer x1, investigator x1"),
    Case("quorum_cases: listed: an officer and an investigator", ("cust1", "inv2"), E.SIGN,
         reason="quorum met by cust1, inv2"),
    Case("quorum_cases: listed: one of three approvers", ("inv1",), E.WAIT,
         "3 approvers (custody_officer x1, investigator x1)",
         "2 more approvers: custody_officer x1", later=("three-of-two-roles",), bound=2),
    Case("quorum_cases: listed: two of three approvers", ("cust1", "inv2"), E.WAIT,
         remaining="1 more approver", later=("three-of-two-roles",), bound=2),
    Case("quorum_cases: listed: a rejection under three approvers", ("-inv2",), E.WAIT,
         remaining="3 more approvers: custody_officer x1, investigator x1",
         later=("three-of-two-roles",), bound=2),
    # -- the two-key rule met, and who never counts
    Case("two-key met", ("inv1", "cust1"), E.SIGN, TWO_KEY, reason="quorum met by inv1, cust1"),
    Case("two-key met in the other order", ("cust2", "inv2"), E.SIGN, TWO_KEY),
    Case("the submitter never counts", ("inv1", "cust1"), E.WAIT, TWO_KEY, NEED_INV,
         submitter="inv1"),
    Case("the submitter never counts; the others meet it", ("inv1", "inv2", "cust1"), E.SIGN,
         submitter="inv1"),
    Case("duplicate approvals: each operator once", ("inv1", "inv1", "cust1", "cust1"),
         E.SIGN, reason="quorum met by inv1, cust1"),
    Case("an approval then a rejection by the same operator does not count",
         ("inv1", "cust1", "-cust1"), E.WAIT, TWO_KEY, NEED_CUST),
    Case("a suspended approver does not count", ("inv1", "cust1"), E.WAIT, TWO_KEY, NEED_CUST,
         operators=(("cust1", "suspended"),)),
    Case("a revoked approver: the store's APPROVED is lost, not a violation", ("inv1", "cust1"),
         E.LOST, remaining=NEED_CUST, operators=(("cust1", "revoked"),), approved=True),
    Case("a suspended approver: the store's APPROVED is lost", ("inv1", "cust1"), E.LOST,
         remaining=NEED_CUST, operators=(("cust1", "suspended"),), approved=True),
    Case("a revoked operator who approved and the quorum met by others", ("cust9", "inv1",
                                                                          "cust2"),
         E.SIGN, reason="quorum met by inv1, cust2", operators=(("cust9", "revoked"),)),
    Case("one person holding both roles fills one slot", ("cust2",), E.WAIT, TWO_KEY,
         NEED_INV, operators=(("cust2", "custody_officer,investigator"),)),
    Case("one person holding both roles and another of either role", ("cust2", "inv1"),
         E.SIGN, operators=(("cust2", "custody_officer,investigator"),)),
    Case("a role taken away before the verdict no longer fills its slot", ("inv1", "cust2"),
         E.WAIT, TWO_KEY, NEED_CUST, operators=(("cust2", "investigator"),)),
    Case("an approval by a veto holder fills no role slot", ("inv1", "judge1"), E.WAIT,
         TWO_KEY, NEED_CUST),
    Case("an operator the ledger does not know", ("inv1", "ghost~empty"), E.VIOLATION,
         remaining=NEED_CUST, reason="ghost is not an operator", violation_kind="approval"),
    # -- vetoes
    Case("a veto by a judge", ("-judge1",), E.WAIT, TWO_KEY, "",
         "rejected by veto of judge1 (judge)", rejected=True),
    Case("a veto by a prosecutor after the quorum was met", ("inv1", "cust1", "-pros1"),
         E.WAIT, TWO_KEY, "", "rejected by veto of pros1 (prosecutor)", rejected=True),
    Case("a rejection by a role without a veto only withholds that approver",
         ("inv1", "-cust1"), E.WAIT, TWO_KEY, NEED_CUST),
    Case("a veto by a role the policy gives no veto", ("inv1", "-admin1"), E.WAIT, TWO_KEY,
         NEED_CUST),
    Case("a revoked judge's veto does not count", ("inv1", "-judge1", "cust1"), E.SIGN,
         operators=(("judge1", "revoked"),)),
    Case("a transaction vetoed before needs the vetoing role too", ("inv1", "cust1"), E.WAIT,
         "3 approvers (custody_officer x1, investigator x1, judge x1); veto: judge, prosecutor",
         "1 more approver: judge x1", vetoed=(("judge", "t_0"),),
         verified_vetoes=(("judge", "t_0"),)),
    Case("a transaction vetoed before, the vetoing role approving too",
         ("inv1", "cust1", "judge1"), E.SIGN, vetoed=(("judge", "t_0"),),
         verified_vetoes=(("judge", "t_0"),)),
    Case("an earlier veto the statement does not bind is a violation", ("inv1", "cust1"),
         E.VIOLATION, reason="vetoed before (by judge in t_0)",
         verified_vetoes=(("judge", "t_0"),), violation_kind="veto"),
    # -- the quorum unreachable
    Case("both custody officers reject: the quorum can no longer be met",
         ("inv1", "-cust1", "-cust2"), E.WAIT, TWO_KEY, "", "quorum can no longer be met",
         rejected=True, operators=(("cust9", "revoked"),)),
    Case("a prosecutor's veto under the stricter policy", ("inv1", "-pros1"), E.WAIT,
         reason="rejected by veto of pros1 (prosecutor)", rejected=True, later=("three",)),
    Case("the custody officers left: revoked and suspended", ("inv1",), E.WAIT, TWO_KEY, "",
         "quorum can no longer be met", rejected=True,
         operators=(("cust1", "revoked"), ("cust2", "suspended"), ("cust9", "revoked"))),
    Case("the submitter is the only holder of a needed role", ("inv1",), E.WAIT,
         reason="quorum can no longer be met", rejected=True, submitter="cust1",
         operators=(("cust2", "revoked"), ("cust9", "revoked"))),
    # -- the floor: two people of two roles for anything leaving our wallets
    Case("floor: one approver of a one-approver policy to an outside destination", ("inv1",),
         E.WAIT, FLOOR, "1 more approver of another role", later=("one",), bound=2),
    Case("floor: two people of one role", ("inv1", "inv2"), E.WAIT, FLOOR,
         "1 more approver of another role", later=("one",), bound=2),
    Case("floor: two people of two roles", ("inv1", "cust1"), E.SIGN, later=("one",), bound=2),
    Case("floor: a judge and a prosecutor are two roles", ("judge1", "pros1"), E.SIGN,
         later=("one",), bound=2),
    Case("no floor into our own wallet: one approver", ("inv1",), E.SIGN, "1 approver",
         own_wallet=True, later=("one",), bound=2),
    Case("seized-sweep: one custody officer sweeps into our own wallet", ("cust1",), E.SIGN,
         "1 approver (custody_officer x1)", policy="seized-sweep", own_wallet=True),
    Case("seized-sweep: an outside destination needs three with a prosecutor",
         ("cust1",), E.WAIT,
         "3 approvers (custody_officer x1, investigator x1, prosecutor x1); veto: judge",
         "2 more approvers: investigator x1, prosecutor x1", policy="seized-sweep"),
    # -- what the store says against what the decisions show
    Case("APPROVED in the store without a quorum is a violation", ("inv1",), E.VIOLATION,
         remaining=NEED_CUST, reason="never met its quorum", approved=True,
         violation_kind="quorum"),
    Case("APPROVED in the store with its quorum is signed", ("inv1", "cust1"), E.SIGN,
         approved=True),
    Case("a forged approval is a violation even beside a valid quorum",
         ("inv1", "cust1", "cust2~flip"), E.VIOLATION, reason="cust2",
         violation_kind="approval"),
    # -- denied: the policy in force no longer allows the transfer
    Case("a later policy that no longer allows the transfer denies it", ("inv1", "cust1"),
         E.DENIED, reason="policy version 2 no longer allows this transfer",
         later=("tiny-only",)),
]


def _names(cases: list[Case]) -> list[str]:
    names = [c.name for c in cases]
    assert len(set(names)) == len(names), "two rows with one name"
    return names


# ---------------------------------------------------------------- running a row

def state_for(case: Case) -> AU.AuthorityState:
    state = base_state()
    w = wallet(case.policy)
    for name in case.later:
        version = state.wallet_policy_version(w.id)
        old_text, _ = AU.wallet_policy_text(state, w.id, w.policy_sha256, version)
        state = governed(state, "wallet.policy", {
            "wallet_id": w.id, "base_version": version, "old_document": old_text,
            "document": POLICIES[name], "template": ""})
    for op, change in case.operators:
        if change == "revoked":
            state = governed(state, "operator.revoke", {"operator_id": op, "reason": "left"})
        elif change == "suspended":
            body = AU.suspend_body(state, op, "under review", "admin", 1_700_000_100)
            body = AU.sealed(body, sealer()(AU.immediate_seal_kind(AU.SUSPEND), body))
            state = AU.advance(state, entry(state, AU.SUSPEND, body))
        else:
            state = governed(state, "operator.roles", {
                "operator_id": op, "old_roles": sorted(state.operators[op].roles),
                "roles": change.split(",")})
    return state


def decisions_for(case: Case, ctx: StatementContext, movement: Movement
                  ) -> list[SignedDecision]:
    out = []
    for vote in case.votes:
        decision = Decision.REJECT if vote.startswith("-") else Decision.APPROVE
        op, _, how = vote.lstrip("-").partition("~")
        statement_ctx, statement_movement = ctx, movement
        if how == "other_transfer":
            statement_ctx = replace(ctx, transfer_id="t_other")
        elif how.startswith("off_"):
            statement_movement = OFF_BY_ONE[how.removeprefix("off_")]
        key = KEYS["cust2" if how == "other_key" else op] if op in KEYS else generate()
        sig = sign_statement(key, build_statement(statement_ctx, statement_movement, decision))
        sig = {"flip": bytes([sig[0] ^ 1]) + sig[1:], "truncate": sig[:63],
               "empty": b""}.get(how, sig)
        out.append(SignedDecision(op, decision, sig))
    return out


@pytest.mark.parametrize("case", CASES, ids=_names(CASES))
def test_decider(case: Case) -> None:
    state = state_for(case)
    w = wallet(case.policy)
    movement = replace(MOVEMENT, outputs=(OWN,)) if case.own_wallet else MOVEMENT
    ctx = StatementContext("signerd-test", "t_1", w.id, case.bound, 2_000_000_000,
                           hashlib.sha256(b"payload").digest(), submitter=case.submitter,
                           vetoed=tuple(sorted(case.vetoed)))
    v = E.judge(state, w, ctx, movement, decisions_for(case, ctx, movement),
                approved=case.approved, verified_vetoes=case.verified_vetoes)

    assert (v.outcome, v.quorum.rejected) == (case.outcome, case.rejected), v.reason
    assert case.reason in v.reason
    if case.requirement:
        assert v.requirement.describe() == case.requirement
    # What the verified votes still lack (a violation's rows too: its bad votes count for
    # nothing); nothing when met or rejected.
    assert v.quorum.remaining == case.remaining
    if case.remaining:
        assert v.quorum.reason == "waiting for " + case.remaining
    assert (v.violation.kind if v.violation else "") == case.violation_kind
    assert (v.denial is not None) == (case.outcome == E.DENIED)

    # effective_requirement is the requirement judge counted toward (vetoes aside), or the
    # denial it reports.
    if case.outcome == E.DENIED:
        with pytest.raises(PolicyDenied):
            E.effective_requirement(state, w, movement, ctx.category_change, case.bound)
    else:
        assert E.with_vetoes(E.effective_requirement(state, w, movement, ctx.category_change,
                                                     case.bound), ctx.vetoed) == v.requirement


def test_the_table_covers_every_verdict_and_the_integration_cases() -> None:
    assert {c.outcome for c in CASES} == {E.SIGN, E.WAIT, E.LOST, E.DENIED, E.VIOLATION}
    assert any(c.rejected for c in CASES)
    assert sum(c.name.startswith("quorum_cases:") for c in CASES) >= 12
