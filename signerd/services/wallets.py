"""Wallets: keys generated in (or imported into) the HSM, addresses, categories, freezes.

A wallet's identity (chain, category, keys, address, the template its policy started from) is a
record signerd seals with the audit key when it writes it (``signerd.core.seal``). The platform may
create a wallet whose keys are all generated in this signerd's HSM, naming a template the
governance approved; it never supplies policy text. A wallet that holds a key from outside (a
cosigner of another institution) or an imported seized key is a governance act: it waits,
AWAITING_APPROVAL, for its proposal's quorum.
"""
from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import dataclass, replace
from typing import Any

from signerd.adapters.hsm import KeyInfo
from signerd.adapters.store import Tx
from signerd.core import authority as AU
from signerd.core import chain_registry
from signerd.core import legal_basis as LB
from signerd.core import safe_wallet as SW
from signerd.core.bitcoin.descriptor import InvalidDescriptor, parse_descriptor, parse_key
from signerd.core.chains import derive_address
from signerd.core.errors import (AlreadyExists, AuthorityViolation, FailedPrecondition,
                                 InvalidArgument, NotFound, echo)
from signerd.core.tron import address as tron_address
from signerd.core.model import (EXTERNAL_KEY_PREFIX, BitcoinNetwork, Category, Chain, ScriptType,
                                Wallet, WalletStatus)
from . import ledger as L
from .proposals import new_proposal_id
from .runtime import Runtime


log = logging.getLogger("signerd.wallets")

MAX_CHAIN_ID = 2**64 - 1
MAX_CASE_REF = 200
MAX_MULTISIG_KEYS = 15


@dataclass(frozen=True)
class WalletRequest:
    chain: str
    network: str
    category: str
    case_ref: str
    legal_basis: str = ""
    chain_ids: tuple[int, ...] = ()
    script_type: str = ""
    threshold: int = 0
    hsm_keys: int = 0
    cosigners: tuple[str, ...] = ()
    label: str = ""
    policy_toml: str = ""
    hsm_key_ids: tuple[str, ...] = ()
    template: str = ""
    safe_address: str = ""  # a Safe wallet (script_type "safe"): the Safe's address
    safe_setup: str = ""  # ... and its setup (SafeSetup JSON), checked against the address


@dataclass(frozen=True)
class CheckedWallet:
    chain: Chain
    network: str
    category: Category
    case_ref: str
    legal_basis: str
    chain_ids: tuple[int, ...]
    script_type: ScriptType
    threshold: int
    hsm_keys: int
    cosigners: tuple[bytes, ...]
    cosigner_text: tuple[str, ...]
    safe_address: str = ""
    safe_setup: str = ""


