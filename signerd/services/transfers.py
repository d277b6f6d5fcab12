"""Transfers: submission, approvals, quorum, and the sign step that runs exactly once.

Invariants kept here (DEVELOPERS.md):
- No signature without quorum: the sign step runs only for a transfer in state APPROVED, which is
  set in the same store transaction that records the approval completing the quorum, and it
  judges the quorum again (``engine.judge``) before it signs: every stored decision verified over
  the statement rebuilt from the payload, under the operator's key in the authority ledger,
  against the policy the ledger proves for the wallet, never below the floor.
- No quorum without authority: wallets, operators, roles and policies are read from the
  verified authority state (``ledger``), never from the store's copies; a transfer whose
  approvals or wallet do not trace to the genesis goes FAILED with an audit event and
  ``signerd_authority_violations_total``.
- Digests come from the stored payload, decoded again by signerd; nothing a client sends is signed.
- Exactly one stored signature per (transfer, digest, key): the sign step signs outside the store
  transaction, then stores in one transaction that first re-reads the state; a signature another
  worker stored first wins and ours is discarded unseen. A crash before the commit leaves the
  transfer APPROVED, and recovery signs the same digests again.
"""
from __future__ import annotations

import builtins
import dataclasses
import hashlib
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable

from signerd.adapters.store import Tx
from signerd.adapters.store.codec import approval_columns, transfer_columns
from signerd.core import approval as A
from signerd.core import audit as AUD
from signerd.core import authority as AU
from signerd.core import engine as E
from signerd.core import legal_basis as LB
from signerd.core import policy as P
from signerd.core import events as EV
from signerd.core.tron.signing import expiration_problem as tron_expiration_problem
from signerd.core.chains import (BitcoinAdapter, Decoded, Ours, SafeAdapter,
                                 adapter_for_wallet, claims,
                                 classify_outputs)
from signerd.core.errors import (AlreadyExists, AuthorityViolation, FailedPrecondition,
                                 HsmUnavailable, InvalidArgument, NotFound, PermissionDenied,
                                 PolicyDenied, SignerError, WalletFrozen)
from signerd.core.errors import echo
from signerd.core.model import (Chain, Decision, DestinationClass, Movement, ScriptType,
                                TransferState, Wallet, WalletStatus)
from signerd.core import safe_wallet as SW
from signerd.core.ethereum import safe as SAFE
from signerd.core.ethereum.address import to_checksum
from signerd.core.movement_json import movement_from_json, movement_to_json
from signerd.core.records import ApprovalRecord, Shown, TransferRecord
from . import ledger as L
from .runtime import Runtime
from .sign_step import AwaitingGovernance, SignStep, ended_violation


log = logging.getLogger("signerd.transfers")

LIVE = (TransferState.PENDING_APPROVAL, TransferState.APPROVED)
FINAL = (TransferState.SIGNED, TransferState.REJECTED, TransferState.EXPIRED,
         TransferState.CANCELLED, TransferState.FAILED)
MAX_REASON = 1000
TICK_WAIT_SECONDS = 10.0  # how long one monitor tick waits for approved transfers to be signed
DECIDE_WAIT_SECONDS = 10.0  # how long a quorum-making approval waits for its signature


# ---------------------------------------------------------------- serialisation helpers

def requirement_to_json(r: P.Requirement) -> str:
    return json.dumps({"approvers": r.approvers, "roles": dict(r.roles),
                       "group": None if r.group is None else sorted(r.group),
                       "veto": sorted(r.veto), "expiry": r.expiry, "rules": list(r.rules),
                       "require_legal_basis": r.require_legal_basis,
                       "distinct_roles": r.distinct_roles}, sort_keys=True)


def requirement_from_json(text: str) -> P.Requirement:
    d = json.loads(text)
    return P.Requirement(approvers=int(d["approvers"]), roles=tuple(d["roles"].items()),
                         group=None if d["group"] is None else frozenset(d["group"]),
                         veto=frozenset(d["veto"]), expiry=int(d["expiry"]),
                         rules=tuple(d["rules"]),
                         require_legal_basis=bool(d["require_legal_basis"]),
                         distinct_roles=int(d.get("distinct_roles", 0)))


def live_transfers(tx: Tx, wallet_id: str, *, lock: bool = False
                   ) -> builtins.list[tuple[TransferRecord, Movement]]:
    """The live transfers of a wallet; with ``lock``, those no other transaction holds, locked
    (a governance write holds the ledger head, and a decision or the sign step holding a
    transfer waits for the head after it: waiting here could deadlock; a transfer skipped is
    judged against the new ledger by that transaction)."""
    out = []
    for row in tx.list_transfers(wallet_id=wallet_id, limit=1_000_000):
        if not row.live:
            continue
        if lock:
            held = tx.lock_transfer_if_free(row.id)
            if held is None or not held.live:
                continue
            row = held
        out.append((row, movement_from_json(row.movement)))
    return out


def tighten_live_transfers(tx: Tx, state: AU.AuthorityState, wallet: Wallet,
                           finish: Callable[[Tx, TransferRecord, TransferState, str, str], None]
                           ) -> tuple[list[str], list[str]]:
    """After a policy change, each live transfer of the wallet records the demands it now has
    (for people: every decision and the sign step judge them again from the ledger), and each
    that the policy in force allows no more is cancelled (``finish``). Returns (tightened,
    cancelled).

    Only rows no other transaction holds are touched (``lock_transfer_if_free``): the caller
    holds the ledger head, and a decision or the sign step holding a transfer waits for the
    head after it, so waiting here could deadlock. A transfer skipped is being decided or
    signed this moment, and that transaction judges it against this policy once it gets the
    head: nothing is lost."""
    tightened, cancelled = [], []
    for row in tx.list_transfers(wallet_id=wallet.id, limit=1_000_000):
        if not row.live:
            continue
        locked = tx.lock_transfer_if_free(row.id)
        if locked is None or not locked.live:
            continue
        movement = movement_from_json(locked.movement)
        try:
            E.check_transfer_seal(state.audit_public_key, locked)
            req = E.effective_requirement(
                state, wallet, movement, locked.category_change, locked.policy_version,
                TransferService.reclassifier(tx, state, wallet, movement))
        except PolicyDenied as e:
            finish(tx, locked, TransferState.CANCELLED, "signerd", e.message)
            cancelled.append(locked.id)
            continue
        except SignerError:
            continue  # judged, and ended, by its next decision or the sign step
        merged = P.merge(requirement_from_json(locked.requirement), req)
        if requirement_to_json(merged) != locked.requirement:
            tx.update_transfer(locked.id, requirement=requirement_to_json(merged))
            tightened.append(locked.id)
    return tightened, cancelled


