"""Tron addresses: base58check of 0x41 and the 20-byte account (the last 20 bytes of keccak-256
of the uncompressed public key, as on Ethereum). Encoded and decoded by bip-utils
(``TrxAddrEncoder``, ``TrxAddrDecoder``); the 21-byte form is what a transaction carries.

Base58 is case-sensitive and a given 21 bytes have exactly one base58check spelling, so the
``T...`` text is compared as is (never case-folded).
"""
from __future__ import annotations

from bip_utils import Base58Encoder, TrxAddrDecoder, TrxAddrEncoder

from signerd.core.errors import InvalidArgument, echo

PREFIX = 0x41
RAW_LEN = 21
MAX_TEXT = 64

# Tron's chain ids (as its JSON-RPC ``eth_chainId`` reports them): a Tron wallet's network names
# one, which the token registry keys its TRC-20 entries by.
CHAIN_IDS = {"mainnet": 728126428, "nile": 3448148188, "shasta": 2494104990}
NETWORKS = tuple(CHAIN_IDS)


def from_pubkey(pubkey: bytes) -> str:
    """The ``T...`` address of a secp256k1 public key (compressed or uncompressed)."""
    return str(TrxAddrEncoder.EncodeKey(bytes(pubkey)))


def to_text(raw: bytes) -> str:
    """``T...`` of a 21-byte address (0x41 first); ValueError otherwise."""
    if len(raw) != RAW_LEN or raw[0] != PREFIX:
        raise ValueError("a Tron address is 21 bytes starting with 0x41")
    return _encode20(raw[1:])


def _encode20(account: bytes) -> str:
    return str(Base58Encoder.CheckEncode(bytes([PREFIX]) + bytes(account)))


def parse(text: object, field: str = "address") -> bytes:
    """The 21 bytes of a ``T...`` address; InvalidArgument naming ``field`` otherwise."""
    if not isinstance(text, str) or not 0 < len(text) <= MAX_TEXT:
        raise InvalidArgument(f"{field}: must be a Tron address (T followed by base58)")
    try:
        account = TrxAddrDecoder.DecodeAddr(text)
    except (ValueError, TypeError) as e:
        raise InvalidArgument(f"{field}: {echo(text)} is not a Tron address ({e})") from None
    raw = bytes([PREFIX]) + bytes(account)
    if _encode20(raw[1:]) != text:  # one spelling only
        raise InvalidArgument(f"{field}: {echo(text)} is not a Tron address in its base58check "
                              "form")
    return raw


def is_address(text: str) -> bool:
    try:
        parse(text)
    except InvalidArgument:
        return False
    return True
