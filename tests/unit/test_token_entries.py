"""Token registry entries: checked fields, and amounts shown with symbol and decimals."""
from __future__ import annotations

import pytest

from signerd.core.errors import InvalidArgument
from signerd.core.model import Token
from signerd.core.tokens import (format_amount, format_units, lookup, make_token, token_from_json,
                                 token_json)

USDT = dict(chain_id=1, address="0xdac17f958d2ee523a2206206994597c13d831ec7", standard="erc20",
            symbol="USDT", decimals=6)


def test_an_entry_is_checksummed_and_round_trips() -> None:
    t = make_token(**USDT)
    assert t == Token(1, "0xdAC17F958D2ee523a2206206994597C13D831ec7", "erc20", "USDT", 6)
    assert t.key == (1, USDT["address"]) and token_from_json(token_json(t)) == t
    assert lookup([t], "ERC20:" + t.address.upper().replace("0X", "0x"), 1) == t
    assert lookup([t], "ERC20-APPROVE:" + t.address, 1) == t
    assert lookup([t], "ERC20:" + t.address, 5) is None and lookup([t], "ETH", 1) is None


@pytest.mark.parametrize(("field", "value"), [
    ("chain_id", 0), ("chain_id", -1), ("chain_id", True), ("chain_id", 2**64),
    ("address", "dac17f958d2ee523a2206206994597c13d831ec7"),  # no 0x
    ("address", "0xdAC17F958D2ee523a2206206994597C13D831ec8"),  # bad EIP-55 checksum
    ("address", 5), ("standard", "erc777"), ("standard", "ERC721"), ("symbol", ""), ("symbol", "-USDT"),
    ("symbol", "USDT\n"), ("symbol", "U" * 17), ("symbol", "USD\u20ae"), ("decimals", 37),
    ("decimals", -1), ("decimals", 6.0),
])
def test_a_malformed_field_is_named(field: str, value: object) -> None:
    with pytest.raises(InvalidArgument, match=f"^{field}: "):
        make_token(**dict(USDT, **{field: value}))


def test_collections_are_registered_with_their_standard() -> None:
    """ERC-721 and ERC-1155 entries, in the same format; an ERC-721 token is indivisible."""
    nft = make_token(**dict(USDT, standard="erc721", symbol="SEIZED-ART", decimals=0))
    assert nft.standard == "erc721" and token_from_json(token_json(nft)) == nft
    assert lookup([nft], "ERC721:" + nft.address, 1) == nft
    assert lookup([nft], "ERC721-APPROVE-ALL:" + nft.address, 1) == nft
    with pytest.raises(InvalidArgument, match="^decimals: an ERC-721 token is indivisible"):
        make_token(**dict(USDT, standard="erc721", decimals=6))
    multi = make_token(**dict(USDT, standard="erc1155", symbol="ITEMS", decimals=0))
    assert token_from_json(token_json(multi)).standard == "erc1155"


@pytest.mark.parametrize(("amount", "decimals", "text"), [
    (1_000_000_000, 6, "1,000.00"), (1, 6, "0.000001"), (1_234_567, 6, "1.234567"),
    (0, 6, "0.00"), (10**18 + 1, 18, "1.000000000000000001"), (1000, 0, "1,000"),
    (5, 1, "0.5"), (12_345_600, 2, "123,456.00"),
])
def test_units_keep_every_significant_digit(amount: int, decimals: int, text: str) -> None:
    assert format_units(amount, decimals) == text


def test_amount_names_symbol_and_base_units() -> None:
    t = make_token(**USDT)
    assert format_amount(1_000_000_000, t) == "1,000.00 USDT (1000000000 base units)"
    assert format_amount(1, t) == "0.000001 USDT (1 base unit)"
