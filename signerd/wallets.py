"""Wallets: keys generated in (or imported into) the HSM, addresses, categories, freezes."""
from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import dataclass

from .errors import InvalidArgument
from .hsm import KeyInfo
from .model import (EXTERNAL_KEY_PREFIX, BitcoinNetwork, Category, Chain, KeyRef, ScriptType, Wallet,
                    WalletStatus)
from .store import Row, Tx

log = logging.getLogger("signerd.wallets")

MAX_CHAIN_ID = 2**64 - 1
MAX_CASE_REF = 200


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


def check_request(req: WalletRequest) -> CheckedWallet:
    """Validate a wallet request before any key is made; errors name the field."""
    try:
        chain = Chain(req.chain.lower())
    except ValueError:
        raise InvalidArgument(f"chain: unknown chain {req.chain!r} (bitcoin or ethereum)") from None
    try:
        category = Category(req.category.lower())
    except ValueError:
        raise InvalidArgument(
            f"category: unknown category {req.category!r} (seized, confiscated or strategic)"
        ) from None
    case_ref = req.case_ref.strip()
    if not case_ref:
        raise InvalidArgument("case_ref: a case reference is required")
    if len(case_ref) > MAX_CASE_REF or any(ord(c) < 32 for c in case_ref):
        raise InvalidArgument(f"case_ref: at most {MAX_CASE_REF} printable characters")
    if len(req.legal_basis) > 1000:
        raise InvalidArgument("legal_basis: at most 1000 characters")
    cosigners: tuple[bytes, ...] = ()
    if chain is Chain.ETHEREUM:
        if req.network not in ("", "ethereum", "mainnet"):
            raise InvalidArgument(
                f"network: Ethereum wallets take chain ids, not network {req.network!r}")
        if not req.chain_ids:
            raise InvalidArgument("chain_ids: an Ethereum wallet needs at least one allowed chain id")
        for cid in req.chain_ids:
            if not 0 < int(cid) <= MAX_CHAIN_ID:
                raise InvalidArgument(f"chain_ids: chain id {cid} is out of range (1..2^64-1)")
        st = ScriptType(req.script_type) if req.script_type else ScriptType.EOA
        if st is not ScriptType.EOA:
            raise InvalidArgument("script_type: Ethereum wallets are externally owned accounts (eoa)")
        if req.cosigners or req.threshold > 1 or req.hsm_keys > 1:
            raise InvalidArgument("multisig: Ethereum wallets are single-key accounts")
        return CheckedWallet(chain, "ethereum", category, case_ref, req.legal_basis,
                             tuple(sorted(set(int(c) for c in req.chain_ids))), st, 1, 1, (), ())
    try:
        network = BitcoinNetwork(req.network.lower()).value
    except ValueError:
        raise InvalidArgument(
            f"network: unknown Bitcoin network {req.network!r} (mainnet, testnet, signet, regtest)"
        ) from None
    if req.chain_ids:
        raise InvalidArgument("chain_ids: only Ethereum wallets have chain ids")
    try:
        st = ScriptType(req.script_type) if req.script_type else ScriptType.P2WPKH
    except ValueError:
        raise InvalidArgument(f"script_type: unknown script type {req.script_type!r}") from None
    if st is ScriptType.EOA:
        raise InvalidArgument("script_type: eoa is for Ethereum wallets")
    threshold, hsm_keys = 1, 1
    cos_text: tuple[str, ...] = ()
    if st is ScriptType.P2WSH_SORTEDMULTI:
        cosigners = tuple(parse_cosigner(c, network) for c in req.cosigners)
        cos_text = tuple(req.cosigners)
        hsm_keys = req.hsm_keys or (0 if req.hsm_key_ids else 1)
        n = hsm_keys + len(req.hsm_key_ids) + len(cosigners)
        threshold = req.threshold
        if not 1 <= threshold <= n:
            raise InvalidArgument(f"threshold: must be between 1 and the number of keys ({n})")
        if n > 15:
            raise InvalidArgument("multisig: at most 15 keys")
        if hsm_keys + len(req.hsm_key_ids) < 1:
            raise InvalidArgument("hsm_keys: a multisig wallet needs at least one HSM key share")
    elif req.cosigners or req.threshold > 1 or req.hsm_keys > 1 or req.hsm_key_ids:
        raise InvalidArgument(f"multisig: {st.value} wallets are single-key")
    return CheckedWallet(chain, network, category, case_ref, req.legal_basis, (), st, threshold,
                         hsm_keys, cosigners, cos_text)


