"""Strict ABI decoding of the token calls signerd shows as what they move or grant, for the
ERC-20, ERC-721 and ERC-1155 standards (pure).

Which calls are read depends on the standard the governance registered for the contract
(``decode_token_call``); ``signing.decode_call`` turns the result into outputs. A call is
recognised only in its one canonical ABI encoding: the 4-byte selector, one head word per
argument, every address word padded with twelve zero bytes, every bool 0 or 1, each dynamic
argument's offset exactly where the canonical encoder puts it (the tails in argument order, no
gap, no overlap), each ``bytes`` padded with zero bytes to a whole word, each array's count at
most ``MAX_BATCH`` and nothing after the last tail. Any other spelling of the same call (an
offset pointing elsewhere, dirty padding, trailing bytes) returns None: the calldata is then a
contract call, shown undecoded and judged as one, never a token movement computed from bytes
a contract might read differently.

Methods, by standard:

- erc20: ``transfer(address,uint256)``, ``approve(address,uint256)``,
  ``transferFrom(address,address,uint256)``, ``increaseAllowance(address,uint256)``;
- erc721: ``transferFrom(address,address,uint256)``,
  ``safeTransferFrom(address,address,uint256)``,
  ``safeTransferFrom(address,address,uint256,bytes)``, ``approve(address,uint256)`` (one token),
  ``setApprovalForAll(address,bool)``;
- erc1155: ``safeTransferFrom(address,address,uint256,uint256,bytes)``,
  ``safeBatchTransferFrom(address,address,uint256[],uint256[],bytes)`` (as many ids as
  amounts, at most ``MAX_BATCH``), ``setApprovalForAll(address,bool)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from signerd.core.ethereum.address import ADDRESS_LEN
from signerd.core.ethereum.keccak import keccak256

WORD = 32
MAX_BATCH = 256  # ids in one safeBatchTransferFrom that signerd decodes; more: a contract call
# An ERC-20 allowance at or above this is a grant of everything: 2**96-1 is the infinite
# allowance of tokens that keep allowances in 96 bits (COMP, UNI and their forks: never spent
# down, like 2**256-1 elsewhere), and no real allowance comes near it.
UNLIMITED = 2**96 - 1


class Method(str, Enum):
    TRANSFER = "transfer"
    APPROVE = "approve"
    TRANSFER_FROM = "transferFrom"
    INCREASE_ALLOWANCE = "increaseAllowance"
    SAFE_TRANSFER_FROM = "safeTransferFrom"
    SAFE_BATCH_TRANSFER_FROM = "safeBatchTransferFrom"
    SET_APPROVAL_FOR_ALL = "setApprovalForAll"


@dataclass(frozen=True)
class Item:
    """One token id (ERC-721, ERC-1155) or one ERC-20 amount moved or approved."""

    token_id: int | None  # None for ERC-20
    amount: int  # base units (ERC-20), tokens (ERC-1155), 1 (ERC-721)


@dataclass(frozen=True)
class TokenCall:
    """A decoded call. ``source`` is the ``from`` of a transferFrom or safeTransferFrom (20
    bytes; None when the tokens move from the caller by construction: transfer);
    ``counterparty`` the recipient, the approved spender or the operator; ``approved`` the bool
    of setApprovalForAll (True for every other method); ``data`` the bytes argument passed on
    to the recipient's hook."""

    method: Method
    counterparty: bytes
    items: tuple[Item, ...]
    source: bytes | None = None
    approved: bool = True
    data: bytes = b""


def selector(signature: str) -> bytes:
    """The 4-byte function selector of a canonical signature, e.g. ``changeThreshold(uint256)``."""
    return keccak256(signature.encode("ascii"))[:4]


