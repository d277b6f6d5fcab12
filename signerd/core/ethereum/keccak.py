"""Keccak-256 as Ethereum uses it (the pre-standard padding, not SHA3-256)."""

from __future__ import annotations

from Crypto.Hash import keccak


def keccak256(data: bytes) -> bytes:
    """Return the 32-byte Keccak-256 digest of ``data``."""
    return keccak.new(digest_bits=256, data=bytes(data)).digest()
