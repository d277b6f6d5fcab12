"""Operator keys: Ed25519 or P-256 (ECDSA), their public keys (SubjectPublicKeyInfo PEM), key
types, fingerprints, the canonical digest that makes a key one identity, and the one verification
of an operator's signature over a statement digest.

The key type is never a separate claim: it is the type of the registered public key, so a
signature is checked only by the algorithm of the key the ledger holds for the operator.

- **Ed25519**: a 64-byte signature over the 32-byte statement digest (as message); keys of
  small order and non-canonical encodings are refused (:func:`check_ed25519_point`).
- **P-256**: ECDSA whose hashed message is the statement digest itself (SHA-256 of the
  statement: what ``CKM_ECDSA`` on a token signs when handed that digest, and what
  ``CKM_ECDSA_SHA256`` over the statement makes), DER-encoded. Only the canonical form counts:
  strict DER and a low S (at most half the group order), so one signature has one encoding.
  A signature over another hash of the statement (SHA-512, or SHA-256 of the digest) does not
  verify.

The private key stays with the person: in a file (``signerd.adapters.key_files``) or on a
PKCS#11 token (``signerd.adapters.operator_token``).
"""
from __future__ import annotations

import enum
import functools
import hashlib
from typing import Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)

from signerd.core.errors import InvalidKey

MAX_KEY_FILE = 64 * 1024
ED25519_SIGNATURE_SIZE = 64
P256_MAX_SIGNATURE_SIZE = 72  # DER SEQUENCE of two INTEGERs of at most 33 bytes each
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
TYPES_TEXT = "Ed25519 or P-256 (ECDSA on secp256r1)"

PublicKey = Ed25519PublicKey | ec.EllipticCurvePublicKey
PrivateKey = Ed25519PrivateKey | ec.EllipticCurvePrivateKey


class KeyType(enum.Enum):
    """An operator key's type, as named in records, on the command line and in messages."""

    ED25519 = "ed25519"
    P256 = "p256"

    @property
    def label(self) -> str:
        return "Ed25519" if self is KeyType.ED25519 else "P-256"

    @property
    def a_key(self) -> str:
        """``an Ed25519 key``, ``a P-256 key``."""
        return "an Ed25519 key" if self is KeyType.ED25519 else "a P-256 key"


class Signer(Protocol):
    """An operator's private key wherever it is (a file, a token): its public key and type, and
    a signature over a statement digest in the form :func:`verify` accepts."""

    public_key: PublicKey
    key_type: KeyType

    @property
    def where(self) -> str: ...

    def sign_digest(self, digest: bytes) -> bytes: ...

    def close(self) -> None: ...


def generate(kind: KeyType = KeyType.ED25519) -> PrivateKey:
    if kind is KeyType.P256:
        return ec.generate_private_key(ec.SECP256R1())
    return Ed25519PrivateKey.generate()


def public_pem(private_key: PrivateKey) -> bytes:
    return pem_of(private_key.public_key())


def pem_of(public_key: PublicKey) -> bytes:
    return public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def key_type(public_key: PublicKey) -> KeyType:
    if isinstance(public_key, Ed25519PublicKey):
        return KeyType.ED25519
    if isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(public_key.curve,
                                                                          ec.SECP256R1):
        return KeyType.P256
    raise InvalidKey(f"operator keys must be {TYPES_TEXT}")


def private_key_type(private_key: object) -> KeyType:
    """The type of an operator's private key; InvalidKey for any other kind of key."""
    if isinstance(private_key, (Ed25519PrivateKey, ec.EllipticCurvePrivateKey)):
        return key_type(private_key.public_key())
    raise InvalidKey(f"operator keys must be {TYPES_TEXT}")


def _raw(public_key: PublicKey) -> bytes:
    if isinstance(public_key, Ed25519PublicKey):
        return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def fingerprint(public_key: PublicKey) -> str:
    """First 16 hex digits of SHA-256 of the raw public key: Ed25519's 32 bytes, P-256's
    uncompressed point (65 bytes), whatever encoding the PEM used."""
    return hashlib.sha256(_raw(public_key)).hexdigest()[:16]


