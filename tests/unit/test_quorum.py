"""Quorum counting: table cases, and a property test against a brute-force oracle."""
from __future__ import annotations

from collections import Counter
from itertools import combinations, product

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from signerd.core.errors import InvalidPolicy
from signerd.core.model import Chain, Decision, DestinationClass, Movement, Output
from signerd.core.policy import OperatorView, Requirement, Vote, evaluate, parse_policy

A, R = Decision.APPROVE, Decision.REJECT


def op(op_id: str, *roles: str, active: bool = True) -> OperatorView:
    return OperatorView(op_id, frozenset(roles), active)


OPS = {o.id: o for o in [
    op("inv1", "investigator"), op("inv2", "investigator"),
    op("cust1", "custody_officer"), op("cust2", "custody_officer"),
    op("both", "investigator", "custody_officer"),
    op("judge1", "judge"), op("judge_gone", "judge", active=False),
    op("gone", "custody_officer", active=False),
]}
FEW = {k: OPS[k] for k in ("inv1", "cust1", "cust2", "gone")}
TWO_KEY = Requirement(approvers=2, roles=(("investigator", 1), ("custody_officer", 1)),
                      veto=frozenset({"judge"}))
ANY_TWO = Requirement(approvers=2)
THREE = Requirement(approvers=3, roles=(("investigator", 1), ("custody_officer", 1)))
TWO_CUST = Requirement(approvers=2, roles=(("custody_officer", 2),))
GROUP = Requirement(approvers=2, roles=(("investigator", 1), ("custody_officer", 1)),
                    group=frozenset({"inv1", "cust1", "cust2"}))

# (id, requirement, votes, submitter, operators, met, rejected, counted, text in reason/remaining)
CASES = [
    ("one approval of two", TWO_KEY, [("inv1", A)], "platform", OPS, False, False, ("inv1",),
     "1 more approver: custody_officer x1"),
    ("two-key met", TWO_KEY, [("inv1", A), ("cust1", A)], "platform", OPS, True, False,
     ("inv1", "cust1"), "quorum met by inv1, cust1"),
    ("same operator twice", ANY_TWO, [("inv1", A), ("inv1", A)], "platform", OPS, False, False,
     ("inv1",), "1 more approver"),
    ("two investigators, custody officer required", TWO_KEY, [("inv1", A), ("inv2", A)],
     "platform", OPS, False, False, ("inv1", "inv2"), "1 more approver: custody_officer x1"),
    ("submitter approval does not count", TWO_KEY, [("inv1", A), ("cust1", A)], "cust1", OPS,
     False, False, ("inv1",), "custody_officer x1"),
    ("revoked operator", TWO_KEY, [("inv1", A), ("gone", A)], "platform", OPS, False, False,
     ("inv1",), "custody_officer x1"),
    ("unknown operator", ANY_TWO, [("inv1", A), ("mallory", A)], "platform", OPS, False, False,
     ("inv1",), "1 more approver"),
    ("veto", TWO_KEY, [("inv1", A), ("cust1", A), ("judge1", R)], "platform", OPS, False, True,
     ("inv1", "cust1"), "veto of judge1 (judge)"),
    ("revoked judge cannot veto", TWO_KEY, [("inv1", A), ("cust1", A), ("judge_gone", R)],
     "platform", OPS, True, False, ("inv1", "cust1"), "quorum met"),
    ("reject without veto role does not end it", TWO_KEY, [("inv2", R), ("inv1", A)], "platform",
     OPS, False, False, ("inv1",), "custody_officer x1"),
    ("impossible quorum", TWO_CUST, [("cust1", A), ("cust2", R)], "platform", FEW, False, True,
     ("cust1",), "can no longer be met"),
    ("impossible: submitter is the only other holder", TWO_CUST, [("cust1", A)], "cust2", FEW,
     False, True, ("cust1",), "can no longer be met"),
    ("one operator with both roles fills one slot", TWO_KEY, [("both", A)], "platform", OPS,
     False, False, ("both",), "1 more approver"),
    ("dual-role operator plus custody officer", TWO_KEY, [("cust1", A), ("both", A)], "platform",
     OPS, True, False, ("cust1", "both"), "quorum met"),
    ("dual-role only operators: impossible", TWO_KEY, [("both", A)], "platform",
     {"both": OPS["both"]}, False, True, ("both",), "can no longer be met"),
    ("m above role minimums", THREE, [("inv1", A), ("cust1", A)], "platform", OPS, False, False,
     ("inv1", "cust1"), "1 more approver"),
    ("m above role minimums met", THREE, [("inv1", A), ("cust1", A), ("judge1", A)], "platform",
     OPS, True, False, ("inv1", "cust1", "judge1"), "quorum met"),
    ("outside the group", GROUP, [("inv2", A), ("cust1", A)], "platform", OPS, False, False,
     ("cust1",), "investigator x1"),
    ("reject overrides an approval by the same operator", ANY_TWO,
     [("inv1", A), ("cust1", A), ("cust1", R)], "platform", OPS, False, False, ("inv1",),
     "1 more approver"),
    ("no votes", TWO_KEY, [], "platform", OPS, False, False, (),
     "2 more approvers: custody_officer x1, investigator x1"),
]


