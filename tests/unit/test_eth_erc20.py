"""ERC-20 calldata decoding, checked against eth-abi's encoder."""

from __future__ import annotations

import pytest
from eth_abi import encode as abi_encode
from hypothesis import given, settings
from hypothesis import strategies as st

from signerd.core.ethereum.erc20 import (
    APPROVE_SELECTOR,
    TRANSFER_SELECTOR,
    Erc20Call,
    Erc20Method,
    decode_erc20_call,
)

RECIPIENT = bytes.fromhex("96216849c49358b10257cb55b28ea603c874b05e")


def call(selector: bytes, address: bytes, amount: int) -> bytes:
    return selector + abi_encode(["address", "uint256"], ["0x" + address.hex(), amount])


def test_selectors_are_the_abi_ones() -> None:
    from signerd.core.ethereum.keccak import keccak256

    assert keccak256(b"transfer(address,uint256)")[:4] == TRANSFER_SELECTOR
    assert keccak256(b"approve(address,uint256)")[:4] == APPROVE_SELECTOR


@given(st.binary(min_size=20, max_size=20), st.integers(0, 2**256 - 1), st.booleans())
@settings(max_examples=200, deadline=None)
def test_decodes_what_eth_abi_encodes(address: bytes, amount: int, is_transfer: bool) -> None:
    selector = TRANSFER_SELECTOR if is_transfer else APPROVE_SELECTOR
    method = Erc20Method.TRANSFER if is_transfer else Erc20Method.APPROVE
    assert decode_erc20_call(call(selector, address, amount)) == Erc20Call(method, address, amount)


GOOD = call(TRANSFER_SELECTOR, RECIPIENT, 10**18)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        GOOD[:-1],
        GOOD + b"\x00",
        GOOD + b"\x00" * 32,
        bytes.fromhex("23b872dd") + GOOD[4:],  # transferFrom selector
        GOOD[:4] + b"\x01" + GOOD[5:],  # dirty high bytes in the address word
        GOOD[:15] + b"\x01" + GOOD[16:],  # last byte of the padding
        TRANSFER_SELECTOR,
    ],
    ids=[
        "empty",
        "short",
        "trailing_byte",
        "trailing_word",
        "other_selector",
        "dirty_address_top",
        "dirty_address_pad_end",
        "selector_only",
    ],
)
def test_not_an_erc20_call(data: bytes) -> None:
    assert decode_erc20_call(data) is None


def test_clean_transfer_decodes() -> None:
    assert decode_erc20_call(GOOD) == Erc20Call(Erc20Method.TRANSFER, RECIPIENT, 10**18)
