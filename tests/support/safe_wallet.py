"""A Safe wallet's record as signerd keeps it, for the unit tests of Safe wallets' pure parts."""
from __future__ import annotations

import json
from typing import Any

from eth_utils import to_checksum_address

from signerd.core.ethereum import safe as S
from signerd.core.model import Category, Chain, KeyRef, ScriptType, Wallet, WalletStatus


def address_of(setup: dict[str, Any]) -> str:
    """The address of the Safe a setup document makes (signerd's CREATE2 computation)."""
    return to_checksum_address(S.predicted_address(S.SafeSetup.from_json(setup)))


def safe_wallet(wallet_id: str, setup: dict[str, Any], owner_key: bytes) -> Wallet:
    """An active seized Safe wallet on chain 31337 of ``setup`` (its owners and threshold),
    signerd's own owner key the compressed public key ``owner_key`` (key id k1)."""
    return Wallet(id=wallet_id, chain=Chain.ETHEREUM, network="ethereum",
                  script_type=ScriptType.SAFE, category=Category.SEIZED, case_ref="C",
                  legal_basis="", status=WalletStatus.ACTIVE, address=address_of(setup),
                  keys=(KeyRef("k1", "owner", owner_key),), chain_ids=(31337,),
                  threshold=setup["threshold"], safe_owners=tuple(setup["owners"]),
                  safe_setup=json.dumps(setup))