# (selector, method, argument types) per standard; "address", "uint256", "bool", "bytes",
# "uint256[]".
_ERC20 = {
    selector("transfer(address,uint256)"): (Method.TRANSFER, ("address", "uint256")),
    selector("approve(address,uint256)"): (Method.APPROVE, ("address", "uint256")),
    selector("transferFrom(address,address,uint256)"):
        (Method.TRANSFER_FROM, ("address", "address", "uint256")),
    selector("increaseAllowance(address,uint256)"):
        (Method.INCREASE_ALLOWANCE, ("address", "uint256")),
}
_ERC721 = {
    selector("transferFrom(address,address,uint256)"):
        (Method.TRANSFER_FROM, ("address", "address", "uint256")),
    selector("safeTransferFrom(address,address,uint256)"):
        (Method.SAFE_TRANSFER_FROM, ("address", "address", "uint256")),
    selector("safeTransferFrom(address,address,uint256,bytes)"):
        (Method.SAFE_TRANSFER_FROM, ("address", "address", "uint256", "bytes")),
    selector("approve(address,uint256)"): (Method.APPROVE, ("address", "uint256")),
    selector("setApprovalForAll(address,bool)"):
        (Method.SET_APPROVAL_FOR_ALL, ("address", "bool")),
}
_ERC1155 = {
    selector("safeTransferFrom(address,address,uint256,uint256,bytes)"):
        (Method.SAFE_TRANSFER_FROM, ("address", "address", "uint256", "uint256", "bytes")),
    selector("safeBatchTransferFrom(address,address,uint256[],uint256[],bytes)"):
        (Method.SAFE_BATCH_TRANSFER_FROM,
         ("address", "address", "uint256[]", "uint256[]", "bytes")),
    selector("setApprovalForAll(address,bool)"):
        (Method.SET_APPROVAL_FOR_ALL, ("address", "bool")),
}
METHODS = {"erc20": _ERC20, "erc721": _ERC721, "erc1155": _ERC1155}

Value = bytes | int | bool | tuple[int, ...]


def decode_args(types: tuple[str, ...], body: bytes) -> list[Value] | None:
    """The arguments in ``body`` (calldata after the selector) in their canonical encoding only,
    else None. Addresses come back as 20 bytes, uint256 as int, bool as bool, bytes as bytes,
    uint256[] as a tuple of ints."""
    head = WORD * len(types)
    if len(body) < head or len(body) % WORD:
        return None
    out: list[Value] = []
    at = head  # where the next tail must start
    for i, kind in enumerate(types):
        word = body[i * WORD:(i + 1) * WORD]
        number = int.from_bytes(word, "big")
        if kind == "address":
            if any(word[:WORD - ADDRESS_LEN]):
                return None
            out.append(bytes(word[WORD - ADDRESS_LEN:]))
        elif kind == "uint256":
            out.append(number)
        elif kind == "bool":
            if number > 1:
                return None
            out.append(number == 1)
        else:  # dynamic: the offset must be exactly where the canonical tail starts
            if number != at or at + WORD > len(body):
                return None
            count = int.from_bytes(body[at:at + WORD], "big")
            at += WORD
            if kind == "bytes":
                if count > len(body):
                    return None
                padded = -(-count // WORD) * WORD
                if at + padded > len(body) or any(body[at + count:at + padded]):
                    return None
                out.append(bytes(body[at:at + count]))
                at += padded
            else:  # uint256[]
                if count > MAX_BATCH or at + count * WORD > len(body):
                    return None
                out.append(tuple(int.from_bytes(body[at + j * WORD:at + (j + 1) * WORD], "big")
                                 for j in range(count)))
                at += count * WORD
    return out if at == len(body) else None


def decode_token_call(standard: str, data: bytes) -> TokenCall | None:
    """The call in ``data`` as the token ``standard`` (``erc20``, ``erc721``, ``erc1155``)
    defines it, or None when it is not exactly one of the methods read for that standard."""
    table = METHODS.get(standard)
    if table is None or len(data) < 4:
        return None
    found = table.get(bytes(data[:4]))
    if found is None:
        return None
    method, types = found
    args = decode_args(types, bytes(data[4:]))
    if args is None:
        return None
    if method in (Method.TRANSFER, Method.APPROVE, Method.INCREASE_ALLOWANCE):
        who, number = args
        assert isinstance(who, bytes) and isinstance(number, int)
        item = (Item(None, number) if standard == "erc20" else Item(number, 1))
        return TokenCall(method, who, (item,))
    if method is Method.SET_APPROVAL_FOR_ALL:
        who, flag = args
        assert isinstance(who, bytes) and isinstance(flag, bool)
        return TokenCall(method, who, (), approved=flag)
    source, to = args[0], args[1]
    assert isinstance(source, bytes) and isinstance(to, bytes)
    data_arg = args[-1] if types[-1] == "bytes" else b""
    assert isinstance(data_arg, bytes)
    if method is Method.SAFE_BATCH_TRANSFER_FROM:
        ids, amounts = args[2], args[3]
        assert isinstance(ids, tuple) and isinstance(amounts, tuple)
        if len(ids) != len(amounts) or not ids:
            return None
        items = tuple(Item(i, a) for i, a in zip(ids, amounts))
    elif standard == "erc20":
        assert isinstance(args[2], int)
        items = (Item(None, args[2]),)
    elif standard == "erc721":
        assert isinstance(args[2], int)
        items = (Item(args[2], 1),)
    else:
        assert isinstance(args[2], int) and isinstance(args[3], int)
        items = (Item(args[2], args[3]),)
    return TokenCall(method, to, items, source=source, data=data_arg)
