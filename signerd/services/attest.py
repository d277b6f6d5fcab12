"""Proofs of control under quorum, and the holdings statement they make.

An attestation covers every active wallet of a category (or a case): ``create`` writes one text
per wallet in signerd's own format (``core/attest``), seals the document with the audit key and
waits for operators' signed decisions; ``decide`` records one and counts them
(``attest.judge``). Once the quorum is met, ``sign`` has the HSM sign, for each wallet, the
digest signerd computed from that wallet's text (EIP-191 or BIP-322), and only after checking
again, in one read, the document's seal, every text, every wallet (sealed, active, the same
address and keys) and the quorum under the ledger as it is now. The proofs, the approvals with
the approvers' keys and signerd's record of the wallets' transfers in the period make the
holdings statement, sealed by the audit key and kept in the row; ``export`` returns it.

Nothing here takes a text or a digest from a client: the client names a category, a case, a
challenge and an issuer, each checked as the format demands.
"""
from __future__ import annotations

import builtins
import hashlib
import json
import logging
import secrets
import time
from datetime import datetime, timezone
from typing import Any

from signerd.adapters.store import Tx
from signerd.core import approval as A
from signerd.core import attest as T
from signerd.core import authority as AU
from signerd.core import canonical
from signerd.core.errors import (AuthorityViolation, FailedPrecondition, InvalidArgument,
                                 NotFound, PolicyDenied, SignerError)
from signerd.core.model import Category, Chain, Decision, ScriptType, TransferState, Wallet
from signerd.core.model import WalletStatus
from signerd.core.records import AttestationApprovalRecord, AttestationRecord
from . import ledger as L
from .runtime import Runtime
from .transfers import movement_from_json, record_decision

log = logging.getLogger("signerd.attest")

PENDING, APPROVED, SIGNED = "PENDING_APPROVAL", "APPROVED", "SIGNED"
REJECTED, EXPIRED, FAILED = "REJECTED", "EXPIRED", "FAILED"
STATES = (PENDING, APPROVED, SIGNED, REJECTED, EXPIRED, FAILED)
DEFAULT_ISSUER = "signerd instance {instance_id}"
BALANCES_NOTE = ("signerd watches no chain: this statement proves control of each address and "
                 "lists the transfers signerd signed; balances come from the chain itself")


def decisions_of(rows: builtins.list[AttestationApprovalRecord]) -> builtins.list[
        A.SignedDecision]:
    out = []
    for r in rows:
        try:
            out.append(A.SignedDecision(r.operator_id, r.decision, bytes.fromhex(r.signature)))
        except ValueError:
            out.append(A.SignedDecision(r.operator_id, r.decision, b""))
    return out


def attestable(wallet: Wallet) -> str:
    """Why ``wallet`` cannot prove control now ("" when it can)."""
    if wallet.status is not WalletStatus.ACTIVE:
        return f"{wallet.status.value.lower()}: signs nothing until active"
    if wallet.script_type is ScriptType.P2WSH_SORTEDMULTI:
        held = sum(1 for k in wallet.keys if k.hsm_held)
        if held < wallet.threshold:
            return (f"multisig with {held} of its {wallet.threshold} signatures in this HSM: "
                    "its cosigners' BIP-322 signatures are not collected here yet")
    return ""


