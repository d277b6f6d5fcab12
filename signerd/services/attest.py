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

**Cosigners.** A P2WSH multisig whose HSM-held keys are fewer than its threshold proves control
with outside cosigners: after the quorum signerd signs its own keys' part of the BIP-322
``to_sign`` and keeps it as a PSBT (``attest.bip322_psbt``) in a record sealed by the audit key
(``attest.COSIGNING_SEAL``); the attestation waits in AWAITING_COSIGNERS. ``combine`` takes a
PSBT back, takes from it only partial signatures that verify under the wallet's keys over
signerd's own digest (``signer.combine_verified``), and once the wallet's threshold is met the
proof is the BIP-322 full signature; when no wallet waits, the holdings statement is made and
the attestation is SIGNED. Every step checks again what ``sign`` checks, the quorum included.

**What a store writer can do** to an attestation row is end it, never make it sign: a row
signerd did not seal, or whose columns are not what its sealed document says, ends FAILED as an
authority violation; an attestation the verified audit chain says ended (``App.ended``: its
``attestation.signed|rejected|expired|failed`` event is one of ``audit.ENDING_ACTIONS``) and
whose row says otherwise ends FAILED the same way; a decision row counts only by its signature
under the operator's key in the ledger.

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
from typing import Any, NoReturn

from signerd.adapters.store import Tx
from signerd.core import approval as A
from signerd.core import attest as T
from signerd.core import authority as AU
from signerd.core import canonical
from signerd.core import events as EV
from signerd.core.bitcoin import signer as SG
from signerd.core.chains import BitcoinAdapter
from signerd.core.errors import (AuthorityViolation, FailedPrecondition, InvalidArgument,
                                 InvalidPsbt, NotFound, PolicyDenied, SignerError)
from signerd.core.model import Category, Chain, Decision, ScriptType, TransferState, Wallet
from signerd.core.model import WalletStatus
from signerd.core.records import AttestationApprovalRecord, AttestationRecord
from . import ledger as L
from .runtime import Runtime
from .sign_step import ended_violation
from .transfers import movement_from_json, record_decision

log = logging.getLogger("signerd.attest")

PENDING, APPROVED, SIGNED = "PENDING_APPROVAL", "APPROVED", "SIGNED"
COSIGNING = "AWAITING_COSIGNERS"
REJECTED, EXPIRED, FAILED = "REJECTED", "EXPIRED", "FAILED"
STATES = (PENDING, APPROVED, COSIGNING, SIGNED, REJECTED, EXPIRED, FAILED)
DEFAULT_ISSUER = "signerd instance {instance_id}"
BALANCES_NOTE = ("signerd watches no chain: this statement proves control of each address and "
                 "lists the transfers signerd signed; balances come from the chain itself")


decisions_of = A.signed_decisions