def check_request(req: WalletRequest) -> CheckedWallet:
    """Validate a wallet request before any key is made; errors name the field."""
    if req.policy_toml:
        raise InvalidArgument("policy_toml: the platform names a governance-approved template "
                              "(template); a wallet's own policy text is a governance proposal "
                              "(signerctl policy set)")
    try:
        chain = Chain(req.chain.lower())
    except ValueError:
        raise InvalidArgument(f"chain: unknown chain {echo(req.chain)} (bitcoin, ethereum or "
                              "tron)") from None
    try:
        category = Category(req.category.lower())
    except ValueError:
        raise InvalidArgument(
            f"category: unknown category {echo(req.category)} (seized, confiscated or strategic)"
        ) from None
    case_ref = req.case_ref.strip()
    if not case_ref:
        raise InvalidArgument("case_ref: a case reference is required")
    if len(case_ref) > MAX_CASE_REF or any(ord(c) < 32 for c in case_ref):
        raise InvalidArgument(f"case_ref: at most {MAX_CASE_REF} printable characters")
    if len(req.legal_basis) > 1000:
        raise InvalidArgument("legal_basis: at most 1000 characters")
    legal_basis = LB.given(req.legal_basis)  # the court decision, structured, or none
    cosigners: tuple[bytes, ...] = ()
    if chain is Chain.ETHEREUM:
        if req.network not in ("", "ethereum", "mainnet"):
            raise InvalidArgument(
                f"network: Ethereum wallets take chain ids, not network {echo(req.network)}")
        if not req.chain_ids:
            raise InvalidArgument("chain_ids: an Ethereum wallet needs at least one allowed chain id")
        for cid in req.chain_ids:
            if not 0 < int(cid) <= MAX_CHAIN_ID:
                raise InvalidArgument(f"chain_ids: chain id {cid} is out of range (1..2^64-1)")
        st = ScriptType(req.script_type) if req.script_type else ScriptType.EOA
        if st is ScriptType.SAFE:
            return check_safe_request(req, category, case_ref, legal_basis)
        if req.safe_address or req.safe_setup:
            raise InvalidArgument("safe_address: only a Safe wallet (script_type safe) has one")
        if st is not ScriptType.EOA:
            raise InvalidArgument("script_type: Ethereum wallets are externally owned accounts (eoa)")
        if req.cosigners or req.threshold > 1 or req.hsm_keys > 1:
            raise InvalidArgument("multisig: Ethereum wallets are single-key accounts")
        return CheckedWallet(chain, "ethereum", category, case_ref, legal_basis,
                             tuple(sorted(set(int(c) for c in req.chain_ids))), st, 1, 1, (), ())
    if chain is Chain.TRON:
        return _check_tron(req, category, case_ref, legal_basis)
    try:
        network = BitcoinNetwork(req.network.lower()).value
    except ValueError:
        raise InvalidArgument(
            f"network: unknown Bitcoin network {echo(req.network)} "
            "(mainnet, testnet, signet, regtest)"
        ) from None
    if req.chain_ids:
        raise InvalidArgument("chain_ids: only Ethereum wallets have chain ids")
    try:
        st = ScriptType(req.script_type) if req.script_type else ScriptType.P2WPKH
    except ValueError:
        raise InvalidArgument(f"script_type: unknown script type {echo(req.script_type)}") from None
    if st is ScriptType.EOA:
        raise InvalidArgument("script_type: eoa is for Ethereum wallets")
    threshold, hsm_keys = 1, 1
    cos_text: tuple[str, ...] = ()
    if st is ScriptType.P2WSH_SORTEDMULTI:
        if len(req.cosigners) + len(req.hsm_key_ids) > MAX_MULTISIG_KEYS:  # before parsing any
            raise InvalidArgument(f"multisig: at most {MAX_MULTISIG_KEYS} keys")
        cosigners = tuple(parse_cosigner(c, network) for c in req.cosigners)
        cos_text = tuple(req.cosigners)
        hsm_keys = req.hsm_keys or (0 if req.hsm_key_ids else 1)
        n = hsm_keys + len(req.hsm_key_ids) + len(cosigners)
        threshold = req.threshold
        if not 1 <= threshold <= n:
            raise InvalidArgument(f"threshold: must be between 1 and the number of keys ({n})")
        if n > MAX_MULTISIG_KEYS:
            raise InvalidArgument(f"multisig: at most {MAX_MULTISIG_KEYS} keys")
        if hsm_keys + len(req.hsm_key_ids) < 1:
            raise InvalidArgument("hsm_keys: a multisig wallet needs at least one HSM key share")
    elif req.cosigners or req.threshold > 1 or req.hsm_keys > 1 or req.hsm_key_ids:
        raise InvalidArgument(f"multisig: {st.value} wallets are single-key")
    return CheckedWallet(chain, network, category, case_ref, legal_basis, (), st, threshold,
                         hsm_keys, cosigners, cos_text)


