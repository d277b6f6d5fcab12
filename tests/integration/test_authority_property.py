"""Property: through the real services (in-process App, SoftHSM token, SQLite store), a transfer
is signed if and only if its approvals, and every governance link behind them, carry valid
quorums back to the genesis.

Each example is a random history on the demo genesis of ``signerd init`` (operators inv1, inv2,
cust1, cust2, pros1, judge1, admin1, admin2, audit1; governance: two admins other than the
submitter approve every proposal; wallets start with the two-key template):

- new operators, with random roles among investigator, custody_officer and prosecutor, are
  proposed for registration; some are never proposed at all;
- each proposal gets random decisions from admin1, admin2, a non-admin (cust2), one of the new
  operators (registered or not), or its own submitter (admin1 or admin2 may submit it), so some
  proposals reach the quorum, some stay pending and some end rejected;
- registered operators may be revoked or have their roles changed (proposals again) or be
  suspended (immediately);
- the wallet's policy (random approvers, role minimums and vetoes) may be changed through a
  proposal that may or may not pass, before or after the transfer is submitted;
- one Ethereum transfer to an outside address (so the floor of two people of two roles applies)
  gets random decisions from the new operators (passed or not) and from inv1, admin1 and
  judge1, while the governance steps after its submission fall between those decisions.

The oracle (``Model``) replays the same history on its own, without signerd's policy,
authority or engine code: which calls the services must refuse and how (an operator whose
registration did not pass, or who is revoked or suspended, is refused with PermissionDenied and
is never recorded; a proposal that two active admins other than its submitter could never
approve is refused with FailedPrecondition), which proposals pass (two distinct active admins
other than the submitter approved, and the change still applies), which operators hold which roles with which status,
and which policy binds the transfer (the template unless a policy passed before submission;
one passing after submission adds its demands, and must not loosen the pending transfer).
After each recorded decision it judges the transfer by brute force over role slots: a veto
rejects it, the recorded approvals of operators active now meeting every demand and the floor
sign it, and operators still able to approve that cannot meet them reject it.

Asserted per example: every call is accepted or refused exactly as the oracle says; every
proposal ends in the oracle's state; the ledger's operators are the oracle's; the store holds
the oracle's decisions; a signature row exists for the transfer (and it is SIGNED) if and only
if the oracle signed it; and the authority ledger replays from the genesis
(``authority.fold`` over the stored entries equals ``app.ledger.state``).
"""
from __future__ import annotations

import itertools
import json
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from signerd.services.admin import AdminService
from signerd.app import App
from signerd.core.approval import sign_statement
from signerd.core.authority import fold
from signerd.core.errors import SignerError
from signerd.core.model import Decision
from signerd.adapters.key_files import load_private
from signerd.core.operator_keys import generate, public_pem
from tests.support.fixtures import in_process_app
from tests.support.governance import app_govern, app_wallet
from tests.support.ethereum import tx_fields

ROLES = ("custody_officer", "investigator", "prosecutor")
# The demo genesis `signerd init` writes (checked against the ledger by the fixture).
GENESIS = {"inv1": {"investigator"}, "inv2": {"investigator"}, "cust1": {"custody_officer"},
           "cust2": {"custody_officer"}, "pros1": {"prosecutor"}, "judge1": {"judge"},
           "admin1": {"admin"}, "admin2": {"admin"}, "audit1": {"auditor"}}
APPROVE, REJECT = "APPROVE", "REJECT"
ACTIVE, SUSPENDED, REVOKED = "active", "suspended", "revoked"
PENDING, APPROVED, REJECTED, FAILED, SIGNED = ("PENDING_APPROVAL", "APPROVED", "REJECTED",
                                                "FAILED", "SIGNED")


# --------------------------------------------------------------------------- the history

@dataclass(frozen=True)
class Need:
    """A transfer policy of one rule for every asset: ``approvers`` people, role minimums
    (each filled by its own person), and the roles whose rejection ends the transfer."""

    approvers: int
    mins: tuple[tuple[str, int], ...]
    veto: frozenset[str]

    def toml(self, name: str) -> str:
        roles = ", ".join(f"{r} = {k}" for r, k in self.mins)
        return (f'name = "{name}"\nexpiry = "24h"\n[[rule]]\nname = "r"\nasset = "*"\n'
                f"approvers = {self.approvers}\n"
                + (f"roles = {{ {roles} }}\n" if roles else "")
                + f"veto = {json.dumps(sorted(self.veto))}\n")


