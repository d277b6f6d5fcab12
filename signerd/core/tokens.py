"""The token registry: which contracts signerd decodes as tokens, with the symbol and decimals
operators are shown (pure: no I/O).

An entry names a chain id, a contract address, a standard (``erc20``, ``erc721`` or
``erc1155``, or ``trc20`` for a Tron contract), a symbol and a number of decimals. A ``trc20``
entry's chain id is Tron's for its network (``tron.address.CHAIN_IDS``) and its address the
contract's base58check ``T...`` form, kept as written and keyed as is (base58 is case-sensitive:
lower-casing it would name another address, or none); an Ethereum entry's 0x address is keyed
lower-case. Entries come from the genesis (optional key ``tokens``) and from ``token.set``
governance proposals, never from a client: calldata is decoded as a token call only when its
contract is registered for the transaction's chain id, and only with the methods of the
standard it is registered under (``signerd.core.ethereum.calls``; Tron: ``core.tron``);
anything else is a contract call, which a policy must allow (``allow_contract_calls`` and a
rule with ``contract_call = true``; Tron refuses it).

For a collection (ERC-721, ERC-1155) the symbol is the name operators are shown for the whole
collection (e.g. ``SEIZED-ART``), whatever each token's own metadata says; amounts are counts
of tokens. An ERC-721 token is indivisible: its entry has 0 decimals, and any other number is
refused. An ERC-1155 entry's decimals apply to every id of the contract (0 for a collection of
unique or countable items, the usual case; a contract whose ids are fungible currencies with
decimals of their own needs one entry's decimals to suit them all, so register it with 0 and
read amounts as base units).
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from .chain_registry import checked_int, entry_fields
from .errors import InvalidArgument
from .ethereum.address import parse_address, to_checksum
from .model import Token, registry_address
from .tron import address as tron_address

STANDARDS = ("erc20", "erc721", "erc1155", "trc20")
TRON_STANDARDS = ("trc20",)  # their contracts are Tron addresses, their chain ids Tron's
SYMBOL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,15}")
MAX_DECIMALS = 36
MAX_CHAIN_ID = 2**64 - 1
FIELDS = ("address", "chain_id", "decimals", "standard", "symbol")

Registry = Mapping[tuple[int, str], Token]


def _int(value: Any, name: str, high: int) -> int:
    return checked_int(value, name, 0, high)


def make_token(*, chain_id: Any, address: Any, standard: Any, symbol: Any, decimals: Any,
               where: str = "") -> Token:
    """A checked registry entry; InvalidArgument names the field (prefixed by ``where``)."""
    pre = f"{where}." if where else ""
    if standard in TRON_STANDARDS:
        return _tron_token(pre, chain_id, address, standard, symbol, decimals)
    chain_id = _int(chain_id, pre + "chain_id", MAX_CHAIN_ID)
    if chain_id == 0:
        raise InvalidArgument(f"{pre}chain_id: must be an Ethereum chain id (not 0)")
    try:
        raw = parse_address(address, field=pre + "address")
    except InvalidArgument as e:
        raise InvalidArgument(e.message) from None
    if not isinstance(address, str) or not address.startswith("0x"):
        raise InvalidArgument(f"{pre}address: must be 0x followed by 40 hex digits")
    if standard not in STANDARDS:
        raise InvalidArgument(f"{pre}standard: {standard!r} is not a token standard signerd "
                              f"decodes ({', '.join(STANDARDS)})")
    if not isinstance(symbol, str) or not SYMBOL.fullmatch(symbol):
        raise InvalidArgument(f"{pre}symbol: {symbol!r} is not a token symbol (1 to 16 ASCII "
                              "letters, digits, '.', '_' or '-', starting with a letter or digit)")
    decimals = _int(decimals, pre + "decimals", MAX_DECIMALS)
    if standard == "erc721" and decimals != 0:
        raise InvalidArgument(f"{pre}decimals: an ERC-721 token is indivisible: its entry has 0 "
                              f"decimals, not {decimals}")
    return Token(chain_id, to_checksum(raw), str(standard), symbol, decimals)


def _tron_token(pre: str, chain_id: Any, address: Any, standard: str, symbol: Any,
                decimals: Any) -> Token:
    """A Tron entry: chain id one of Tron's (mainnet 728126428, nile 3448148188, shasta
    2494104990), the contract a base58check ``T...`` address, kept exactly as written."""
    chain_id = _int(chain_id, pre + "chain_id", MAX_CHAIN_ID)
    networks = {v: k for k, v in tron_address.CHAIN_IDS.items()}
    if chain_id not in networks:
        raise InvalidArgument(f"{pre}chain_id: {chain_id} is not a Tron chain id ("
                              + ", ".join(f"{n} {c}" for n, c in tron_address.CHAIN_IDS.items())
                              + ")")
    tron_address.parse(address, field=pre + "address")
    if not isinstance(symbol, str) or not SYMBOL.fullmatch(symbol):
        raise InvalidArgument(f"{pre}symbol: {symbol!r} is not a token symbol (1 to 16 ASCII "
                              "letters, digits, '.', '_' or '-', starting with a letter or digit)")
    decimals = _int(decimals, pre + "decimals", MAX_DECIMALS)
    return Token(chain_id, str(address), standard, symbol, decimals)


def token_from_json(doc: Any, where: str = "token") -> Token:
    """A registry entry from its JSON form (genesis, proposal, API)."""
    return make_token(where=where, **entry_fields(doc, FIELDS, where, "a token entry"))


def token_json(token: Token) -> dict[str, Any]:
    return {"chain_id": token.chain_id, "address": token.address, "standard": token.standard,
            "symbol": token.symbol, "decimals": token.decimals}


def registry(tokens: Iterable[Token]) -> dict[tuple[int, str], Token]:
    return {t.key: t for t in tokens}


def lookup(tokens: Iterable[Token], asset: str, chain_id: int) -> Token | None:
    """The entry behind an asset name ``<KIND>:<address>`` (``ERC20:``, ``ERC20-APPROVE:``,
    ``ERC721:``, ``ERC1155-APPROVE-ALL:`` ..., or ``TRC20:<T... address>``)."""
    _, sep, address = asset.partition(":")
    if not sep:
        return None
    return next((t for t in tokens if t.key == (chain_id, registry_address(address))), None)


def format_units(amount: int, decimals: int) -> str:
    """``amount`` base units in whole tokens, grouped by thousands, every significant digit
    kept and at least two decimals shown (``1,000.00``, ``0.000001``)."""
    whole, frac = divmod(amount, 10**decimals) if decimals else (amount, 0)
    text = f"{whole:,}"
    if decimals:
        digits = f"{frac:0{decimals}d}".rstrip("0")
        text += "." + digits.ljust(min(2, decimals), "0")
    return text


def format_amount(amount: int, token: Token) -> str:
    """E.g. ``1,000.00 USDT (1000000000 base units)``."""
    unit = "base unit" if amount == 1 else "base units"
    return f"{format_units(amount, token.decimals)} {token.symbol} ({amount} {unit})"
