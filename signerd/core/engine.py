"""The approval engine for transfers: from an authority state and a decoded transaction to a
verdict (pure: no I/O, no clock, no HSM).

The same functions decide at submission (what a transfer needs), on every decision (whether
its quorum is met) and in the sign step immediately before the HSM signs (whether what the
store says still holds): the policy text in force comes from the authority ledger, the floor
is applied, every stored decision is verified over the statement rebuilt from the transfer and
its payload under the operator's key in the ledger, and the verified votes are counted.

A verdict is one of: sign (a valid quorum), wait (no quorum yet), lost (the quorum the approvals
once met no longer holds because an approver was suspended or revoked, or the policy tightened:
the transfer waits for approvals again), denied (the wallet's policy in force, or its destinations
as the ledger now classifies them, no longer allow the transfer at all: it ends) and violation
(something counted does not trace to the genesis: a decision whose signature does not verify, an
operator the ledger does not know, a transfer marked approved that never met its quorum, or a
transfer row whose seal does not verify).

A transfer's row is sealed by signerd at submission (``transfer_record``: the payload's hash,
the decoded movement with each output's destination class as classified then, the submitter,
the policy version, the window and everything else the approval statement binds). Approvals
sign the statement of that sealed movement, so a destination allowlisted or a wallet of ours
created while the transfer waits does not void them; what the destinations are *now* counts
too: the transfer needs the strictest of what the policy demands of the movement as sealed and
as classified again from the ledger (``judge``'s ``reclassify``).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import reduce
from typing import Any

from . import approval as A
from . import authority as AU
from . import policy as P
from . import seal as SEAL
from .errors import AuthorityViolation, InvalidArgument, PolicyDenied
from .legal_basis import FORM as LEGAL_FORM
from .model import DestinationClass, Movement, Wallet
from .records import TransferRecord


def policy_of(state: AU.AuthorityState, wallet: Wallet, version: int) -> tuple[P.Policy, bool]:
    """A wallet's policy ``version`` from the ledger and whether it waives the floor."""
    text, waived = AU.wallet_policy_text(state, wallet.id, wallet.policy_sha256, version)
    return P.parse_policy(text), waived


def requirement_of(policy: P.Policy, waived: bool, movement: Movement,
                   category_change: str) -> P.Requirement:
    """What ``policy`` demands of ``movement``, never below the floor."""
    return P.with_floor(policy.requirement_for(movement, category_change=category_change),
                        movement, waived=waived)


Reclassify = Callable[[P.Policy], Movement]


def effective_requirement(state: AU.AuthorityState, wallet: Wallet, movement: Movement,
                          category_change: str, bound_version: int,
                          reclassify: Reclassify | None = None) -> P.Requirement:
    """What a transfer needs now: the demands of the policy version its statement binds on
    ``movement`` (as sealed at submission), merged with those of the wallet's current policy,
    and, with ``reclassify`` (the movement's outputs classified again from the ledger against a
    policy's allowlist), with what each of them demands of the destinations as they are now. A
    policy change or a new destination class tightens a live transfer, never loosens it; where
    the policy in force, or the bound one on today's destinations, allows the transfer no more,
    PolicyDenied says why (the transfer ends: ``judge`` says DENIED)."""
    current = state.wallet_policy_version(wallet.id)
    policy, waived = policy_of(state, wallet, bound_version)
    reqs = [requirement_of(policy, waived, movement, category_change)]
    if reclassify is not None:
        fresh = reclassify(policy)
        if fresh != movement:
            reqs.append(_denied_by(bound_version, requirement_of, policy, waived, fresh,
                                   category_change))
    if current != bound_version:
        policy, waived = policy_of(state, wallet, current)
        fresh = reclassify(policy) if reclassify is not None else movement
        reqs.append(_denied_by(current, requirement_of, policy, waived, fresh, category_change))
    return reduce(P.merge, reqs)


def _denied_by(version: int, fn: Callable[..., P.Requirement], *args: Any) -> P.Requirement:
    try:
        return fn(*args)
    except PolicyDenied as e:
        raise PolicyDenied(f"the wallet's policy version {version} no longer allows this "
                           f"transfer: {e.message}") from None


def same_transaction(sealed: Movement, fresh: Movement) -> bool:
    """Whether ``fresh`` (decoded again from the payload and classified now) is the sealed
    movement but for the destination classes of its outputs (which the ledger may have
    changed since submission: a destination allowlisted, a wallet of ours created)."""
    def bare(m: Movement) -> Movement:
        return replace(m, outputs=tuple(replace(o, destination_class=DestinationClass.EXTERNAL,
                                                wallet_id="", category="")
                                        for o in m.outputs))
    return bare(sealed) == bare(fresh)


CATEGORY_MOVES = {("seized", "confiscated"): "seized_to_confiscated",
                  ("confiscated", "strategic"): "confiscated_to_strategic"}


