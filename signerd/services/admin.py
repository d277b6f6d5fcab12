"""Administrative acts. Whatever could loosen a rule is a governance proposal (see
``signerd.services.proposals``): registering, revoking or re-rolling an operator, reinstating a
suspended one, a wallet's policy, a policy template, the governance policy, an unfreeze, a
seized-key import, a token registry entry. Acts that only tighten are immediate for an admin and
go into the authority ledger at once: a court-ordered freeze, the suspension of an operator.
Every act is audited in the same store transaction as the change it makes."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from signerd.adapters.hsm import KeyInfo
from signerd.adapters.store import Tx
from signerd.core import approval as A
from signerd.core import authority as AU
from signerd.core import chain_registry as CR
from signerd.core import seized
from signerd.core.errors import (AuthorityViolation, FailedPrecondition, InvalidArgument,
                                 NotFound)
from signerd.core.errors import echo
from signerd.core.model import (Chain, EvmChain, OperatorStatus, ScriptType, Token, Wallet,
                                WalletStatus)
from signerd.core.tokens import make_token, token_json
from . import ledger as L
from . import wallets as W
from .proposals import ProposalView, new_proposal_id
from .runtime import Runtime



@dataclass(frozen=True)
class OperatorInfo:
    id: str
    roles: tuple[str, ...]
    public_key_pem: bytes
    status: OperatorStatus
    fingerprint: str
    created_at: float
    key_type: str
    token_held: str


@dataclass(frozen=True)
class PolicyInfo:
    wallet_id: str
    version: int
    document: str
    actor: str  # the template, or the proposal that set it
    created_at: float


class AdminService:
    def __init__(self, app: Runtime):
        self.app = app
        self.store = app.store

    @property
    def ledger(self) -> L.Ledger:
        return self.app.ledger

    def _state(self) -> AU.AuthorityState:
        with self.store.read() as tx:
            return self.ledger.state(tx)

    def _propose(self, actor: str, kind: str, change: dict[str, Any]) -> ProposalView:
        return self.app.proposals.propose(actor, kind, change)  # type: ignore[no-any-return]

    # ---------------------------------------------------------------- operators
    def register_operator(self, actor: str, op_id: str, roles: list[str], pem: bytes,
                          token_held: str = "") -> ProposalView:
        """Propose the operator; ``token_held`` names the device the operator declares the key
        held on (the change carries it only when given, as registrations before it)."""
        if op_id in self.app.config.principals:
            raise InvalidArgument(f"id: {op_id} is a service principal, not an operator")
        try:
            text = pem.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidArgument("public_key_pem: not a PEM public key (not ASCII)") from None
        change: dict[str, object] = {"operator_id": op_id, "roles": sorted(set(roles)),
                                     "public_key_pem": text}
        if token_held:
            change["token_held"] = token_held
        return self._propose(actor, "operator.register", change)

    def revoke_operator(self, actor: str, op_id: str, reason: str = "") -> ProposalView:
        A.check_reason(reason)
        return self._propose(actor, "operator.revoke", {"operator_id": op_id,
                                                        "reason": reason[:AU.MAX_TEXT]})

    def set_roles(self, actor: str, op_id: str, roles: list[str]) -> ProposalView:
        rec = self._operator(self._state(), op_id)
        return self._propose(actor, "operator.roles", {
            "operator_id": op_id, "old_roles": sorted(rec.roles), "roles": sorted(set(roles))})

    def reinstate_operator(self, actor: str, op_id: str, reason: str = "") -> ProposalView:
        A.check_reason(reason)
        return self._propose(actor, "operator.reinstate", {"operator_id": op_id,
                                                           "reason": reason[:AU.MAX_TEXT]})

    def suspend_operator(self, actor: str, op_id: str, reason: str = "") -> OperatorInfo:
        """Immediate: a suspended operator's decisions stop counting at once, until a
        governance proposal reinstates them."""
        A.check_reason(reason)
        with self.store.transaction() as tx:
            state = self.ledger.locked(tx)
            self._operator(state, op_id)
            body = AU.suspend_body(state, op_id, reason, actor, int(time.time()))
            new = self.ledger.append(tx, state, AU.SUSPEND, self._seal(AU.SUSPEND, body),
                                     seal=self.app.seal)
            tx.update_operator(op_id, status=OperatorStatus.SUSPENDED)
            tx.append_audit(actor, "operator.suspended", op_id,
                            {"reason": reason, "ledger_seq": new.seq})
            return self._info(tx, new.operators[op_id])

    def _seal(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        """An immediate entry sealed by the HSM (inside the transaction that appends it: these
        acts are rare, and the seal binds the ledger head the transaction has locked)."""
        return AU.sealed(body, self.app.seal(AU.immediate_seal_kind(kind), body))

    def _operator(self, state: AU.AuthorityState, op_id: str) -> AU.OperatorRecord:
        rec = state.operators.get(op_id)
        if rec is None:
            raise NotFound(f"operator {echo(op_id, quote=False)} not found")
        return rec

    def _info(self, tx: Tx, rec: AU.OperatorRecord) -> OperatorInfo:
        return OperatorInfo(rec.id, tuple(sorted(rec.roles)), rec.public_key_pem.encode(),
                            rec.status, rec.fingerprint, tx.operator_created_at(rec.id),
                            rec.key_type.value, rec.token_held)

    def list_operators(self) -> list[OperatorInfo]:
        """The operators the authority ledger proves (not the store's copy)."""
        with self.store.read() as tx:
            state = self.ledger.state(tx)
            return [self._info(tx, r) for r in sorted(state.operators.values(),
                                                      key=lambda r: r.id)]

    def operator_status(self, op_id: str) -> OperatorStatus | None:
        """The operator's status as the authority ledger proves it (active, suspended,
        revoked), or None when the ledger does not know the id."""
        with self.store.read() as tx:
            rec = self.ledger.state(tx).operators.get(op_id)
            return None if rec is None else rec.status

    def operator_exists(self, op_id: str) -> bool:
        """Whether the authority ledger knows this operator (any status: a suspended or revoked
        operator is refused by the services, with the reason)."""
        with self.store.read() as tx:
            return op_id in self.ledger.state(tx).operators

    # ---------------------------------------------------------------- policies
    def set_policy(self, actor: str, wallet_id: str, document: str = "", template: str = ""
                   ) -> ProposalView:
        """A proposal for a wallet's next policy version: the text of a template, or a text of
        its own (which alone may carry a floor waiver)."""
        if bool(document) == bool(template):
            raise InvalidArgument("toml or template: give the policy text or a template name")
        with self.store.read() as tx:
            state = self.ledger.state(tx)
            wallet = L.load_wallet(tx, state, wallet_id)
        if template:
            document = state.texts[W.template_of(state, template).sha256]
        version = state.wallet_policy_version(wallet.id)
        old, _ = AU.wallet_policy_text(state, wallet.id, wallet.policy_sha256, version)
        return self._propose(actor, "wallet.policy", {
            "wallet_id": wallet.id, "base_version": version, "old_document": old,
            "document": document, "template": template})

    def get_policy(self, wallet_id: str) -> PolicyInfo:
        return self.policy_history(wallet_id)[-1]

    def policy_history(self, wallet_id: str) -> list[PolicyInfo]:
        """Every policy version of a wallet, as the authority ledger proves them."""
        with self.store.read() as tx:
            state = self.ledger.state(tx)
            wallet = L.load_wallet(tx, state, wallet_id)
            created = tx.policy_times(wallet_id)
        out = [PolicyInfo(wallet.id, 1, AU.wallet_policy_text(state, wallet.id,
                                                              wallet.policy_sha256, 1)[0],
                          f"template {wallet.template}", created.get(1, wallet.created_at))]
        for v in state.wallet_policies.get(wallet.id, ()):
            out.append(PolicyInfo(wallet.id, v.version, state.texts[v.sha256],
                                  f"proposal {v.proposal}", created.get(v.version, 0.0)))
        return out

    def set_template(self, actor: str, name: str, document: str) -> ProposalView:
        state = self._state()
        tpl = state.templates.get(name)
        return self._propose(actor, "template.set", {
            "name": name, "base_sha256": tpl.sha256 if tpl else "",
            "old_document": state.texts[tpl.sha256] if tpl else "", "document": document})

    def templates(self) -> list[tuple[AU.Template, str]]:
        state = self._state()
        return [(t, state.texts[t.sha256]) for t in sorted(state.templates.values(),
                                                           key=lambda t: t.name)]

    def set_governance(self, actor: str, document: str) -> ProposalView:
        state = self._state()
        return self._propose(actor, "governance.set", {
            "base_sha256": state.governance_sha256, "old_document": state.governance_text,
            "document": document})

    def authority(self) -> AU.AuthorityState:
        return self._state()

    # ---------------------------------------------------------------- token registry
    def set_token(self, actor: str, *, chain_id: int, address: str, symbol: str,
                  decimals: int, standard: str = "erc20") -> ProposalView:
        """A proposal to register a token contract on a chain, or to change its entry."""
        token = make_token(chain_id=chain_id, address=address, standard=standard or "erc20",
                           symbol=symbol, decimals=decimals)
        current = self._state().tokens.get(token.key)
        return self._propose(actor, "token.set", {
            "token": token_json(token),
            "old_token": token_json(current) if current is not None else {}})

    # ---------------------------------------------------------------- chain registry
    def set_chain(self, actor: str, *, chain_id: int, name: str, symbol: str,
                  decimals: int) -> ProposalView:
        """A proposal to register an EVM chain (its name and native coin), or to change its
        entry."""
        chain = CR.make_chain(chain_id=chain_id, name=name, symbol=symbol, decimals=decimals)
        state = self._state()
        current = state.chains.get(chain.chain_id)
        if current == chain:
            raise InvalidArgument(f"chain: chain {chain.chain_id} is registered with these "
                                  "fields already")
        CR.add_chain(dict(state.chains), chain, "chain")
        return self._propose(actor, "chain.set", {
            "chain": CR.chain_json(chain),
            "old_chain": CR.chain_json(current) if current is not None else {}})

    def chains(self, chain_id: int = 0) -> list[EvmChain]:
        """The chain registry the authority ledger proves (one entry, with ``chain_id``)."""
        return sorted((c for c in self._state().chains.values()
                       if not chain_id or c.chain_id == chain_id), key=lambda c: c.chain_id)

    def tokens(self, chain_id: int = 0) -> list[Token]:
        """The token registry the authority ledger proves (of one chain, with ``chain_id``)."""
        return sorted((t for t in self._state().tokens.values()
                       if not chain_id or t.chain_id == chain_id), key=lambda t: t.key)

    # ---------------------------------------------------------------- freezes
    def freeze(self, actor: str, wallet_id: str, order_ref: str) -> Wallet:
        """Immediate: a court order freezes a wallet at once (a ledger entry, so a store writer
        cannot lift it)."""
        order_ref = (order_ref or "").strip()
        if not order_ref:
            raise InvalidArgument("order_ref: a court order reference is required")
        with self.store.transaction() as tx:
            tx.get_wallet(wallet_id, lock=True)
            state = self.ledger.locked(tx)
            wallet = L.load_wallet(tx, state, wallet_id)
            if wallet.status is WalletStatus.FROZEN:
                raise FailedPrecondition(f"wallet {wallet_id} is already FROZEN")
            if wallet.status is not WalletStatus.ACTIVE:
                raise FailedPrecondition(f"wallet {wallet_id} is {wallet.status.value}")
            body = AU.freeze_body(state, wallet_id, order_ref, actor, int(time.time()))
            new = self.ledger.append(tx, state, AU.FREEZE, self._seal(AU.FREEZE, body),
                                     seal=self.app.seal)
            tx.set_wallet_status(wallet_id, WalletStatus.FROZEN.value, order_ref)
            tx.append_audit(actor, "wallet.frozen", wallet_id,
                            {"order_ref": order_ref, "ledger_seq": new.seq})
            return L.load_wallet(tx, new, wallet_id)

    def unfreeze(self, actor: str, wallet_id: str, order_ref: str) -> ProposalView:
        state = self._state()
        return self._propose(actor, "wallet.unfreeze", {
            "wallet_id": wallet_id, "order_ref": (order_ref or "").strip(),
            "freeze_order": state.frozen.get(wallet_id, "")})


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
    template: str = ""


SWEEP_TEMPLATE = "seized-sweep"


def import_seized_key(app: Runtime, actor: str, req: ImportRequest) -> ProposalView:
    """A seized key goes into the HSM now (sensitive, non-extractable; the plaintext is never
    stored) and a SEIZED wallet is built around it once a ``wallet.import`` proposal is
    approved. Bad input stores nothing."""
    if not req.seizure_record.strip():
        raise InvalidArgument("seizure_record: the seizure record reference is required")
    checked = W.check_request(W.WalletRequest(
        chain=req.chain, network=req.network, category="seized", case_ref=req.case_ref,
        legal_basis=req.legal_basis, chain_ids=req.chain_ids, script_type=req.script_type,
        policy_toml=req.policy_toml))
    if checked.script_type not in (ScriptType.P2WPKH, ScriptType.P2SH_P2WPKH, ScriptType.EOA):
        raise InvalidArgument("script_type: an imported key makes a single-key wallet")
    if req.kind == "hex":
        secret = seized.from_hex(req.secret)
    elif req.kind == "wif":
        if checked.network == "ethereum" or checked.chain is not Chain.BITCOIN:
            raise InvalidArgument(f"wif: WIF keys are Bitcoin keys; use hex or a mnemonic for "
                                  f"{checked.chain.value.capitalize()}")
        secret = seized.from_wif(req.secret, checked.network)
    elif req.kind == "mnemonic":
        if not req.derivation_path:
            raise InvalidArgument("derivation_path: required with a mnemonic")
        secret = seized.from_mnemonic(req.secret, req.derivation_path, req.passphrase)
    else:
        raise InvalidArgument("secret: one of hex, wif or mnemonic is required")
    from coincurve import PrivateKey

    earlier: Wallet | None = None
    try:
        with app.store.read() as tx:
            state = app.ledger.state(tx)
            if checked.chain is Chain.ETHEREUM:
                CR.require_all(state.chains, checked.chain_ids)
            template = req.template or (SWEEP_TEMPLATE if SWEEP_TEMPLATE in state.templates
                                        else app.wallets.default_template)
            tpl = W.template_of(state, template)
            pub = PrivateKey(bytes(secret)).public_key.format()
            holder = tx.key_holder(pub.hex())
            if holder is not None:
                earlier = _unapproved_import(tx, state, holder, pub)
    except BaseException:
        for i in range(len(secret)):
            secret[i] = 0
        raise
    if earlier is not None:
        for i in range(len(secret)):
            secret[i] = 0  # the HSM holds it already
        return _import_again(app, actor, req, checked, earlier, template, tpl.sha256,
                             state.texts[tpl.sha256])
    wallet_id = W.new_wallet_id()
    key = app.keystore.import_key(secret, f"{wallet_id}/seized")  # wipes `secret`
    proposal = new_proposal_id()
    now = time.time()
    record = W.make_record(checked, wallet_id, [key], template=template,
                           policy_sha256=tpl.sha256,
                           origin=f"imported; seizure record {req.seizure_record}",
                           proposal=proposal, created_at=int(now))
    seal = app.seal("wallet", record)

    def store_it(tx: Tx, _state: Any, _doc: Any) -> None:
        W.insert_wallet(tx, record, seal, WalletStatus.AWAITING_APPROVAL,
                        state.texts[tpl.sha256], actor)
        tx.append_audit(actor, "key.imported", wallet_id, _imported_details(
            req, record, key.key_id, key.public_key, template, proposal))

    return _propose_import(app, actor, req, record, proposal, now, store_it)


def _imported_details(req: ImportRequest, record: dict[str, Any], key_id: str,
                      public_key: bytes, template: str, proposal: str) -> dict[str, Any]:
    """The details of a ``key.imported`` audit event."""
    return {
        "chain": record["chain"], "network": record["network"],
        "address": record["address"], "case_ref": record["case_ref"],
        "seizure_record": req.seizure_record, "form": req.kind,
        "derivation_path": req.derivation_path, "key_id": key_id,
        "public_key": public_key.hex(), "template": template, "proposal": proposal}


def _propose_import(app: Runtime, actor: str, req: ImportRequest, record: dict[str, Any],
                    proposal: str, now: float, store_it: Any) -> ProposalView:
    """The ``wallet.import`` proposal of an imported key's wallet, stored by ``store_it`` in
    the proposal's own transaction."""
    view = app.proposals.propose(actor, "wallet.import", {
        "wallet": record, "seizure_record": req.seizure_record, "form": req.kind,
        "derivation_path": req.derivation_path}, proposal_id=proposal, now=now,
        with_tx=store_it)
    app.refresh_gauges()
    return view  # type: ignore[no-any-return]


def _unapproved_import(tx: Tx, state: AU.AuthorityState, wallet_id: str, pub: bytes) -> Wallet:
    """The wallet signerd made around this seized key, if it never came into force: RETIRED,
    made by an import whose proposal the ledger never applied. Any other holder of the key is
    FailedPrecondition (a key never serves two wallets)."""
    try:
        w = L.load_wallet(tx, state, wallet_id)
    except (NotFound, AuthorityViolation):
        raise FailedPrecondition(f"this key is already held by signerd (wallet {wallet_id}); a "
                                 "key never serves two wallets") from None
    if (w.status is not WalletStatus.RETIRED or not w.origin.startswith(L.IMPORTED)
            or not w.proposal or w.id in state.approved_wallets
            or [k.public_key for k in w.keys] != [pub]):
        raise FailedPrecondition(f"this key is already held by signerd (wallet {w.id}, "
                                 f"{w.status.value}); a key never serves two wallets")
    return w


def _import_again(app: Runtime, actor: str, req: ImportRequest, checked: W.CheckedWallet,
                  earlier: Wallet, template: str, policy_sha256: str, policy_text: str
                  ) -> ProposalView:
    """A seized key whose import ended without approval (rejected, expired, cancelled,
    failed), imported again: the same wallet, around the same HSM key, is proposed anew
    under a new ``wallet.import`` proposal (with this request's case, legal basis, seizure
    record and template). Without this the key would be wedged: held by the HSM, refused as
    held, its wallet RETIRED. Nothing comes into force without the new proposal's quorum."""
    if not app.ended([earlier.proposal]):
        raise FailedPrecondition(f"this key is held by wallet {earlier.id}, whose import "
                                 f"proposal {earlier.proposal} has not ended")
    ref = earlier.keys[0]
    if app.keystore.held_public_key(ref.key_id) != ref.public_key:
        raise FailedPrecondition(f"the HSM does not hold the key of wallet {earlier.id} "
                                 f"({ref.key_id}) any more")
    proposal = new_proposal_id()
    now = time.time()
    record = W.make_record(checked, earlier.id, [KeyInfo(ref.key_id, ref.label, ref.public_key)],
                           template=template, policy_sha256=policy_sha256,
                           origin=f"{L.IMPORTED}; seizure record {req.seizure_record}",
                           proposal=proposal, created_at=int(now))
    if record["address"] != earlier.address:
        raise FailedPrecondition(
            f"this key was imported before as wallet {earlier.id} at {earlier.address} "
            f"({earlier.chain.value}, {earlier.network}, {earlier.script_type.value}); import it "
            "again with the same chain, network and script type")
    seal = app.seal("wallet", record)

    def store_it(tx: Tx, _state: Any, _doc: Any) -> None:
        row = tx.get_wallet(earlier.id, lock=True)
        if row.status != WalletStatus.RETIRED.value or row.proposal_id != earlier.proposal:
            raise FailedPrecondition(f"wallet {earlier.id} changed meanwhile (imported again by "
                                     "another request?)")
        tx.propose_wallet_again(earlier.id, record, L.record_json(record), seal,
                                WalletStatus.AWAITING_APPROVAL.value)
        tx.replace_policy_text(earlier.id, 1, policy_text, actor, now)
        tx.append_audit(actor, "key.imported", earlier.id, {**_imported_details(
            req, record, ref.key_id, ref.public_key, template, proposal),
            "again_after": earlier.proposal})

    return _propose_import(app, actor, req, record, proposal, now, store_it)