def _check_tron(req: WalletRequest, category: Category, case_ref: str, legal_basis: str
                ) -> CheckedWallet:
    """A Tron wallet: one HSM key, an account on one network (mainnet, nile or shasta)."""
    network = req.network.lower()
    if network not in tron_address.NETWORKS:
        raise InvalidArgument(f"network: unknown Tron network {echo(req.network)} "
                              f"({', '.join(tron_address.NETWORKS)})")
    if req.chain_ids:
        raise InvalidArgument("chain_ids: a Tron wallet names its network, not chain ids")
    if (req.script_type or "eoa") != ScriptType.EOA.value:
        raise InvalidArgument("script_type: Tron wallets are single-key accounts (eoa)")
    if req.cosigners or req.threshold > 1 or req.hsm_keys > 1 or req.hsm_key_ids:
        raise InvalidArgument("multisig: Tron wallets are single-key accounts")
    return CheckedWallet(Chain.TRON, network, category, case_ref, legal_basis, (), ScriptType.EOA,
                         1, 1, (), ())


def check_safe_request(req: WalletRequest, category: Category, case_ref: str,
                       legal_basis: str) -> CheckedWallet:
    """A Safe wallet: one chain id, its owner key a key share made before (its address is in
    the Safe's owners), the Safe's address and setup (checked against the key in ``create``)."""
    if len(req.chain_ids) != 1:
        raise InvalidArgument("chain_ids: a Safe wallet lives on exactly one chain id")
    cid = int(req.chain_ids[0])  # in range: create checked every chain id
    if len(req.hsm_key_ids) != 1 or req.hsm_keys or req.cosigners or req.threshold:
        raise InvalidArgument(
            "hsm_key_ids: a Safe wallet's owner key is one key share made first (signerctl "
            "wallet key-share), whose owner address goes into the Safe's owner list; the "
            "owners and threshold come from the setup (no hsm_keys, cosigners or threshold)")
    if not req.safe_address or not req.safe_setup:
        raise InvalidArgument("safe_address: a Safe wallet needs the Safe's address and its "
                              "setup (safe_setup)")
    SW.parse_setup(req.safe_setup)  # shape first, before any key is read
    return CheckedWallet(Chain.ETHEREUM, "ethereum", category, case_ref, legal_basis, (cid,),
                         ScriptType.SAFE, 1, 0, (), (), req.safe_address, req.safe_setup)


def parse_cosigner(text: str, network: str) -> bytes:
    """An external cosigner: a compressed public key in hex, or an xpub/tpub with an optional
    non-hardened derivation path (``tpub.../0/7``); returns the compressed public key. Its text
    and paths are bounded (``descriptor.MAX_KEY_CHARS``, ``MAX_PATH_STEPS``): a cosigner costs
    at most a few dozen BIP-32 derivations."""
    try:
        key = parse_key(text.strip())
        parse_descriptor(f"wpkh({text.strip()})").check_network(network)
    except InvalidDescriptor as e:
        raise InvalidArgument(f"cosigners: {e}") from None
    return key.pubkey


def new_wallet_id() -> str:
    return "w_" + secrets.token_hex(8)


def make_record(checked: CheckedWallet, wallet_id: str, hsm_keys: list[KeyInfo], *,
                template: str, policy_sha256: str, origin: str = "", proposal: str = "",
                created_at: int) -> dict[str, Any]:
    """The canonical record of a wallet whose HSM keys exist (what its seal covers)."""
    pubkeys = [k.public_key for k in hsm_keys] + list(checked.cosigners)
    safe: dict[str, Any] | None = None
    if checked.script_type is ScriptType.SAFE:
        verified = SW.check_safe(checked.safe_address, checked.safe_setup, pubkeys[0])
        safe = verified.record(checked.chain_ids[0])
        checked = replace(checked, threshold=verified.threshold,
                          cosigner_text=verified.outside_owners)
        address, desc = verified.address, ""
    else:
        address, desc = derive_address(checked.chain, checked.network, checked.script_type,
                                       checked.threshold, pubkeys)
    keys = [{"key_id": k.key_id, "label": k.label, "public_key": k.public_key.hex(),
             "hsm_held": True, "position": pos} for pos, k in enumerate(hsm_keys)]
    keys += [{"key_id": EXTERNAL_KEY_PREFIX + pub.hex()[:32] + "-" + wallet_id,
              "label": f"cosigner {j + 1}", "public_key": pub.hex(), "hsm_held": False,
              "position": len(hsm_keys) + j} for j, pub in enumerate(checked.cosigners)]
    return {
        "id": wallet_id, "chain": checked.chain.value, "network": checked.network,
        "script_type": checked.script_type.value, "category": checked.category.value,
        "case_ref": checked.case_ref, "legal_basis": checked.legal_basis, "address": address,
        "descriptor": desc, "threshold": checked.threshold,
        "chain_ids": list(checked.chain_ids), "cosigners": list(checked.cosigner_text),
        "keys": keys, "template": template, "policy_sha256": policy_sha256, "origin": origin,
        "proposal": proposal, "created_at": int(created_at),
        **({"safe": safe} if safe is not None else {}),
    }


