"""The chain of authority, pure: genesis, proposals, immediate acts and the fold that verifies
every ledger entry (signatures under the keys in force, the governance quorum, the links, and
signerd's seal of each entry after the genesis)."""
from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import coincurve
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

import pytest

from signerd.core import authority as AU
from signerd.core.approval import (SignedDecision, genesis_statement, proposal_statement,
                                   sign_statement)
from signerd.core.errors import AuthorityViolation, FailedPrecondition, InvalidArgument
from signerd.core.model import Decision, OperatorStatus
from signerd.core.operator_keys import generate, public_pem
from tests.support.authority import (AUDIT_KEY, DOC, GENESIS, GOV, KEYS, PIN, PINNED_AUDIT, ROLES,
                                     STATE, TWO_KEY, applied, approvals, entry, genesis_doc,
                                     proposal, register, sealer, signed_genesis)


def immediate(state: AU.AuthorityState, kind: str, body: dict[str, Any],
              key: coincurve.PrivateKey = AUDIT_KEY) -> AU.Entry:
    """An immediate entry as signerd makes it: its body sealed by the audit key (the HSM's,
    here a software key standing in for it; ``key`` for another), the entry sealed at its
    place by the audit key."""
    return entry(state, kind, AU.sealed(body, sealer(key)(AU.immediate_seal_kind(kind), body)))


# ------------------------------------------------------------------------------ genesis

def test_genesis_establishes_operators_governance_and_templates() -> None:
    assert STATE.seq == 1 and STATE.head == GENESIS.hash and STATE.genesis == PIN
    assert set(STATE.operators) == set(ROLES)
    assert STATE.operators["inv1"].roles == frozenset({"investigator"})
    assert STATE.templates["two-key"].version == 1
    assert STATE.texts[STATE.templates["two-key"].sha256] == TWO_KEY
    assert STATE.governance.requirement_for("operator.register").approvers == 2
    assert STATE.audit_public_key == PINNED_AUDIT


def test_a_genesis_other_than_the_pinned_one_is_refused() -> None:
    other = genesis_doc(created_at=1)
    with pytest.raises(AuthorityViolation, match="differs from the pinned genesis") as e:
        AU.start(signed_genesis(other), PIN)
    assert e.value.kind == "genesis"


def test_a_genesis_not_signed_by_every_initial_operator_is_refused() -> None:
    with pytest.raises(AuthorityViolation, match="every initial operator.*cust1"):
        AU.start(signed_genesis(DOC, [op for op in ROLES if op != "cust1"]), PIN)
    forged = dataclasses.replace(GENESIS, decisions=tuple(
        dataclasses.replace(d, signature=bytes(64)) if d.operator_id == "inv1" else d
        for d in GENESIS.decisions))
    forged = dataclasses.replace(forged, hash=AU.entry_hash(AU.ZERO, 1, AU.GENESIS, DOC,
                                                            forged.decisions))
    with pytest.raises(AuthorityViolation, match="inv1"):
        AU.start(forged, PIN)


@pytest.mark.parametrize("over,needle", [
    ({"governance": GOV.replace('roles = { admin = 2 }', 'roles = { admin = 9 }')},
     "unapprovable"),
    ({"templates": {"t": TWO_KEY.replace("investigator", "spy")}}, "names role 'spy'"),
    ({"templates": {"t": 'floor_waiver = "x"\n' + TWO_KEY}}, "floor_waiver"),
])
def test_a_genesis_that_could_not_govern_itself_is_refused(over: dict[str, Any],
                                                           needle: str) -> None:
    with pytest.raises((InvalidArgument, FailedPrecondition), match=needle):
        genesis_doc(**over)


# ------------------------------------------------------------------------------ proposals

def test_a_proposal_applies_only_with_the_governance_quorum() -> None:
    doc = register("inv9", ["investigator"])
    new = applied(STATE, doc, "admin1", "admin2")
    assert new.operators["inv9"].status is OperatorStatus.ACTIVE and new.seq == 2
    for ops in (("admin1",), ("admin1", "inv1"), ()):
        with pytest.raises(AuthorityViolation, match="do not meet the governance quorum") as e:
            applied(STATE, doc, *ops)
        assert e.value.kind == "quorum"


def test_the_submitter_never_counts() -> None:
    doc = register("inv8", ["investigator"]) | {"submitter": "admin1"}
    with pytest.raises(AuthorityViolation, match="quorum"):
        applied(STATE, doc, "admin1", "admin2")
    assert "inv8" in applied(STATE, doc, "admin2", "admin3").operators