def attestable(wallet: Wallet) -> str:
    """Why ``wallet`` cannot prove control now ("" when it can)."""
    if wallet.status is not WalletStatus.ACTIVE:
        return f"{wallet.status.value.lower()}: signs nothing until active"
    if wallet.chain not in (Chain.BITCOIN, Chain.ETHEREUM):
        return (f"{wallet.chain.value}: no message-signing scheme for attestations yet (left "
                "out, named in the statement)")
    if wallet.script_type is ScriptType.P2WSH_SORTEDMULTI and not any(
            k.hsm_held for k in wallet.keys):
        return "multisig with none of its keys in this HSM: signerd has nothing to sign"
    if wallet.script_type is ScriptType.SAFE:
        return ("a Safe: its owner key's EIP-191 signature does not prove control of the "
                "Safe's address (a contract account)")
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
            T.check_document(doc, self.app.instance_id)
            # The row's columns are copies of the sealed document's: one that differs was
            # written by someone else.
            for column, ok in (
                    ("category", row.category == doc["category"]),
                    ("case_ref", row.case_ref == doc["case_ref"]),
                    ("submitter", row.submitter == doc["submitter"]),
                    ("expires_at", row.expires_at == float(doc["expires_at"])),
                    ("created_at", int(row.created_at) == int(doc["created_at"]))):
                if not ok:
                    raise ValueError(f"its {column} is not the one signerd sealed")
            return doc
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
        if row.state == COSIGNING:
            try:
                record = self._cosigning(row, state, doc)
                wallets = {w.id: w for w in self._wallets(tx, state, doc)}
                out["cosigning"] = [
                    {"wallet_id": x["wallet_id"], "address": x["address"], "psbt": x["psbt"],
                     "threshold": wallets[x["wallet_id"]].threshold,
                     "signatures": len(BitcoinAdapter.parse(
                         x["psbt"].encode(), self.app.config.limits).inputs[0].partial_sigs)}
                    for x in record["waiting"]]
            except SignerError as e:
                out["cosigning"], out["not_signerds"] = [], e.message
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
            tx.emit(EV.AttestationEntered(attestation_id, PENDING, actor=actor))
            view = self.view(tx, tx.get_attestation(attestation_id))
        return view

    def decide(self, actor: str, attestation_id: str, operator_id: str, decision: Decision,
               signature: bytes, *, reason: str = "", statement_sha256: bytes = b""
               ) -> dict[str, Any]:
        A.check_decision("attestation_id", attestation_id, operator_id, decision, reason)
        resurrected = bool(self.app.ended([attestation_id]))
        now = time.time()
        outcome = ""
        violation: AuthorityViolation | None = None
        with self.store.transaction() as tx:
            row = tx.get_attestation(attestation_id, lock=True)
            if row.state != PENDING:
                raise FailedPrecondition(f"attestation {attestation_id} is {row.state}, not "
                                         "waiting for approvals")
            state = self.ledger.state(tx)
            try:
                if resurrected:
                    raise ended_violation(attestation_id)
                doc = self._doc(row, state)
            except AuthorityViolation as e:
                violation = e
                self._violated(tx, attestation_id, e)
            else:
                if now >= float(doc["expires_at"]):
                    self._end(tx, attestation_id, EXPIRED, "approval window passed")
                    outcome = EXPIRED
                else:
                    outcome, violation = self._record(tx, actor, doc, state, operator_id,
                                                      decision, signature, reason,
                                                      statement_sha256, now)
        if violation is not None:
            raise violation
        if outcome == EXPIRED:
            raise FailedPrecondition(f"attestation {attestation_id} has expired")
        if outcome == APPROVED:
            self.sign(attestation_id)
        return self.get(attestation_id)

    def _record(self, tx: Tx, actor: str, doc: dict[str, Any], state: AU.AuthorityState,
                operator_id: str, decision: Decision, signature: bytes, reason: str,
                statement_sha256: bytes, now: float) -> tuple[str, AuthorityViolation | None]:
        """Record one verified decision and count them all: the state the attestation entered
        ("" for none) and the violation that ended it, if one did."""
        attestation_id = doc["id"]
        op = state.deciding_operator(operator_id, doc["submitter"],
                                     f"attestation {attestation_id}")
        record_decision(
            tx, actor, "attestation", attestation_id, operator_id, op.public_key_pem,
            T.statement(doc, decision), signature, statement_sha256=statement_sha256,
            decision=decision, reason=reason, now=now, mismatch="this attestation's",
            insert=lambda f: tx.insert_attestation_approval(
                {**f, "attestation_id": attestation_id, "decision": f["decision"].value}))
        tx.emit(EV.Decided("attestation", attestation_id, operator_id, decision))
        v = T.judge(state, doc, self._wallets(tx, state, doc),
                    decisions_of(tx.attestation_approvals(attestation_id)))
        if v.bad:
            violation = AuthorityViolation(
                f"attestation {attestation_id}: a stored decision does not verify ("
                + "; ".join(v.bad) + ")", kind="approval")
            self._violated(tx, attestation_id, violation)
            return FAILED, violation
        if v.rejected:
            self._end(tx, attestation_id, REJECTED, v.reason)
            return REJECTED, None
        if v.met:
            self._enter(tx, attestation_id, APPROVED, "attestation.approved",
                        {"quorum": v.reason})
            return APPROVED, None
        return "", None

    def _enter(self, tx: Tx, attestation_id: str, state: str, action: str,
               details: dict[str, Any], **fields: Any) -> None:
        """The row moves to ``state``, with its audit event and its fact for the metrics."""
        tx.update_attestation(attestation_id, state=state, **fields)
        tx.append_audit("signerd", action, attestation_id, details)
        tx.emit(EV.AttestationEntered(attestation_id, state,
                                      reason=str(details.get("reason", ""))))

    def _end(self, tx: Tx, attestation_id: str, state: str, why: str) -> None:
        self._enter(tx, attestation_id, state, f"attestation.{state.lower()}",
                    {"reason": why}, failure=why)

    def _violated(self, tx: Tx, attestation_id: str, e: AuthorityViolation) -> None:
        """An attestation that does not trace back to signerd and its quorum: FAILED, with the
        reason, an ``authority.violation`` event and the metric."""
        self._end(tx, attestation_id, FAILED, f"authority violation: {e.message}")
        tx.append_audit("signerd", "authority.violation", attestation_id,
                        {"kind": e.kind, "reason": e.message})
        tx.emit(EV.AuthorityViolated("attestation", attestation_id, e.kind, e.message))

    def _fail(self, attestation_id: str, e: AuthorityViolation, expect: str) -> NoReturn:
        """End the attestation FAILED for ``e`` if its row is still in ``expect``; raise ``e``."""
        with self.store.transaction() as tx:
            if tx.get_attestation(attestation_id, lock=True).state == expect:
                self._violated(tx, attestation_id, e)
        raise e

    def _checked(self, tx: Tx, attestation_id: str, expect: str) -> tuple[
            AttestationRecord, AU.AuthorityState, dict[str, Any], builtins.list[Wallet],
            builtins.list[AttestationApprovalRecord], T.Verdict] | None:
        """The row in ``expect`` (None when it is in another state) with everything a
        signature rests on checked again under the ledger as it is now: the document signerd
        sealed and its texts, each wallet (sealed, active, the same address and keys) and the
        quorum of verified decisions. AuthorityViolation for a row or a decision signerd did
        not write; FailedPrecondition when the quorum no longer holds."""
        row = tx.get_attestation(attestation_id)
        if row.state != expect:
            return None
        state = self.ledger.state(tx)
        doc = self._doc(row, state)
        wallets = self._wallets(tx, state, doc)
        rows = tx.attestation_approvals(attestation_id)
        v = T.judge(state, doc, wallets, decisions_of(rows))
        if v.bad:
            raise AuthorityViolation(f"attestation {attestation_id}: a stored decision does "
                                     "not verify (" + "; ".join(v.bad) + ")", kind="approval")
        if not v.met:
            raise FailedPrecondition(f"attestation {attestation_id}: its quorum no longer "
                                     f"holds ({v.reason})")
        return row, state, doc, wallets, rows, v

    def sign(self, attestation_id: str) -> None:
        """Sign an APPROVED attestation's texts, once, after checking everything again: the
        holdings statement when every proof is complete, else AWAITING_COSIGNERS with the
        PSBTs outside cosigners sign."""
        try:
            if self.app.ended([attestation_id]):
                raise ended_violation(attestation_id)
            with self.store.read() as tx:
                checked = self._checked(tx, attestation_id, APPROVED)
        except AuthorityViolation as violation:
            self._fail(attestation_id, violation, APPROVED)
        if checked is None:
            return
        row, _, doc, wallets, _, _ = checked
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
        proofs, waiting = [], []
        for w, e, digest, keys in plans:
            sigs = {}
            for k in keys:
                got = next(results)
                if isinstance(got, SignerError):
                    raise got
                sigs[k.public_key] = got
            if T.cosigned(w):
                psbt = SG.add_signatures(T.bip322_psbt(w, e["text"]), [
                    (0, pub, SG.der_encode(r, s_) + bytes([T.SIGHASH_ALL]), digest)
                    for pub, (r, s_) in sigs.items()])
                waiting.append({"wallet_id": w.id, "address": w.address,
                                "psbt": psbt.to_base64()})
                continue
            if w.chain is Chain.ETHEREUM:
                r, s_ = sigs[w.keys[0].public_key]
                method, signature = "eip191", T.eip191_signature(digest, r, s_,
                                                                 w.keys[0].public_key)
            else:
                method, signature, _ = T.bip322_signature(w, e["text"], sigs)
            proof = {"wallet_id": w.id, "address": w.address, "method": method,
                     "signature": signature}
            T.verify_proof(e, proof)  # the proof verifies before anyone sees it
            proofs.append(proof)
        self._store(attestation_id, APPROVED, row.result, doc, proofs, waiting)

    def _store(self, attestation_id: str, expect: str, result_read: str, doc: dict[str, Any],
               proofs: builtins.list[dict[str, Any]], waiting: builtins.list[dict[str, Any]],
               combined: dict[str, Any] | None = None) -> None:
        """Write what was signed, under the row lock, if the row is still in ``expect`` with
        the result it had when read (else another worker stored its own, and this is discarded
        unseen), after judging the quorum once more: SIGNED with the sealed holdings statement
        when nothing waits for cosigners, else AWAITING_COSIGNERS with the sealed record of
        the proofs so far and the PSBTs."""
        with self.store.transaction() as tx:
            current = tx.get_attestation(attestation_id, lock=True)
            if current.state != expect or current.result != result_read:
                if combined is not None:
                    raise FailedPrecondition(f"attestation {attestation_id} changed meanwhile; "
                                             "retry")
                return
            checked = self._checked(tx, attestation_id, expect)
            assert checked is not None
            _, state, _, wallets, rows, v = checked
            if combined is not None:
                tx.append_audit("signerd", "attestation.combined", attestation_id, combined)
            if waiting:
                record = {"format": T.COSIGNING_FORMAT, "attestation": attestation_id,
                          "document_sha256": hashlib.sha256(canonical.dumps(doc)).hexdigest(),
                          "proofs": proofs, "waiting": waiting}
                record["seal"] = self.app.seal(T.COSIGNING_SEAL, record)
                result = json.dumps(record, sort_keys=True)
                if expect == COSIGNING:
                    tx.update_attestation(attestation_id, result=result)
                else:
                    self._enter(tx, attestation_id, COSIGNING, "attestation.cosigning",
                                {"proofs": len(proofs),
                                 "waiting": [x["wallet_id"] for x in waiting]}, result=result)
                return
            by_id = {p["wallet_id"]: p for p in proofs}
            body = self._statement(tx, state, doc, wallets, rows, v,
                                   [by_id[e["wallet_id"]] for e in doc["wallets"]])
            self._enter(tx, attestation_id, SIGNED, "attestation.signed", {
                "proofs": len(proofs),
                "statement_sha256": hashlib.sha256(canonical.dumps(body)).hexdigest()},
                result=json.dumps(body, sort_keys=True, indent=1))

    def _statement(self, tx: Tx, state: AU.AuthorityState, doc: dict[str, Any],
                   wallets: builtins.list[Wallet], rows: builtins.list[AttestationApprovalRecord],
                   v: T.Verdict, proofs: builtins.list[dict[str, Any]]) -> dict[str, Any]:
        """The holdings statement, sealed by the audit key."""
        now = time.time()
        approvers = {r.operator_id for r in rows}
        body: dict[str, Any] = {
            "format": T.EXPORT_FORMAT, "instance_id": self.app.instance_id,
            "audit_public_key": state.audit_public_key.hex(), "attestation": doc,
            "requirement": v.reason,
            "approvals": [{"operator_id": r.operator_id, "decision": r.decision.value,
                           "signature": r.signature} for r in rows],
            "approvers": [{"operator_id": o, "roles": sorted(state.operators[o].roles),
                           "public_key_pem": state.operators[o].public_key_pem}
                          for o in sorted(approvers) if o in state.operators],
            "proofs": proofs,
            "transfers": {"from": str(doc["since"]), "to": str(int(now)),
                          "items": self._transfers(tx, wallets, int(doc["since"]))},
            "signed_at": str(int(now)), "balances": BALANCES_NOTE}
        body["seal"] = self.app.seal(T.SEAL_KIND, body)
        return body

    def _cosigning(self, row: AttestationRecord, state: AU.AuthorityState,
                   doc: dict[str, Any]) -> dict[str, Any]:
        """The row's record of cosigning if signerd sealed it for this document;
        AuthorityViolation otherwise."""
        try:
            record = json.loads(row.result)
            if not isinstance(record, dict) or record.get("format") != T.COSIGNING_FORMAT:
                raise ValueError("not a record of cosigning")
            body = {k: v for k, v in record.items() if k != "seal"}
            if not T.SEAL.valid(state.audit_public_key, T.COSIGNING_SEAL, body,
                                str(record.get("seal", ""))):
                raise ValueError("its seal does not verify under signerd's audit key")
            if (record.get("attestation") != row.id or record.get("document_sha256")
                    != hashlib.sha256(canonical.dumps(doc)).hexdigest()):
                raise ValueError("it is another attestation's")
            return body
        except (ValueError, TypeError) as e:
            raise AuthorityViolation(f"attestation {row.id}: its record of cosigning is not "
                                     f"signerd's ({e})", kind="attestation") from None

    def combine(self, actor: str, attestation_id: str, psbt: bytes) -> dict[str, Any]:
        """A BIP-322 PSBT back from a wallet's outside cosigners: every signature it adds must
        verify under the wallet's keys over signerd's own digest (``signer.combine_verified``;
        InvalidArgument naming the input and key otherwise, and nothing is stored); once the
        wallet's threshold is met its proof is the BIP-322 full signature, and once no wallet
        waits the holdings statement is made (SIGNED)."""
        if not psbt:
            raise InvalidArgument("psbt: required")
        try:
            if self.app.ended([attestation_id]):
                raise ended_violation(attestation_id)
            with self.store.read() as tx:
                row = tx.get_attestation(attestation_id)
                checked = self._checked(tx, attestation_id, COSIGNING)
                if checked is None:
                    raise FailedPrecondition(
                        f"attestation {attestation_id} is {row.state}; only an attestation "
                        f"{COSIGNING} takes cosigners' signatures")
                row, state, doc, wallets, _, _ = checked
                record = self._cosigning(row, state, doc)
        except AuthorityViolation as violation:
            self._fail(attestation_id, violation, COSIGNING)
        limits = self.app.config.limits
        theirs = BitcoinAdapter.parse(psbt, limits)
        entries = {e["wallet_id"]: e for e in doc["wallets"]}
        by_id = {w.id: w for w in wallets}
        waiting = [dict(x) for x in record["waiting"]]
        found = next(((x, by_id[x["wallet_id"]]) for x in waiting
                      if T.bip322_psbt(by_id[x["wallet_id"]], entries[x["wallet_id"]]["text"])
                      .tx.serialize() == theirs.tx.serialize()), None)
        if found is None:
            raise InvalidPsbt(f"the PSBT is not the BIP-322 to_sign of a wallet attestation "
                              f"{attestation_id} waits for (its text, address and challenge "
                              "must be this attestation's)")
        x, w = found
        ours = BitcoinAdapter.parse(x["psbt"].encode(), limits)
        merged = SG.combine_verified(ours, theirs, BitcoinAdapter.spec(w))
        text = entries[w.id]["text"]
        signature, count, complete = T.bip322_cosigned(w, text, merged)
        proofs = list(record["proofs"])
        if complete:
            proof = {"wallet_id": w.id, "address": w.address, "method": "bip322-full",
                     "signature": signature}
            T.verify_proof(entries[w.id], proof)
            proofs.append(proof)
            waiting = [y for y in waiting if y["wallet_id"] != w.id]
        else:
            x["psbt"] = merged.to_base64()
        self._store(attestation_id, COSIGNING, row.result, doc, proofs, waiting, combined={
            "actor": actor, "wallet_id": w.id, "signatures": count,
            "threshold": w.threshold, "complete": complete})
        return self.get(attestation_id)

    def export(self, attestation_id: str) -> bytes:
        """The holdings statement, once signed (an APPROVED one is signed first), returned
        only if its seal verifies: a statement changed in the store is refused, not served."""
        with self.store.read() as tx:
            row = tx.get_attestation(attestation_id)
        if row.state == APPROVED:
            self.sign(attestation_id)
            with self.store.read() as tx:
                row = tx.get_attestation(attestation_id)
        if row.state == COSIGNING:
            raise FailedPrecondition(f"attestation {attestation_id} waits for the outside "
                                     "cosigners of its multisig wallets: signerctl attest psbt, "
                                     "then attest combine")
        if row.state != SIGNED:
            raise FailedPrecondition(f"attestation {attestation_id} is {row.state}: a holdings "
                                     "statement exists once its quorum approved it")
        if not row.result:
            raise NotFound(f"attestation {attestation_id}: no statement stored")
        with self.store.read() as tx:
            state = self.ledger.state(tx)
        try:
            body = json.loads(row.result)
            seal = body.pop("seal")
            ok = (T.SEAL.valid(state.audit_public_key, T.SEAL_KIND, body, str(seal))
                  and body["attestation"]["id"] == attestation_id)
        except (ValueError, TypeError, KeyError, AttributeError):
            ok = False
        if not ok:
            raise AuthorityViolation(f"attestation {attestation_id}: the stored holdings "
                                     "statement is not the one signerd sealed",
                                     kind="attestation")
        return row.result.encode()

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
