"""The transfer verdict, pure: policy from the ledger, the floor, verified votes, and what a
stored APPROVED state that does not hold becomes (lost or a violation)."""
from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import coincurve
import pytest

from signerd.core import engine as E
from signerd.core import policy as P
from signerd.core import seal
from signerd.core.approval import SignedDecision, StatementContext, build_statement, sign_statement
from signerd.core.chains import Ours, classify_outputs
from signerd.core.model import (Category, Chain, Decision, DestinationClass, KeyRef, Movement,
                                Output, ScriptType, TransferState, Wallet, WalletStatus)
from signerd.core.operator_keys import generate
from signerd.core.records import TransferRecord
from tests.support.authority import KEYS, STATE, applied, proposal, register

AU_STATE = STATE
WALLET = Wallet(id="w_" + "5" * 16, chain=Chain.ETHEREUM, network="ethereum",
                script_type=ScriptType.EOA, category=Category.SEIZED, case_ref="C",
                legal_basis="", status=WalletStatus.ACTIVE, address="0x" + "ab" * 20,
                keys=(KeyRef("aa", "k", b"\x02" * 33),), chain_ids=(1,), template="two-key",
                policy_sha256=STATE.templates["two-key"].sha256)
OUT = Output("0x" + "11" * 20, 10**18, "ETH")
MOVE = Movement(Chain.ETHEREUM, "ethereum", 1, (OUT,), 21000, "ETH", (bytes(32),), nonce=1)
CTX = StatementContext("signerd-test", "t_1", WALLET.id, 1, 2_000_000_000,
                       hashlib.sha256(b"p").digest(), submitter="platform")


def votes(*ops: str, ctx: StatementContext = CTX, movement: Movement = MOVE,
          decision: Decision = Decision.APPROVE) -> list[SignedDecision]:
    return [SignedDecision(op, decision, sign_statement(KEYS[op],
                                                        build_statement(ctx, movement, decision)))
            for op in ops]


def test_two_key_template_meets_the_floor_and_is_signed() -> None:
    v = E.judge(STATE, WALLET, CTX, MOVE, votes("inv1"), approved=False)
    assert v.outcome == E.WAIT and "custody_officer x1" in v.quorum.remaining
    v = E.judge(STATE, WALLET, CTX, MOVE, votes("inv1", "cust1"), approved=False)
    assert v.outcome == E.SIGN


def test_a_forged_or_misplaced_approval_is_a_violation() -> None:
    forged = votes("inv1") + [SignedDecision("cust1", Decision.APPROVE, bytes(64))]
    v = E.judge(STATE, WALLET, CTX, MOVE, forged, approved=True)
    assert v.outcome == E.VIOLATION and v.violation is not None
    assert v.violation.kind == "approval" and "cust1" in v.reason
    other = replace(CTX, transfer_id="t_2")
    v = E.judge(STATE, WALLET, CTX, MOVE, votes("inv1") + votes("cust1", ctx=other),
                approved=True)
    assert v.outcome == E.VIOLATION  # an approval of another transfer does not count here
    v = E.judge(STATE, WALLET, CTX, MOVE,
                [SignedDecision("ghost", Decision.APPROVE, bytes(64))], approved=True)
    assert v.outcome == E.VIOLATION and "ghost is not an operator" in v.reason


def test_approved_without_quorum_is_a_violation_but_a_lost_quorum_is_not() -> None:
    v = E.judge(STATE, WALLET, CTX, MOVE, votes("inv1"), approved=True)
    assert v.outcome == E.VIOLATION and v.violation.kind == "quorum"  # type: ignore[union-attr]
    revoked = applied(STATE, proposal("operator.revoke", {"operator_id": "cust1",
                                                          "reason": "left"}),
                      "admin1", "admin2")
    v = E.judge(revoked, WALLET, CTX, MOVE, votes("inv1", "cust1"), approved=True)
    assert v.outcome == E.LOST


def test_the_floor_lifts_a_one_approver_policy_for_outside_destinations() -> None:
    one = 'name = "one"\n[[rule]]\nname = "all"\nasset = "*"\napprovers = 1\n'
    policy = P.parse_policy(one)
    req = E.requirement_of(policy, False, MOVE, "none")
    assert req.approvers == 2 and req.distinct_roles == 2
    own = replace(MOVE, outputs=(replace(OUT, destination_class=DestinationClass.OWN_WALLET),))
    assert E.requirement_of(policy, False, own, "none").approvers == 1
    assert E.requirement_of(policy, True, MOVE, "none").approvers == 1  # waived for the wallet
    # Two people of one role do not meet the floor; two roles do.
    state = applied(STATE, register("inv2", ["investigator"]), "admin1", "admin2")
    views = state.operator_views()
    q = P.evaluate(req, [P.Vote("inv1", Decision.APPROVE), P.Vote("inv2", Decision.APPROVE)],
                   views, "platform")
    assert not q.met and "of another role" in q.remaining
    q = P.evaluate(req, [P.Vote("inv1", Decision.APPROVE), P.Vote("cust1", Decision.APPROVE)],
                   views, "platform")
    assert q.met


