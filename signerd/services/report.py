"""Holdings and activity report per category and case, for publication and for auditors.

signerd knows what it holds keys for and what it signed; it does not watch any chain. So the
report states exactly that: wallets and addresses, signed transfers with their amounts (money
that left, once broadcast), pending transfers, and freezes. On-chain balances are not known to
signerd and must come from the platform's chain watchers.

Assets are reported by name, per chain: ``outflows_by_chain`` lists what left each chain as
``BNB Smart Chain (56) BNB`` (the chain registry's name and the native coin's symbol, or a
registered token's symbol), so Ether on Ethereum, Ether on a testnet and BNB never add up.
``signed_outflows`` keeps the totals by asset name alone, as before the registry.
"""
from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from signerd.adapters.store import Tx
from signerd.core.authority import AuthorityState
from signerd.core import chain_registry as CR
from signerd.core.model import Chain, Movement, TransferState, Wallet
from signerd.core.tokens import lookup as lookup_token
from . import ledger as L
from .transfers import movement_from_json


KNOWN = ("wallets and addresses whose keys signerd holds; every transfer it signed, with the "
         "amounts and fees it decoded itself; pending transfers; court-ordered freezes")
NOT_KNOWN = ("on-chain balances and incoming payments (signerd watches no chain); whether a "
             "signed transaction was broadcast or confirmed (the platform reports that)")


def holdings_report(tx: Tx, state: AuthorityState, *, instance_id: str, category: str = "",
                    case_ref: str = "") -> dict[str, Any]:
    """The report, from the wallets that verify (``ledger.verified_wallet``) and their
    transfers. A wallet row signerd did not make is left out, and the report says so (its id
    and why), as a listing does."""
    left_out: list[dict[str, str]] = []
    wallets = list(L.verified_wallets(tx, state, "a report", category=category,
                                      case_ref=case_ref, left_out=left_out))
    ids = {w.id for w in wallets}
    cats: dict[str, dict[str, Any]] = defaultdict(lambda: {"cases": {}})

    def case(w: Wallet) -> dict[str, Any]:
        c = cats[w.category.value]["cases"]
        return c.setdefault(w.case_ref, {"wallets": [], "signed_transfers": [],
                                         "pending_transfers": [], "freezes": [],
                                         "signed_outflows": {},
                                         "outflows_by_chain": {}})

    by_id = {w.id: w for w in wallets}
    for w in wallets:
        case(w)["wallets"].append({
            "id": w.id, "chain": w.chain.value, "network": w.network,
            "address": w.address, "script_type": w.script_type.value,
            "status": w.status.value, "freeze_order": L.freeze_order(state, w.id),
            "legal_basis": w.legal_basis, "origin": w.origin or "generated in the HSM",
            "chain_ids": list(w.chain_ids),
            "chains": [chain_label(state, w, cid) for cid in w.chain_ids] or [
                f"{w.chain.value} {w.network}"]})
    for t in tx.list_transfers(limit=10**9):
        if t.wallet_id not in ids:
            continue
        w = by_id[t.wallet_id]
        mv = movement_from_json(t.movement)
        entry = {"id": t.id, "wallet_id": t.wallet_id, "state": t.state.value,
                 "outputs": [{"address": o.address, "amount": str(o.amount), "asset": o.asset,
                              "change": o.is_change} for o in mv.outputs],
                 "fee": str(mv.fee), "fee_asset": mv.fee_asset,
                 "chain_name": chain_label(state, w, mv.chain_id),
                 "native": None if mv.native is None else CR.chain_json(mv.native),
                 "category_change": t.category_change, "legal_basis": t.legal_basis,
                 "tx_hash": t.tx_hash, "updated_at": int(t.updated_at)}
        if t.state is TransferState.SIGNED:
            case(w)["signed_transfers"].append(entry)
            flows = case(w)["signed_outflows"]
            for o in mv.external_outputs():
                flows[o.asset] = str(int(flows.get(o.asset, "0")) + o.amount)
            flows[f"fee:{mv.fee_asset}"] = str(int(flows.get(f"fee:{mv.fee_asset}", "0"))
                                               + mv.fee)
            named = case(w)["outflows_by_chain"]
            for asset, amount, fee in ([(o.asset, o.amount, False) for o in mv.external_outputs()]
                                       + [(mv.fee_asset, mv.fee, True)]):
                key = asset_label(state, w, mv, asset) + (" (fees)" if fee else "")
                row = named.setdefault(key, {
                    "chain": w.chain.value, "chain_id": mv.chain_id,
                    "chain_name": chain_label(state, w, mv.chain_id), "asset": asset,
                    "fee": fee, "amount": "0",
                    "decimals": native_decimals(state, mv, asset)})
                row["amount"] = str(int(row["amount"]) + amount)
        elif t.live:
            case(w)["pending_transfers"].append(entry)
    for ev in tx.audit_events_of(("wallet.frozen", "wallet.unfrozen")):
        frozen = by_id.get(ev.object)
        if frozen is not None:
            order = ev.details.get("order_ref", "")
            case(frozen)["freezes"].append({
                "wallet_id": ev.object, "action": ev.action.split(".")[1],
                "order_ref": order if isinstance(order, str) else "",
                "time": ev.time // 1_000_000, "audit_seq": ev.seq})
    return {"generated_at": int(time.time()), "instance_id": instance_id,
            "filter": {"category": category, "case_ref": case_ref},
            "known": KNOWN, "not_known": NOT_KNOWN, "categories": dict(cats),
            "left_out": left_out}


def chain_label(state: AuthorityState, w: Wallet, chain_id: int) -> str:
    """``BNB Smart Chain (56)``; ``bitcoin mainnet``; ``chain 999 (not registered)``."""
    if w.chain is not Chain.ETHEREUM:
        return f"{w.chain.value} {w.network}"
    entry = state.chains.get(chain_id)
    return CR.label(entry) if entry is not None else f"chain {chain_id} (not registered)"


def asset_label(state: AuthorityState, w: Wallet, mv: Movement, asset: str) -> str:
    """An asset by name on its chain: ``BNB Smart Chain (56) BNB``, ``Ethereum (1) USDT``,
    ``bitcoin mainnet BTC``."""
    where = chain_label(state, w, mv.chain_id)
    if ":" in asset:
        token = lookup_token(mv.tokens, asset, mv.chain_id) or lookup_token(
            state.tokens.values(), asset, mv.chain_id)
        kind = asset.partition(":")[0]
        name = (token.symbol if token is not None else asset) + (
            " allowance" if kind.upper() == "ERC20-APPROVE" else "")
        return f"{where} {name}"
    return f"{where} {asset}"


def native_decimals(state: AuthorityState, mv: Movement, asset: str) -> int | None:
    """The decimals of an EVM chain's native coin ``asset`` (None for anything else)."""
    entry = mv.native or state.chains.get(mv.chain_id)
    if mv.chain is Chain.ETHEREUM and entry is not None and asset == entry.symbol:
        return entry.decimals
    return None