@pytest.mark.parametrize(
    ("requirement", "votes", "submitter", "operators", "met", "rejected", "counted", "text"),
    [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_quorum_table(requirement, votes, submitter, operators, met, rejected, counted, text):
    result = evaluate(requirement, [Vote(o, d) for o, d in votes], operators, submitter)
    assert (result.met, result.rejected, result.counted) == (met, rejected, counted)
    assert text in result.reason
    assert (result.remaining == "") is (met or rejected)
    if not (met or rejected):
        assert result.reason == "waiting for " + result.remaining


def test_decision_given_as_text_is_not_mistaken():
    votes = [Vote("inv1", "APPROVE"), Vote("cust1", "APPROVE"),  # type: ignore[arg-type]
             Vote("judge1", "REJECT")]  # type: ignore[arg-type]
    result = evaluate(TWO_KEY, votes, OPS, "platform")
    assert result.rejected and not result.met
    with pytest.raises(ValueError):
        Vote("inv1", "MAYBE")  # type: ignore[arg-type]


# --- property: `met` iff a brute-force oracle finds a valid set of approvers -------------------

ROLES = ("a", "b", "c")
VETO_ROLE = "v"
IDS = [f"o{i}" for i in range(5)]


def oracle_possible(m: int, minimums: dict[str, int], approvers: list[str],
                    roles: dict[str, frozenset[str]]) -> bool:
    """Some subset of at least m approvers can cover every role minimum, one role per person."""
    for size in range(m, len(approvers) + 1):
        for subset in combinations(approvers, size):
            for choice in product(*[sorted(roles[o]) + [None] for o in subset]):
                got = Counter(c for c in choice if c is not None)
                if all(got[r] >= n for r, n in minimums.items()):
                    return True
    return False


policies = st.fixed_dictionaries({
    "m": st.integers(1, 3),
    "minimums": st.dictionaries(st.sampled_from(ROLES), st.integers(1, 2), max_size=2),
    "group": st.none() | st.sets(st.sampled_from(IDS), min_size=3),
    "veto": st.booleans(),
})
operator_sets = st.fixed_dictionaries({
    i: st.tuples(st.sets(st.sampled_from(ROLES + (VETO_ROLE,)), min_size=1, max_size=3),
                 st.sampled_from([True, True, True, False]))
    for i in IDS})
vote_lists = st.lists(st.tuples(st.sampled_from(IDS + ["ghost"]),
                                st.sampled_from([A, A, A, A, R])), min_size=2, max_size=12)


def requirement_from_policy(p: dict) -> Requirement:
    lines = ['name = "prop"', "[[rule]]", 'name = "r"', f"approvers = {p['m']}"]
    if p["minimums"]:
        lines.append("roles = { " + ", ".join(f"{r} = {n}" for r, n in p["minimums"].items())
                     + " }")
    if p["group"] is not None:
        lines.append("group = [" + ", ".join(f'"{g}"' for g in sorted(p["group"])) + "]")
    if p["veto"]:
        lines.append(f'veto = ["{VETO_ROLE}"]')
    try:
        policy = parse_policy("\n".join(lines) + "\n")
    except InvalidPolicy:
        assume(False)  # a group smaller than m is refused at parse time
        raise
    movement = Movement(chain=Chain.BITCOIN, network="regtest", chain_id=0,
                        outputs=(Output("bc1qx", 1, "BTC", False, DestinationClass.EXTERNAL),),
                        fee=1, fee_asset="BTC", digests=(b"\0" * 32,), vsize=100)
    return policy.requirement_for(movement)


@settings(max_examples=300, deadline=None)
@given(policies, operator_sets, vote_lists, st.sampled_from(IDS + ["platform"]))
def test_met_iff_oracle(p, operator_set, votes, submitter):
    requirement = requirement_from_policy(p)
    operators = {i: OperatorView(i, frozenset(roles), active)
                 for i, (roles, active) in operator_set.items()}
    result = evaluate(requirement, [Vote(o, d) for o, d in votes], operators, submitter)

    roles = {i: frozenset(r) for i, (r, _) in operator_set.items()}
    live = {i for i, (_, active) in operator_set.items() if active}
    decided: dict[str, set[Decision]] = {}
    for o, d in votes:
        if o in live:
            decided.setdefault(o, set()).add(d)
    vetoed = p["veto"] and any(R in ds and VETO_ROLE in roles[o] for o, ds in decided.items())

    def eligible(o: str) -> bool:
        return o in live and o != submitter and (p["group"] is None or o in p["group"])

    approvers = [o for o, ds in decided.items() if ds == {A} and eligible(o)]
    still_able = [o for o in live if eligible(o) and R not in decided.get(o, set())]
    met = not vetoed and oracle_possible(p["m"], p["minimums"], approvers, roles)
    possible = oracle_possible(p["m"], p["minimums"], still_able, roles)

    assert result.met is met
    assert result.rejected is (vetoed or not possible)
    assert not (result.met and result.rejected)
    assert set(result.counted) == set(approvers)