def check_category_change(wallet: Wallet, movement: Movement, change: str,
                          legal_basis: str) -> None:
    """Categories never mix: an output to a wallet of this signerd of another category must be
    a declared category movement that fits both categories, with a legal basis."""
    src = wallet.category.value
    for o in movement.external_outputs():
        dst = o.category
        if not dst or dst == src:
            continue
        expected = CATEGORY_MOVES.get((src, dst))
        if expected is None:
            raise PolicyDenied(f"moving {src} assets into {dst} wallet {o.wallet_id} "
                               f"({o.address}) is not a recognised category movement")
        if change != expected:
            raise PolicyDenied(f"output to {dst} wallet {o.wallet_id} ({o.address}) moves {src} "
                               f"assets into another category: declare category_change = "
                               f"{expected}")
    if change in ("seized_to_confiscated", "confiscated_to_strategic"):
        want_src, want_dst = change.split("_to_")
        dests = {o.category for o in movement.external_outputs()}
        if src != want_src or want_dst not in dests:
            raise PolicyDenied(f"category change {change} needs a {want_src} source wallet and "
                               f"an output to a {want_dst} wallet of this signerd; this "
                               f"transfer goes from a {src} wallet to "
                               f"{', '.join(sorted(d or 'outside' for d in dests)) or 'nowhere'}")
    if change == "seized_to_returned" and src != "seized":
        raise PolicyDenied("only seized assets are returned to their owner")
    if change != "none" and not legal_basis.strip():
        raise PolicyDenied(
            f"category change {change} needs a legal basis (the court decision: "
            f"{LEGAL_FORM})")


def transaction_key(movement: Movement) -> str:
    """What identifies a transaction for the record of a veto: SHA-256 of the digests it would
    have signed, in order (hex). Not the payload's hash: the same transaction has many payloads
    (JSON spacing and key order, a PSBT in base64 or binary, with or without optional fields),
    and every one of them signs these digests."""
    return hashlib.sha256(b"".join(movement.digests)).hexdigest()


def with_vetoes(requirement: P.Requirement, vetoed: Iterable[tuple[str, str]]
                ) -> P.Requirement:
    """``requirement`` and, for each role that vetoed the same transaction before, an approval
    by that role (a role minimum of at least one)."""
    roles = {role for role, _ in vetoed}
    if not roles:
        return requirement
    return P.merge(requirement, P.Requirement(approvers=1, roles=tuple((r, 1) for r in roles),
                                              expiry=requirement.expiry))


def vetoes_of(row: TransferRecord) -> tuple[tuple[str, str], ...]:
    """The (role, transfer) pairs a stored transfer's ``vetoed`` column records, sorted; a
    column signerd did not write raises AuthorityViolation."""
    try:
        pairs = json.loads(row.vetoed)
        if not isinstance(pairs, list) or not all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) and x for x in p)
                for p in pairs):
            raise ValueError("not a list of [role, transfer] pairs")
    except ValueError as e:
        raise AuthorityViolation(f"transfer {row.id}: its record of earlier vetoes is "
                                 f"malformed ({e})", kind="approval") from None
    return tuple(sorted((p[0], p[1]) for p in pairs))


def vetoes_json(vetoed: Iterable[tuple[str, str]]) -> str:
    return json.dumps([[role, tid] for role, tid in sorted(vetoed)], separators=(",", ":"))


def context(instance_id: str, row: TransferRecord) -> A.StatementContext:
    """The statement context of a stored transfer (every field of it is bound, so a changed
    row no longer matches the approvals' signatures). A row that does not even make a
    statement (signerd writes none such) raises AuthorityViolation."""
    try:
        return A.statement_context(
            instance_id=instance_id, transfer_id=row.id, wallet_id=row.wallet_id,
            policy_version=row.policy_version, expires_at=int(row.expires_at),
            payload=row.payload,
            legal_basis=row.legal_basis, category_change=row.category_change,
            submitter=row.submitter, replaces=row.replaces,
            replaces_state=row.replaces_state,
            replaces_fee_delta=int(row.replaces_fee_delta), vetoed=vetoes_of(row))
    except (InvalidArgument, ValueError, TypeError, OverflowError) as e:
        message = e.message if isinstance(e, InvalidArgument) else str(e)
        raise AuthorityViolation(f"transfer {row.id}: its stored metadata makes no approval "
                                 f"statement ({message})", kind="approval") from None


def transfer_record(row: TransferRecord) -> dict[str, Any]:
    """What signerd's seal on a transfer row covers: everything written at submission that the
    approval statement binds or that decides what the transfer needs (the payload by its hash,
    the movement as decoded and classified then). A row that does not even make a record
    raises AuthorityViolation."""
    try:
        return {
            "id": row.id, "wallet_id": row.wallet_id, "chain": row.chain.value,
            "payload_sha256": hashlib.sha256(row.payload).hexdigest(),
            "movement": json.loads(row.movement), "submitter": row.submitter,
            "policy_version": str(row.policy_version),
            "expires_at": str(int(row.expires_at)),
            "replaces": row.replaces, "replaces_state": row.replaces_state,
            "replaces_fee_delta": row.replaces_fee_delta,
            "legal_basis": row.legal_basis,
            "category_change": row.category_change,
            "vetoed": json.loads(row.vetoed),
            "idempotency_key": row.idempotency_key,
        }
    except (TypeError, ValueError, OverflowError) as e:
        raise AuthorityViolation(f"transfer {row.id}: its row makes no record ({e})",
                                 kind="transfer") from None