def test_effective_requirement_merges_the_bound_and_the_current_policy() -> None:
    three = ('name = "three"\n[[rule]]\nname = "all"\nasset = "*"\napprovers = 3\n'
             'roles = { investigator = 1, custody_officer = 1, judge = 1 }\n')
    doc = proposal("wallet.policy", {"wallet_id": WALLET.id, "base_version": 1,
                                     "old_document": STATE.texts[WALLET.policy_sha256],
                                     "document": three, "template": ""})
    state = applied(STATE, doc, "admin1", "admin2")
    req = E.effective_requirement(state, WALLET, MOVE, "none", 1)
    assert req.approvers == 3 and dict(req.roles)["judge"] == 1
    v = E.judge(state, WALLET, CTX, MOVE, votes("inv1", "cust1"), approved=True)
    assert v.outcome == E.LOST  # met under the bound policy; the new one asks for a judge


BASIS = "Regional Court Berlin; 4 K 12/26; 2026-11-20"


def test_category_changes_must_fit_the_destination_wallets() -> None:
    to_conf = replace(OUT, wallet_id="w_" + "6" * 16, category="confiscated")
    mv = replace(MOVE, outputs=(to_conf,))
    with pytest.raises(P.PolicyDenied, match="declare category_change = seized_to_confiscated"):
        E.check_category_change(WALLET, mv, "none", "")
    with pytest.raises(P.PolicyDenied, match="needs a legal basis"):
        E.check_category_change(WALLET, mv, "seized_to_confiscated", " ")
    E.check_category_change(WALLET, mv, "seized_to_confiscated", BASIS)
    with pytest.raises(P.PolicyDenied, match="an output to a confiscated wallet"):
        E.check_category_change(WALLET, MOVE, "seized_to_confiscated", BASIS)


def test_classify_outputs_marks_own_wallets_and_names_ours() -> None:
    a, b, c, d = ("0x" + x * 40 for x in "1234")
    mv = replace(MOVE, outputs=(Output(a, 1, "ETH"), Output(b, 1, "ETH"), Output(c, 1, "ETH"),
                                Output(d, 1, "ETH", is_change=True)))
    ours = {a: Ours("w_a", "seized", True), b: Ours("w_b", "confiscated", False)}
    out = classify_outputs(mv, ours, [c.upper().replace("0X", "0x")]).outputs
    assert [o.destination_class for o in out] == [
        DestinationClass.OWN_WALLET, DestinationClass.EXTERNAL, DestinationClass.ALLOWLISTED,
        DestinationClass.OWN_WALLET]
    assert [(o.wallet_id, o.category) for o in out] == [
        ("w_a", "seized"), ("w_b", "confiscated"), ("", ""), ("", "")]


def test_seals_verify_only_for_the_sealed_record_and_key() -> None:
    key = coincurve.PrivateKey()
    record = {"id": "w_1", "address": "bc1q"}
    digest = seal.digest("wallet", record)
    r, s = _sign(key, digest)
    stamp = seal.encode(r, s)
    pub = key.public_key.format()
    assert seal.valid(pub, "wallet", record, stamp)
    assert not seal.valid(pub, "wallet", {**record, "address": "bc1x"}, stamp)
    assert not seal.valid(pub, "key_share", record, stamp)  # kinds are domain-separated
    assert not seal.valid(coincurve.PrivateKey().public_key.format(), "wallet", record, stamp)
    assert not seal.valid(pub, "wallet", record, "")
    high = seal.encode(r, seal.SECP256K1_N - s)
    assert not seal.valid(pub, "wallet", record, high)  # only the low-S spelling is a seal


def _sign(key: coincurve.PrivateKey, digest: bytes) -> tuple[int, int]:
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    r, s = decode_dss_signature(key.sign(digest, hasher=None))
    return r, min(s, seal.SECP256K1_N - s)


def test_a_stricter_policy_is_stricter_than_the_floor_it_replaces() -> None:
    """Under the floor, one role's minimum becomes "two people of two roles"; a policy that
    names two roles is at least as strict, and a change to it must not count as loosening."""
    one_role = P.parse_policy('name = "a"\n[[rule]]\nname = "r"\nasset = "*"\napprovers = 2\n'
                              'roles = { investigator = 1 }\n')
    two_roles = P.parse_policy('name = "b"\n[[rule]]\nname = "r"\nasset = "*"\napprovers = 2\n'
                               'roles = { investigator = 1, custody_officer = 1 }\n')
    old = E.requirement_of(one_role, False, MOVE, "none")
    new = E.requirement_of(two_roles, False, MOVE, "none")
    assert old.distinct_roles == 2 and new.at_least_as_strict_as(old)
    assert not old.at_least_as_strict_as(new)
    assert new.describe() == "2 approvers (custody_officer x1, investigator x1)"


