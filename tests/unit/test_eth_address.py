"""Keccak-256 and addresses against eth-account's key → address vectors and eth-utils."""

from __future__ import annotations

import json
from typing import Any

import coincurve
import pytest
from _vectors import VECTORS
from eth_account import Account
from eth_utils import keccak as eth_utils_keccak
from eth_utils import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from signerd.core.errors import InvalidKey, InvalidTransaction
from signerd.core.ethereum.address import address_from_pubkey, parse_address, to_checksum
from signerd.core.ethereum.keccak import keccak256

ETH_VECTORS = json.loads((VECTORS / "ethereum" / "eth-account-vectors.json").read_text())
KEY_CASES = ETH_VECTORS["key_to_address"]


def test_keccak256_known_values() -> None:
    assert (
        keccak256(b"").hex() == "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    )
    assert (
        keccak256(b"abc").hex()
        == "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"
    )


@given(st.binary(max_size=300))
@settings(max_examples=100, deadline=None)
def test_keccak256_matches_eth_utils(data: bytes) -> None:
    assert keccak256(data) == eth_utils_keccak(data)


@pytest.mark.parametrize("case", KEY_CASES, ids=[c["note"] for c in KEY_CASES])
def test_address_from_pubkey_vectors(case: dict[str, Any]) -> None:
    key = coincurve.PrivateKey(bytes.fromhex(case["private_key"][2:]))
    assert address_from_pubkey(key.public_key.format(compressed=True)) == case["address"]
    assert address_from_pubkey(key.public_key.format(compressed=False)) == case["address"]
    assert Account.from_key(case["private_key"]).address == case["address"]


@pytest.mark.parametrize(
    "bad",
    [b"", b"\x02" + b"\x00" * 32, b"\x03" + b"\xff" * 32, b"\x04" + b"\x00" * 64, b"\x02" * 32],
    ids=["empty", "x_zero_not_on_curve", "x_above_p", "uncompressed_zero", "32_bytes"],
)
def test_address_from_bad_pubkey(bad: bytes) -> None:
    with pytest.raises(InvalidKey):
        address_from_pubkey(bad)


@given(st.binary(min_size=20, max_size=20))
@settings(max_examples=200, deadline=None)
def test_checksum_matches_eth_utils_and_parses_back(raw: bytes) -> None:
    text = to_checksum(raw)
    assert text == to_checksum_address(raw)
    assert parse_address(text) == raw
    assert parse_address(text.lower()) == raw
    assert parse_address("0x" + text[2:].upper()) == raw
    assert parse_address(text[2:]) == raw


EIP55_EXAMPLES = [  # from EIP-55
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
]


@pytest.mark.parametrize("text", EIP55_EXAMPLES)
def test_eip55_examples(text: str) -> None:
    raw = parse_address(text)
    assert to_checksum(raw) == text
    i = next(i for i, c in enumerate(text) if i >= 2 and c.isalpha())
    flipped = text[:i] + text[i].swapcase() + text[i + 1 :]
    with pytest.raises(InvalidTransaction, match="^to: bad EIP-55 checksum$"):
        parse_address(flipped)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "0x",
        "0X5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAe",
        "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed\n",
        " 0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
        "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaeg",
        "0x0x5aaeb6053f3e94c9b9a09f33669435e7ef1bea",
    ],
)
def test_parse_address_refuses(bad: str) -> None:
    with pytest.raises(InvalidTransaction, match="^spender: "):
        parse_address(bad, field="spender")


def test_parse_address_refuses_non_string() -> None:
    with pytest.raises(InvalidTransaction, match="^to: must be a hex address string$"):
        parse_address(b"\x00" * 20)


def test_to_checksum_length() -> None:
    with pytest.raises(ValueError):
        to_checksum(b"\x00" * 19)