TEMPLATE = Need(2, (("custody_officer", 1), ("investigator", 1)),
                frozenset({"judge", "prosecutor"}))  # two-key.toml of `signerd init`


@dataclass(frozen=True)
class OperatorProposal:
    """A proposal about generated operator ``op``, by ``submitter``, with these decisions."""

    op: int
    submitter: str
    decisions: tuple[tuple[Any, str], ...]


class Register(OperatorProposal):
    pass


class Revoke(OperatorProposal):
    pass


@dataclass(frozen=True)
class SetRoles:
    op: int
    roles: frozenset[str]
    submitter: str
    decisions: tuple[tuple[Any, str], ...]


@dataclass(frozen=True)
class SetPolicy:
    need: Need
    submitter: str
    decisions: tuple[tuple[Any, str], ...]


@dataclass(frozen=True)
class Suspend:
    op: int


@dataclass(frozen=True)
class Submit:
    pass


@dataclass(frozen=True)
class Decide:
    """More decisions on the ``proposal``-th proposal step of the history, made later."""

    proposal: int
    decisions: tuple[tuple[Any, str], ...]


@dataclass(frozen=True)
class Vote:
    voter: Any
    decision: str


@dataclass(frozen=True)
class History:
    roles: tuple[frozenset[str], ...]  # of the generated operators 0, 1, ...
    steps: tuple[Any, ...]


ROLE_SETS = st.frozensets(st.sampled_from(ROLES), min_size=1, max_size=2)
DECISIONS = st.sampled_from([APPROVE] * 4 + [REJECT])
VOTES = st.sampled_from([APPROVE] * 3 + [REJECT])
SUBMITTERS = st.sampled_from(["admin"] * 6 + ["admin1", "admin2"])
_TWO_KEY = dict(TEMPLATE.mins)
NEEDS = st.builds(
    Need,
    approvers=st.integers(1, 4),
    # below the floor, the template's own demands, stricter ones, and anything else
    mins=st.one_of(
        st.sampled_from([{}, {"custody_officer": 1}, {"investigator": 2}, _TWO_KEY,
                         {**_TWO_KEY, "prosecutor": 1}, {**_TWO_KEY, "investigator": 2},
                         {**_TWO_KEY, "custody_officer": 2}]),
        st.dictionaries(st.sampled_from(ROLES), st.integers(1, 2), max_size=3)
        .map(lambda d: d if sum(d.values()) <= 4 else dict.fromkeys(d, 1)))
    .map(lambda d: tuple(sorted(d.items()))),
    veto=st.sampled_from([frozenset({"judge", "prosecutor"})] * 3
                         + [frozenset({"judge"}), frozenset()]))
# Stricter than the template: what may still apply to a pending transfer.
STRICTER = st.builds(
    Need, approvers=st.integers(3, 4),
    mins=st.sampled_from([{**_TWO_KEY, "prosecutor": 1}, {**_TWO_KEY, "investigator": 2},
                          {**_TWO_KEY, "custody_officer": 2}, _TWO_KEY])
    .map(lambda d: tuple(sorted(d.items()))),
    veto=st.just(TEMPLATE.veto))