def test_a_signature_over_another_statement_is_a_violation() -> None:
    doc = register("inv7", ["investigator"])
    other = register("inv6", ["investigator"])
    forged = approvals(other, "admin1") + approvals(doc, "admin2")
    forged = [dataclasses.replace(d, operator_id="admin1") if d.operator_id == "admin1" else d
              for d in forged]
    with pytest.raises(AuthorityViolation, match="admin1 does not verify") as e:
        AU.advance(STATE, entry(STATE, AU.PROPOSAL, doc, forged))
    assert e.value.kind == "approval"
    stranger = [SignedDecision("mallory", Decision.APPROVE, bytes(64))]
    with pytest.raises(AuthorityViolation, match="mallory is not an operator"):
        AU.advance(STATE, entry(STATE, AU.PROPOSAL, doc, approvals(doc, "admin1") + stranger))


def test_one_key_serves_one_identity_forever() -> None:
    with pytest.raises(InvalidArgument, match="already registered to operator cust1"):
        AU.check_proposal(STATE, register("cust2", ["custody_officer"], KEYS["cust1"]))
    doc = register("tmp1", ["investigator"])
    st = applied(STATE, doc, "admin1", "admin2")
    revoke = proposal("operator.revoke", {"operator_id": "tmp1", "reason": "left"})
    st = applied(st, revoke, "admin1", "admin2")
    again = proposal("operator.register", {**doc["change"], "operator_id": "tmp2"})
    with pytest.raises(InvalidArgument, match="already registered to operator tmp1"):
        AU.check_proposal(st, again)


@pytest.mark.parametrize("change,needle", [
    ({"operator_id": "Bad Id", "roles": ["investigator"]}, "operator id"),
    ({"operator_id": "inv5", "roles": ["wizard"]}, "not a role of the governance policy"),
    ({"operator_id": "inv5", "roles": []}, "at least one role"),
    ({"operator_id": "inv1", "roles": ["investigator"]}, "already registered"),
])
def test_register_checks(change: dict[str, Any], needle: str) -> None:
    doc = proposal("operator.register", {"public_key_pem": public_pem(generate()).decode(),
                                         **change})
    with pytest.raises((InvalidArgument, FailedPrecondition), match=needle):
        AU.check_proposal(STATE, doc)


def test_policies_name_only_registered_operators_and_known_roles() -> None:
    for text, needle in ((TWO_KEY + 'group = ["inv1", "cust1", "ghost"]\n',
                          "operator 'ghost'"),
                         (TWO_KEY.replace("investigator", "sheriff"), "role 'sheriff'")):
        doc = proposal("wallet.policy", {"wallet_id": "w_" + "1" * 16, "base_version": 1,
                                         "old_document": TWO_KEY, "document": text,
                                         "template": ""})
        with pytest.raises(InvalidArgument, match=needle):
            AU.check_proposal(STATE, doc)


def test_wallet_policy_versions_and_the_floor_waiver() -> None:
    wid = "w_" + "2" * 16
    waived = 'floor_waiver = "court order 12/26 for this sweep wallet"\n' + TWO_KEY
    doc = proposal("wallet.policy", {"wallet_id": wid, "base_version": 1,
                                     "old_document": TWO_KEY, "document": waived,
                                     "template": ""})
    st = applied(STATE, doc, "admin1", "admin2")
    assert st.wallet_policy_version(wid) == 2
    assert AU.wallet_policy_text(st, wid, "", 2) == (waived, True)
    stale = proposal("wallet.policy", {**doc["change"], "document": TWO_KEY})
    with pytest.raises(FailedPrecondition, match="at policy version 2, not 1"):
        AU.check_proposal(st, stale)
    tpl = proposal("template.set", {"name": "lax", "base_sha256": "", "old_document": "",
                                    "document": waived})
    with pytest.raises(InvalidArgument, match="never in a template"):
        AU.check_proposal(STATE, tpl)


def test_governance_cannot_lock_itself_out() -> None:
    st = applied(STATE, proposal("operator.revoke", {"operator_id": "admin3", "reason": ""}),
                 "admin1", "admin2")
    with pytest.raises(FailedPrecondition, match="unapprovable"):
        AU.check_proposal(st, proposal("operator.revoke", {"operator_id": "admin2",
                                                           "reason": ""}))
    three = GOV.replace("approvers = 2", "approvers = 3").replace("admin = 2", "admin = 3")
    doc = proposal("governance.set", {"base_sha256": st.governance_sha256,
                                      "old_document": GOV, "document": three})
    with pytest.raises(FailedPrecondition, match="unapprovable"):
        AU.check_proposal(st, doc)


