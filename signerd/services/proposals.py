"""Governance proposals: every act that could loosen a rule takes effect only through one.

A proposal is created by an admin (or an operator, or the platform for a wallet with outside
keys) and checked against the authority state as it is; operators then approve or reject it,
each signing the proposal's statement (``signerd-proposal/v1``) with their own key. The decision
that completes the governance quorum applies the proposal in the same store transaction that
records it: the ledger entry (the proposal with the signed decisions), the copies in the store's
tables for people and reports, and the audit event are written together or not at all, so a
crash between the last approval and the effect leaves nothing half done, and the effect happens
exactly once. The submitter never counts toward the quorum; a proposal that no longer applies
when its quorum is met (the policy it changes moved on, say) ends FAILED with the reason.

signerd seals the proposal document when it records it (the HSM audit key over the id, kind,
change, submitter and window, ``authority.PROPOSAL_SEAL``): approvers are shown, and sign, only
what signerd recorded. A row whose seal does not verify (inserted or altered by a store writer,
to name another submitter, say) is shown as such, cannot be decided and is never applied: the
health monitor, or the first decision on it, ends it FAILED as an authority violation (kind
``proposal``). The sealed document, not the row's columns, names the submitter and the window.

Only the submitter may cancel a pending proposal; anyone else who wants it stopped rejects it
with a signed decision (one person cannot quietly block a tightening another proposed). A
``wallet.create`` or ``wallet.import`` proposal that ends without approval retires the wallet
it would have made: the key shares that wallet took are released for another wallet, and a
seized key can be imported again, which proposes the same wallet anew (see
``admin.import_seized_key``).
"""
from __future__ import annotations

import builtins
import dataclasses
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable

from signerd.adapters.store import Tx
from signerd.adapters.store.codec import proposal_approval_columns, proposal_columns
from signerd.core import approval as A
from signerd.core import authority as AU
from signerd.core import canonical
from signerd.core import events as EV
from signerd.core import policy as P
from signerd.core.engine import effective_requirement
from signerd.core.errors import (AuthorityViolation, FailedPrecondition, HsmUnavailable,
                                 InvalidArgument, NotFound, PermissionDenied, SignerError)
from signerd.core.errors import echo
from signerd.core.model import (Chain, Decision, Movement, OperatorStatus, ProposalState,
                                 WalletStatus)
from signerd.core.records import ProposalApprovalRecord, ProposalRecord, Shown
from . import ledger as L
from .runtime import Runtime
from .transfers import (LIVE as LIVE_STATES, ended_violation, live_transfers,
                        movement_from_json, record_decision, tighten_live_transfers)


log = logging.getLogger("signerd.proposals")

PENDING = ProposalState.PENDING_APPROVAL.value  # plain text: metric labels, log fields
APPROVED = ProposalState.APPROVED.value
STATES = tuple(s.value for s in ProposalState)


ShownDecision = Shown[ProposalApprovalRecord]  # a decision on a proposal as the API shows it


@dataclass(frozen=True)
class ProposalView:
    proposal: ProposalRecord  # its submitter and window as the sealed document says
    doc: dict[str, Any]
    approvals: tuple[ShownDecision, ...]
    requirement: str
    remaining: str
    sealed: bool = True  # the document carries signerd's seal (else: not signerd's, see failure)

    @property
    def id(self) -> str:
        return self.proposal.id

    @property
    def state(self) -> str:
        return self.proposal.state.value

    @property
    def row(self) -> dict[str, Any]:
        """The proposal's columns as shown (for scripts and tests that read them by name)."""
        return proposal_columns(self.proposal)

    @property
    def summary(self) -> str:
        try:
            text = AU.summary(self.doc)
        except (KeyError, TypeError, AttributeError):
            text = "(malformed proposal document)"
        return text if self.sealed else "NOT SIGNERD'S PROPOSAL (its seal does not verify): " + text


def new_proposal_id() -> str:
    return "p_" + secrets.token_hex(10)