def record_decision(tx: Tx, actor: str, subject: str, subject_id: str, operator_id: str,
                    public_key_pem: str, statement: bytes, signature: bytes, *,
                    statement_sha256: bytes, decision: Decision, reason: str, now: float,
                    mismatch: str, insert: Callable[[dict[str, Any]], None]) -> None:
    """An operator's decision on a transfer or a proposal: its signature over ``statement``
    verified (``approval.verify_decision``; ``mismatch`` names the statement the operator
    should have signed), then stored by ``insert`` from the fields every decision has (a
    second decision by the same operator is FailedPrecondition), and audited as
    ``{subject}.approve|reject``."""
    digest = A.verify_decision(
        public_key_pem.encode(), statement, signature, operator_id=operator_id,
        statement_sha256=statement_sha256,
        mismatch=f"statement_sha256: the operator signed a different statement than {mismatch}")
    try:
        insert(dict(operator_id=operator_id, decision=decision, signature=signature.hex(),
                    statement_sha256=digest.hex(), reason=reason, created_at=now))
    except AlreadyExists as e:
        raise FailedPrecondition(e.message) from None
    tx.append_audit(actor, f"{subject}.{decision.value.lower()}", subject_id, {
        "operator_id": operator_id, "statement_sha256": digest.hex(), "reason": reason})


ShownApproval = Shown[ApprovalRecord]  # a decision on a transfer as the API shows it


@dataclass(frozen=True)
class TransferView:
    """A transfer as the API shows it."""

    transfer: TransferRecord
    movement: Movement
    approvals: tuple[ShownApproval, ...]
    requirement: str
    remaining: str
    instance_id: str

    @property
    def id(self) -> str:
        return self.transfer.id

    @property
    def state(self) -> TransferState:
        return self.transfer.state

    @property
    def row(self) -> dict[str, Any]:
        """The transfer's columns as stored (for scripts and tests that read them by name)."""
        return transfer_columns(self.transfer)

    @property
    def vetoed(self) -> tuple[tuple[str, str], ...]:
        """The earlier vetoes of its transaction the row records (none for a malformed record,
        which makes no statement: nobody can approve it, and the sign step fails it)."""
        try:
            return E.vetoes_of(self.transfer)
        except SignerError:
            return ()


@dataclass(frozen=True)
class StatementPackage:
    statement: bytes
    rendered: str
    view: TransferView
    wallet: Wallet
    destinations: dict[str, Ours]  # address -> the wallet of ours there, as the statement has it
    allowlist: list[str]