def derive_address(chain: Chain, network: str, script_type: ScriptType, threshold: int,
                   pubkeys: list[bytes]) -> tuple[str, str]:
    """(address, descriptor) of a wallet, computed from its public keys."""
    if chain is Chain.ETHEREUM:
        from .ethereum.address import address_from_pubkey

        return address_from_pubkey(pubkeys[0]), ""
    from .bitcoin.address import script_to_address
    from .bitcoin.descriptor import make_descriptor, parse_descriptor

    desc = make_descriptor(script_type, threshold, pubkeys)
    return script_to_address(parse_descriptor(desc).script_pubkey(), network), desc


def parse_cosigner(text: str, network: str) -> bytes:
    """An external cosigner: a compressed public key in hex, or an xpub/tpub with an optional
    non-hardened derivation path (``tpub.../0/7``); returns the compressed public key."""
    from .bitcoin.descriptor import InvalidDescriptor, parse_descriptor, parse_key

    try:
        key = parse_key(text.strip())
        parse_descriptor(f"wpkh({text.strip()})").check_network(network)
    except InvalidDescriptor as e:
        raise InvalidArgument(f"cosigners: {e}") from None
    return key.pubkey


def wallet_from_rows(w: Row, keys: list[Row]) -> Wallet:
    return Wallet(
        id=w["id"], chain=Chain(w["chain"]), network=w["network"],
        script_type=ScriptType(w["script_type"]), category=Category(w["category"]),
        case_ref=w["case_ref"], legal_basis=w["legal_basis"], status=WalletStatus(w["status"]),
        address=w["address"],
        keys=tuple(KeyRef(k["key_id"], k["label"], bytes.fromhex(k["public_key"])) for k in keys),
        chain_ids=tuple(json.loads(w["chain_ids"])), descriptor=w["descriptor"],
        threshold=int(w["threshold"]), cosigners=tuple(json.loads(w["cosigners"])),
        created_at=float(w["created_at"]),
    )


def new_wallet_id() -> str:
    return "w_" + secrets.token_hex(8)


def insert_wallet(tx: Tx, checked: CheckedWallet, wallet_id: str, hsm_keys: list[KeyInfo],
                  *, origin: str = "") -> None:
    """Record a wallet whose HSM keys exist; the caller audits it in the same transaction."""
    pubkeys = [k.public_key for k in hsm_keys] + list(checked.cosigners)
    address, desc = derive_address(checked.chain, checked.network, checked.script_type,
                                   checked.threshold, pubkeys)
    now = time.time()
    tx.insert_wallet({
        "id": wallet_id, "chain": checked.chain.value, "network": checked.network,
        "script_type": checked.script_type.value, "category": checked.category.value,
        "case_ref": checked.case_ref, "legal_basis": checked.legal_basis,
        "status": WalletStatus.ACTIVE.value, "address": address, "descriptor": desc,
        "threshold": checked.threshold, "chain_ids": list(checked.chain_ids),
        "cosigners": list(checked.cosigner_text), "origin": origin, "created_at": now,
    })
    for pos, k in enumerate(hsm_keys):
        tx.insert_key({"key_id": k.key_id, "wallet_id": wallet_id, "position": pos,
                       "label": k.label, "public_key": k.public_key.hex(), "hsm_held": True,
                       "category": checked.category.value, "created_at": now})
    for j, pub in enumerate(checked.cosigners):
        tx.insert_key({"key_id": EXTERNAL_KEY_PREFIX + pub.hex()[:32] + "-" + wallet_id,
                       "wallet_id": wallet_id, "position": len(hsm_keys) + j,
                       "label": f"cosigner {j + 1}", "public_key": pub.hex(), "hsm_held": False,
                       "category": checked.category.value, "created_at": now})


def get_wallet(tx: Tx, wallet_id: str) -> Wallet:
    if not wallet_id:
        raise InvalidArgument("wallet_id: required")
    return wallet_from_rows(tx.get_wallet(wallet_id), tx.wallet_keys(wallet_id))
