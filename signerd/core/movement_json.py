"""A decoded movement as signerd stores it in a transfer's row (JSON; pure).

Integers that may exceed 2^53 (amounts, fees, gas prices) are decimal strings. The stored form
is covered by signerd's seal on the row (``engine.transfer_record``). Of the movement's
free-form ``details`` only ``token_call_data`` is kept (the bytes a safeTransferFrom hands the
recipient's hook, which the rendered statement shows), and only when there are such bytes.
"""
from __future__ import annotations

import json
from typing import Any

from .chain_registry import chain_from_json, chain_json
from .model import Chain, DestinationClass, Movement, Output, Token
from .tokens import token_json

TOKEN_CALL_DATA = "token_call_data"


def movement_dict(m: Movement) -> dict[str, Any]:
    """The movement as a JSON object, ``tokens`` always present (signerctl shows it so)."""
    return {
        "chain": m.chain.value, "network": m.network, "chain_id": m.chain_id,
        "outputs": [output_dict(o) for o in m.outputs],
        "fee": str(m.fee), "fee_asset": m.fee_asset, "digests": [d.hex() for d in m.digests],
        "nonce": m.nonce, "gas_limit": m.gas_limit,
        "max_fee_per_gas": None if m.max_fee_per_gas is None else str(m.max_fee_per_gas),
        "max_priority_fee_per_gas": (None if m.max_priority_fee_per_gas is None
                                     else str(m.max_priority_fee_per_gas)),
        "contract_call": m.contract_call, "vsize": m.vsize, "outpoints": list(m.outpoints),
        "sighash": list(m.sighash),
        "tokens": [token_json(t) for t in m.tokens],
        "extra": dict(m.extra),
        "native": None if m.native is None else chain_json(m.native),
        **({"safe": [[k, v] for k, v in m.safe]} if m.safe else {}),
    }


def output_dict(o: Output) -> dict[str, Any]:
    """One output; ``token_id`` (a decimal string), ``source`` and ``grant`` only when it has
    them (so outputs stored before them read and seal as they did)."""
    d: dict[str, Any] = {"address": o.address, "amount": str(o.amount), "asset": o.asset,
                         "is_change": o.is_change,
                         "destination_class": o.destination_class.value,
                         "wallet_id": o.wallet_id, "category": o.category}
    if o.token_id is not None:
        d["token_id"] = str(o.token_id)
    if o.source:
        d["source"] = o.source
    if o.grant:
        d["grant"] = True
    return d


def movement_to_json(m: Movement) -> str:
    """The stored form (sorted keys; ``tokens``, ``extra`` and ``token_call_data`` only when
    there are any, ``native`` only with a chain registry entry)."""
    d = movement_dict(m)
    if not m.tokens:
        del d["tokens"]
    if not m.extra:
        del d["extra"]
    if m.native is None:
        del d["native"]
    if m.details.get(TOKEN_CALL_DATA):
        d[TOKEN_CALL_DATA] = m.details[TOKEN_CALL_DATA]
    return json.dumps(d, sort_keys=True)


def movement_from_json(text: str) -> Movement:
    d = json.loads(text)
    return Movement(
        chain=Chain(d["chain"]), network=d["network"], chain_id=int(d["chain_id"]),
        outputs=tuple(Output(o["address"], int(o["amount"]), o["asset"], bool(o["is_change"]),
                             DestinationClass(o["destination_class"]), o.get("wallet_id", ""),
                             o.get("category", ""),
                             token_id=None if o.get("token_id") is None else int(o["token_id"]),
                             source=str(o.get("source", "")), grant=o.get("grant") is True)
                      for o in d["outputs"]),
        fee=int(d["fee"]), fee_asset=d["fee_asset"],
        digests=tuple(bytes.fromhex(x) for x in d["digests"]), nonce=d["nonce"],
        gas_limit=d["gas_limit"],
        max_fee_per_gas=None if d["max_fee_per_gas"] is None else int(d["max_fee_per_gas"]),
        max_priority_fee_per_gas=(None if d["max_priority_fee_per_gas"] is None
                                  else int(d["max_priority_fee_per_gas"])),
        contract_call=d["contract_call"], vsize=d["vsize"], outpoints=tuple(d["outpoints"]),
        sighash=tuple(d.get("sighash", ())),
        tokens=tuple(Token(int(t["chain_id"]), t["address"], t["standard"], t["symbol"],
                           int(t["decimals"])) for t in d.get("tokens", ())),
        extra=tuple(sorted((str(k), str(v)) for k, v in d.get("extra", {}).items())),
        native=None if d.get("native") is None else chain_from_json(d["native"],
                                                                     "movement.native"),
        safe=tuple((str(k), str(v)) for k, v in d.get("safe", ())),
        details=({TOKEN_CALL_DATA: str(d[TOKEN_CALL_DATA])} if d.get(TOKEN_CALL_DATA) else {}))
