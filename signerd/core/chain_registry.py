"""The chain registry: which EVM chain ids signerd signs on, by name, with the symbol and
decimals of each chain's native coin (pure: no I/O).

An entry names a chain id, a name (``BNB Smart Chain``), the native coin's symbol (``BNB``) and
its decimals. Entries come from the genesis (optional key ``chains``) and from ``chain.set``
governance proposals, never from a client. An Ethereum transaction (and a wallet) on a chain id
the registry does not name is refused, and the native coin of a registered chain is the asset
named by its symbol: a policy rule ``asset = "BNB@56"`` matches the native coin of chain 56 only,
``asset = "BNB"`` the native coin of every chain whose symbol is BNB, so ``asset = "ETH"``
keeps matching the chains whose coin is Ether and never governs BNB or POL.

A genesis made before the registry (no ``chains`` key) starts with an empty registry: its
Ethereum wallets sign nothing until ``chain.set`` proposals name their chains (see
docs/ARCHITECTURE.md, "The chain registry").
"""
from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import InvalidArgument
from .model import EvmChain

# A native coin's symbol: upper-case ASCII letters and digits, starting with a letter (policies
# name it case-insensitively). BTC stays Bitcoin's.
SYMBOL = re.compile(r"[A-Z][A-Z0-9]{0,15}")
RESERVED_SYMBOLS = frozenset({"BTC", "TRX"})  # Bitcoin's and Tron's coins (not EVM chains)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._()/+-]{0,63}")
MAX_DECIMALS = 36
MAX_CHAIN_ID = 2**64 - 1
FIELDS = ("chain_id", "decimals", "name", "symbol")

Registry = Mapping[int, EvmChain]


class UnregisteredChain(InvalidArgument):
    """A chain id the chain registry does not name (INVALID_ARGUMENT at submission; at the
    sign step an authority violation: the approvals cannot stand for it)."""


def checked_int(value: Any, name: str, low: int, high: int) -> int:
    """``value`` if it is an integer (not a bool) from ``low`` to ``high``; else InvalidArgument
    naming the field ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidArgument(f"{name}: must be an integer from {low} to {high}")
    return value


def entry_fields(doc: Any, fields: Iterable[str], where: str, what: str) -> dict[str, Any]:
    """``doc`` if it is a JSON object of exactly ``fields`` (a registry entry: ``what``, e.g.
    "a chain entry"); else InvalidArgument naming them, prefixed by ``where``."""
    fields = tuple(fields)
    if not isinstance(doc, dict) or set(doc) != set(fields):
        raise InvalidArgument(f"{where}: {what} has exactly the fields {', '.join(fields)}")
    return doc


def make_chain(*, chain_id: Any, name: Any, symbol: Any, decimals: Any,
               where: str = "") -> EvmChain:
    """A checked registry entry; InvalidArgument names the field (prefixed by ``where``)."""
    pre = f"{where}." if where else ""
    chain_id = checked_int(chain_id, pre + "chain_id", 1, MAX_CHAIN_ID)
    if (not isinstance(name, str) or not NAME.fullmatch(name) or name != name.strip()
            or "  " in name):
        raise InvalidArgument(f"{pre}name: {name!r} is not a chain name (1 to 64 ASCII "
                              "letters, digits, spaces and . _ ( ) / + -, starting with a "
                              "letter or digit)")
    if not isinstance(symbol, str) or not SYMBOL.fullmatch(symbol):
        raise InvalidArgument(f"{pre}symbol: {symbol!r} is not a native coin symbol (1 to 16 "
                              "upper-case ASCII letters or digits, starting with a letter)")
    if symbol in RESERVED_SYMBOLS:
        raise InvalidArgument(f"{pre}symbol: {symbol} is reserved (the coin of Bitcoin or "
                              "Tron, not of an EVM chain)")
    decimals = checked_int(decimals, pre + "decimals", 0, MAX_DECIMALS)
    return EvmChain(chain_id, name, symbol, decimals)


def chain_from_json(doc: Any, where: str = "chain") -> EvmChain:
    """A registry entry from its JSON form (genesis, proposal, API, stored movement)."""
    return make_chain(where=where, **entry_fields(doc, FIELDS, where, "a chain entry"))


def chain_json(chain: EvmChain) -> dict[str, Any]:
    return {"chain_id": chain.chain_id, "name": chain.name, "symbol": chain.symbol,
            "decimals": chain.decimals}


def add_chain(registry: dict[int, EvmChain], chain: EvmChain, where: str) -> None:
    """Put ``chain`` in ``registry`` (replacing its own entry): one entry per chain id, and a
    name names one chain (so an operator reading it cannot confuse two)."""
    for other in registry.values():
        if other.chain_id != chain.chain_id and other.name.lower() == chain.name.lower():
            raise InvalidArgument(f"{where}: name {chain.name!r} is already the name of chain "
                                  f"{other.chain_id}")
    registry[chain.chain_id] = chain


def registry(chains: Iterable[EvmChain], where: str = "chains") -> dict[int, EvmChain]:
    out: dict[int, EvmChain] = {}
    for c in chains:
        if c.chain_id in out:
            raise InvalidArgument(f"{where}: chain {c.chain_id} is listed twice")
        add_chain(out, c, where)
    return out


def require(chains: Registry | None, chain_id: int, field: str = "chainId") -> EvmChain:
    """The registry entry of ``chain_id``; InvalidArgument naming the chain id otherwise."""
    entry = (chains or {}).get(chain_id)
    if entry is None:
        raise UnregisteredChain(
            f"{field}: chain id {chain_id} is not in the chain registry (signerctl chain list); "
            "the governance adds a chain with signerctl chain set")
    return entry


def require_all(chains: Registry | None, chain_ids: Iterable[int],
                field: str = "chain_ids") -> tuple[EvmChain, ...]:
    """Each chain id's entry (a wallet's allowed chain ids); UnregisteredChain names the first
    the registry does not."""
    return tuple(require(chains, int(c), field) for c in chain_ids)


def label(chain: EvmChain) -> str:
    """``BNB Smart Chain (56)``."""
    return f"{chain.name} ({chain.chain_id})"


def asset_names(symbol: str, chain_id: int) -> tuple[str, str]:
    """The names a policy may give a chain's native coin: ``BNB`` and ``BNB@56``."""
    return symbol, f"{symbol}@{chain_id}"


def format_native(amount: int, chain: EvmChain) -> str:
    """``1.500000000000000000 BNB (1500000000000000000 base units)``: every decimal shown, as
    Ether amounts are."""
    d = chain.decimals
    whole = f"{amount // 10**d}.{amount % 10**d:0{d}d}" if d else str(amount)
    return f"{whole} {chain.symbol} ({amount} base unit{'' if amount == 1 else 's'})"


def parse_chains_toml(text: str, where: str = "chains") -> list[EvmChain]:
    """A registry file (``signerd/templates/chains.toml``, ``init --production --chains``)::

        [[chain]]
        chain_id = 56
        name = "BNB Smart Chain"
        symbol = "BNB"
        decimals = 18
    """
    try:
        doc = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError, RecursionError) as e:
        raise InvalidArgument(f"{where}: not valid TOML: {e}") from None
    if set(doc) - {"chain"} or not isinstance(doc.get("chain"), list) or not doc["chain"]:
        raise InvalidArgument(f"{where}: a chain registry file is a list of [[chain]] tables")
    entries = [chain_from_json(raw, f"{where}: chain #{i}")
               for i, raw in enumerate(doc["chain"], 1)]
    return sorted(registry(entries, where).values(), key=lambda c: c.chain_id)
