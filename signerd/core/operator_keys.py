"""Operator key pairs (Ed25519): the private key stays with the person, in a file.

Private keys are PKCS#8 PEM, encrypted when a passphrase is given, created owner-only (0600)
and never overwritten; a private key file that group or others may access is refused, as ssh
does. Public keys are SubjectPublicKeyInfo PEM.
"""
from __future__ import annotations

import functools
import hashlib
import os
import stat

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    KeySerializationEncryption,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
    load_pem_public_key,
)

from signerd.core.errors import AlreadyExists, InvalidKey

MAX_KEY_FILE = 64 * 1024
StrPath = str | os.PathLike[str]


def generate() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def public_pem(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of SHA-256 of the raw 32-byte public key."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def write_keypair(private_key: Ed25519PrivateKey, key_path: StrPath, pub_path: StrPath,
                  passphrase: bytes | None = None) -> None:
    """Write the private key (0600) and public key (0644); refuse to overwrite either file."""
    if passphrase is not None and not passphrase:
        raise InvalidKey("passphrase must not be empty")
    encryption: KeySerializationEncryption = (
        BestAvailableEncryption(passphrase) if passphrase else NoEncryption())
    private = private_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, encryption)
    for path in (key_path, pub_path):
        if os.path.lexists(path):
            raise AlreadyExists(f"refusing to overwrite {os.fspath(path)}")
    _create(key_path, private, 0o600)
    try:
        _create(pub_path, public_pem(private_key), 0o644)
    except BaseException:
        os.unlink(key_path)
        raise


def load_private(path: StrPath, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """Read an operator's private key; InvalidKey names the file and the problem."""
    name = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise InvalidKey(f"cannot open key file {name}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidKey(f"key file {name} is not a regular file")
        if st.st_mode & 0o077:
            raise InvalidKey(f"key file {name} is accessible by group or others "
                             f"(mode {stat.S_IMODE(st.st_mode):04o}); chmod 600 it")
        data = os.read(fd, MAX_KEY_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_KEY_FILE:
        raise InvalidKey(f"key file {name} is too large to be a key")
    try:
        key = load_pem_private_key(data, passphrase or None)
    except TypeError:  # encrypted without a passphrase, or a passphrase for a plain key
        state = "encrypted: a passphrase is needed" if passphrase is None else "not encrypted"
        raise InvalidKey(f"key file {name} is {state}") from None
    except ValueError:
        if passphrase and b"ENCRYPTED PRIVATE KEY" in data:
            raise InvalidKey(f"wrong passphrase for key file {name}") from None
        raise InvalidKey(f"key file {name} is not a PEM private key") from None
    except UnsupportedAlgorithm:
        raise InvalidKey(f"key file {name}: operator keys must be Ed25519") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidKey(f"key file {name}: operator keys must be Ed25519")
    return key


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


def _create(path: StrPath, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    except FileExistsError:
        raise AlreadyExists(f"refusing to overwrite {os.fspath(path)}") from None
    try:
        os.fchmod(fd, mode)  # exactly this mode, whatever the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)