def test_freeze_is_immediate_and_unfreeze_needs_the_quorum() -> None:
    wid = "w_" + "3" * 16
    st = AU.advance(STATE, immediate(STATE, AU.FREEZE, AU.freeze_body(STATE, wid, "ORD 1/26",
                                                                      "admin", 1)))
    assert st.frozen == {wid: "ORD 1/26"}
    doc = proposal("wallet.unfreeze", {"wallet_id": wid, "order_ref": "ORD 2/26",
                                       "freeze_order": "ORD 1/26"})
    with pytest.raises(AuthorityViolation):
        applied(st, doc, "admin1")
    assert wid not in applied(st, doc, "admin1", "admin2").frozen
    same = proposal("wallet.unfreeze", {**doc["change"], "order_ref": "ORD 1/26"})
    with pytest.raises(InvalidArgument, match="its own court order"):
        AU.check_proposal(st, same)
    with pytest.raises(AuthorityViolation, match="carries no approvals"):
        AU.advance(st, entry(st, AU.FREEZE, AU.freeze_body(st, wid, "x", "a", 1),
                             approvals(doc, "admin1")))


def test_suspension_is_immediate_and_reinstatement_needs_the_quorum() -> None:
    st = AU.advance(STATE, immediate(STATE, AU.SUSPEND,
                                     AU.suspend_body(STATE, "inv1", "inquiry", "admin", 1)))
    assert st.operators["inv1"].status is OperatorStatus.SUSPENDED
    assert not st.operator_views()["inv1"].active
    back = applied(st, proposal("operator.reinstate", {"operator_id": "inv1", "reason": ""}),
                   "admin1", "admin2")
    assert back.operators["inv1"].status is OperatorStatus.ACTIVE


def test_a_proposal_applies_once() -> None:
    doc = register("inv4", ["investigator"])
    st = applied(STATE, doc, "admin1", "admin2")
    with pytest.raises(FailedPrecondition, match="applied already"):
        AU.check_proposal(st, doc)


# ------------------------------------------------------------------------------ the fold

def chain(*docs: dict[str, Any]) -> tuple[list[AU.Entry], AU.AuthorityState]:
    entries = [GENESIS]
    st = STATE
    for doc in docs:
        e = entry(st, AU.PROPOSAL, doc, approvals(doc, "admin1", "admin2"))
        st = AU.advance(st, e)
        entries.append(e)
    return entries, st


def test_fold_replays_to_the_same_state_and_catches_any_edit() -> None:
    entries, st = chain(register("a1", ["investigator"]), register("a2", ["judge"]))
    assert AU.fold(None, entries, pinned=PIN) == st
    edited = dataclasses.replace(entries[1], body={**entries[1].body, "submitter": "x"})
    with pytest.raises(AuthorityViolation, match="hash does not match"):
        AU.fold(None, [entries[0], edited, entries[2]], pinned=PIN)
    with pytest.raises(AuthorityViolation, match="does not follow"):
        AU.fold(None, [entries[0], entries[2]], pinned=PIN)
    with pytest.raises(AuthorityViolation, match="does not start with a genesis"):
        AU.fold(None, entries[1:], pinned=PIN)
    # A consistent rewrite (hashes recomputed) carries no seal of signerd's for its place ...
    doc = entries[2].body
    fakes = [SignedDecision("admin1", Decision.APPROVE, bytes(64)),
             SignedDecision("admin2", Decision.APPROVE, bytes(64))]
    fake = AU.make_entry(1, entries[0].hash, AU.PROPOSAL, doc, fakes)
    with pytest.raises(AuthorityViolation, match="seal does not verify") as e:
        AU.fold(None, [entries[0], fake], pinned=PIN)
    assert e.value.kind == "ledger"
    # ... and even sealed it still needs quorum signatures it cannot forge.
    with pytest.raises(AuthorityViolation, match="admin1 does not verify") as e:
        AU.fold(None, [entries[0], entry(STATE, AU.PROPOSAL, doc, fakes)], pinned=PIN)
    assert e.value.kind == "approval"