@st.composite
def histories(draw: Any) -> History:
    """Registrations (in operator order, some left out), then suspensions, revocations and
    role changes; the transfer is submitted before the last few of these and before more of
    them, which fall between its decisions with the rest of the decisions on some proposals
    made before it. Two in three histories change the policy: before the submission, or as
    the first step after it (then mostly to something stricter than the template). Votes on
    the transfer: a few random ones and, mostly, every new operator and inv1 approving in
    random order, one of them sometimes suspended right after approving."""
    roles = tuple(draw(st.lists(ROLE_SETS, min_size=2, max_size=5)))
    n = len(roles)
    governor = st.sampled_from(["admin1", "admin2", "admin1", "admin2", "cust2", *range(n)])

    @st.composite
    def decisions(draw2: Any) -> tuple[tuple[Any, str], ...]:
        noise = draw2(st.lists(st.tuples(governor, DECISIONS), max_size=3))
        if draw2(st.sampled_from([True, True, True, False])):  # mostly: both admins approve
            at = draw2(st.integers(0, len(noise)))
            noise[at:at] = draw2(st.permutations([("admin1", APPROVE), ("admin2", APPROVE)]))
        return tuple(noise)

    op = st.integers(0, n - 1)
    changes = st.lists(st.one_of(st.builds(Suspend, op), st.builds(Suspend, op),
                                 st.builds(Revoke, op, SUBMITTERS, decisions()),
                                 st.builds(SetRoles, op, ROLE_SETS, SUBMITTERS, decisions())),
                       max_size=3)
    gov: list[Any] = [Register(k, draw(SUBMITTERS), draw(decisions())) for k in range(n)
                      if draw(st.sampled_from([True] * 5 + [False]))]
    gov += draw(changes)
    late = draw(st.integers(0, min(2, len(gov))))
    before, after = gov[:len(gov) - late], gov[len(gov) - late:] + draw(changes)
    if draw(st.sampled_from([True, True, False])):  # a policy change, before or after the
        side = draw(st.sampled_from([before, after]))  # submission as often
        need = draw(NEEDS if side is before else STRICTER | NEEDS)
        side.insert(draw(st.integers(0, len(side))) if side is before else 0,
                    SetPolicy(need, draw(SUBMITTERS), draw(decisions())))
    gov = before + after
    # Some proposals made before the submission get some of their decisions after it.
    proposals = [i for i, s in enumerate(gov) if not isinstance(s, Suspend)]
    for k, i in enumerate(proposals):
        if i < len(before) and gov[i].decisions and draw(st.sampled_from([False] * 3 + [True])):
            cut = draw(st.integers(0, len(gov[i].decisions) - 1))
            before[i] = replace(gov[i], decisions=gov[i].decisions[:cut])
            after.insert(draw(st.integers(0, len(after))), Decide(k, gov[i].decisions[cut:]))
    voter = st.sampled_from([*range(n), *range(n), "inv1", "admin1", "judge1"])
    votes: list[Any] = draw(st.lists(st.builds(Vote, voter, VOTES), min_size=1, max_size=5))
    if draw(st.sampled_from([True, True, True, False])):  # mostly: every new operator and
        # inv1 approve too, registered or not (the governance history decides what counts)
        crowd = draw(st.permutations([*range(n), "inv1"]))
        for v in crowd:
            votes.insert(draw(st.integers(0, len(votes))), Vote(v, APPROVE))
        suspended = draw(st.sampled_from([None, None, *range(n)]))
        if suspended is not None:  # one of them is suspended right after approving
            at = votes.index(Vote(suspended, APPROVE))
            votes.insert(at + 1, Suspend(suspended))
    slots = sorted(draw(st.integers(0, len(votes))) for _ in after)
    steps: list[Any] = [*before, Submit()]
    for i, vote in enumerate([*votes, None]):
        steps += [s for s, at in zip(after, slots) if at == i]
        if vote is not None:
            steps.append(vote)
    return History(roles, tuple(steps))


# --------------------------------------------------------------------------- the oracle

def quorum(need: Need, people: list[frozenset[str]]) -> bool:
    """Brute force: at least ``need.approvers`` distinct people, and an assignment of distinct
    people to every role slot; plus the floor: two of them hold two different roles."""
    slots = [r for r, k in need.mins for _ in range(k)]
    if len(people) < max(need.approvers, len(slots)):
        return False
    if not any(all(slots[i] in people[p] for i, p in enumerate(chosen))
               for chosen in itertools.permutations(range(len(people)), len(slots))):
        return False
    return any(ra != rb for a, b in itertools.permutations(people, 2) for ra in a for rb in b)


def no_looser(new: Need, old: Need) -> bool:
    """Every set of people meeting ``new`` (with the floor) meets ``old``, and ``new`` keeps
    every veto of ``old``. For these one-rule policies that is: as many people (the floor
    counts two) and at least every role minimum -- one person per role slot of ``new``, single
    roles, padded with people of a role neither names, meets ``new`` and nothing more."""
    def people(n: Need) -> int:
        return max(n.approvers, sum(k for _, k in n.mins), 2)

    mins = dict(new.mins)
    return (people(new) >= people(old) and all(mins.get(r, 0) >= k for r, k in old.mins)
            and new.veto >= old.veto)


@dataclass
class Op:
    roles: frozenset[str]
    status: str


@dataclass
class ProposalModel:
    submitter: str
    apply: Callable[[], bool]  # makes the change; False when it no longer applies (FAILED)
    state: str = PENDING
    decisions: list[tuple[str, str]] = field(default_factory=list)


