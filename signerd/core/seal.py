"""Seals: signerd's own signature on a record it wrote that no quorum signs (pure).

A wallet the platform creates (keys generated in the HSM, a governance-approved template) or a
key share is not a governance act, yet a store writer must not be able to invent one: a forged
wallet would count as one of signerd's own destinations, or pair an HSM key with a laxer
policy. So signerd seals such a record when it writes it: the HSM's audit key (pinned in the
genesis) signs SHA-256 of ``signerd-seal/v1``, the record's kind and its canonical JSON. A
record is trusted only if its seal verifies under that key; verification needs no HSM and is
cached by content (a verdict about these exact bytes cannot be poisoned).
"""
from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from typing import Any

import coincurve
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from . import canonical

SEAL_TAG = b"signerd-seal/v1"
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def digest(kind: str, record: Mapping[str, Any]) -> bytes:
    """What the audit key signs to seal ``record`` of ``kind`` (``wallet``, ``key_share``)."""
    return hashlib.sha256(SEAL_TAG + b"\n" + canonical.dumps({"kind": kind,
                                                             "record": dict(record)})).digest()


def encode(r: int, s: int) -> str:
    """A seal as stored: 64-byte r||s (low-S) in hex."""
    return (r.to_bytes(32, "big") + s.to_bytes(32, "big")).hex()


@functools.lru_cache(maxsize=65536)
def _valid(public_key: bytes, message: bytes, seal: str) -> bool:
    try:
        raw = bytes.fromhex(seal)
    except ValueError:
        return False
    if len(raw) != 64:
        return False
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    if not (0 < r < SECP256K1_N and 0 < s <= SECP256K1_N // 2):
        return False
    try:
        key = coincurve.PublicKey(public_key)
    except ValueError:
        return False
    return bool(key.verify(encode_dss_signature(r, s), message, hasher=None))


def valid(public_key: bytes, kind: str, record: Mapping[str, Any], seal: str) -> bool:
    """Whether ``seal`` is the audit key's seal over this record."""
    return _valid(bytes(public_key), digest(kind, record), seal or "")