def test_a_change_that_does_not_apply_is_a_violation_at_replay() -> None:
    doc = register("inv1", ["investigator"])  # inv1 exists already
    e = entry(STATE, AU.PROPOSAL, doc, approvals(doc, "admin1", "admin2"))
    with pytest.raises(AuthorityViolation, match="does not apply"):
        AU.fold(None, [GENESIS, e], pinned=PIN)


def test_render_shows_old_and_new_policy_side_by_side() -> None:
    new = TWO_KEY.replace("approvers = 2", "approvers = 3")
    doc = proposal("wallet.policy", {"wallet_id": "w_" + "4" * 16, "base_version": 1,
                                     "old_document": TWO_KEY, "document": new,
                                     "template": ""})
    text = AU.render_proposal(doc, Decision.APPROVE, requirement_text="2 approvers")
    assert "version 1 -> 2" in text and "needs:           2 approvers" in text
    row = next(line for line in text.splitlines() if "approvers = 2" in line)
    assert "*" in row and "approvers = 3" in row  # the changed line, old beside new
    assert any("|" in line and 'name = "two-key"' in line for line in text.splitlines())


def test_suspending_the_last_admins_is_refused() -> None:
    """An immediate suspension may not leave the governance unable to act, not even to
    reinstate (found by the governance property test's author)."""
    st = applied(STATE, proposal("operator.revoke", {"operator_id": "admin3", "reason": ""}),
                 "admin1", "admin2")
    entry = immediate(st, AU.SUSPEND, AU.suspend_body(st, "admin2", "key lost", "admin", 1))
    with pytest.raises(FailedPrecondition, match="unapprovable"):
        AU.advance(st, entry)
    st3 = AU.advance(STATE, immediate(STATE, AU.SUSPEND,
                                      AU.suspend_body(STATE, "admin3", "key lost", "admin", 1)))
    assert st3.operators["admin3"].status is OperatorStatus.SUSPENDED  # two admins remain


def test_immediate_entries_need_signerds_seal_at_their_place() -> None:
    """A freeze or a suspension carries no operator's signature: a store writer could forge a
    suspension (taking a vote away) if signerd's seal, bound to the head it follows, were not
    required."""
    body = AU.suspend_body(STATE, "inv1", "inquiry", "admin", 1)
    with pytest.raises(AuthorityViolation, match="does not carry signerd's seal"):
        AU.advance(STATE, entry(STATE, AU.SUSPEND, AU.sealed(body, "00" * 64)))
    with pytest.raises(AuthorityViolation, match="does not carry signerd's seal"):
        AU.advance(STATE, immediate(STATE, AU.SUSPEND, body, coincurve.PrivateKey()))
    st = applied(STATE, register("inv7x", ["investigator"]), "admin1", "admin2")
    replayed = entry(st, AU.SUSPEND, immediate(STATE, AU.SUSPEND, body).body)
    with pytest.raises(AuthorityViolation, match="replayed or moved"):
        AU.advance(st, replayed)
    # The entry's own seal is required too: a correctly sealed body is not enough.
    with pytest.raises(AuthorityViolation, match="seal does not verify"):
        AU.advance(STATE, AU.next_entry(STATE, AU.SUSPEND, immediate(STATE, AU.SUSPEND,
                                                                     body).body))


def test_every_entry_after_the_genesis_needs_signerds_seal_at_its_place() -> None:
    """A quorum alone does not make a ledger entry: signerd's seal, over the entry's seq, the
    hash it follows and its own hash, is required too; a seal by another key, or one made for
    another place, does not verify."""
    doc = register("inv3s", ["investigator"])
    votes = approvals(doc, "admin1", "admin2")
    unsealed = AU.next_entry(STATE, AU.PROPOSAL, doc, votes)
    assert AU.check_entry(STATE, unsealed).operators["inv3s"]  # everything else checks out
    with pytest.raises(AuthorityViolation, match=r"entry 2 \(proposal p_\w+\): signerd's seal "
                       "does not verify for this entry at this place") as e:
        AU.advance(STATE, unsealed)
    assert e.value.kind == "ledger"
    with pytest.raises(AuthorityViolation, match="seal does not verify"):
        AU.advance(STATE, entry(STATE, AU.PROPOSAL, doc, votes, key=coincurve.PrivateKey()))
    assert AU.advance(STATE, entry(STATE, AU.PROPOSAL, doc, votes)).operators["inv3s"]
    # The same proposal with the same approvals at a later place, carrying the seal it had at
    # the first: its hash (which binds seq and predecessor) differs, and the seal with it.
    first = entry(STATE, AU.PROPOSAL, doc, votes)
    other = register("inv3t", ["investigator"])
    st = applied(STATE, other, "admin1", "admin2")
    moved = dataclasses.replace(AU.next_entry(st, AU.PROPOSAL, doc, votes), seal=first.seal)
    assert AU.check_entry(st, moved).operators["inv3s"]
    with pytest.raises(AuthorityViolation, match="seal does not verify"):
        AU.advance(st, moved)
    # The genesis is not sealed: it is pinned and signed by every initial operator.
    assert GENESIS.seal == "" and AU.fold(None, [GENESIS], pinned=PIN) == STATE


