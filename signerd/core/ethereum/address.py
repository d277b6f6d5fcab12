"""Ethereum account addresses: derivation from a public key, EIP-55 checksums, strict parsing."""

from __future__ import annotations

import re

import coincurve
from bip_utils import EthAddrEncoder

from signerd.core.errors import InvalidKey, InvalidTransaction
from signerd.core.ethereum.keccak import keccak256

ADDRESS_LEN = 20

_HEX40 = re.compile(r"[0-9a-fA-F]{40}")


def address_from_pubkey(pubkey: bytes) -> str:
    """EIP-55 address of a secp256k1 public key given compressed (33) or uncompressed (65)."""
    if len(pubkey) not in (33, 65):
        raise InvalidKey("public key: must be 33 or 65 bytes of SEC1 secp256k1 point")
    try:
        point = coincurve.PublicKey(bytes(pubkey))
    except ValueError as exc:
        raise InvalidKey("public key: not a point on secp256k1") from exc
    return str(EthAddrEncoder.EncodeKey(point.format(compressed=False)))


def to_checksum(address: bytes) -> str:
    """EIP-55 mixed-case hex of a 20-byte address, with the 0x prefix."""
    if len(address) != ADDRESS_LEN:
        raise ValueError("an Ethereum address is 20 bytes")
    lower = address.hex()
    digest = keccak256(lower.encode("ascii")).hex()
    return "0x" + "".join(c.upper() if digest[i] in "89abcdef" else c for i, c in enumerate(lower))


def parse_address(text: object, *, field: str = "to") -> bytes:
    """Parse a 40-hex-digit address (0x prefix optional) into 20 bytes.

    All-lower and all-upper case carry no checksum and are accepted; mixed case must be a valid
    EIP-55 checksum, so a mistyped address is refused rather than sent to.
    """
    if not isinstance(text, str):
        raise InvalidTransaction(f"{field}: must be a hex address string")
    digits = text[2:] if text.startswith("0x") else text
    if _HEX40.fullmatch(digits) is None:
        raise InvalidTransaction(f"{field}: must be 20 bytes as 40 hex digits")
    raw = bytes.fromhex(digits)
    if digits != digits.lower() and digits != digits.upper():
        if to_checksum(raw)[2:] != digits:
            raise InvalidTransaction(f"{field}: bad EIP-55 checksum")
    return raw