class AttestService:
    def __init__(self, app: Runtime):
        self.app = app
        self.store = app.store
        self.ledger = app.ledger

    # ---------------------------------------------------------------- reading
    def _doc(self, row: AttestationRecord, state: AU.AuthorityState) -> dict[str, Any]:
        """The row's document if signerd recorded it (its seal verifies) and every text in it
        is in the format; AuthorityViolation otherwise."""
        try:
            doc = canonical.loads(row.document, f"attestation {row.id}")
            if not isinstance(doc, dict) or doc.get("id") != row.id:
                raise ValueError("not this attestation's document")
            if not T.SEAL.valid(state.audit_public_key, T.DOCUMENT_SEAL, doc, row.seal):
                raise ValueError("its seal does not verify under signerd's audit key")
            return T.check_document(doc, self.app.instance_id)
        except (InvalidArgument, ValueError, TypeError) as e:
            why = e.message if isinstance(e, InvalidArgument) else str(e)
            raise AuthorityViolation(f"attestation {row.id}: not signerd's ({why})",
                                     kind="attestation") from None

    def _wallets(self, tx: Tx, state: AU.AuthorityState, doc: dict[str, Any]
                 ) -> builtins.list[Wallet]:
        """The document's wallets as the ledger proves them now; each must be active and
        still have the address its text names."""
        out = []
        for e in doc["wallets"]:
            w = L.load_wallet(tx, state, e["wallet_id"])
            if w.address != e["address"] or T.wallet_entry(w, e["text"]) != e:
                raise AuthorityViolation(f"attestation {doc['id']}: wallet {w.id} is not the "
                                         "one it names", kind="attestation")
            why = attestable(w)
            if why:
                raise FailedPrecondition(f"attestation {doc['id']}: wallet {w.id} is {why}")
            out.append(w)
        return out

    def view(self, tx: Tx, row: AttestationRecord) -> dict[str, Any]:
        state = self.ledger.state(tx)
        approvals = tx.attestation_approvals(row.id)
        out: dict[str, Any] = {
            "id": row.id, "state": row.state, "category": row.category, "case_ref": row.case_ref,
            "submitter": row.submitter, "expires_at": int(row.expires_at),
            "created_at": int(row.created_at), "failure": row.failure,
            "approvals": [{"operator_id": a.operator_id, "decision": a.decision.value,
                           "reason": a.reason} for a in approvals]}
        try:
            doc = self._doc(row, state)
        except AuthorityViolation as e:
            out.update(document=None, requirement="", remaining="", not_signerds=e.message)
            return out
        out["document"] = doc
        try:
            v = T.judge(state, doc, self._wallets(tx, state, doc), decisions_of(approvals))
            out["requirement"] = v.requirement.describe()
            out["remaining"] = "" if v.met else v.reason
        except SignerError as e:
            out["requirement"], out["remaining"] = "", e.message
        return out

    def get(self, attestation_id: str) -> dict[str, Any]:
        with self.store.read() as tx:
            return self.view(tx, tx.get_attestation(attestation_id))

    def list(self, *, state: str = "", after: str = "", limit: int = 100
             ) -> builtins.list[dict[str, Any]]:
        if state and state.upper() not in STATES:
            raise InvalidArgument(f"state: one of {', '.join(STATES)}")
        with self.store.read() as tx:
            return [{"id": r.id, "state": r.state, "category": r.category,
                     "case_ref": r.case_ref, "submitter": r.submitter,
                     "created_at": int(r.created_at)}
                    for r in tx.list_attestations(state=state.upper(), after=after,
                                                  limit=limit)]

    def statement(self, attestation_id: str, decision: Decision) -> tuple[bytes, str,
                                                                           dict[str, Any]]:
        """The exact bytes an operator signs, what they read, and the attestation."""
        with self.store.read() as tx:
            row = tx.get_attestation(attestation_id)
            state = self.ledger.state(tx)
            doc = self._doc(row, state)
            view = self.view(tx, row)
        return (T.statement(doc, decision), T.render(doc, decision, view.get("requirement", "")),
                view)

    # ---------------------------------------------------------------- acts
    def create(self, actor: str, *, category: str, case_ref: str, challenge: str,
               issuer: str = "", since: int = 0) -> dict[str, Any]:
        if category and category not in {c.value for c in Category}:
            raise InvalidArgument(f"category: one of {', '.join(c.value for c in Category)}")
        if not category and not case_ref:
            raise InvalidArgument("category or case_ref: an attestation names what it covers")
        T.check_challenge(challenge)
        now = time.time()
        attestation_id = "a_" + secrets.token_hex(10)
        issuer = issuer or DEFAULT_ISSUER.format(instance_id=self.app.instance_id)
        day = datetime.fromtimestamp(now, timezone.utc).date().isoformat()
        with self.store.transaction() as tx:
            state = self.ledger.state(tx)
            wallets, left_out = [], []
            for row in tx.list_wallets(category=category, case_ref=case_ref, limit=10**9):
                try:
                    w = L.verified_wallet(state, row)
                except AuthorityViolation as e:
                    left_out.append({"wallet_id": row.id, "address": row.address,
                                     "reason": f"not signerd's wallet: {e.message}"})
                    continue
                why = attestable(w)
                if not why:
                    try:
                        T.wallet_requirement(state, w)
                        T.Attestation(statement=attestation_id, issuer=issuer, address=w.address,
                                      chain=T.chain_label(w), category=w.category.value,
                                      case=w.case_ref, date=day, challenge=challenge)
                    except PolicyDenied as e:
                        why = f"its policy allows no attestation: {e.message}"
                    except InvalidArgument as e:
                        if e.message.startswith(("issuer", "challenge")):
                            raise
                        why = f"cannot be written in an attestation: {e.message}"
                if w.status is WalletStatus.RETIRED or w.status is WalletStatus.AWAITING_APPROVAL:
                    continue  # never in force: not a holding
                if why:
                    left_out.append({"wallet_id": w.id, "address": w.address, "reason": why})
                else:
                    wallets.append(w)
            if not wallets:
                raise FailedPrecondition("no wallet can prove control here: "
                                         + ("; ".join(f"{x['wallet_id']}: {x['reason']}"
                                                      for x in left_out) or "none matches"))
            req = T.requirement(state, wallets)
            doc = T.make_document(
                attestation_id=attestation_id, instance_id=self.app.instance_id, issuer=issuer,
                category=category, case_ref=case_ref, challenge=challenge, date=day,
                created_at=int(now), expires_at=int(now) + req.expiry, since=int(since),
                submitter=actor, wallets=wallets, left_out=left_out)
            seal = self.app.seal(T.DOCUMENT_SEAL, doc)
            tx.insert_attestation({
                "id": attestation_id, "category": category, "case_ref": case_ref,
                "document": canonical.dumps(doc).decode(), "seal": seal, "state": PENDING,
                "submitter": actor, "expires_at": float(doc["expires_at"]), "created_at": now,
                "updated_at": now, "result": "", "failure": ""})
            tx.append_audit(actor, "attestation.created", attestation_id, {
                "category": category, "case_ref": case_ref, "challenge": challenge,
                "wallets": [e["wallet_id"] for e in doc["wallets"]],
                "document_sha256": hashlib.sha256(canonical.dumps(doc)).hexdigest()})
            view = self.view(tx, tx.get_attestation(attestation_id))
        return view

    def decide(self, actor: str, attestation_id: str, operator_id: str, decision: Decision,
               signature: bytes, *, reason: str = "", statement_sha256: bytes = b""
               ) -> dict[str, Any]:
        A.check_decision("attestation_id", attestation_id, operator_id, decision, reason)
        now = time.time()
        outcome = ""
        with self.store.transaction() as tx:
            row = tx.get_attestation(attestation_id, lock=True)
            if row.state != PENDING:
                raise FailedPrecondition(f"attestation {attestation_id} is {row.state}, not "
                                         "waiting for approvals")
            state = self.ledger.state(tx)
            doc = self._doc(row, state)
            if now >= float(doc["expires_at"]):
                self._end(tx, attestation_id, EXPIRED, "approval window passed")
                outcome = EXPIRED
            else:
                op = state.deciding_operator(operator_id, doc["submitter"],
                                             f"attestation {attestation_id}")
                record_decision(
                    tx, actor, "attestation", attestation_id, operator_id, op.public_key_pem,
                    T.statement(doc, decision), signature, statement_sha256=statement_sha256,
                    decision=decision, reason=reason, now=now,
                    mismatch="this attestation's", insert=lambda f: (
                        tx.insert_attestation_approval(
                            {**f, "attestation_id": attestation_id,
                             "decision": f["decision"].value})))
                v = T.judge(state, doc, self._wallets(tx, state, doc),
                            decisions_of(tx.attestation_approvals(attestation_id)))
                if v.bad:
                    self._end(tx, attestation_id, FAILED, "; ".join(v.bad))
                    outcome = FAILED
                elif v.rejected:
                    self._end(tx, attestation_id, REJECTED, v.reason)
                    outcome = REJECTED
                elif v.met:
                    tx.update_attestation(attestation_id, state=APPROVED)
                    tx.append_audit("signerd", "attestation.approved", attestation_id,
                                    {"quorum": v.reason})
                    outcome = APPROVED
        if outcome == EXPIRED:
            raise FailedPrecondition(f"attestation {attestation_id} has expired")
        if outcome == APPROVED:
            self.sign(attestation_id)
        return self.get(attestation_id)

    def _end(self, tx: Tx, attestation_id: str, state: str, why: str) -> None:
        tx.update_attestation(attestation_id, state=state, failure=why)
        tx.append_audit("signerd", f"attestation.{state.lower()}", attestation_id,
                        {"reason": why})

    def sign(self, attestation_id: str) -> None:
        """Sign an APPROVED attestation's texts, once, after checking everything again."""
        with self.store.read() as tx:
            row = tx.get_attestation(attestation_id)
            if row.state != APPROVED:
                return
            state = self.ledger.state(tx)
            doc = self._doc(row, state)
            wallets = self._wallets(tx, state, doc)
            rows = tx.attestation_approvals(attestation_id)
            v = T.judge(state, doc, wallets, decisions_of(rows))
            if not v.met:
                raise FailedPrecondition(f"attestation {attestation_id}: its quorum no longer "
                                         f"holds ({v.reason})")
            approvers = {r.operator_id for r in rows}
            transfers = self._transfers(tx, wallets, int(doc["since"]))
        jobs: list[tuple[str, bytes]] = []
        plans = []
        for w, e in zip(wallets, doc["wallets"]):
            if w.chain is Chain.ETHEREUM:
                digest = T.eip191_digest(e["text"])
            else:
                digest = T.bip322_digest(w, e["text"])
            keys = [k for k in w.keys if k.hsm_held]
            if w.script_type is ScriptType.P2WSH_SORTEDMULTI:
                keys = keys[:w.threshold]
            plans.append((w, e, digest, keys))
            jobs += [(k.key_id, digest) for k in keys]
        results = iter(self.app.hsm_sign_start(jobs)())
        proofs = []
        for w, e, digest, keys in plans:
            sigs = {}
            for k in keys:
                got = next(results)
                if isinstance(got, SignerError):
                    raise got
                sigs[k.public_key] = got
            if w.chain is Chain.ETHEREUM:
                r, s = sigs[w.keys[0].public_key]
                method, signature = "eip191", T.eip191_signature(digest, r, s,
                                                                 w.keys[0].public_key)
            else:
                method, signature, _ = T.bip322_signature(w, e["text"], sigs)
            proof = {"wallet_id": w.id, "address": w.address, "method": method,
                     "signature": signature}
            T.verify_proof(e, proof)  # the proof verifies before anyone sees it
            proofs.append(proof)
        now = time.time()
        body = {
            "format": T.EXPORT_FORMAT, "instance_id": self.app.instance_id,
            "audit_public_key": state.audit_public_key.hex(), "attestation": doc,
            "requirement": v.reason,
            "approvals": [{"operator_id": r.operator_id, "decision": r.decision.value,
                           "signature": r.signature} for r in rows],
            "approvers": [{"operator_id": o, "roles": sorted(state.operators[o].roles),
                           "public_key_pem": state.operators[o].public_key_pem}
                          for o in sorted(approvers) if o in state.operators],
            "proofs": proofs,
            "transfers": {"from": str(doc["since"]), "to": str(int(now)), "items": transfers},
            "signed_at": str(int(now)), "balances": BALANCES_NOTE}
        body["seal"] = self.app.seal(T.SEAL_KIND, body)
        result = json.dumps(body, sort_keys=True, indent=1)
        with self.store.transaction() as tx:
            row = tx.get_attestation(attestation_id, lock=True)
            if row.state != APPROVED:
                return  # another worker stored its own: this one is discarded unseen
            state = self.ledger.state(tx)
            if not T.judge(state, doc, self._wallets(tx, state, doc),
                           decisions_of(tx.attestation_approvals(attestation_id))).met:
                raise FailedPrecondition(f"attestation {attestation_id}: its quorum no longer "
                                         "holds")
            tx.update_attestation(attestation_id, state=SIGNED, result=result)
            tx.append_audit("signerd", "attestation.signed", attestation_id, {
                "proofs": len(proofs), "statement_sha256": hashlib.sha256(canonical.dumps(body)).hexdigest()})

    @staticmethod
    def _transfers(tx: Tx, wallets: builtins.list[Wallet], since: int
                   ) -> builtins.list[dict[str, Any]]:
        """signerd's record of the wallets' signed transfers since ``since``."""
        ids = {w.id for w in wallets}
        out = []
        for t in tx.list_transfers(limit=10**9):
            if t.wallet_id not in ids or t.state is not TransferState.SIGNED:
                continue
            if t.updated_at < since:
                continue
            mv = movement_from_json(t.movement)
            out.append({"id": t.id, "wallet_id": t.wallet_id, "tx_hash": t.tx_hash,
                        "signed_at": str(int(t.updated_at)),
                        "category_change": t.category_change, "legal_basis": t.legal_basis,
                        "fee": str(mv.fee), "fee_asset": mv.fee_asset,
                        "outputs": [{"address": o.address, "amount": str(o.amount),
                                     "asset": o.asset, "change": o.is_change}
                                    for o in mv.outputs]})
        return out

    def export(self, attestation_id: str) -> bytes:
        """The holdings statement, once signed (an APPROVED one is signed first)."""
        with self.store.read() as tx:
            row = tx.get_attestation(attestation_id)
        if row.state == APPROVED:
            self.sign(attestation_id)
            with self.store.read() as tx:
                row = tx.get_attestation(attestation_id)
        if row.state != SIGNED:
            raise FailedPrecondition(f"attestation {attestation_id} is {row.state}: a holdings "
                                     "statement exists once its quorum approved it")
        if not row.result:
            raise NotFound(f"attestation {attestation_id}: no statement stored")
        return row.result.encode()