# Roles that can veto under the genesis templates (two-key: judge, prosecutor); every policy this
# test sets vetoes with a subset of them. An operator holding one is not suspended at once.
GENESIS_VETO_ROLES = frozenset({"judge", "prosecutor"})


class Model:
    """The oracle's own replay of a history: what each call must do, and what follows."""

    def __init__(self) -> None:
        self.ops = {o: Op(frozenset(r), ACTIVE) for o, r in GENESIS.items()}
        self.policy = TEMPLATE  # the wallet's policy in force
        self.bound: Need | None = None  # the policy at submission
        self.transfer = ""  # "" until submitted
        self.votes: list[tuple[str, str]] = []  # as the service must record them

    def active(self) -> dict[str, frozenset[str]]:
        return {o: op.roles for o, op in self.ops.items() if op.status == ACTIVE}

    def loosens(self, need: Need) -> bool:
        """A new policy must not loosen what the pending transfer needs (DESIGN §2)."""
        if self.transfer != PENDING or self.bound is None:
            return False
        return not (no_looser(need, self.bound) and no_looser(need, self.policy))

    # ---- governance
    def propose(self, step: Any, op_id: str, roles: frozenset[str]) -> tuple[str, Any]:
        got, proposal = self._propose(step, op_id, roles)
        if got != "ok":
            return got, proposal
        admins = {o for o, r in self.active().items() if "admin" in r and o != step.submitter}
        if len(admins) < 2:  # could never pass: refused at once, never recorded
            return "FailedPrecondition", None
        return got, proposal

    def _propose(self, step: Any, op_id: str, roles: frozenset[str]) -> tuple[str, Any]:
        if isinstance(step, Register):
            def register() -> bool:
                if op_id in self.ops:
                    return False
                self.ops[op_id] = Op(roles, ACTIVE)
                return True
            return "ok", ProposalModel(step.submitter, register)
        if isinstance(step, SetPolicy):
            def set_policy() -> bool:
                if self.loosens(step.need):
                    return False
                self.policy = step.need
                return True
            if self.loosens(step.need):
                return "FailedPrecondition", None
            return "ok", ProposalModel(step.submitter, set_policy)
        op = self.ops.get(op_id)
        if isinstance(step, Revoke):
            if op is None:
                return "InvalidArgument", None
            if op.status == REVOKED:
                return "FailedPrecondition", None

            def revoke() -> bool:
                if self.ops[op_id].status == REVOKED:
                    return False
                self.ops[op_id].status = REVOKED
                return True
            return "ok", ProposalModel(step.submitter, revoke)
        assert isinstance(step, SetRoles)
        if op is None:
            return "NotFound", None
        if op.status == REVOKED:
            return "FailedPrecondition", None
        if op.roles == step.roles:
            return "InvalidArgument", None
        old = op.roles

        def set_roles() -> bool:
            cur = self.ops[op_id]
            if cur.status == REVOKED or cur.roles != old:
                return False
            cur.roles = step.roles
            return True
        return "ok", ProposalModel(step.submitter, set_roles)

    def decide_proposal(self, p: ProposalModel, op_id: str, decision: str) -> str:
        if p.state != PENDING:
            return "FailedPrecondition"
        if op_id not in self.active() or op_id == p.submitter:
            return "PermissionDenied"
        if any(o == op_id for o, _ in p.decisions):
            return "FailedPrecondition"
        p.decisions.append((op_id, decision))
        active = self.active()
        admins = {o for o, r in active.items() if "admin" in r and o != p.submitter}
        rejecters = {o for o, d in p.decisions if d == REJECT and o in active}
        approvers = {o for o, d in p.decisions if d == APPROVE} & admins - rejecters
        if len(approvers) >= 2:  # two distinct admins other than the submitter approved
            p.state = APPROVED if p.apply() else FAILED
        elif len(admins - rejecters) < 2:  # two such admins can no longer approve
            p.state = REJECTED
        return "ok"

    def suspend(self, op_id: str) -> str:
        op = self.ops.get(op_id)
        if op is None:
            return "NotFound"
        if op.status != ACTIVE:
            return "FailedPrecondition"
        if op.roles & GENESIS_VETO_ROLES:  # suspending would take a veto away: not at once
            return "FailedPrecondition"
        op.status = SUSPENDED
        return "ok"

    # ---- the transfer
    def submit(self) -> None:
        self.bound, self.transfer = self.policy, PENDING

    def vote(self, op_id: str, decision: str) -> str:
        if self.transfer != PENDING:
            return "FailedPrecondition"
        if op_id not in self.active():
            return "PermissionDenied"
        if any(o == op_id for o, _ in self.votes):
            return "FailedPrecondition"
        self.votes.append((op_id, decision))
        self.transfer = self.judge()
        return "ok"

    def judge(self) -> str:
        assert self.bound is not None
        needs = (self.bound, self.policy)  # after submission both demands hold
        active = self.active()
        rejecters = [o for o, d in self.votes if d == REJECT and o in active]
        if any(active[o] & n.veto for o in rejecters for n in needs):
            return REJECTED
        approvers = [active[o] for o, d in self.votes if d == APPROVE and o in active]
        if all(quorum(n, approvers) for n in needs):
            return SIGNED
        able = [r for o, r in active.items() if o not in rejecters]
        if not all(quorum(n, able) for n in needs):
            return REJECTED
        return PENDING


