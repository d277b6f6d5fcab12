"""Registered token contracts for the unit tests of token calls (ERC-20, ERC-721, ERC-1155),
and calldata encoded with eth_abi (an encoder independent of signerd's decoder)."""
from __future__ import annotations

from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector as selector

from signerd.core.model import Token
from signerd.core.tokens import make_token

CHAIN = 31337
NFT = "0x" + "a1" * 20
MULTI = "0x" + "b2" * 20
COIN = "0x" + "c3" * 20
WALLET = "0x" + "11" * 20
OTHER = "0x" + "22" * 20
TO = "0x" + "33" * 20


def registry(coin_decimals: int) -> dict[tuple[int, str], Token]:
    """NFT an ERC-721 "ART", MULTI an ERC-1155 "ITEMS" (no decimals), COIN an ERC-20 "COIN"
    of ``coin_decimals``, all on CHAIN: the registry by each entry's key."""
    return {t.key: t for t in (
        make_token(chain_id=CHAIN, address=NFT, standard="erc721", symbol="ART", decimals=0),
        make_token(chain_id=CHAIN, address=MULTI, standard="erc1155", symbol="ITEMS",
                   decimals=0),
        make_token(chain_id=CHAIN, address=COIN, standard="erc20", symbol="COIN",
                   decimals=coin_decimals))}


def abi_call(signature: str, *args: object) -> bytes:
    """The calldata of ``signature`` (e.g. "transfer(address,uint256)") with ``args``."""
    types = signature[signature.index("(") + 1:-1].split(",")
    return selector(signature) + encode(types, list(args))