def test_a_transaction_vetoed_before_needs_the_vetoing_role() -> None:
    """On top of the policy (here two-key): an approval by each role that vetoed the same
    transaction before, bound in the statement; a verified veto the statement leaves out is a
    violation however many approve."""
    KEYS.setdefault("judge9", generate())
    judge = applied(STATE, register("judge9", ["judge"], KEYS["judge9"]), "admin1", "admin2")
    again = replace(CTX, vetoed=(("judge", "t_0"),))
    v = E.judge(judge, WALLET, again, MOVE, votes("inv1", "cust1", ctx=again), approved=False,
                verified_vetoes=[("judge", "t_0")])
    assert v.outcome == E.WAIT and v.quorum.remaining == "1 more approver: judge x1"
    assert v.requirement.role_minimums == {"custody_officer": 1, "investigator": 1, "judge": 1}
    v = E.judge(judge, WALLET, again, MOVE, votes("inv1", "cust1", "judge9", ctx=again),
                approved=False, verified_vetoes=[("judge", "t_0")])
    assert v.outcome == E.SIGN
    # The row dropped the veto (a store writer): approvals over that statement do not count.
    v = E.judge(judge, WALLET, CTX, MOVE, votes("inv1", "cust1"), approved=True,
                verified_vetoes=[("judge", "t_0")])
    assert v.outcome == E.VIOLATION and v.violation is not None and v.violation.kind == "veto"
    assert "vetoed before (by judge in t_0)" in v.reason
    # Its own veto is no earlier veto; a transaction nobody vetoed needs what the policy says.
    v = E.judge(judge, WALLET, CTX, MOVE, votes("inv1", "cust1"), approved=False,
                verified_vetoes=[("judge", CTX.transfer_id)])
    assert v.outcome == E.SIGN
    assert E.with_vetoes(v.requirement, ()) == v.requirement


def test_the_transaction_key_is_what_would_be_signed() -> None:
    assert E.transaction_key(MOVE) == hashlib.sha256(bytes(32)).hexdigest()
    assert E.transaction_key(replace(MOVE, fee=1)) == E.transaction_key(MOVE)
    assert E.transaction_key(replace(MOVE, digests=(b"\x01" * 32,))) != E.transaction_key(MOVE)


TINY_ONLY = ('name = "tiny"\n[[rule]]\nname = "tiny"\nasset = "*"\nmax_amount = "1000"\n'
             'approvers = 2\nroles = { investigator = 1, custody_officer = 1 }\n')


def test_a_current_policy_that_no_longer_allows_the_movement_denies_it() -> None:
    doc = proposal("wallet.policy", {"wallet_id": WALLET.id, "base_version": 1,
                                     "old_document": STATE.texts[WALLET.policy_sha256],
                                     "document": TINY_ONLY, "template": ""})
    state = applied(STATE, doc, "admin1", "admin2")
    with pytest.raises(P.PolicyDenied, match="policy version 2 no longer allows"):
        E.effective_requirement(state, WALLET, MOVE, "none", 1)
    for approved in (False, True):
        v = E.judge(state, WALLET, CTX, MOVE, votes("inv1", "cust1"), approved=approved)
        assert v.outcome == E.DENIED and "policy version 2 no longer allows" in v.reason
    # A forged vote is still a violation first: a denial does not hide one.
    v = E.judge(state, WALLET, CTX, MOVE, [SignedDecision("cust1", Decision.APPROVE, bytes(64))],
                approved=True)
    assert v.outcome == E.VIOLATION


def test_destinations_classified_again_tighten_and_never_void_the_approvals() -> None:
    """The statement binds the movement as sealed at submission; what its destinations are now
    adds its demands. An own-wallet sweep whose destination is no longer ours needs the floor
    (two roles); an external one whose destination became ours keeps needing it."""
    one = 'name = "one"\n[[rule]]\nname = "all"\nasset = "*"\napprovers = 1\n'
    doc = proposal("wallet.policy", {"wallet_id": WALLET.id, "base_version": 1,
                                     "old_document": STATE.texts[WALLET.policy_sha256],
                                     "document": one, "template": ""})
    state = applied(STATE, doc, "admin1", "admin2")
    wallet = WALLET
    own = replace(MOVE, outputs=(replace(OUT, destination_class=DestinationClass.OWN_WALLET,
                                         wallet_id="w_" + "7" * 16, category="seized"),))
    ctx = replace(CTX, policy_version=2)
    as_external = lambda policy: MOVE  # noqa: E731 - the destination is no wallet of ours now
    as_own = lambda policy: own  # noqa: E731
    v = E.judge(state, wallet, ctx, own, votes("cust1", ctx=ctx, movement=own), approved=False)
    assert v.outcome == E.SIGN  # one approver for an own-wallet move
    v = E.judge(state, wallet, ctx, own, votes("cust1", ctx=ctx, movement=own), approved=False,
                reclassify=as_external)
    assert v.outcome == E.WAIT and v.requirement.distinct_roles == 2, v
    v = E.judge(state, wallet, ctx, own, votes("cust1", "inv1", ctx=ctx, movement=own),
                approved=True, reclassify=as_external)
    assert v.outcome == E.SIGN  # the approvals over the sealed statement count
    v = E.judge(state, wallet, ctx, MOVE, votes("cust1", ctx=ctx), approved=False,
                reclassify=as_own)
    assert v.outcome == E.WAIT and v.requirement.distinct_roles == 2  # never lighter


