"""Operator key pairs (Ed25519): generation, public keys (SubjectPublicKeyInfo PEM), their
fingerprints and the checks on them. The private key stays with the person, in a file that
``signerd.adapters.key_files`` writes and reads.
"""
from __future__ import annotations

import functools
import hashlib

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

from signerd.core.errors import InvalidKey

MAX_KEY_FILE = 64 * 1024


def generate() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def public_pem(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of SHA-256 of the raw 32-byte public key."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_pem(data: bytes) -> Ed25519PublicKey:
    """Parse a registered operator public key; only Ed25519 keys of full order are accepted
    (:func:`check_ed25519_point`). Cached: the parse is pure and the key immutable."""
    if not isinstance(data, bytes) or len(data) > MAX_KEY_FILE:
        raise InvalidKey("operator public key must be PEM bytes")
    return _load_public_pem(bytes(data))


@functools.lru_cache(maxsize=4096)
def _load_public_pem(data: bytes) -> Ed25519PublicKey:
    try:
        key = load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise InvalidKey("operator public key is not a PEM SubjectPublicKeyInfo") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidKey("operator keys must be Ed25519")
    check_ed25519_point(key.public_bytes(Encoding.Raw, PublicFormat.Raw))
    return key


_P = 2**255 - 19
_D = (-121665 * pow(121666, -1, _P)) % _P


def _edwards_add(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    (x1, y1), (x2, y2) = a, b
    t = _D * x1 * x2 * y1 * y2 % _P
    return ((x1 * y2 + x2 * y1) * pow(1 + t, -1, _P) % _P,
            (y1 * y2 + x1 * x2) * pow(1 - t, -1, _P) % _P)


def check_ed25519_point(raw: bytes) -> None:
    """Refuse a public key whose point has small order (eight points, the identity among them):
    a signature that verifies over every message exists for each, so a registered key of that
    kind would let anyone who can write a decision row forge that operator's decisions. A
    non-canonical encoding (y not below the field prime) is refused too."""
    if len(raw) != 32:
        raise InvalidKey("an Ed25519 public key is 32 bytes")
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    sign = raw[31] >> 7
    if y >= _P:
        raise InvalidKey("operator public key is not a canonical Ed25519 encoding")
    u, v = (y * y - 1) % _P, (_D * y * y + 1) % _P
    x = u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P) % _P
    if v * x * x % _P == (-u) % _P:
        x = x * pow(2, (_P - 1) // 4, _P) % _P
    if v * x * x % _P != u % _P:
        raise InvalidKey("operator public key is not a point on Ed25519")
    if x == 0 and sign:
        raise InvalidKey("operator public key is not a canonical Ed25519 encoding")
    if x & 1 != sign:
        x = _P - x
    point = (x, y)
    for _ in range(3):  # times 8
        point = _edwards_add(point, point)
    if point == (0, 1):
        raise InvalidKey("operator public key has small order (it would let anyone sign as "
                         "this operator); generate a new key")