class TransferService:
    def __init__(self, app: Runtime):
        self.app = app
        self.store = app.store
        self.limits = app.config.limits
        self.signer = SignStep(self)
        self.faults = set(str(x) for x in app.config.testing.get("crash_points", []))

    # ---------------------------------------------------------------- test-only fault hook
    def _fault(self, point: str) -> None:
        """Kill the process at a named point of the sign path (test-only setting)."""
        if point in self.faults:
            log.error("fault injection: crashing at %s", point)
            os._exit(137)

    # ---------------------------------------------------------------- reading
    @property
    def ledger(self) -> L.Ledger:
        return self.app.ledger  # type: ignore[no-any-return]

    def _wallet(self, tx: Tx, wallet_id: str) -> Wallet:
        return L.load_wallet(tx, self.ledger.state(tx), wallet_id)

    def _operators(self, tx: Tx) -> dict[str, P.OperatorView]:
        return self.ledger.state(tx).operator_views()

    def _quorum(self, tx: Tx, row: TransferRecord,
                operators: dict[str, P.OperatorView] | None = None,
                approvals: builtins.list[ApprovalRecord] | None = None,
                memo: dict[Any, Any] | None = None) -> P.QuorumResult:
        """The quorum of ``row`` from its approvals. ``memo`` (one list page, whose rows all
        use the same ``operators``) shares results between rows with the same requirement,
        submitter and votes: ``P.evaluate`` is pure, so they are equal."""
        rows = tx.approvals(row.id) if approvals is None else approvals
        votes = [P.Vote(a.operator_id, a.decision) for a in rows]
        if memo is None:
            return P.evaluate(requirement_from_json(row.requirement), votes,
                              self._operators(tx) if operators is None else operators,
                              row.submitter)
        text = row.requirement
        key = (text, row.submitter, tuple((v.operator_id, v.decision) for v in votes))
        q = memo.get(key)
        if q is None:
            q = memo[key] = P.evaluate(
                self._requirement(text, memo)[0], votes,
                self._operators(tx) if operators is None else operators, row.submitter)
        return q

    @staticmethod
    def _requirement(text: str, memo: dict[Any, Any] | None = None
                     ) -> tuple[P.Requirement, str]:
        """A stored requirement and its description, parsed once per ``memo`` (a list page)."""
        parsed = None if memo is None else memo.get(text)
        if parsed is None:
            req = requirement_from_json(text)
            parsed = (req, req.describe())
            if memo is not None:
                memo[text] = parsed
        return parsed

    def _view(self, tx: Tx, row: TransferRecord,
              operators: dict[str, P.OperatorView] | None = None,
              approvals: builtins.list[ApprovalRecord] | None = None,
              memo: dict[Any, Any] | None = None) -> TransferView:
        """``memo``: shared by the rows of one list page (see ``list``)."""
        described = self._requirement(row.requirement, memo)[1]
        if approvals is None:
            approvals = tx.approvals(row.id)
        remaining = ""
        counted: tuple[str, ...] = ()
        if row.live:
            q = self._quorum(tx, row, operators, approvals, memo)
            remaining, counted = q.remaining, q.counted
        return TransferView(
            transfer=row, movement=movement_from_json(row.movement),
            approvals=tuple(ShownApproval(a, a.operator_id in counted) for a in approvals),
            requirement=described, remaining=remaining, instance_id=self.app.instance_id)

    def get(self, transfer_id: str) -> TransferView:
        if not transfer_id:
            raise InvalidArgument("transfer_id: required")
        with self.store.read() as tx:
            return self._view(tx, tx.get_transfer(transfer_id))

    def list(self, *, wallet_id: str = "", state: str = "", after: str = "",
             limit: int = 100) -> list[TransferView]:
        with self.store.read() as tx:
            ops = self._operators(tx)
            rows = tx.list_transfers(wallet_id=wallet_id, state=state, after=after, limit=limit)
            apps = tx.approvals_for([r.id for r in rows])
            # One page: every row sees the same operators, so a requirement is parsed and a
            # quorum of the same (requirement, submitter, votes) evaluated once per page.
            memo: dict[Any, Any] = {}
            return [self._view(tx, r, ops, apps[r.id], memo) for r in rows]

    def pending_for(self, operator_id: str, *, after: str = "", limit: int = 100
                    ) -> builtins.list[TransferView]:
        """Pending transfers this operator could still usefully approve."""
        with self.store.read() as tx:
            ops = self._operators(tx)
            rows = tx.list_transfers(state=TransferState.PENDING_APPROVAL.value, after=after,
                                     limit=limit)
            apps = tx.approvals_for([r.id for r in rows])
            memo: dict[Any, Any] = {}  # as in list
            out = []
            for r in rows:
                if r.submitter == operator_id:
                    continue
                if any(a.operator_id == operator_id for a in apps[r.id]):
                    continue
                req = self._requirement(r.requirement, memo)[0]
                if req.group is not None and operator_id not in req.group:
                    continue
                out.append(self._view(tx, r, ops, apps[r.id], memo))
            return out

    # ---------------------------------------------------------------- submission
    def _decode(self, wallet: Wallet, payload: bytes, policy: P.Policy,
                state: AU.AuthorityState) -> Decoded:
        return adapter_for_wallet(wallet).decode(wallet, payload, self.limits,
                                                allowed_sighash=policy.sighash_types,
                                                tokens=state.tokens, chains=state.chains)

    def classify(self, tx: Tx, state: AU.AuthorityState, wallet: Wallet, decoded: Decoded,
                 policy: P.Policy) -> Movement:
        """The decoded movement with each output's destination class, and the wallet of ours
        it pays where it pays one, from verified wallets only."""
        return self.reclassifier(tx, state, wallet, decoded.movement)(policy)

    @staticmethod
    def reclassifier(tx: Tx, state: AU.AuthorityState, wallet: Wallet, movement: Movement
                     ) -> E.Reclassify:
        """``movement``'s outputs classified from the ledger as it is in ``tx`` (verified
        wallets of ours), against a given policy's allowlist."""
        dests = L.destinations(tx, state, wallet, [o.address for o in movement.outputs])
        ours = {a: Ours(d.wallet_id, d.category, d.own) for a, d in dests.items()}
        return lambda policy: classify_outputs(movement, ours, tuple(policy.allowlist))

    def submit(self, actor: str, wallet_id: str, payload: bytes, *, replaces: str = "",
               legal_basis: str = "", category_change: str = "", idempotency_key: str = "",
               chain: Chain | None = None, safe_tx: bool | None = None) -> TransferView:
        """A new transfer PENDING_APPROVAL; ``chain``, when given, is the chain the payload's
        form belongs to (a PSBT: bitcoin), which must be the wallet's; ``safe_tx``, when given,
        whether the payload is a SafeTx, which a Safe wallet, and only a Safe wallet, takes."""
        if not wallet_id:
            raise InvalidArgument("wallet_id: required")
        if not payload:
            raise InvalidArgument("transaction: a PSBT or an Ethereum transaction is required")
        category_change = category_change or "none"
        if category_change not in P.CATEGORY_CHANGES:
            raise InvalidArgument(f"category_change: unknown movement {echo(category_change)}")
        if len(legal_basis) > MAX_REASON:
            raise InvalidArgument(f"legal_basis: at most {MAX_REASON} characters")
        legal_basis = LB.given(legal_basis)
        with self.store.read() as tx:
            state = self.ledger.state(tx)
            if idempotency_key:
                prior = tx.find_idempotent(wallet_id, idempotency_key)
                if prior is not None:
                    return self._view(tx, prior)
            wallet = L.load_wallet(tx, state, wallet_id)
            if chain is not None and wallet.chain is not chain:
                form = {Chain.BITCOIN: "psbt", Chain.TRON: "tron"}.get(chain, "ethereum")
                article = "an" if wallet.chain is Chain.ETHEREUM else "a"
                raise InvalidArgument(
                    f"{form}: wallet {wallet_id} is {article} {wallet.chain.value} wallet")
            if safe_tx is not None and safe_tx != (wallet.script_type is ScriptType.SAFE):
                raise InvalidArgument(
                    f"safe_tx: wallet {wallet_id} is a Safe wallet; submit a SafeTx (safe_tx)"
                    if not safe_tx else
                    f"safe_tx: wallet {wallet_id} is not a Safe wallet")
            if wallet.status is WalletStatus.RETIRED:
                raise FailedPrecondition(f"wallet {wallet_id} is retired")
            if wallet.status is WalletStatus.AWAITING_APPROVAL:
                raise FailedPrecondition(f"wallet {wallet_id} awaits the governance quorum "
                                         f"(proposal {wallet.proposal}); it takes no transfers "
                                         "until approved")
            if wallet.status is WalletStatus.FROZEN:
                raise WalletFrozen(f"wallet {wallet_id} is frozen by court order; it takes no "
                                   "new transfers until unfrozen")
            version = state.wallet_policy_version(wallet.id)
            policy, waived = E.policy_of(state, wallet, version)
            decoded = self._decode(wallet, payload, policy, state)
            if wallet.script_type is ScriptType.SAFE:
                self._safe_nonce_free(tx, decoded, replaces)
            movement = self.classify(tx, state, wallet, decoded, policy)
        E.check_category_change(wallet, movement, category_change, legal_basis)
        try:
            req = E.requirement_of(policy, waived, movement, category_change)
        except PolicyDenied as e:
            raise PolicyDenied(f"wallet {wallet_id}: {e.message}") from None
        # The same transaction vetoed before in this wallet, as the verified audit chain says
        # (never the store's rows alone): it needs each vetoing role's approval this time.
        vetoed = self.app.vetoes(wallet_id, E.transaction_key(movement))
        req = E.with_vetoes(req, vetoed)
        if req.require_legal_basis and not legal_basis.strip():
            raise PolicyDenied(f"wallet {wallet_id}: the matching rule requires a legal basis "
                               f"(the court decision: {LB.FORM})")
        now = time.time()
        if wallet.chain is Chain.TRON:
            # A Tron transaction carries its own expiration: in the future now, and not after
            # the transfer's own expiry (what the approvals may take), so it cannot outlive
            # the approval window in a platform's hands.
            problem = tron_expiration_problem(decoded.tx.expiration, now, int(now + req.expiry))
            if problem:
                raise InvalidArgument(f"wallet {wallet_id}: {problem}")
        transfer_id = "t_" + secrets.token_hex(10)
        row = TransferRecord(
            id=transfer_id, wallet_id=wallet_id, chain=wallet.chain,
            state=TransferState.PENDING_APPROVAL, payload=payload,
            movement=movement_to_json(movement), submitter=actor,
            policy_version=version, requirement=requirement_to_json(req),
            expires_at=float(int(now + req.expiry)), created_at=now, updated_at=now,
            replaces=replaces, legal_basis=legal_basis, category_change=category_change,
            idempotency_key=idempotency_key, vetoed=E.vetoes_json(vetoed))
        try:
            return self._insert(actor, wallet, row, decoded, movement, req, version, replaces,
                                category_change, legal_basis, payload)
        except AlreadyExists:
            if not idempotency_key:
                raise
            with self.store.read() as tx:  # a concurrent submission with the same key won
                prior = tx.find_idempotent(wallet_id, idempotency_key)
                if prior is None:
                    raise
                return self._view(tx, prior)

    @staticmethod
    def _safe_nonce_free(tx: Tx, decoded: Decoded, replaces: str) -> None:
        """A Safe nonce is held by one transfer, for good once signed: signerd never signs two
        SafeTx hashes for one Safe and nonce, so there is no replacement either (the lock
        refuses it again at insertion, against a concurrent submission)."""
        (key,) = decoded.lock_keys
        holder = tx.lock_holder(key)
        if replaces or holder:
            held = f"transfer {holder} holds it" if holder else "nothing holds it"
            raise FailedPrecondition(
                f"safe_tx: Safe nonce {decoded.tx.nonce} ({key}): {held}; signerd never signs "
                "two SafeTx hashes for one Safe nonce, and a Safe transfer replaces none")

    def _insert(self, actor: str, wallet: Wallet, row: TransferRecord, decoded: Decoded,
                movement: Movement, req: P.Requirement, version: int, replaces: str,
                category_change: str, legal_basis: str, payload: bytes) -> TransferView:
        transfer_id, wallet_id = row.id, wallet.id
        with self.store.transaction() as tx:
            if row.idempotency_key:
                prior = tx.find_idempotent(wallet_id, row.idempotency_key)
                if prior is not None:
                    return self._view(tx, prior)
            old = None
            if replaces:
                old = self._replaced(tx, replaces, wallet_id, decoded)
                # Bound in the statement: what is replaced, as it stood, and the fee change.
                row = dataclasses.replace(
                    row, replaces_state=old.state.value, replaces_fee_delta=str(
                        movement.fee - movement_from_json(old.movement).fee))
            # signerd's seal over what was submitted: a row a store writer inserts or changes
            # (its movement, destination classes, submitter, window) is never decided on,
            # shown for signing or signed.
            row = dataclasses.replace(row, seal=self.app.seal("transfer", E.transfer_record(row)))
            tx.insert_transfer(transfer_columns(row), list(decoded.lock_keys))
            if old is not None:
                # The replacement takes over the nonce/outpoints; a pending original is superseded.
                tx.move_locks(replaces, transfer_id)
                if old.state in LIVE:
                    self._finish(tx, old, TransferState.CANCELLED, actor,
                                 f"replaced by {transfer_id}")
            tx.append_audit(actor, "transfer.submitted", transfer_id, {
                "wallet_id": wallet_id, "chain": wallet.chain.value,
                "payload_sha256": hashlib.sha256(payload).hexdigest(),
                "digests": [d.hex() for d in movement.digests],
                "outputs": [[o.address, str(o.amount), o.asset, o.is_change, o.wallet_id]
                            for o in movement.outputs],
                "fee": str(movement.fee), "requirement": req.describe(),
                "policy_version": version, "replaces": replaces,
                "replaces_state": row.replaces_state,
                "replaces_fee_delta": row.replaces_fee_delta,
                "vetoed": json.loads(row.vetoed),
                "category_change": category_change, "legal_basis": legal_basis})
            tx.emit(EV.TransferEntered(transfer_id, wallet.chain, TransferState.PENDING_APPROVAL,
                                       actor, wallet_id=wallet_id))
            view = self._view(tx, tx.get_transfer(transfer_id))
        self.app.notifier.notify()
        return view

    def _replaced(self, tx: Tx, replaces: str, wallet_id: str, decoded: Decoded
                  ) -> TransferRecord:
        """The transfer a new one replaces, locked: of the same wallet, live or signed, holding
        a nonce or outpoint the new one spends; else the refusal names what is wrong."""
        try:
            old = tx.get_transfer(replaces, lock=True)
        except NotFound:
            raise NotFound(f"replaces: transfer {replaces} not found") from None
        if old.wallet_id != wallet_id:
            raise FailedPrecondition(f"replaces: transfer {replaces} belongs to wallet "
                                     f"{old.wallet_id}, not {wallet_id}")
        if old.state not in (*LIVE, TransferState.SIGNED):
            raise FailedPrecondition(f"replaces: transfer {replaces} is {old.state.value}; only a "
                                     "live or signed transfer can be replaced")
        held = set(tx.transfer_lock_keys(replaces))
        if held & set(decoded.lock_keys):
            return old
        mv = movement_from_json(old.movement)
        if not any(claims(mv, k) for k in decoded.lock_keys):
            raise FailedPrecondition(
                f"replaces: transfer {replaces} does not spend the same nonce or outputs")
        holders = sorted({h for k in decoded.lock_keys if (h := tx.lock_holder(k))})
        raise FailedPrecondition(
            f"replaces: transfer {replaces} no longer holds its nonce or outputs: "
            + (f"transfer {', '.join(holders)} replaced it; replace that one instead" if holders
               else "nothing holds them"))

    # ---------------------------------------------------------------- statement
    def context(self, row: TransferRecord) -> A.StatementContext:
        """The statement context of a stored transfer whose seal verifies (else
        AuthorityViolation)."""
        E.check_transfer_seal(self.app.audit_public_key, row)
        return E.context(self.app.instance_id, row)

    def statement(self, transfer_id: str, decision: Decision) -> tuple[bytes, str, TransferView]:
        with self.store.read() as tx:
            row = tx.get_transfer(transfer_id)
            view = self._view(tx, row)
        return (*self._statement(row, view, decision), view)

    def _statement(self, row: TransferRecord, view: TransferView, decision: Decision
                   ) -> tuple[bytes, str]:
        """The approval statement of a decision on ``row``, and its rendering for a person."""
        ctx = self.context(row)
        return (A.build_statement(ctx, view.movement, decision),
                A.render(ctx, view.movement, decision))

    def statement_package(self, transfer_id: str, decision: Decision) -> StatementPackage:
        """Everything an operator's tool needs to check and sign a decision, read in one
        transaction: the statement, its rendering, the transfer, its wallet, and the wallets of
        ours it pays and the policy's allowlist, to classify the outputs itself."""
        with self.store.read() as tx:
            row = tx.get_transfer(transfer_id)
            view = self._view(tx, row)
            state = self.ledger.state(tx)
            wallet = L.load_wallet(tx, state, row.wallet_id)
            policy, _ = E.policy_of(state, wallet, row.policy_version)
        ours = {o.address: Ours(o.wallet_id, o.category,
                                o.destination_class is DestinationClass.OWN_WALLET)
                for o in view.movement.outputs if o.wallet_id and not o.is_change}
        return StatementPackage(*self._statement(row, view, decision), view, wallet, ours,
                                sorted(policy.allowlist))


    # ---------------------------------------------------------------- approvals
    def decide(self, actor: str, transfer_id: str, operator_id: str, decision: Decision,
               signature: bytes, *, reason: str = "", statement_sha256: bytes = b"") -> TransferView:
        A.check_decision("transfer_id", transfer_id, operator_id, decision, reason)
        now = time.time()
        became_approved = False
        violation: AuthorityViolation | None = None
        resurrected = bool(self.app.ended([transfer_id]))
        with self.store.transaction() as tx:
            row = tx.get_transfer(transfer_id, lock=True)
            state = row.state
            if state is not TransferState.PENDING_APPROVAL:
                raise FailedPrecondition(
                    f"transfer {transfer_id} is {state.value}, not waiting for approvals")
            expired = now >= row.expires_at
            if resurrected:
                violation = ended_violation(transfer_id)
                self.violated(tx, row, violation)
                expired = False
            elif expired:  # committed, then refused below
                self._finish(tx, row, TransferState.EXPIRED, "signerd",
                             "approval window passed before quorum")
            else:
                became_approved, violation = self._record_decision(
                    tx, row, actor, operator_id, decision, signature, reason, statement_sha256,
                    now)
        if expired:
            self.app.notifier.notify()
            raise FailedPrecondition(f"transfer {transfer_id} has expired")
        self.app.notifier.notify()
        if violation is not None:
            raise violation
        self._fault("after_approval_stored")
        if became_approved:
            try:
                # Ahead of any backlog, and bounded: past the bound the transfer is answered
                # APPROVED and the sign step's worker signs it all the same.
                self.sign(transfer_id, timeout=DECIDE_WAIT_SECONDS, urgent=True)
            except (WalletFrozen, AwaitingGovernance):
                pass
            except HsmUnavailable as e:
                raise HsmUnavailable(
                    f"the approval is recorded and transfer {transfer_id} is APPROVED; it will be "
                    f"signed once the HSM is back ({e.message})") from None
        return self.get(transfer_id)

    def _record_decision(self, tx: Tx, row: TransferRecord, actor: str, operator_id: str,
                         decision: Decision, signature: bytes, reason: str,
                         statement_sha256: bytes, now: float
                         ) -> tuple[bool, AuthorityViolation | None]:
        """Verify and store one operator's decision, then judge the quorum from every stored
        decision, each verified under the ledger's keys: (whether this decision completed the
        quorum, the violation that ended the transfer FAILED instead)."""
        transfer_id = row.id
        state = self.ledger.state(tx)
        op = state.deciding_operator(operator_id, row.submitter, f"transfer {transfer_id}")
        try:
            ctx = self.context(row)
        except AuthorityViolation as e:  # a row signerd did not write as it stands
            self.violated(tx, row, e)
            return False, e
        movement = movement_from_json(row.movement)
        statement = A.build_statement(ctx, movement, decision)
        record_decision(
            tx, actor, "transfer", transfer_id, operator_id, op.public_key_pem, statement,
            signature, statement_sha256=statement_sha256, decision=decision, reason=reason,
            now=now,
            mismatch="this transfer's (transaction or metadata changed)",
            insert=lambda fields: tx.insert_approval(approval_columns(ApprovalRecord(
                transfer_id=transfer_id, **fields))))
        tx.emit(EV.Decided("transfer", transfer_id, operator_id, decision))
        try:
            wallet = L.load_wallet(tx, state, row.wallet_id)
            verdict = E.judge(state, wallet, ctx, movement, E.approvals_of(
                tx.approvals(transfer_id)), approved=False,
                verified_vetoes=self.app.vetoes(wallet.id, E.transaction_key(movement),
                                                verify=False),
                reclassify=self.reclassifier(tx, state, wallet, movement))
        except AuthorityViolation as e:
            self.violated(tx, row, e)
            return False, e
        if verdict.violation is not None:
            self.violated(tx, row, verdict.violation)
            return False, verdict.violation
        q = verdict.quorum
        if q.rejected:
            self._finish(tx, row, TransferState.REJECTED, "signerd", q.reason)
            if q.veto is not None:
                self._record_veto(tx, row, movement, *q.veto)
        elif verdict.outcome == E.DENIED:
            self._finish(tx, row, TransferState.CANCELLED, "signerd", verdict.reason)
        elif not q.met:
            self._record_requirement(tx, row, verdict.requirement)
        else:
            tx.update_transfer(transfer_id, state=TransferState.APPROVED,
                               requirement=requirement_to_json(verdict.requirement))
            tx.append_audit("signerd", "transfer.approved", transfer_id,
                            {"counted": list(q.counted), "wallet_status": wallet.status.value})
            tx.emit(EV.TransferEntered(transfer_id, row.chain, TransferState.APPROVED,
                                       submitted_at=row.created_at))
            return True, None
        return False, None

    @staticmethod
    def _record_requirement(tx: Tx, row: TransferRecord, requirement: P.Requirement) -> None:
        """What a waiting transfer needs now, for people (a policy change or a destination
        reclassified since the row's requirement was written)."""
        merged = requirement_to_json(P.merge(requirement_from_json(row.requirement),
                                             requirement))
        if merged != row.requirement:
            tx.update_transfer(row.id, requirement=merged)

    @staticmethod
    def _record_veto(tx: Tx, row: TransferRecord, movement: Movement, operator_id: str,
                     role: str) -> None:
        """The record that ``role`` vetoed this transaction in this wallet, which a later
        submission of it (in any encoding) is held to: it needs an approval by that role.

        Who could abuse the record, and why it is an audit event: a store writer deleting a
        row would make the next submission lighter, so the record is the ``transfer.vetoed``
        event itself, in the same transaction as the rejection. Its object names the wallet,
        the transaction (``engine.transaction_key``), the role and the transfer, and it is one
        of ``audit.ENDING_ACTIONS``: the hash chain and the endings digest each HSM-signed
        checkpoint commits to hold it, and the daemon reads vetoes only from the chain it
        verified (``App.vetoes``), at submission, at each decision and in the sign step. A
        writer who deletes or alters it stops the chain verifying (nothing is submitted,
        decided or signed) or, after a restart, no longer matches the latest checkpoint; one
        who strips the record from a resubmission's row voids its approvals and is an
        authority violation (``engine.judge``). A forged record can only add a demand."""
        tx.append_audit("signerd", AUD.VETO_ACTION, AUD.veto_object(
            row.wallet_id, E.transaction_key(movement), role, row.id), {
                "operator_id": operator_id, "role": role, "transfer_id": row.id,
                "wallet_id": row.wallet_id,
                "payload_sha256": hashlib.sha256(row.payload).hexdigest(),
                "digests": [d.hex() for d in movement.digests]})

    def violated(self, tx: Tx, row: TransferRecord, e: AuthorityViolation) -> None:
        """A transfer whose authority does not trace to the genesis: FAILED, with the reason
        and an ``authority.violation`` audit event."""
        self._finish(tx, row, TransferState.FAILED, "signerd",
                     f"authority violation: {e.message}")
        tx.append_audit("signerd", "authority.violation", row.id,
                        {"kind": e.kind, "reason": e.message})
        tx.emit(EV.AuthorityViolated("transfer", row.id, e.kind, e.message))

    def _finish(self, tx: Tx, row: TransferRecord, state: TransferState, actor: str,
                why: str) -> None:
        """End a transfer unsigned (REJECTED, EXPIRED, CANCELLED, FAILED), with its audit
        event; the nonce or outpoints it holds follow the transaction (``_hand_back``)."""
        tx.update_transfer(row.id, state=state, failure=why)
        details: dict[str, Any] = {"reason": why}
        returned = self._hand_back(tx, row)
        if returned:
            details["locks_returned"] = returned
        tx.append_audit(actor, f"transfer.{state.value.lower()}", row.id, details)
        tx.emit(EV.TransferEntered(row.id, row.chain, state, actor, why))

    @staticmethod
    def _hand_back(tx: Tx, row: TransferRecord) -> dict[str, builtins.list[str]]:
        """The nonce or outpoints of a transfer that ends unsigned go back along its chain of
        replacements: each to the nearest transfer it replaced (directly or through others)
        that is signed or still live and spends it, which holds it again; only what no such
        transfer claims is released. A signed transaction stays the only one for its nonce or
        outpoints until an explicit, approved replacement is signed: cancelling a replacement
        must not free them for a transaction not marked as one. Returns {transfer: keys} of
        what went back."""
        keys = tx.transfer_lock_keys(row.id)
        returned: dict[str, builtins.list[str]] = {}
        seen = {row.id}
        previous = row.replaces
        while keys and previous and previous not in seen:
            seen.add(previous)
            try:
                older = tx.get_transfer(previous, lock=True)
            except NotFound:
                break
            if older.state in (*LIVE, TransferState.SIGNED):
                spent = movement_from_json(older.movement)
                back = [k for k in keys if claims(spent, k)]
                if back:
                    tx.move_locks(row.id, older.id, back)
                    returned[older.id] = back
                    keys = [k for k in keys if k not in back]
            previous = older.replaces
        if keys:
            tx.release_locks(row.id)
        return returned

    def cancel(self, actor: str, transfer_id: str, reason: str = "") -> TransferView:
        A.check_reason(reason)
        with self.store.transaction() as tx:
            row = tx.get_transfer(transfer_id, lock=True)
            if not row.live:
                raise FailedPrecondition(f"transfer {transfer_id} is {row.state.value}; only a "
                                         "live transfer can be cancelled")
            self._finish(tx, row, TransferState.CANCELLED, actor, reason or "cancelled")
        self.app.notifier.notify()
        return self.get(transfer_id)

    # ---------------------------------------------------------------- the sign step
    def sign(self, transfer_id: str, *, timeout: float | None = None,
             urgent: bool = False) -> None:
        """Sign an APPROVED transfer exactly once; safe to call from any replica, at any time
        outside a store transaction. Concurrent calls share batches; see
        :mod:`signerd.services.sign_step` for ``timeout`` and ``urgent``."""
        self.signer.sign(transfer_id, timeout=timeout, urgent=urgent)

    # ---------------------------------------------------------------- cosigners
    def combine_psbt(self, actor: str, transfer_id: str, psbt: bytes) -> TransferView:
        """A PSBT back from external cosigners: verify every added signature, finalize when
        the wallet's threshold is met. Our own signatures are never replaced.

        A frozen wallet takes no cosigners' signatures: finalizing would complete a
        transaction that spends from it. Its status is read from the verified ledger, and again
        in the write with the ledger head share-locked (as the sign step's commit does), so a
        freeze that commits meanwhile is seen and wins."""
        if not psbt:
            raise InvalidArgument("psbt: required")
        with self.store.read() as tx:
            row = tx.get_transfer(transfer_id)
            wallet = self._wallet(tx, row.wallet_id)
        if wallet.chain is not Chain.BITCOIN:
            raise FailedPrecondition(f"transfer {transfer_id} is not a Bitcoin transfer")
        self._refuse_frozen_cosigning(wallet)
        if row.state is not TransferState.SIGNED or not row.psbt:
            raise FailedPrecondition(f"transfer {transfer_id} is {row.state.value}; only a signed "
                                     "transfer takes cosigners' signatures")
        if row.raw_tx:
            raise FailedPrecondition(f"transfer {transfer_id} is already final")
        signed = BitcoinAdapter().combine(wallet, row.psbt, psbt, self.limits)
        with self.store.transaction() as tx:
            current = tx.get_transfer(transfer_id, lock=True)
            tx.authority_head(share=True)  # after the transfer's row lock, as the sign step
            self._refuse_frozen_cosigning(self._wallet(tx, row.wallet_id))
            if current.psbt != row.psbt:
                raise FailedPrecondition(f"transfer {transfer_id} changed meanwhile; retry")
            tx.update_transfer(transfer_id, psbt=signed.psbt, raw_tx=signed.raw_tx,
                               tx_hash=signed.tx_hash)
            tx.append_audit(actor, "transfer.combined", transfer_id,
                            {"complete": signed.complete, "tx_hash": signed.tx_hash})
        self.app.notifier.notify()
        return self.get(transfer_id)

    # ---------------------------------------------------------------- Safe owners
    def _safe_transfer(self, tx: Tx, transfer_id: str) -> tuple[TransferRecord, Wallet, Any,
                                                                  bytes]:
        """A Safe transfer's row (its seal verified), its wallet (verified), the SafeTx decoded
        again from the stored payload and its hash, computed here."""
        if not transfer_id:
            raise InvalidArgument("transfer_id: required")
        row = tx.get_transfer(transfer_id)
        wallet = self._wallet(tx, row.wallet_id)
        if wallet.script_type is not ScriptType.SAFE:
            raise FailedPrecondition(f"transfer {transfer_id} is not a transfer of a Safe wallet")
        E.check_transfer_seal(self.app.audit_public_key, row)
        decoded = SafeAdapter().redecode(wallet, row.payload, self.limits,
                                         movement_from_json(row.movement))
        return row, wallet, decoded.tx, decoded.movement.digests[0]

    def _own_owner_signature(self, tx: Tx, row: TransferRecord, wallet: Wallet,
                             digest: bytes) -> Any:
        """This signerd's owner signature of a signed Safe transfer, from the HSM signature
        the sign step stored (verified again: it must recover the wallet's owner key)."""
        key = wallet.keys[0]
        rs = tx.signatures(row.id).get((key.key_id, digest))
        if rs is None:
            return None
        return SAFE.owner_signature_from_hsm(digest, rs[0], rs[1], key.public_key)

    def safe_result(self, transfer_id: str) -> dict[str, Any]:
        """A Safe transfer's owner signatures: this signerd's (once signed), those combined,
        and once the threshold is met the ``execTransaction`` calldata to send to the Safe.
        Every signature is verified again here against the SafeTx hash signerd computes and
        the sealed owner list; one that does not verify (a row written by someone else) is
        left out and named."""
        with self.store.read() as tx:
            row, wallet, safe_tx, digest = self._safe_transfer(tx, transfer_id)
            ours = (self._own_owner_signature(tx, row, wallet, digest)
                    if row.state is TransferState.SIGNED else None)
            stored = tx.safe_signatures(transfer_id)
        return self._safe_document(row, wallet, safe_tx, digest, ours, stored)

    def _safe_document(self, row: TransferRecord, wallet: Wallet, safe_tx: Any, digest: bytes,
                       ours: Any, stored: builtins.list[tuple[str, str]]) -> dict[str, Any]:
        owners = [SW.check_owner(o) for o in wallet.safe_owners]
        sigs: dict[bytes, Any] = {}
        refused = []
        if ours is not None:
            sigs[ours.owner] = ours
        for owner_text, sig_hex in stored:
            try:
                got = SAFE.recover_owner(digest, bytes.fromhex(sig_hex))
                if got.owner != SW.check_owner(owner_text) or got.owner not in owners:
                    raise InvalidArgument("not that owner's signature of this SafeTx")
            except (InvalidArgument, ValueError) as e:
                refused.append({"owner": owner_text, "reason": str(e)})
                continue
            sigs.setdefault(got.owner, got)
        doc: dict[str, Any] = {
            "transfer_id": row.id, "wallet_id": wallet.id, "safe": wallet.address,
            "chain_id": wallet.chain_ids[0], "safe_tx_hash": "0x" + digest.hex(),
            "safe_nonce": safe_tx.nonce, "threshold": wallet.threshold,
            "owners": list(wallet.safe_owners), "state": row.state.value,
            "owner_signature": "" if ours is None else "0x" + ours.signature.hex(),
            "owner": SW.owner_address(wallet.keys[0].public_key),
            "signatures": [{"owner": to_checksum(o), "signature": "0x" + sg.signature.hex()}
                           for o, sg in sorted(sigs.items())],
            "refused": refused, "complete": False, "exec_to": "", "exec_calldata": "",
        }
        if ours is not None and len(sigs) >= wallet.threshold:
            packed = SAFE.pack_signatures(list(sigs.values()), owners, wallet.threshold,
                                          safe_hash=digest)
            doc.update(complete=True, exec_to=wallet.address,
                       exec_calldata="0x" + SAFE.exec_transaction_calldata(safe_tx, packed).hex())
        return doc

    def combine_safe(self, actor: str, transfer_id: str, owner: str,
                     signature: bytes) -> dict[str, Any]:
        """Another owner's signature of a signed Safe transfer's SafeTx hash (another signerd's
        owner signature, or an outside owner's EIP-712 (v 27/28) or eth_sign (v 31/32)
        signature): verified against the hash signerd computes from the stored SafeTx, it must
        recover ``owner``, one of the Safe's sealed owners; then stored. Only a transfer this
        signerd signed (its own quorum met, and for a change of the Safe the governance's)
        takes others' signatures: ``execTransaction`` is never built without our signature."""
        claimed = SW.check_owner(owner)
        with self.store.read() as tx:
            row, wallet, safe_tx, digest = self._safe_transfer(tx, transfer_id)
        self._refuse_frozen_cosigning(wallet)
        if row.state is not TransferState.SIGNED:
            raise FailedPrecondition(f"transfer {transfer_id} is {row.state.value}; only a "
                                     "signed Safe transfer takes other owners' signatures")
        got = SAFE.recover_owner(digest, signature)
        if got.owner != claimed:
            raise InvalidArgument(
                f"signature: it recovers {to_checksum(got.owner)}, not the owner named "
                f"({to_checksum(claimed)}), over SafeTx hash 0x{digest.hex()}: a signature of "
                "another transaction or by another key")
        if to_checksum(got.owner) not in wallet.safe_owners:
            raise PermissionDenied(f"owner: {to_checksum(got.owner)} is not an owner of the Safe "
                                   f"{wallet.address} (owners: {', '.join(wallet.safe_owners)})")
        if to_checksum(got.owner) == SW.owner_address(wallet.keys[0].public_key):
            raise FailedPrecondition(f"owner: {to_checksum(got.owner)} is this signerd's own "
                                     "owner key; its signature is the transfer's own")
        with self.store.transaction() as tx:
            current = tx.get_transfer(transfer_id, lock=True)
            tx.authority_head(share=True)
            self._refuse_frozen_cosigning(self._wallet(tx, row.wallet_id))
            if current.state is not TransferState.SIGNED:
                raise FailedPrecondition(f"transfer {transfer_id} changed meanwhile; retry")
            added = tx.insert_safe_signature(transfer_id, to_checksum(got.owner),
                                             got.signature.hex(), actor)
            if added:
                tx.append_audit(actor, "transfer.safe_signature", transfer_id, {
                    "owner": to_checksum(got.owner), "safe_tx_hash": digest.hex(),
                    "signature": got.signature.hex()})
        self.app.notifier.notify()
        return self.safe_result(transfer_id)

    def propose_safe_owners(self, actor: str, transfer_id: str) -> Any:
        """The governance proposal (``safe.owners``) that a Safe transfer changing its own Safe
        needs beside the wallet's quorum: it names the transfer, the Safe and the exact SafeTx
        hash, with the change decoded."""
        with self.store.read() as tx:
            row, wallet, safe_tx, digest = self._safe_transfer(tx, transfer_id)
        change = SW.owner_change_of(movement_from_json(row.movement))
        if not change:
            raise FailedPrecondition(f"transfer {transfer_id} does not change its Safe; it needs "
                                     "no governance approval")
        if not row.live:
            raise FailedPrecondition(f"transfer {transfer_id} is {row.state.value}")
        return self.app.proposals.propose(actor, "safe.owners", {
            "wallet_id": wallet.id, "transfer_id": row.id, "safe": wallet.address,
            "chain_id": int(wallet.chain_ids[0]), "safe_tx_hash": digest.hex(),
            "safe_nonce": str(safe_tx.nonce), "owner_change": change})

    @staticmethod
    def _refuse_frozen_cosigning(wallet: Wallet) -> None:
        if wallet.status is WalletStatus.FROZEN:
            raise WalletFrozen(f"wallet {wallet.id} is frozen by court order; it takes no "
                               "cosigners' signatures until unfrozen")

    # ---------------------------------------------------------------- recovery and timers
    def recover(self) -> None:
        """On start: sign what reached quorum, expire what ran out of time."""
        self.tick()

    def tick(self) -> None:
        now = time.time()
        with self.store.read() as tx:
            live = tx.due_transfers(now)
        for tid, st, expires_at in live:
            if st is TransferState.PENDING_APPROVAL and now >= expires_at:
                with self.store.transaction() as tx:
                    row = tx.get_transfer(tid, lock=True)
                    if row.state is TransferState.PENDING_APPROVAL:
                        self._finish(tx, row, TransferState.EXPIRED, "signerd",
                                     "approval window passed before quorum")
                self.app.notifier.notify()
        approved = [tid for tid, st, _ in live if st is TransferState.APPROVED]
        if approved:
            # Bounded, so the monitor keeps probing (and pinging systemd's watchdog) while a
            # large backlog drains in the sign step's worker.
            for tid, e in self.signer.sign_many(approved, timeout=TICK_WAIT_SECONDS).items():
                if isinstance(e, (WalletFrozen, AwaitingGovernance)):
                    continue
                if not isinstance(e, SignerError):
                    raise e
                log.warning("transfer %s not signed yet: %s", tid, e.message)