def test_a_seal_alone_never_suffices() -> None:
    """signerd's own key cannot invent a governance act: a sealed proposal entry still needs
    the governance quorum, under the keys in force."""
    doc = register("inv3u", ["investigator"])
    for votes in ((), approvals(doc, "admin1"), approvals(doc, "admin1", "inv1")):
        with pytest.raises(AuthorityViolation, match="do not meet the governance quorum") as e:
            AU.advance(STATE, entry(STATE, AU.PROPOSAL, doc, votes))
        assert e.value.kind == "quorum"
    made_up = [SignedDecision(op, Decision.APPROVE, bytes(64)) for op in ("admin1", "admin2")]
    with pytest.raises(AuthorityViolation, match="does not verify") as e:
        AU.advance(STATE, entry(STATE, AU.PROPOSAL, doc, made_up))
    assert e.value.kind == "approval"


def test_a_proposal_signerd_refused_cannot_be_appended_later() -> None:
    """The finding: a reinstatement that gathered its quorum but ended FAILED (the operator was
    reinstated by another proposal meanwhile) would apply again after a later suspension. A
    store writer who appends it, hash-chained, with its genuine approvals, gets a violation."""
    st = AU.advance(STATE, immediate(STATE, AU.SUSPEND,
                                     AU.suspend_body(STATE, "cust1", "inquiry", "admin", 1)))
    stale = proposal("operator.reinstate", {"operator_id": "cust1", "reason": "cleared"})
    st = applied(st, proposal("operator.reinstate", {"operator_id": "cust1", "reason": "ok"}),
                 "admin1", "admin2")
    with pytest.raises(FailedPrecondition, match="not suspended"):
        AU.check_proposal(st, stale)  # signerd ends it FAILED
    st = AU.advance(st, immediate(st, AU.SUSPEND,
                                  AU.suspend_body(st, "cust1", "key compromised", "admin", 2)))
    forged = AU.next_entry(st, AU.PROPOSAL, stale, approvals(stale, "admin1", "admin2"))
    assert AU.check_entry(st, forged).operators["cust1"].status is OperatorStatus.ACTIVE
    with pytest.raises(AuthorityViolation, match="seal does not verify"):
        AU.advance(st, forged)
    assert st.operators["cust1"].status is OperatorStatus.SUSPENDED


def test_proposal_documents_are_sealed_by_content() -> None:
    doc = register("inv3v", ["investigator"])
    stamp = sealer()(AU.PROPOSAL_SEAL, doc)
    assert AU.proposal_sealed(STATE, doc, stamp)
    assert not AU.proposal_sealed(STATE, {**doc, "submitter": "admin1"}, stamp)
    assert not AU.proposal_sealed(STATE, doc, sealer(coincurve.PrivateKey())(AU.PROPOSAL_SEAL,
                                                                             doc))
    assert not AU.proposal_sealed(STATE, doc, "")
    # A seal of the same bytes for another purpose (an entry, a wallet) is not a proposal's.
    assert not AU.proposal_sealed(STATE, doc, sealer()("wallet", doc))


def test_a_veto_holder_is_not_suspended_at_once() -> None:
    """Suspending the only judge would take the judge's veto away from every policy that has
    one: not an act that only tightens."""
    vetoing = TWO_KEY + 'veto = ["judge"]\n'
    doc = proposal("template.set", {"name": "vetoed", "base_sha256": "", "old_document": "",
                                    "document": vetoing})
    st = applied(STATE, doc, "admin1", "admin2")
    st = applied(st, register("judge1", ["judge"]), "admin1", "admin2")
    with pytest.raises(FailedPrecondition, match="veto role judge"):
        AU.advance(st, immediate(st, AU.SUSPEND, AU.suspend_body(st, "judge1", "", "admin", 1)))