def insert_wallet(tx: Tx, record: dict[str, Any], seal: str, status: WalletStatus,
                  policy_text: str, actor: str) -> None:
    """Store a sealed wallet record, its keys and its policy version 1 (copies for readers);
    the caller audits it in the same transaction."""
    now = time.time()
    tx.insert_wallet({
        "id": record["id"], "chain": record["chain"], "network": record["network"],
        "script_type": record["script_type"], "category": record["category"],
        "case_ref": record["case_ref"], "legal_basis": record["legal_basis"],
        "status": status.value, "address": record["address"],
        "descriptor": record["descriptor"], "threshold": record["threshold"],
        "chain_ids": record["chain_ids"], "cosigners": record["cosigners"],
        "origin": record["origin"], "created_at": float(record["created_at"]),
        "record": L.record_json(record), "seal": seal, "proposal_id": record["proposal"],
        **L.safe_columns(record),
    })
    for k in record["keys"]:
        tx.insert_key({"key_id": k["key_id"], "wallet_id": record["id"],
                       "position": k["position"], "label": k["label"],
                       "public_key": k["public_key"], "hsm_held": k["hsm_held"],
                       "category": record["category"], "created_at": now})
    tx.insert_policy(record["id"], policy_text, actor, version=1)


def template_of(state: AU.AuthorityState, name: str) -> AU.Template:
    tpl = state.templates.get(name)
    if tpl is None:
        raise InvalidArgument(f"template: {echo(name)} is not a policy template of the governance "
                              f"(known: {', '.join(sorted(state.templates)) or 'none'})")
    return tpl