def unsealed(proposal_id: str) -> AuthorityViolation:
    """A proposal row whose document does not carry signerd's seal."""
    return AuthorityViolation(
        f"proposal {echo(proposal_id, quote=False)} does not carry signerd's seal: its row was "
        "written or altered by someone other than signerd; it cannot be decided and is never "
        "applied", kind="proposal")


decisions_of = A.signed_decisions


class ProposalService:
    def __init__(self, app: Runtime):
        self.app = app
        self.store = app.store
        self.ledger = app.ledger
        # Called after a proposal was applied and committed (e.g. an unfreeze resumes signing).
        self.on_applied: list[Callable[[dict[str, Any]], None]] = []

    # ---------------------------------------------------------------- reading
    @staticmethod
    def _parsed(row: ProposalRecord) -> dict[str, Any] | None:
        """The row's proposal document, or None when it is not even a JSON object."""
        try:
            doc = canonical.loads(row.body, f"proposal {row.id}")
        except (InvalidArgument, TypeError, ValueError):
            return None
        return dict(doc) if isinstance(doc, dict) else None

    def _doc(self, row: ProposalRecord, state: AU.AuthorityState) -> dict[str, Any]:
        """The proposal document of ``row`` if signerd recorded it: its seal verifies under the
        pinned audit key and it is the row's proposal. Else AuthorityViolation (``proposal``)."""
        doc = self._parsed(row)
        if (doc is None or doc.get("id") != row.id or doc.get("kind") != row.kind
                or not AU.proposal_sealed(state, doc, row.seal)):
            raise unsealed(row.id)
        return doc

    def _view(self, tx: Tx, row: ProposalRecord, state: AU.AuthorityState | None = None,
              approvals: list[ProposalApprovalRecord] | None = None) -> ProposalView:
        approvals = tx.proposal_approvals(row.id) if approvals is None else approvals
        state = self.ledger.state(tx) if state is None else state
        try:
            doc = self._doc(row, state)
        except AuthorityViolation as e:  # shown as what it is; decided never
            parsed = self._parsed(row)
            doc = parsed if parsed is not None else {
                "id": row.id, "instance_id": "", "kind": row.kind, "change": {},
                "submitter": row.submitter, "created_at": int(row.created_at),
                "expires_at": int(row.expires_at)}
            return ProposalView(proposal=dataclasses.replace(row, failure=e.message), doc=doc,
                                approvals=tuple(ShownDecision(a, False) for a in approvals),
                                requirement="", remaining="", sealed=False)
        # The sealed document names the submitter and the window, whatever the columns say.
        shown = dataclasses.replace(row, submitter=doc["submitter"],
                                    created_at=float(doc["created_at"]),
                                    expires_at=float(doc["expires_at"]))
        requirement = remaining = ""
        counted: tuple[str, ...] = ()
        try:
            req = AU.requirement(state, doc)
            requirement = req.describe()
            if row.state == PENDING:
                q, _, _ = AU.proposal_quorum(state, doc, decisions_of(approvals))
                remaining, counted = q.remaining, q.counted
        except (SignerError, KeyError, TypeError):
            pass
        return ProposalView(
            proposal=shown, doc=doc,
            approvals=tuple(ShownDecision(a, a.operator_id in counted) for a in approvals),
            requirement=requirement, remaining=remaining)

    def get(self, proposal_id: str) -> ProposalView:
        if not proposal_id:
            raise InvalidArgument("proposal_id: required")
        with self.store.read() as tx:
            return self._view(tx, tx.get_proposal(proposal_id))

    def list(self, *, state: str = "", after: str = "", limit: int = 100
             ) -> builtins.list[ProposalView]:
        if state and state not in STATES:
            raise InvalidArgument(f"state: {echo(state)} is not a proposal state "
                                  f"({', '.join(STATES)})")
        with self.store.read() as tx:
            st = self.ledger.state(tx)
            rows = tx.list_proposals(state=state, after=after, limit=limit)
            apps = tx.proposal_approvals_for([r.id for r in rows])
            return [self._view(tx, r, st, apps[r.id]) for r in rows]

    def statement(self, proposal_id: str, decision: Decision) -> tuple[bytes, str, ProposalView]:
        """What an operator signs to decide on a proposal: refused (AuthorityViolation) for a
        proposal signerd did not record, so nobody is shown one as if it were."""
        view = self.get(proposal_id)
        if not view.sealed:
            raise unsealed(proposal_id)
        return (A.proposal_statement(view.doc, decision),
                AU.render_proposal(view.doc, decision, requirement_text=view.requirement), view)

    # ---------------------------------------------------------------- proposing
    def propose(self, actor: str, kind: str, change: dict[str, Any], *,
                proposal_id: str = "", now: float | None = None,
                with_tx: Callable[[Tx, AU.AuthorityState, dict[str, Any]], None] | None = None
                ) -> ProposalView:
        """A new proposal, PENDING_APPROVAL, checked against the authority state now (it would
        apply as it stands). ``with_tx`` writes what goes with it in the same transaction (a
        wallet awaiting approval)."""
        now = time.time() if now is None else now
        with self.store.transaction() as tx:
            state = self.ledger.state(tx)
            doc: dict[str, Any] = {
                "id": proposal_id or new_proposal_id(), "instance_id": state.instance_id,
                "kind": kind, "change": change, "submitter": actor, "created_at": int(now),
                "expires_at": int(now) + state.governance.expiry,
            }
            AU.check_document(doc, state.instance_id)
            AU.check_proposal(state, doc)
            AU.check_approvable(state, doc)
            self._live_checks(tx, state, doc)
            # Sealed once checked (the HSM's audit key; an HSM that is down refuses the
            # proposal, UNAVAILABLE, and nothing is written).
            seal = self.app.seal(AU.PROPOSAL_SEAL, doc)
            tx.insert_proposal(proposal_columns(ProposalRecord(
                id=doc["id"], kind=kind, body=canonical.dumps(doc).decode(),
                state=ProposalState.PENDING_APPROVAL,
                submitter=actor, subject=_subject(doc), expires_at=float(doc["expires_at"]),
                created_at=now, updated_at=now, seal=seal)))
            if with_tx is not None:
                with_tx(tx, state, doc)
            tx.append_audit(actor, "proposal.created", doc["id"], {
                "kind": kind, "summary": AU.summary(doc),
                "body_sha256": A.statement_digest(canonical.dumps(doc)).hex()})
            tx.emit(EV.ProposalEntered(doc["id"], kind, PENDING, actor))
            view = self._view(tx, tx.get_proposal(doc["id"]), state)
        self.app.notifier.notify()
        return view

    def _live_checks(self, tx: Tx, state: AU.AuthorityState, doc: dict[str, Any]) -> None:
        """What the pure checks cannot see: the wallet a change names exists and is one of
        signerd's, its policy version 1 is the text the change replaces, a new policy
        loosens no live transfer of the wallet, and a token entry is neither added nor changed
        under a live transfer that calls its contract."""
        kind, c = doc["kind"], doc["change"]
        if kind in ("wallet.policy", "wallet.unfreeze"):
            try:
                wallet = L.load_wallet(tx, state, c["wallet_id"])
            except NotFound:
                raise NotFound(f"wallet_id: wallet {echo(c['wallet_id'], quote=False)} "
                               "not found") from None
            if wallet.status in (WalletStatus.AWAITING_APPROVAL, WalletStatus.RETIRED):
                raise FailedPrecondition(f"wallet {wallet.id} is {wallet.status.value}")
            if kind == "wallet.policy":
                current, _ = AU.wallet_policy_text(state, wallet.id, wallet.policy_sha256,
                                                   c["base_version"])
                if c["base_version"] == 1 and current != c["old_document"]:
                    raise FailedPrecondition(f"old_document is not wallet {wallet.id}'s policy "
                                             "version 1")
                self._no_loosening(tx, state, wallet, c["document"])
        if kind == "token.set":
            self._token_unused(tx, c["token"])
        if kind == "chain.set":
            self._chain_unused(tx, c["chain"], c["old_chain"])

    @staticmethod
    def _live_using(tx: Tx, uses: Callable[[Movement], bool], what: str) -> None:
        """Refuse a registry change (``what``: the entry, "token X on chain N") while a live
        transfer's movement ``uses`` it: the statement its approvals signed shows the entry as
        it was at submission."""
        busy = sorted(row.id for state in LIVE_STATES
                      for row in tx.list_transfers(state=state.value, limit=1_000_000)
                      if uses(movement_from_json(row.movement)))
        if busy:
            raise FailedPrecondition(
                f"{what} live transfer(s) {', '.join(busy[:5])}{' ...' if len(busy) > 5 else ''}"
                "; let them finish or cancel them first")

    @classmethod
    def _token_unused(cls, tx: Tx, token: dict[str, Any]) -> None:
        """A token's registry entry is neither added nor changed under a live transfer that
        calls its contract (a contract call, or the entry then in force)."""
        chain_id, address = token.get("chain_id"), str(token.get("address", "")).lower()
        cls._live_using(tx, lambda mv: mv.chain_id == chain_id and (
            any(t.key == (chain_id, address) for t in mv.tokens)
            or (mv.contract_call != "" and any(o.address.lower() == address
                                               for o in mv.outputs))),
            f"token {token.get('address')} on chain {chain_id} is called by")

    @classmethod
    def _chain_unused(cls, tx: Tx, chain: dict[str, Any], old: dict[str, Any]) -> None:
        """A chain's registry entry is not changed under a live transfer on that chain (its
        name and native coin as they were). A new chain has no transfer yet."""
        if not old:
            return
        chain_id = chain.get("chain_id")
        cls._live_using(tx, lambda mv: mv.chain is Chain.ETHEREUM and mv.chain_id == chain_id,
                        f"chain {chain_id} is used by")

    def _no_loosening(self, tx: Tx, state: AU.AuthorityState, wallet: Any,
                      document: str) -> None:
        new = P.parse_policy(document)
        loosened = []
        for row, movement in live_transfers(tx, wallet.id, lock=True):
            old = effective_requirement(state, wallet, movement, row.category_change,
                                        row.policy_version)
            try:
                req = P.with_floor(new.requirement_for(movement,
                                                       category_change=row.category_change),
                                   movement, waived=bool(new.floor_waiver))
            except SignerError:
                continue  # the new policy does not cover it: it keeps its demands
            if not req.at_least_as_strict_as(old):
                loosened.append(row.id)
        if loosened:
            raise FailedPrecondition(
                f"document: the new policy would loosen live transfer(s) "
                f"{', '.join(loosened[:5])}{' ...' if len(loosened) > 5 else ''} of wallet "
                f"{wallet.id}; let them finish or cancel them first")

    # ---------------------------------------------------------------- deciding
    def decide(self, actor: str, proposal_id: str, operator_id: str, decision: Decision,
               signature: bytes, *, reason: str = "", statement_sha256: bytes = b""
               ) -> ProposalView:
        A.check_decision("proposal_id", proposal_id, operator_id, decision, reason)
        now = time.time()
        outcome = ""
        doc: dict[str, Any] = {}
        failure: SignerError | None = None
        resurrected = bool(self.app.ended([proposal_id]))
        with self.store.transaction() as tx:
            row = tx.get_proposal(proposal_id, lock=True)
            if row.state != PENDING:
                raise FailedPrecondition(f"proposal {proposal_id} is {row.state.value}, not "
                                         "waiting for approvals")
            state = self.ledger.state(tx)
            sealed: dict[str, Any] | None = None
            try:
                sealed = self._doc(row, state)
            except AuthorityViolation as e:
                failure = e
            doc = sealed if sealed is not None else {}
            if sealed is None:  # not signerd's: ended, and nothing its document names touched
                assert isinstance(failure, AuthorityViolation)
                self._end(tx, row, None, "FAILED", "signerd", failure.message, violation=failure)
                outcome = "FAILED"
            elif resurrected:
                failure = ended_violation(proposal_id)
                self._end(tx, row, doc, "FAILED", "signerd", failure.message, violation=failure)
                outcome = "FAILED"
            elif now >= doc["expires_at"]:  # the sealed window; committed, then refused below
                self._end(tx, row, doc, "EXPIRED", "signerd", "approval window passed")
                outcome = "EXPIRED"
            else:
                op = state.deciding_operator(operator_id, doc["submitter"],
                                             f"proposal {proposal_id}")
                statement = A.proposal_statement(doc, decision)
                record_decision(
                    tx, actor, "proposal", proposal_id, operator_id, op.public_key_pem, statement,
                    signature, statement_sha256=statement_sha256, decision=decision,
                    reason=reason, now=now,
                    mismatch="this proposal's", insert=lambda fields: (
                        tx.insert_proposal_approval(proposal_approval_columns(
                            ProposalApprovalRecord(proposal_id=proposal_id, **fields)))))
                tx.emit(EV.Decided("proposal", proposal_id, operator_id, decision))
                decisions = decisions_of(tx.proposal_approvals(proposal_id))
                q, votes, bad = AU.proposal_quorum(state, doc, decisions)
                if bad:
                    failure = AuthorityViolation(
                        f"proposal {proposal_id}: " + "; ".join(bad), kind="approval")
                    self._end(tx, row, doc, "FAILED", "signerd", failure.message,
                              violation=failure)
                    outcome = "FAILED"
                elif q.rejected:
                    self._end(tx, row, doc, "REJECTED", "signerd", q.reason)
                    outcome = "REJECTED"
                elif q.met:
                    voted = {v.operator_id for v in votes}
                    outcome, failure = self._apply(
                        tx, state, row, doc, [d for d in decisions if d.operator_id in voted])
        self.app.notifier.notify()
        if isinstance(failure, AuthorityViolation) and failure.kind in ("ended", "proposal"):
            raise failure
        if outcome == "EXPIRED":
            raise FailedPrecondition(f"proposal {proposal_id} has expired")
        if outcome == APPROVED:
            for fn in self.on_applied:
                fn(doc)
        return self.get(proposal_id)

    def _apply(self, tx: Tx, state: AU.AuthorityState, row: ProposalRecord, doc: dict[str, Any],
               decisions: builtins.list[A.SignedDecision]) -> tuple[str, SignerError | None]:
        """The quorum is met: append the ledger entry and make the change, in ``tx``. The
        ledger's head is locked first (after the transfers a policy change locks), the state
        read again under it, and the quorum judged again there: another replica may have
        applied a proposal meanwhile (a new governance policy, a revoked approver)."""
        try:
            self._live_checks(tx, state, doc)
            state = self.ledger.locked(tx)
            q, votes, bad = AU.proposal_quorum(state, doc, decisions)
            if bad or not q.met:
                return "", None  # the decision stays recorded; the proposal waits
            voted = {v.operator_id for v in votes}
            new = self.ledger.append(tx, state, AU.PROPOSAL, doc,
                                     [d for d in decisions if d.operator_id in voted],
                                     seal=self.app.seal)
        except HsmUnavailable:
            raise  # the entry cannot be sealed now: nothing is written, the decision is retried
        except AuthorityViolation as e:
            self._end(tx, row, doc, "FAILED", "signerd", e.message, violation=e)
            return "FAILED", e
        except SignerError as e:
            self._end(tx, row, doc, "FAILED", "signerd", f"no longer applies: {e.message}")
            return "FAILED", e
        self._materialize(tx, new, doc)
        tx.update_proposal(row.id, state=APPROVED, applied_seq=new.seq)
        tx.emit(EV.ProposalEntered(row.id, doc["kind"], APPROVED,
                                   reason=f"applied as ledger entry {new.seq}"))
        tx.append_audit("signerd", "proposal.applied", row.id, {
            "kind": doc["kind"], "summary": AU.summary(doc), "ledger_seq": new.seq,
            "ledger_hash": new.head.hex(),
            "approved_by": sorted(d.operator_id for d in decisions
                                  if d.decision is Decision.APPROVE)})
        return APPROVED, None

    def _materialize(self, tx: Tx, state: AU.AuthorityState, doc: dict[str, Any]) -> None:
        """Copy the applied change into the store's tables, for people and reports (signerd
        itself reads the ledger)."""
        kind, c = doc["kind"], doc["change"]
        if kind == "operator.register":
            tx.insert_operator(c["operator_id"], c["roles"], c["public_key_pem"])
        elif kind == "operator.revoke":
            tx.revoke_operator(c["operator_id"])
        elif kind == "operator.roles":
            tx.update_operator(c["operator_id"], roles=c["roles"])
        elif kind == "operator.reinstate":
            tx.update_operator(c["operator_id"], status=OperatorStatus.ACTIVE)
        elif kind == "wallet.policy":
            version = c["base_version"] + 1
            tx.insert_policy(c["wallet_id"], c["document"], doc["submitter"], version=version,
                             proposal_id=doc["id"])
            wallet = L.load_wallet(tx, state, c["wallet_id"])
            tighten_live_transfers(tx, state, wallet, self.app.transfers._finish)
        elif kind == "wallet.unfreeze":
            tx.set_wallet_status(c["wallet_id"], WalletStatus.ACTIVE.value, c["order_ref"])
            tx.append_audit(doc["submitter"], "wallet.unfrozen", c["wallet_id"],
                            {"order_ref": c["order_ref"], "proposal": doc["id"]})
        elif kind in ("wallet.import", "wallet.create"):
            tx.set_wallet_status(c["wallet"]["id"], WalletStatus.ACTIVE.value, "")

    def _end(self, tx: Tx, row: ProposalRecord, doc: dict[str, Any] | None, state: str, actor: str,
             why: str, *, violation: AuthorityViolation | None = None) -> None:
        """End a pending proposal (``doc`` is its sealed document; None for a row signerd did not
        record, whose document names nothing signerd will touch)."""
        tx.update_proposal(row.id, state=state, failure=why)
        if doc is not None and doc["kind"] in ("wallet.import", "wallet.create"):
            self._retire(tx, doc)
        tx.append_audit(actor, f"proposal.{state.lower()}", row.id, {"reason": why})
        tx.emit(EV.ProposalEntered(row.id, doc["kind"] if doc is not None else row.kind, state,
                                   actor, why))
        if violation is not None:
            tx.append_audit("signerd", "authority.violation", row.id,
                            {"kind": violation.kind, "reason": violation.message})
            tx.emit(EV.AuthorityViolated("proposal", row.id, violation.kind, violation.message))

    def _retire(self, tx: Tx, doc: dict[str, Any]) -> None:
        """A wallet proposal ended without approval: the wallet it would have made is RETIRED
        (if it still awaits this proposal; it never comes into force), and the keys it
        reserved that another wallet may use are free again: each key share it took goes back
        to unassigned, and the wallet's rows for those shares and for its outside cosigners'
        keys are removed (they guard "a key never serves two wallets"), so that another wallet
        can take them, through its own proposal when it has outside keys. The keys generated
        for it stay with it, unused. A seized key stays with its RETIRED wallet: importing it
        again proposes that wallet anew (``admin.import_seized_key``). The retired wallet keeps
        its address, so exactly the same key set cannot be proposed again."""
        record = doc["change"]["wallet"]
        wid = record["id"]
        try:
            row = tx.get_wallet(wid, lock=True)
        except NotFound:
            return
        if row.proposal_id != doc["id"] or row.status not in (
                WalletStatus.AWAITING_APPROVAL.value, WalletStatus.RETIRED.value):
            return  # the wallet is another proposal's now (a seized key imported again)
        tx.set_wallet_status(wid, WalletStatus.RETIRED.value, "")
        if doc["kind"] != "wallet.create":
            return
        keys = {k["key_id"]: k for k in record["keys"]}
        for key_id in tx.wallet_key_shares(wid):
            if key_id not in keys or not keys[key_id]["hsm_held"]:
                continue
            tx.release_key_share(key_id, wid)
            tx.append_audit("signerd", "key_share.released", key_id,
                            {"wallet_id": wid, "proposal": doc["id"]})
        for key_id, k in keys.items():
            if not k["hsm_held"]:
                tx.delete_wallet_key(key_id, wid)

    def cancel(self, actor: str, proposal_id: str, reason: str = "") -> ProposalView:
        """The submitter withdraws a pending proposal. Nobody else may (PermissionDenied): one
        person must not be able to block, say, the revocation of a compromised key that another
        proposed; whoever wants a proposal stopped rejects it with a signed decision."""
        A.check_reason(reason)
        with self.store.transaction() as tx:
            row = tx.get_proposal(proposal_id, lock=True)
            if row.state != PENDING:
                raise FailedPrecondition(f"proposal {proposal_id} is {row.state.value}; only a "
                                         "pending proposal can be cancelled")
            doc, failure = self._doc_or_fail(tx, row)
            if doc is not None:
                if doc["submitter"] != actor:
                    raise PermissionDenied(
                        f"only the submitter of proposal {proposal_id} ({doc['submitter']}) may "
                        "cancel it; to stop it, reject it with a signed decision (signerctl "
                        f"proposal reject {proposal_id} --key KEY --reason TEXT)")
                self._end(tx, row, doc, "CANCELLED", actor, reason or "cancelled")
        self.app.notifier.notify()
        if failure is not None:
            raise failure
        return self.get(proposal_id)

    def tick(self, now: float | None = None) -> None:
        """The health monitor's part: end FAILED, as authority violations, pending proposals
        whose document does not carry signerd's seal (a row written by someone else), and
        expire those whose sealed window passed."""
        now = time.time() if now is None else now
        todo: builtins.list[str] = []
        with self.store.read() as tx:
            rows = self._pending(tx)
            if not rows:
                return
            try:
                state = self.ledger.state(tx)
            except AuthorityViolation:
                return  # counted and logged by the ledger; nothing can be decided meanwhile
            for r in rows:
                try:
                    if now >= self._doc(r, state)["expires_at"]:
                        todo.append(r.id)
                except AuthorityViolation:
                    todo.append(r.id)
        for pid in todo:
            with self.store.transaction() as tx:
                row = tx.get_proposal(pid, lock=True)
                if row.state != PENDING:
                    continue
                doc, _ = self._doc_or_fail(tx, row)  # a failure is reported from the tx
                if doc is not None:
                    if now < doc["expires_at"]:
                        continue
                    self._end(tx, row, doc, "EXPIRED", "signerd", "approval window passed")
            self.app.notifier.notify()

    def _doc_or_fail(self, tx: Tx, row: ProposalRecord
                     ) -> tuple[dict[str, Any] | None, AuthorityViolation | None]:
        """A pending proposal's sealed document; or, when it does not verify, the proposal
        ended FAILED as an authority violation, and the violation."""
        state = self.ledger.state(tx)  # a ledger that does not verify ends nothing
        try:
            return self._doc(row, state), None
        except AuthorityViolation as e:
            self._end(tx, row, None, "FAILED", "signerd", e.message, violation=e)
            return None, e

    @staticmethod
    def _pending(tx: Tx) -> builtins.list[ProposalRecord]:
        rows: builtins.list[ProposalRecord] = []
        while True:
            page = tx.list_proposals(state=PENDING, after=rows[-1].id if rows else "",
                                     limit=1000)
            rows += page
            if len(page) < 1000:
                return rows


def _subject(doc: dict[str, Any]) -> str:
    c = doc["change"]
    if doc["kind"] == "token.set":
        return f"{c['token'].get('chain_id')}:{c['token'].get('address')}"
    if doc["kind"] == "chain.set":
        return f"chain:{c['chain'].get('chain_id')}"
    for key in ("operator_id", "wallet_id", "name"):
        if key in c:
            return str(c[key])
    if "wallet" in c:
        return str(c["wallet"]["id"])
    return ""