# --------------------------------------------------------------------------- token registry

USDT = {"chain_id": 1, "address": "0xdAC17F958D2ee523a2206206994597C13D831ec7",
        "standard": "erc20", "symbol": "USDT", "decimals": 6}


def test_a_genesis_without_tokens_is_as_before_and_one_may_carry_them() -> None:
    assert "tokens" not in DOC and STATE.tokens == {}
    assert genesis_doc(tokens=()) == DOC  # the same document, so the same pinned digest
    doc = genesis_doc(tokens=[dict(USDT, address=USDT["address"].lower())])
    assert doc["tokens"] == [USDT]  # checksummed
    state = AU.start(signed_genesis(doc), AU.genesis_digest(doc))
    assert [(t.chain_id, t.address, t.symbol, t.decimals) for t in state.tokens.values()] == [
        (1, USDT["address"], "USDT", 6)]


def test_genesis_registers_collections() -> None:
    """ERC-721 and ERC-1155 entries in a genesis, in the same entry format."""
    art = dict(USDT, address="0x" + "a1" * 20, standard="erc721", symbol="ART", decimals=0)
    items = dict(USDT, address="0x" + "b2" * 20, standard="erc1155", symbol="ITEMS",
                 decimals=0)
    doc = genesis_doc(tokens=[art, items])
    state = AU.start(signed_genesis(doc), AU.genesis_digest(doc))
    assert sorted((t.standard, t.symbol) for t in state.tokens.values()) == [
        ("erc1155", "ITEMS"), ("erc721", "ART")]


@pytest.mark.parametrize(("tokens", "why"), [
    ([dict(USDT, standard="erc777")], "standard"),
    ([dict(USDT, standard="erc721")], "indivisible"),
    ([dict(USDT, decimals=37)], "decimals"),
    ([dict(USDT, symbol="US DT")], "symbol"),
    ([dict(USDT, chain_id=0)], "chain_id"),
    ([dict(USDT, address="0x12")], "address"),
    ([dict(USDT, extra=1)], "exactly the fields"),
    ([USDT, dict(USDT, address="0x" + "11" * 20, symbol="usdt")], "already the symbol"),
])
def test_genesis_tokens_are_checked(tokens: list[dict[str, Any]], why: str) -> None:
    with pytest.raises(InvalidArgument, match=why):
        genesis_doc(tokens=tokens)


def test_governance_policy_without_a_rule_for_token_set_still_parses() -> None:
    """A governance policy written before token.set existed, naming each older kind, stays
    valid; a token.set proposal then needs every rule's demands at once."""
    old_kinds = [k for k in AU.KINDS if k not in AU.LATER_KINDS]
    text = (GOV.replace('kinds = ["*"]', f"kinds = {old_kinds!r}".replace("'", '"'))
            + '[[rule]]\nname = "judge"\nkinds = ["wallet.unfreeze"]\napprovers = 1\n'
              'roles = { judge = 1 }\n')
    gov = AU.parse_governance(text)
    assert not gov.names("token.set")
    req = gov.requirement_for("token.set")
    assert dict(req.roles) == {"admin": 2, "judge": 1} and req.approvers == 3


def token_set(token: dict[str, Any], old: dict[str, Any] | None = None) -> dict[str, Any]:
    return proposal("token.set", {"token": token, "old_token": old or {}})


def test_token_set_adds_and_changes_an_entry_through_the_governance_quorum() -> None:
    doc = token_set(USDT)
    assert AU.summary(doc) == ("register ERC20 token USDT (6 decimals) at "
                               f"{USDT['address']} on chain 1")
    text = AU.render_proposal(doc, Decision.APPROVE)
    assert "symbol:          USDT (new entry)" in text and "decimals:        6" in text
    with pytest.raises(AuthorityViolation, match="quorum"):
        applied(STATE, doc, "admin1")
    state = applied(STATE, doc, "admin1", "admin2")
    (token,) = state.tokens.values()
    assert token.key == (1, USDT["address"].lower()) and token.symbol == "USDT"
    fixed = dict(USDT, symbol="USDT0", decimals=18)
    with pytest.raises(FailedPrecondition, match="changed since this proposal"):
        AU.check_proposal(state, token_set(fixed))  # old_token must be the entry in force
    change = token_set(fixed, USDT)
    assert AU.summary(change).startswith("change token USDT (6 decimals) to ERC20 token USDT0")
    state = applied(state, change, "admin1", "admin3")
    assert [t.symbol for t in state.tokens.values()] == ["USDT0"]
    with pytest.raises(InvalidArgument, match="with these fields already"):
        AU.check_proposal(state, token_set(fixed, fixed))