class WalletService:
    def __init__(self, app: Runtime):
        self.app = app
        self.store = app.store
        self.ledger = app.ledger

    @property
    def default_template(self) -> str:
        name = self.app.config.default_policy
        return name[:-5] if name.endswith(".toml") else name

    def create(self, actor: str, req: WalletRequest) -> Wallet:
        """A wallet with keys made in the HSM. Without outside keys it is ACTIVE at once; with a
        cosigner from outside it is AWAITING_APPROVAL under a ``wallet.create`` proposal."""
        checked = check_request(req)
        with self.store.read() as tx:
            state = self.ledger.state(tx)
            shares = [L.verified_key_share(state, tx.key_share(k)) for k in req.hsm_key_ids]
        if checked.chain is Chain.ETHEREUM:
            chain_registry.require_all(state.chains, checked.chain_ids)
        template = req.template or self.default_template
        tpl = template_of(state, template)
        for share in shares:
            if share.wallet_id:
                raise AlreadyExists(f"key share {share.key_id} already serves wallet "
                                    f"{share.wallet_id}")
            if share.category != checked.category.value:
                raise InvalidArgument(f"hsm_key_ids: key share {share.key_id} belongs to "
                                      f"category {share.category}; categories never share "
                                      "a key")
        wallet_id = new_wallet_id()
        keys = [self.app.hsm_generate(f"{wallet_id}/{i}") for i in range(checked.hsm_keys)]
        keys += [KeyInfo(sh.key_id, sh.label, bytes.fromhex(sh.public_key)) for sh in shares]
        if checked.script_type is ScriptType.SAFE:
            # A Safe whose other owners are outside this signerd is a multisig with outside
            # cosigners: a governance act, as for Bitcoin (the outside owners are known only
            # from the setup, so the check needs the owner key first).
            safe = SW.check_safe(checked.safe_address, checked.safe_setup, keys[0].public_key)
            outside = bool(safe.outside_owners)
        else:
            outside = bool(checked.cosigners)
        proposal = new_proposal_id() if outside else ""
        now = time.time()
        record = make_record(checked, wallet_id, keys, template=template,
                             policy_sha256=tpl.sha256, proposal=proposal, created_at=int(now))
        seal = self.app.seal("wallet", record)
        text = state.texts[tpl.sha256]

        def store_it(tx: Tx, _state: Any = None, _doc: Any = None) -> None:
            for share in shares:
                taken = tx.take_key_share(share.key_id, wallet_id)
                if taken.public_key != share.public_key:
                    raise FailedPrecondition(f"key share {share.key_id} changed meanwhile")
            insert_wallet(tx, record, seal,
                          WalletStatus.AWAITING_APPROVAL if outside else WalletStatus.ACTIVE,
                          text, actor)
            tx.append_audit(actor, "wallet.created", wallet_id, {
                "chain": record["chain"], "network": record["network"],
                "category": record["category"], "case_ref": record["case_ref"],
                "address": record["address"], "script_type": record["script_type"],
                "keys": [k["key_id"] for k in record["keys"]], "template": template,
                "policy_sha256": tpl.sha256, "chain_ids": record["chain_ids"],
                "proposal": proposal})

        if outside:
            self.app.proposals.propose(actor, "wallet.create", {"wallet": record},
                                       proposal_id=proposal, now=now, with_tx=store_it)
        else:
            with self.store.transaction() as tx:
                store_it(tx)
        self.app.refresh_gauges()
        log.info("wallet created", extra={"wallet_id": wallet_id, "chain": record["chain"],
                                          "proposal": proposal})
        return self.get(wallet_id)

    def create_key_share(self, actor: str, category: str, case_ref: str) -> KeyInfo:
        """An HSM key for a multisig wallet that other institutions must know before it
        exists; sealed, so a store writer cannot slip another key in as a share."""
        probe = check_request(WalletRequest(chain="bitcoin", network="mainnet",
                                            category=category, case_ref=case_ref))
        key = self.app.hsm_generate(f"share/{probe.category.value}/{probe.case_ref[:40]}")
        record = {"key_id": key.key_id, "public_key": key.public_key.hex(),
                  "category": probe.category.value, "case_ref": probe.case_ref}
        seal = self.app.seal("key_share", record)
        with self.store.transaction() as tx:
            tx.insert_key_share(key.key_id, key.public_key.hex(), key.label, probe.category.value,
                                probe.case_ref, seal)
            tx.append_audit(actor, "key_share.created", key.key_id,
                            {"public_key": key.public_key.hex(), "category": probe.category.value,
                             "case_ref": probe.case_ref})
        return key

    def get(self, wallet_id: str) -> Wallet:
        with self.store.read() as tx:
            state = self.ledger.state(tx)
            w = L.load_wallet(tx, state, wallet_id)
        return _with_version(state, w)

    def list(self, *, category: str = "", case_ref: str = "", after: str = "",
             limit: int = 100) -> list[Wallet]:
        """A page of wallets; a row that does not verify is left out (and logged, counted)."""
        out = []
        with self.store.read() as tx:
            state = self.ledger.state(tx)
            rows = tx.list_wallets(category=category, case_ref=case_ref, after=after, limit=limit)
            for r in rows:
                try:
                    out.append(_with_version(state, L.verified_wallet(state, r)))
                except AuthorityViolation as e:
                    log.error("wallet %s left out of a listing: %s", r.id, e.message)
                    self.app.metrics.authority_violations.labels(e.kind).inc()
        return out


def _with_version(state: AU.AuthorityState, w: Wallet) -> Wallet:
    return replace(w, policy_version=state.wallet_policy_version(w.id))
