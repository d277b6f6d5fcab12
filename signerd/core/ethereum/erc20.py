"""Decoding of the two ERC-20 calls that policies and operators must see as token movements.

Only the exact ABI encoding is recognised: the 4-byte selector and two 32-byte words, the
address word padded with twelve zero bytes. Anything else is not an ERC-20 call as far as
signerd is concerned and is shown as opaque calldata.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from signerd.core.ethereum.address import ADDRESS_LEN

WORD = 32
TRANSFER_SELECTOR = bytes.fromhex("a9059cbb")  # transfer(address,uint256)
APPROVE_SELECTOR = bytes.fromhex("095ea7b3")  # approve(address,uint256)
_CALL_LEN = 4 + 2 * WORD


class Erc20Method(str, Enum):
    TRANSFER = "transfer"
    APPROVE = "approve"


@dataclass(frozen=True)
class Erc20Call:
    """A decoded call: ``counterparty`` is the recipient of a transfer or the approved spender."""

    method: Erc20Method
    counterparty: bytes  # 20 bytes
    amount: int  # token base units


_SELECTORS = {TRANSFER_SELECTOR: Erc20Method.TRANSFER, APPROVE_SELECTOR: Erc20Method.APPROVE}


def decode_erc20_call(data: bytes) -> Erc20Call | None:
    """The ERC-20 transfer or approve in ``data``, or None if it is not exactly one of them."""
    if len(data) != _CALL_LEN:
        return None
    method = _SELECTORS.get(bytes(data[:4]))
    address_word, amount_word = data[4 : 4 + WORD], data[4 + WORD :]
    if method is None or any(address_word[: WORD - ADDRESS_LEN]):
        return None
    return Erc20Call(
        method=method,
        counterparty=bytes(address_word[WORD - ADDRESS_LEN :]),
        amount=int.from_bytes(amount_word, "big"),
    )