def check_transfer_seal(audit_public_key: bytes, row: TransferRecord) -> None:
    """AuthorityViolation unless ``row`` carries signerd's seal over its record: a transfer a
    store writer inserted, or one whose movement, destination classes, submitter, window or
    payload were changed after submission, is never decided on, shown for signing or signed."""
    record = transfer_record(row)
    if not row.seal or not SEAL.valid(audit_public_key, "transfer", record, row.seal):
        raise AuthorityViolation(f"transfer {row.id}: its row does not carry signerd's seal "
                                 "over what was submitted (signerd did not write it as it "
                                 "stands)", kind="transfer")


SIGN, WAIT, LOST, DENIED, VIOLATION = "sign", "wait", "lost", "denied", "violation"


@dataclass(frozen=True)
class Verdict:
    outcome: str  # SIGN, WAIT, LOST, DENIED or VIOLATION
    quorum: P.QuorumResult
    requirement: P.Requirement
    violation: AuthorityViolation | None = None
    denial: PolicyDenied | None = None

    @property
    def reason(self) -> str:
        if self.violation is not None:
            return self.violation.message
        if self.denial is not None:
            return self.denial.message
        return self.quorum.reason


def judge(state: AU.AuthorityState, wallet: Wallet, ctx: A.StatementContext,
          movement: Movement, decisions: Iterable[A.SignedDecision], *,
          approved: bool, verified_vetoes: Iterable[tuple[str, str]] = (),
          reclassify: Reclassify | None = None) -> Verdict:
    """Count a transfer's stored decisions toward what it needs now. ``approved``: the store
    says the quorum was met (then a quorum that is not met is either lost, when the approvals
    did meet the bound policy with every approver counted, or a violation).

    ``verified_vetoes``: the (role, transfer) of every veto of the same transaction in the same
    wallet that the verified audit chain records (``App.vetoes``). Each must be bound in the
    statement (``ctx.vetoed``), whose roles the transfer then needs on top of its policy; a
    row that drops one (a store writer making a vetoed transaction lighter again) is a
    violation, whatever the operators signed.

    ``movement`` is the sealed one the statement binds; ``reclassify`` classifies its outputs
    again from the ledger (see ``effective_requirement``)."""
    unbound = sorted({v for v in verified_vetoes if v[1] != ctx.transfer_id} - set(ctx.vetoed))
    denial: PolicyDenied | None = None
    try:
        requirement = effective_requirement(state, wallet, movement, ctx.category_change,
                                            ctx.policy_version, reclassify)
    except PolicyDenied as e:
        denial = e
        try:
            policy, waived = policy_of(state, wallet, ctx.policy_version)
            requirement = requirement_of(policy, waived, movement, ctx.category_change)
        except PolicyDenied as e2:  # the bound policy allowed it at submission, sealed
            raise AuthorityViolation(f"transfer {ctx.transfer_id}: the policy version it binds "
                                     f"does not allow it ({e2.message})", kind="policy") from None
    requirement = with_vetoes(requirement, ctx.vetoed)
    votes, bad = A.verified_votes(lambda d: A.build_statement(ctx, movement, d), decisions,
                                  state.keys())
    operators = state.operator_views()
    q = P.evaluate(requirement, votes, operators, ctx.submitter)
    if unbound:
        return Verdict(VIOLATION, q, requirement, AuthorityViolation(
            f"transfer {ctx.transfer_id}: its transaction was vetoed before ("
            + ", ".join(f"by {role} in {tid}" for role, tid in unbound)
            + ") and its statement does not say so", kind="veto"))
    if bad:
        return Verdict(VIOLATION, q, requirement, AuthorityViolation(
            f"transfer {ctx.transfer_id}: " + "; ".join(bad), kind="approval"))
    if denial is not None:
        return Verdict(DENIED, q, requirement, denial=denial)
    if q.met:
        return Verdict(SIGN, q, requirement)
    if not approved:
        return Verdict(WAIT, q, requirement)
    policy, waived = policy_of(state, wallet, ctx.policy_version)
    bound = with_vetoes(requirement_of(policy, waived, movement, ctx.category_change),
                        ctx.vetoed)
    everyone = {k: P.OperatorView(v.id, v.roles, True) for k, v in operators.items()}
    if P.evaluate(bound, votes, everyone, ctx.submitter).met:
        return Verdict(LOST, q, requirement)
    return Verdict(VIOLATION, q, requirement, AuthorityViolation(
        f"transfer {ctx.transfer_id} is marked APPROVED but its verified approvals never met "
        f"its quorum ({q.reason})", kind="quorum"))


approvals_of = A.signed_decisions  # a transfer's stored decisions