# --------------------------------------------------------------------------- the test

@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory):
    yield from in_process_app(tmp_path_factory.mktemp("authprop") / "state")


@pytest.fixture(scope="module")
def genesis_keys(app: App) -> dict[str, Any]:
    """The initial operators' keys from the state folder, once the ledger's genesis is seen to
    be the one the oracle assumes (operators, and the template new wallets start with)."""
    state = Path(app.config.path).parent
    with app.store.read() as tx:
        ops = app.ledger.state(tx).operators
    assert {o: set(r.roles) for o, r in ops.items()} == GENESIS
    assert app.wallets.default_template == "two-key"
    text = dict((t.name, doc) for t, doc in AdminService(app).templates())["two-key"]
    assert ("approvers = 2\nroles = { investigator = 1, custody_officer = 1 }\n"
            'veto = ["judge", "prosecutor"]') in text
    return {o: load_private(state / "operators" / f"{o}.key") for o in GENESIS}


def attempt(fn: Callable[[], Any]) -> tuple[str, Any]:
    """("ok", result), or the name of the SignerError the service raised, and the error."""
    try:
        return "ok", fn()
    except SignerError as e:
        return type(e).__name__, e


def replayed_from_genesis(app: App) -> None:
    with app.store.read() as tx:
        entries, after = [], 0
        while batch := tx.authority_entries(after, 1000):
            entries += batch
            after = batch[-1].seq
        assert fold(None, entries, pinned=app.config.genesis) == app.ledger.state(tx)