def spki_digest(public_key: PublicKey) -> str:
    """What makes an operator key one identity: SHA-256 (hex) of its canonical
    SubjectPublicKeyInfo (DER, named curve, uncompressed point), so one key in another encoding
    (a compressed point, another PEM layout) has the same digest."""
    der = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def load_public_pem(data: bytes) -> PublicKey:
    """Parse a registered operator public key: Ed25519 of full order (:func:`check_ed25519_point`)
    or P-256. Cached: the parse is pure and the key immutable."""
    if not isinstance(data, bytes) or len(data) > MAX_KEY_FILE:
        raise InvalidKey("operator public key must be PEM bytes")
    return _load_public_pem(bytes(data))


@functools.lru_cache(maxsize=4096)
def _load_public_pem(data: bytes) -> PublicKey:
    try:
        key = load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise InvalidKey("operator public key is not a PEM SubjectPublicKeyInfo") from None
    if isinstance(key, Ed25519PublicKey):
        check_ed25519_point(key.public_bytes(Encoding.Raw, PublicFormat.Raw))
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key  # cryptography checked that the point is on the curve
    raise InvalidKey(f"operator keys must be {TYPES_TEXT}")


def sign(private_key: PrivateKey, digest: bytes) -> bytes:
    """An operator's signature over a 32-byte statement digest, in the form :func:`verify`
    accepts (a P-256 signature normalised to low S)."""
    if isinstance(private_key, Ed25519PrivateKey):
        return private_key.sign(digest)
    private_key_type(private_key)
    der = private_key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    r, s = decode_dss_signature(der)
    return p256_der(r, s)


def p256_der(r: int, s: int) -> bytes:
    """The canonical P-256 signature: DER with S in the low half."""
    return encode_dss_signature(r, P256_N - s if s > P256_N // 2 else s)


def p256_from_raw(raw: bytes) -> bytes:
    """A token's raw ``r || s`` (32 bytes each, what ``CKM_ECDSA`` returns) as the canonical
    DER signature."""
    if len(raw) != 64:
        raise InvalidKey(f"a P-256 token signature is 64 bytes r||s, got {len(raw)}")
    return p256_der(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))


def signature_problem(public_key: PublicKey, signature: bytes) -> str:
    """Why ``signature`` cannot be a signature of this key's type ("" when its form fits):
    Ed25519 takes 64 bytes, P-256 canonical DER with a low S."""
    if key_type(public_key) is KeyType.ED25519:
        if len(signature) != ED25519_SIGNATURE_SIZE:
            return (f"must be {ED25519_SIGNATURE_SIZE} bytes (the operator's key is Ed25519), "
                    f"got {len(signature)}")
        return ""
    if len(signature) > P256_MAX_SIGNATURE_SIZE:
        return (f"must be a DER ECDSA signature of at most {P256_MAX_SIGNATURE_SIZE} bytes (the "
                f"operator's key is P-256), got {len(signature)}")
    try:
        r, s = decode_dss_signature(signature)
    except ValueError:
        return "is not a DER ECDSA signature (the operator's key is P-256)"
    if encode_dss_signature(r, s) != signature:
        return "is not in canonical DER (the operator's key is P-256)"
    if not (0 < r < P256_N and 0 < s < P256_N):
        return "has r or s out of range for P-256"
    if s > P256_N // 2:
        return "has a high S: a P-256 signature counts only in its low-S form"
    return ""


def verify(public_key: PublicKey, digest: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is this key's signature over the 32-byte statement digest, in the
    one form the key's type allows (:func:`signature_problem`)."""
    if not isinstance(signature, bytes) or signature_problem(public_key, signature):
        return False
    try:
        if isinstance(public_key, Ed25519PublicKey):
            public_key.verify(signature, digest)
        else:
            public_key.verify(signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    except (InvalidSignature, ValueError):
        return False
    return True


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
