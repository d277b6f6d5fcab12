"""Administrative acts: operators, policies, freezes, seized-key import. Each one is audited in
the same store transaction as the change it makes."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import policy as P
from .errors import FailedPrecondition, InvalidArgument, InvalidKey, NotFound, SignerError
from .model import ScriptType, Wallet, WalletStatus
from .operator_keys import fingerprint, load_public_pem
from .transfers import LIVE, requirement_from_json, requirement_to_json
from .wallets import get_wallet

if TYPE_CHECKING:
    from .app import App

OPERATOR_ID = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
ROLE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


@dataclass(frozen=True)
class OperatorInfo:
    id: str
    roles: tuple[str, ...]
    public_key_pem: bytes
    status: str
    fingerprint: str
    created_at: float


def _operator(r: Any) -> OperatorInfo:
    pem = r["public_key_pem"].encode()
    return OperatorInfo(r["id"], tuple(json.loads(r["roles"])), pem, r["status"],
                        fingerprint(load_public_pem(pem)), float(r["created_at"]))


class AdminService:
    def __init__(self, app: App):
        self.app = app
        self.store = app.store

    # ---------------------------------------------------------------- operators
    def register_operator(self, actor: str, op_id: str, roles: list[str], pem: bytes
                          ) -> OperatorInfo:
        if not OPERATOR_ID.match(op_id or ""):
            raise InvalidArgument(f"id: operator ids match {OPERATOR_ID.pattern}, got {op_id!r}")
        if op_id in self.app.config.principals:
            raise InvalidArgument(f"id: {op_id} is a service principal, not an operator")
        if not roles:
            raise InvalidArgument("roles: at least one role is required")
        for r in roles:
            if not ROLE.match(r):
                raise InvalidArgument(f"roles: invalid role name {r!r}")
        try:
            key = load_public_pem(pem)
        except InvalidKey as e:
            raise InvalidArgument(f"public_key_pem: {e.message}") from None
        with self.store.transaction() as tx:
            tx.insert_operator(op_id, sorted(set(roles)), pem.decode())
            tx.append_audit(actor, "operator.registered", op_id,
                            {"roles": sorted(set(roles)), "fingerprint": fingerprint(key)})
            return _operator(tx.get_operator(op_id))

    def revoke_operator(self, actor: str, op_id: str, reason: str = "") -> OperatorInfo:
        with self.store.transaction() as tx:
            r = tx.get_operator(op_id)
            if r["status"] == "revoked":
                raise FailedPrecondition(f"operator {op_id} is already revoked")
            tx.revoke_operator(op_id)
            tx.append_audit(actor, "operator.revoked", op_id, {"reason": reason})
            return _operator(tx.get_operator(op_id))

    def list_operators(self) -> list[OperatorInfo]:
        with self.store.read() as tx:
            return [_operator(r) for r in tx.list_operators()]

    def operator_exists(self, op_id: str) -> bool:
        with self.store.read() as tx:
            try:
                tx.get_operator(op_id)
                return True
            except NotFound:
                return False

    # ---------------------------------------------------------------- policies
    def set_policy(self, actor: str, wallet_id: str, document: str) -> dict[str, Any]:
        """A new policy version; pending transfers keep their requirement unless the new one is
        at least as strict (where neither dominates, they keep the merge of both)."""
        pol = P.parse_policy(document)
        with self.store.transaction() as tx:
            tx.get_wallet(wallet_id, lock=True)
            version = tx.insert_policy(wallet_id, document, actor)
            tightened = []
            for row in tx.list_transfers(wallet_id=wallet_id, limit=1_000_000):
                if row["state"] not in LIVE:
                    continue
                from .transfers import movement_from_json

                old = requirement_from_json(row["requirement"])
                try:
                    new = pol.requirement_for(movement_from_json(row["movement"]),
                                              category_change=row["category_change"])
                except SignerError:  # the new policy no longer covers it: keep the old demands
                    continue
                merged = P.merge(old, new)
                if merged != old:
                    tx.update_transfer(row["id"], requirement=requirement_to_json(merged))
                    tightened.append(row["id"])
            tx.append_audit(actor, "policy.set", wallet_id,
                             {"version": version, "name": pol.name, "tightened": tightened})
            r = tx.latest_policy(wallet_id)
        return dict(r.data) if r else {}

    def get_policy(self, wallet_id: str) -> dict[str, Any]:
        with self.store.read() as tx:
            tx.get_wallet(wallet_id)
            r = tx.latest_policy(wallet_id)
        if r is None:
            raise NotFound(f"wallet {wallet_id} has no policy")
        return dict(r.data)

    def policy_history(self, wallet_id: str) -> list[dict[str, Any]]:
        with self.store.read() as tx:
            tx.get_wallet(wallet_id)
            return [dict(r.data) for r in tx.policy_history(wallet_id)]

    # ---------------------------------------------------------------- freezes
    def set_frozen(self, actor: str, wallet_id: str, order_ref: str, frozen: bool) -> Wallet:
        order_ref = (order_ref or "").strip()
        if not order_ref:
            raise InvalidArgument("order_ref: a court order reference is required")
        with self.store.transaction() as tx:
            w = tx.get_wallet(wallet_id, lock=True)
            want = WalletStatus.FROZEN if frozen else WalletStatus.ACTIVE
            if w["status"] == want.value:
                raise FailedPrecondition(f"wallet {wallet_id} is already {want.value}")
            if w["status"] == WalletStatus.RETIRED.value:
                raise FailedPrecondition(f"wallet {wallet_id} is retired")
            tx.set_wallet_status(wallet_id, want.value, order_ref)
            tx.append_audit(actor, "wallet.frozen" if frozen else "wallet.unfrozen", wallet_id,
                            {"order_ref": order_ref})
            wallet = get_wallet(tx, wallet_id)
        if not frozen and self.app.transfers is not None:
            self.app.transfers.tick()
        return wallet


@dataclass(frozen=True)
class ImportRequest:
    kind: str  # hex | wif | mnemonic
    secret: str
    derivation_path: str
    passphrase: str
    chain: str
    network: str
    chain_ids: tuple[int, ...]
    script_type: str
    case_ref: str
    seizure_record: str
    legal_basis: str
    policy_toml: str


def import_seized_key(app: App, actor: str, req: ImportRequest) -> Wallet:
    """A seized key goes into the HSM (sensitive, non-extractable) and a SEIZED wallet is built
    around it, recording where it came from. Bad input stores nothing."""
    from . import seized
    from . import wallets as W

    if not req.seizure_record.strip():
        raise InvalidArgument("seizure_record: the seizure record reference is required")
    checked = W.check_request(W.WalletRequest(
        chain=req.chain, network=req.network, category="seized", case_ref=req.case_ref,
        legal_basis=req.legal_basis, chain_ids=req.chain_ids, script_type=req.script_type))
    if checked.script_type not in (ScriptType.P2WPKH, ScriptType.P2SH_P2WPKH, ScriptType.EOA):
        raise InvalidArgument("script_type: an imported key makes a single-key wallet")
    if req.kind == "hex":
        secret = seized.from_hex(req.secret)
    elif req.kind == "wif":
        if checked.network == "ethereum":
            raise InvalidArgument("wif: WIF keys are Bitcoin keys; use hex for Ethereum")
        secret = seized.from_wif(req.secret, checked.network)
    elif req.kind == "mnemonic":
        if not req.derivation_path:
            raise InvalidArgument("derivation_path: required with a mnemonic")
        secret = seized.from_mnemonic(req.secret, req.derivation_path, req.passphrase)
    else:
        raise InvalidArgument("secret: one of hex, wif or mnemonic is required")
    policy_doc = req.policy_toml or _sweep_policy(app)
    if policy_doc:
        P.parse_policy(policy_doc)
    wallet_id = W.new_wallet_id()
    from coincurve import PrivateKey

    pub = PrivateKey(bytes(secret)).public_key.format()
    with app.store.read() as tx:
        if tx.one("SELECT key_id FROM keys WHERE public_key = ?", (pub.hex(),)):
            for i in range(len(secret)):
                secret[i] = 0
            raise FailedPrecondition("this key is already held by signerd (a key never serves "
                                     "two wallets)")
    key = app.keystore.import_key(secret, f"{wallet_id}/seized")  # wipes `secret`
    with app.store.transaction() as tx:
        W.insert_wallet(tx, checked, wallet_id, [key],
                        origin=f"imported; seizure record {req.seizure_record}")
        version = tx.insert_policy(wallet_id, policy_doc, actor) if policy_doc else 0
        w = W.get_wallet(tx, wallet_id)
        tx.append_audit(actor, "key.imported", wallet_id, {
            "chain": w.chain.value, "network": w.network, "address": w.address,
            "case_ref": w.case_ref, "seizure_record": req.seizure_record, "form": req.kind,
            "derivation_path": req.derivation_path, "key_id": key.key_id,
            "public_key": key.public_key.hex(), "policy_version": version})
    app.refresh_gauges()
    return w


def _sweep_policy(app: App) -> str:
    from pathlib import Path

    p = Path(app.config.policies_dir) / "seized-sweep.toml"
    try:
        return p.read_text(encoding="utf-8")
    except OSError:
        return app.default_policy()