_counter = itertools.count()


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(history=histories())
def test_signature_iff_quorums_trace_to_genesis(app: App, genesis_keys: dict[str, Any],
                                                history: History) -> None:
    n = next(_counter)
    admin = AdminService(app)
    ids = [f"g{n}o{k}" for k in range(len(history.roles))]
    keys = {**genesis_keys, **{i: generate() for i in ids}}
    with app.store.read() as tx:  # the examples before this one left only the genesis active
        assert {o for o, r in app.ledger.state(tx).operators.items()
                if r.status.value == ACTIVE} == set(GENESIS)
    model = Model()
    w = app_wallet(app, case_ref=f"AP{n}")
    transfer = ""
    # Per proposal step of the history, in order: (proposal id, step, oracle's proposal), or
    # None where the service (as the oracle said) refused to make the proposal.
    made: list[tuple[str, Any, ProposalModel] | None] = []
    policy_event = "none"

    def name(who: Any) -> str:
        return who if isinstance(who, str) else ids[who]

    def propose(step: Any) -> Any:
        if isinstance(step, Register):
            return admin.register_operator(step.submitter, ids[step.op],
                                           sorted(history.roles[step.op]),
                                           public_pem(keys[ids[step.op]]))
        if isinstance(step, Revoke):
            return admin.revoke_operator(step.submitter, ids[step.op])
        if isinstance(step, SetRoles):
            return admin.set_roles(step.submitter, ids[step.op], sorted(step.roles))
        return admin.set_policy(step.submitter, w.id, step.need.toml(f"p{n}"))

    def decide_proposal(pid: str, who: str, decision: str) -> Any:
        d = Decision(decision)
        statement, _, _ = app.proposals.statement(pid, d)
        return app.proposals.decide(who, pid, who, d, sign_statement(keys[who], statement),
                                    reason="no" if d is Decision.REJECT else "")

    def decide_all(where: str, pid: str, pmodel: ProposalModel,
                   decisions: tuple[tuple[Any, str], ...]) -> None:
        for who, decision in decisions:
            expected = model.decide_proposal(pmodel, name(who), decision)
            got, detail = attempt(lambda: decide_proposal(pid, name(who), decision))
            assert got == expected, (where, name(who), decision, detail)
        assert app.proposals.get(pid).state == pmodel.state, (where, pmodel)

    def vote(who: str, decision: str) -> Any:
        d = Decision(decision)
        statement, _, _ = app.transfers.statement(transfer, d)
        return app.transfers.decide(who, transfer, who, d, sign_statement(keys[who], statement),
                                    reason="no" if d is Decision.REJECT else "")

    try:
        for i, step in enumerate(history.steps):
            where = f"step {i}: {step}"
            if isinstance(step, Submit):
                transfer = app.transfers.submit("platform", w.id,
                                                json.dumps(tx_fields(chainId=1)).encode()).id
                model.submit()
            elif isinstance(step, Vote):
                who = name(step.voter)
                expected = model.vote(who, step.decision)
                got, detail = attempt(lambda: vote(who, step.decision))
                assert got == expected, (where, detail)
            elif isinstance(step, Suspend):
                expected = model.suspend(ids[step.op])
                got, detail = attempt(lambda: admin.suspend_operator("admin", ids[step.op]))
                assert got == expected, (where, detail)
            elif isinstance(step, Decide):
                earlier = made[step.proposal]
                if earlier is not None:  # else the oracle, too, said it was never made
                    decide_all(where, earlier[0], earlier[2], step.decisions)
            else:
                op_id = ids[getattr(step, "op", 0)]
                roles = history.roles[step.op] if isinstance(step, Register) else frozenset()
                expected, pmodel = model.propose(step, op_id, roles)
                got, view = attempt(lambda: propose(step))
                assert got == expected, (where, view)
                if isinstance(step, SetPolicy):
                    policy_event = ("refused: would loosen the pending transfer" if got != "ok"
                                    else f"proposed {'after' if transfer else 'before'} "
                                    "submission")
                if got != "ok":
                    made.append(None)
                    continue
                made.append((view.id, step, pmodel))
                decide_all(where, view.id, pmodel, step.decisions)

        # Every proposal ended as the oracle says.
        proposals = [m for m in made if m is not None]
        for pid, step, pmodel in proposals:
            assert app.proposals.get(pid).state == pmodel.state, (step, pmodel)
        # Operators, roles and statuses in force are the ones the oracle's replay gives.
        with app.store.read() as tx:
            ledger_ops = app.ledger.state(tx).operators
        assert {o: (set(r.roles), r.status.value) for o, r in ledger_ops.items()
                if o in GENESIS or o in ids} == \
            {o: (set(op.roles), op.status) for o, op in model.ops.items()}
        # The decisions the store holds are the oracle's, and a signature exists iff it signed.
        view = app.transfers.get(transfer)
        assert sorted((a.record.operator_id, a.record.decision) for a in view.approvals) == \
            sorted(model.votes)
        with closing(sqlite3.connect(Path(app.config.store_url[len("sqlite:///"):]))) as c:
            sigs = c.execute("SELECT COUNT(*) FROM signatures WHERE transfer_id = ?",
                             (transfer,)).fetchone()[0]
        assert (sigs > 0) == (model.transfer == SIGNED), (view.row["state"], model.votes)
        assert view.row["state"] == model.transfer, (view.row["failure"], model.votes)
        replayed_from_genesis(app)

        registered = [p for _, s, p in proposals if isinstance(s, Register)]
        event(f"transfer {model.transfer}")
        event(f"registrations passed: {sum(p.state == APPROVED for p in registered)} of "
              f"{len(registered)}")
        for _, s, p in proposals:
            if isinstance(s, SetPolicy):
                policy_event += f", then {p.state}"
        event(f"policy change: {policy_event}")
    finally:
        # Leave only the genesis active for the next example (which checks it): revoke this
        # one's operators, quietly, so that a failure above stays the one reported.
        with app.store.read() as tx:
            state = app.ledger.state(tx)
        for op_id in ids:
            rec = state.operators.get(op_id)
            if rec is not None and rec.status.value != REVOKED:
                attempt(lambda: app_govern(app, admin.revoke_operator("admin", op_id)))