@pytest.mark.parametrize(("token", "why"), [
    (dict(USDT, address=USDT["address"].lower()), "EIP-55 checksum form"),
    (dict(USDT, decimals="6"), "decimals"),
    (dict(USDT, symbol="U\u0405DT"), "symbol"),
    ({"chain_id": 1}, "exactly the fields"),
])
def test_token_set_refuses_a_malformed_entry(token: dict[str, Any], why: str) -> None:
    with pytest.raises(InvalidArgument, match=why):
        AU.check_proposal(STATE, token_set(token))


def test_token_symbols_are_unique_per_chain() -> None:
    state = applied(STATE, token_set(USDT), "admin1", "admin2")
    fake = dict(USDT, address="0x" + "11" * 20)
    with pytest.raises(InvalidArgument, match="symbol USDT is already the symbol"):
        AU.check_proposal(state, token_set(fake))
    AU.check_proposal(state, token_set(dict(fake, chain_id=10)))  # another chain: its own


# ------------------------------------------------------------------------------ key types and
# keys held on tokens

from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature  # noqa: E402

from signerd.core import operator_keys  # noqa: E402
from signerd.core.operator_keys import P256_N, KeyType  # noqa: E402

HW_GOV = GOV.replace('roles = ["investigator", "custody_officer", "admin", "judge"]',
                     'roles = ["investigator", "custody_officer", "admin", "judge"]\n'
                     'hardware_keys = ["custody_officer"]')


def test_a_p256_operator_is_registered_and_its_decisions_count() -> None:
    key = operator_keys.generate(KeyType.P256)
    st = applied(STATE, register("cust7", ["custody_officer"], key), "admin1", "admin2")
    rec = st.operators["cust7"]
    assert rec.key_type is KeyType.P256 and rec.token_held == ""
    assert STATE.operators["inv1"].key_type is KeyType.ED25519
    doc = proposal("operator.roles", {"operator_id": "inv1", "old_roles": ["investigator"],
                                      "roles": ["investigator", "judge"]})
    votes = [SignedDecision("cust7", Decision.APPROVE,
                            sign_statement(key, proposal_statement(doc, Decision.APPROVE)))]
    q, counted, bad = AU.proposal_quorum(st, doc, approvals(doc, "admin1") + votes)
    assert not bad and [v.operator_id for v in counted] == ["admin1", "cust7"]


def test_one_operator_counts_once_however_many_signatures_they_made() -> None:
    """ECDSA signatures are randomised, so one P-256 operator can make many valid signatures of
    one decision; decisions are counted per operator, never per signature. The high-S twin of a
    signature is no signature at all."""
    key = operator_keys.generate(KeyType.P256)
    st = applied(STATE, register("admin9", ["admin"], key), "admin1", "admin2")
    doc = register("inv5", ["investigator"])
    statement = proposal_statement(doc, Decision.APPROVE)
    first, second = sign_statement(key, statement), sign_statement(key, statement)
    assert first != second
    twice = [SignedDecision("admin9", Decision.APPROVE, first),
             SignedDecision("admin9", Decision.APPROVE, second)]
    q, votes, bad = AU.proposal_quorum(st, doc, twice)
    assert not bad and not q.met and q.counted == ("admin9",)
    with pytest.raises(AuthorityViolation, match="do not meet the governance quorum"):
        AU.advance(st, entry(st, AU.PROPOSAL, doc, twice))
    r, s = decode_dss_signature(first)
    high = SignedDecision("admin9", Decision.APPROVE, encode_dss_signature(r, P256_N - s))
    with pytest.raises(AuthorityViolation, match="admin9 does not verify"):
        AU.advance(st, entry(st, AU.PROPOSAL, doc, approvals(doc, "admin1") + [high]))


