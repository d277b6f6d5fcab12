"""The key backup as governance acts (signerd.core.backup; README, "Key backup and recovery").

- ``backup.key``: a ceremony's backup key comes into force only through a proposal that the
  governance quorum approves; the proposal carries the ceremony record (its check value, the
  custodians and their key fingerprints, the threshold), and is refused unless the HSM token
  already holds a trusted key with that check value.
- ``backup.create``: a backup is made only under an applied proposal of the authority ledger
  (a row of the store proves nothing: :meth:`BackupService.bundle` reads the verified ledger),
  until the proposal's expiry, under the approved backup key alone (the HSM key is found by its
  check value, never by its label or id alone). The bundle holds every custody key signerd
  knows (the audit key, the HSM keys of every verified wallet, the key shares), wrapped, with
  its wallets, public keys and addresses, the genesis document and the ledger head, sealed by
  the audit key; each bundle made is an audit event (``backup.created``) with its digest.

A key the token cannot export (made before keys were backup-capable) is listed in the bundle as
not backed up, with the way to move its funds to a backed-up wallet.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from signerd.adapters import hsm_backup as HB
from signerd.adapters.store import Tx
from signerd.core import authority as AU
from signerd.core import backup as BK
from signerd.core import canonical
from signerd.core.errors import (AuthorityViolation, FailedPrecondition, InvalidArgument,
                                 NotFound, echo)
from . import ledger as L
from .proposals import ProposalView
from .runtime import Runtime

log = logging.getLogger("signerd.backup")
PAGE = 1000


@dataclass(frozen=True)
class KeyEntry:
    key_id: str
    label: str
    public_key: bytes
    use: str
    wallets: tuple[str, ...]


@dataclass(frozen=True)
class Made:
    """A bundle made: its bytes and what it holds."""

    bundle: bytes
    digest: str
    keys: int
    not_backed_up: tuple[dict[str, Any], ...]


class BackupService:
    def __init__(self, app: Runtime):
        self.app = app
        self.store = app.store

    # ---------------------------------------------------------------- proposals
    def register_key(self, actor: str, ceremony: bytes) -> ProposalView:
        """A ``backup.key`` proposal for a ceremony record (its JSON as the ceremony wrote it)."""
        try:
            record = BK.check_ceremony(canonical.loads(ceremony, "ceremony"), "ceremony")
        except InvalidArgument as e:
            raise InvalidArgument(e.message) from None
        if record["instance_id"] != self.app.instance_id:
            raise InvalidArgument(f"ceremony: made for instance {echo(record['instance_id'])}, "
                                  f"not {self.app.instance_id}")
        if not HB.holds_backup_key(self.app.keystore, record["key_id"], record["check_value"]):
            raise FailedPrecondition(
                f"ceremony {record['ceremony_id']}: this daemon's HSM token holds no trusted key "
                f"with id {record['key_id']} and the ceremony's check value; run the ceremony "
                "on this token (signerctl backup ceremony)")
        return self.app.proposals.propose(actor, "backup.key",  # type: ignore[no-any-return]
                                          {"ceremony": record})

    def propose(self, actor: str, ceremony_id: str = "") -> ProposalView:
        """A ``backup.create`` proposal under an approved backup key (the only one, when
        ``ceremony_id`` is empty)."""
        with self.store.read() as tx:
            state = self.app.ledger.state(tx)
        key = self._approved(state, ceremony_id)
        return self.app.proposals.propose(actor, "backup.create",  # type: ignore[no-any-return]
                                          {"ceremony_id": key.ceremony_id,
                                           "check_value": key.check_value})

    @staticmethod
    def _approved(state: AU.AuthorityState, ceremony_id: str) -> AU.BackupKey:
        if not ceremony_id:
            if len(state.backup_keys) != 1:
                raise InvalidArgument(
                    "ceremony_id: name the backup key" if state.backup_keys else
                    "no backup key is approved yet: run a ceremony (signerctl backup ceremony) "
                    "and have its record approved (signerctl backup register)")
            return next(iter(state.backup_keys.values()))
        key = state.backup_keys.get(ceremony_id)
        if key is None:
            raise NotFound(f"backup key {echo(ceremony_id, quote=False)} is not approved by the "
                           "governance")
        return key

    # ---------------------------------------------------------------- the bundle
    def keys(self, tx: Tx, state: AU.AuthorityState) -> list[KeyEntry]:
        """Every HSM key signerd holds: the audit key, the keys of every wallet whose sealed
        record verifies, and every sealed key share. A row that does not verify is left out
        (and logged): it is no key of ours."""
        found: dict[str, KeyEntry] = {
            state.audit_key_id: KeyEntry(state.audit_key_id, "signerd-audit",
                                         state.audit_public_key, "audit", ())}
        for w in L.verified_wallets(tx, state, "the backup", page=PAGE):
            for k in w.keys:
                if not k.hsm_held:
                    continue
                old = found.get(k.key_id)
                wallets = (old.wallets if old else ()) + (w.id,)
                found[k.key_id] = KeyEntry(k.key_id, k.label, k.public_key,
                                           old.use if old else "wallet", wallets)
        for share in tx.key_shares():
            try:
                L.verified_key_share(state, share)
            except AuthorityViolation as e:
                log.error("key share %s left out of the backup: %s", share.key_id, e.message)
                continue
            if share.key_id not in found:
                found[share.key_id] = KeyEntry(share.key_id, share.label,
                                               bytes.fromhex(share.public_key), "key_share", ())
        return sorted(found.values(), key=lambda k: (k.use != "audit", k.key_id))

    def bundle(self, actor: str, proposal_id: str, *, now: float | None = None) -> Made:
        """The bundle of an approved ``backup.create`` proposal (see the module's doc)."""
        now = time.time() if now is None else now
        with self.store.read() as tx:
            state = self.app.ledger.state(tx)
            act = state.backups.get(proposal_id)
            if act is None:
                raise FailedPrecondition(
                    f"proposal {echo(proposal_id, quote=False)} is not a backup that the "
                    "governance approved (no backup.create proposal of the authority ledger "
                    "has this id): nothing is exported")
            ceremony_id, expires_at = act
            if now >= expires_at:
                raise FailedPrecondition(f"backup proposal {proposal_id} expired; propose "
                                         "another backup (signerctl backup create)")
            key = state.backup_keys[ceremony_id]
            genesis = tx.authority_entries(0, 1)[0].body
            if AU.genesis_digest(genesis) != state.genesis:
                raise AuthorityViolation("the store's genesis is not the pinned one",
                                         kind="genesis")
            entries = self.keys(tx, state)
            wallets = self._wallets(tx, state)
        held = HB.backup_states(self.app.keystore, [k.key_id for k in entries])
        capable, not_backed = [], []
        for k in entries:
            h = held[k.key_id]
            reason = ""
            if not h.present:
                reason = "not in this HSM token"
            elif self.app.keystore.held_public_key(k.key_id) != k.public_key:
                reason = "the HSM token holds another public key under this id"
            elif not h.capable:
                reason = BK.NOT_BACKED_UP_ADVICE
            if reason:
                not_backed.append({"key_id": k.key_id, "label": k.label,
                                   "public_key": k.public_key.hex(), "use": k.use,
                                   "wallets": sorted(k.wallets), "reason": reason})
            else:
                capable.append(k)
        if not any(k.use == "audit" for k in capable):
            raise FailedPrecondition(
                "the audit key cannot leave the HSM token (made before keys were "
                "backup-capable): a restored token could not verify this instance's seals; make "
                "a new state folder (signerd init) and move the funds to its wallets")
        wrapped = HB.wrap_keys(self.app.keystore, key, [k.key_id for k in capable])
        body = {
            "instance_id": state.instance_id, "genesis": state.genesis.hex(),
            "genesis_document": genesis, "proposal": proposal_id, "created_at": int(now),
            "ceremony": dict(key.record), "mechanism": BK.MECHANISM,
            "ledger": {"seq": state.seq, "hash": state.head.hex()},
            "keys": [BK.bundle_key_json(k.key_id, k.label, k.public_key, k.use, k.wallets,
                                        wrapped[k.key_id]) for k in capable],
            "wallets": wallets, "not_backed_up": not_backed}
        digest = BK.bundle_digest(body)
        seal = self.app.seal(BK.BUNDLE_SEAL, BK.seal_record(body, digest))
        data = BK.encode_bundle(body, seal)
        with self.store.transaction() as tx:
            tx.append_audit(actor, "backup.created", proposal_id, {
                "ceremony_id": ceremony_id, "check_value": key.check_value, "digest": digest,
                "keys": len(capable), "ledger_seq": state.seq,
                "not_backed_up": [k["key_id"] for k in not_backed]})
        return Made(data, digest, len(capable), tuple(not_backed))

    @staticmethod
    def _wallets(tx: Tx, state: AU.AuthorityState) -> list[dict[str, Any]]:
        return [{"id": w.id, "chain": w.chain.value, "network": w.network,
                 "chain_ids": list(w.chain_ids), "address": w.address,
                 "category": w.category.value, "status": w.status.value,
                 "key_ids": [k.key_id for k in w.keys]}
                for w in L.verified_wallets(tx, state, "the backup bundle", page=PAGE)]

    # ---------------------------------------------------------------- status
    def status(self) -> dict[str, Any]:
        """The approved backup keys (and whether the token holds each), and every key with
        whether it can be backed up."""
        with self.store.read() as tx:
            state = self.app.ledger.state(tx)
            entries = self.keys(tx, state)
        held = HB.backup_states(self.app.keystore, [k.key_id for k in entries])
        return {
            "backup_keys": [{
                "ceremony_id": k.ceremony_id, "check_value": k.check_value,
                "key_id": k.key_id, "threshold": k.threshold,
                "custodians": [c for c, _ in k.custodians], "proposal": k.proposal,
                "in_token": HB.holds_backup_key(self.app.keystore, k.key_id, k.check_value)}
                for k in sorted(state.backup_keys.values(), key=lambda k: k.ceremony_id)],
            "backups": [{"proposal": p, "ceremony_id": c, "expires_at": e}
                        for p, (c, e) in sorted(state.backups.items())],
            "keys": [{"key_id": k.key_id, "label": k.label, "use": k.use,
                      "wallets": sorted(k.wallets), "public_key": k.public_key.hex(),
                      "backup_capable": held[k.key_id].capable,
                      "advice": "" if held[k.key_id].capable else (
                          BK.NOT_BACKED_UP_ADVICE if held[k.key_id].present
                          else "not in this HSM token")}
                     for k in entries]}