def test_same_transaction_ignores_only_destination_classes() -> None:
    own = replace(MOVE, outputs=(replace(OUT, destination_class=DestinationClass.OWN_WALLET,
                                         wallet_id="w_x", category="seized"),))
    assert E.same_transaction(MOVE, own)
    assert not E.same_transaction(MOVE, replace(MOVE, fee=MOVE.fee + 1))
    assert not E.same_transaction(MOVE, replace(MOVE, outputs=(replace(OUT, amount=1),)))
    assert not E.same_transaction(MOVE, replace(MOVE, digests=(b"\x01" * 32,)))


def _transfer_row(**over: Any) -> TransferRecord:
    from signerd.core.movement_json import movement_to_json

    row = TransferRecord(
        id="t_1", wallet_id=WALLET.id, chain=Chain.ETHEREUM, state=TransferState.APPROVED,
        payload=b"p", movement=movement_to_json(MOVE), submitter="platform", policy_version=1,
        requirement="{}", expires_at=2_000_000_000.0, created_at=0.0, updated_at=0.0,
        replaces="", replaces_state="", replaces_fee_delta="0", legal_basis="",
        category_change="none", vetoed="[]", idempotency_key="")
    return replace(row, **over)


def test_the_sign_steps_safe_nonce_memo_answers_only_for_bytes_whose_seal_verified() -> None:
    """check_safe_nonce reads every signed transfer of a Safe wallet at each signature; what it
    read from a row whose seal verified is remembered by the row's id, seal and movement, and
    any change of those, or another audit key, is verified afresh (and refused)."""
    from signerd.core.movement_json import movement_to_json
    from signerd.services.sign_step import _sealed_safe_nonce

    key = coincurve.PrivateKey()
    pub = key.public_key.format()
    row = _transfer_row(id="t_" + "9e" * 10, state=TransferState.SIGNED)
    row = replace(row, seal=seal.encode(*_sign(key, seal.digest("transfer",
                                                                E.transfer_record(row)))))
    assert _sealed_safe_nonce(pub, row) == (False, 1, MOVE.digests)
    assert _sealed_safe_nonce(pub, row) == (False, 1, MOVE.digests)  # remembered
    for changed in (replace(row, movement=movement_to_json(replace(MOVE, nonce=2))),
                    replace(row, id="t_" + "9f" * 10), replace(row, seal="")):
        with pytest.raises(E.AuthorityViolation, match="does not carry signerd's seal"):
            _sealed_safe_nonce(pub, changed)
    with pytest.raises(E.AuthorityViolation):
        _sealed_safe_nonce(coincurve.PrivateKey().public_key.format(), row)


def test_a_transfer_row_stands_only_with_signerds_seal_over_it() -> None:
    key = coincurve.PrivateKey()
    pub = key.public_key.format()
    row = _transfer_row()
    row = replace(row, seal=seal.encode(*_sign(key, seal.digest("transfer",
                                                                E.transfer_record(row)))))
    E.check_transfer_seal(pub, row)
    own = replace(MOVE, outputs=(replace(OUT, destination_class=DestinationClass.OWN_WALLET),))
    from signerd.core.movement_json import movement_to_json

    for change in ({"movement": movement_to_json(own)}, {"submitter": "inv1"},
                   {"expires_at": 2_000_086_400.0}, {"payload": b"q"}, {"vetoed": "[]  "},
                   {"policy_version": 2}, {"seal": ""}, {"id": "t_2"}):
        changed = replace(row, **change)
        if "vetoed" in change:  # the same JSON spelled otherwise is the same record
            E.check_transfer_seal(pub, changed)
            continue
        with pytest.raises(E.AuthorityViolation, match="does not carry signerd's seal") as e:
            E.check_transfer_seal(pub, changed)
        assert e.value.kind == "transfer"
    with pytest.raises(E.AuthorityViolation):
        E.check_transfer_seal(coincurve.PrivateKey().public_key.format(), row)