def test_a_p256_key_in_another_encoding_is_the_same_identity() -> None:
    """Another operator's P-256 key with its point compressed is the same key: refused by the
    canonical SubjectPublicKeyInfo digest (one key, one identity)."""
    import base64

    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = operator_keys.generate(KeyType.P256)
    st = applied(STATE, register("cust6", ["custody_officer"], key), "admin1", "admin2")
    pub = key.public_key()
    der = pub.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    inner = der[2:-68] + b"\x03\x22\x00" + pub.public_bytes(Encoding.X962,
                                                            PublicFormat.CompressedPoint)
    compressed = (b"-----BEGIN PUBLIC KEY-----\n"
                  + base64.encodebytes(bytes([0x30, len(inner)]) + inner)
                  + b"-----END PUBLIC KEY-----\n").decode()
    assert compressed != st.operators["cust6"].public_key_pem
    again = proposal("operator.register", {"operator_id": "mallory", "roles": ["admin"],
                                           "public_key_pem": compressed})
    with pytest.raises(InvalidArgument, match="already registered to operator cust6"):
        AU.check_proposal(st, again)


def hw_state(**cust1: Any) -> AU.AuthorityState:
    """A genesis whose governance requires token-held keys of custody officers; ``cust1``'s
    genesis entry gets the extra fields given."""
    doc = AU.make_genesis(
        instance_id="signerd-test", created_at=1_700_000_000,
        operators=[{"id": op, "roles": r, "public_key_pem": public_pem(KEYS[op]).decode(),
                    **(cust1 if op == "cust1" else {})} for op, r in ROLES.items()],
        governance=HW_GOV, templates={"two-key": TWO_KEY}, audit_key_id="aa" * 16,
        audit_public_key=PINNED_AUDIT)
    return AU.start(signed_genesis(doc), AU.genesis_digest(doc))


def test_hardware_keys_in_the_genesis() -> None:
    with pytest.raises(FailedPrecondition, match="requires a key held on a token for role "
                                                 "custody_officer"):
        hw_state()
    st = hw_state(token_held="YubiKey 5 NFC serial 1, PIV slot 9c")
    assert st.operators["cust1"].token_held == "YubiKey 5 NFC serial 1, PIV slot 9c"
    assert st.governance.hardware_keys == frozenset({"custody_officer"})
    # a genesis without the declaration has the same document as before it existed
    assert "token_held" not in DOC["operators"][0]


def test_a_role_that_needs_a_token_held_key_is_given_only_with_the_declaration() -> None:
    st = hw_state(token_held="card 1")
    bare = register("cust2", ["custody_officer"], operator_keys.generate(KeyType.P256))
    with pytest.raises(FailedPrecondition, match="does not declare one"):
        AU.check_proposal(st, bare)
    with pytest.raises(AuthorityViolation, match="does not apply"):
        AU.fold(st, [entry(st, AU.PROPOSAL, bare, approvals(bare, "admin1", "admin2"))],
                pinned=st.genesis)
    declared = proposal("operator.register", {**bare["change"], "operator_id": "cust3",
                                              "token_held": "SoftHSM card serial 42"})
    st2 = applied(st, declared, "admin1", "admin2")
    assert st2.operators["cust3"].token_held == "SoftHSM card serial 42"
    assert "key held on a token" in AU.summary(declared)
    shown = AU.render_proposal(declared, Decision.APPROVE)
    assert "key type:        P-256" in shown
    assert "key held on:     SoftHSM card serial 42 (declared by the operator" in shown
    # an investigator registered with a file key cannot be made a custody officer later
    st3 = applied(st2, register("inv4", ["investigator"]), "admin1", "admin2")
    grant = proposal("operator.roles", {"operator_id": "inv4", "old_roles": ["investigator"],
                                        "roles": ["custody_officer", "investigator"]})
    with pytest.raises(FailedPrecondition, match="operator inv4: the governance policy "
                                                 "requires a key held on a token"):
        AU.check_proposal(st3, grant)
    for bad in ("", "   ", "x" * 201, "card\nslot 9c", 7):
        doc = proposal("operator.register", {**bare["change"], "operator_id": "cust4",
                                             "token_held": bad})
        with pytest.raises(InvalidArgument, match="token_held"):
            AU.check_proposal(st, doc)


def test_a_governance_change_cannot_require_token_keys_of_operators_without_them() -> None:
    change = {"base_sha256": STATE.governance_sha256, "old_document": GOV,
              "document": HW_GOV}
    with pytest.raises(FailedPrecondition, match="operator cust1: the governance policy "
                                                 "requires a key held on a token"):
        AU.check_proposal(STATE, proposal("governance.set", change))
    with pytest.raises(InvalidArgument, match="hardware_keys.*'spy'"):
        AU.parse_governance(GOV.replace('expiry = "72h"', 'expiry = "72h"\nhardware_keys = ["spy"]'))
