"""Operator private key files (Ed25519 or P-256): PKCS#8 PEM, encrypted when a passphrase is given, created
owner-only (0600) and never overwritten; a private key file that group or others may access is
refused, as ssh does. The public key beside it is SubjectPublicKeyInfo PEM.
"""
from __future__ import annotations

import os
import stat

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    KeySerializationEncryption,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from signerd.core import operator_keys
from signerd.core.errors import AlreadyExists, InvalidKey
from signerd.core.operator_keys import (MAX_KEY_FILE, TYPES_TEXT, PrivateKey, PublicKey,
                                        private_key_type, public_pem)

StrPath = str | os.PathLike[str]


def write_keypair(private_key: PrivateKey, key_path: StrPath, pub_path: StrPath,
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


def write_public(pub_path: StrPath, pem: bytes) -> None:
    """Write a public key file (0644) for registration; refuse to overwrite one."""
    if os.path.lexists(pub_path):
        raise AlreadyExists(f"refusing to overwrite {os.fspath(pub_path)}")
    _create(pub_path, pem, 0o644)


class FileKey:
    """An operator's private key read from a file, with what signerctl needs of any operator
    key (``signerd.adapters.operator_token.TokenKey`` is the same for a key on a token)."""

    def __init__(self, path: StrPath, key: PrivateKey):
        self._key = key
        self.path = os.fspath(path)
        self.public_key: PublicKey = key.public_key()
        self.key_type = private_key_type(key)

    @property
    def where(self) -> str:
        return f"key file {self.path}"

    def sign_digest(self, digest: bytes) -> bytes:
        return operator_keys.sign(self._key, digest)

    def close(self) -> None:
        pass


def load_private(path: StrPath, passphrase: bytes | None = None) -> PrivateKey:
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
        data = os.read(fd, MAX_KEY_FILE + 1)
    finally:
        os.close(fd)
    if b"-----BEGIN PUBLIC KEY-----" in data[:64]:  # not a secret: what it is, not its mode
        raise InvalidKey(f"key file {name} is a public key; an operator's private key file "
                         "(PKCS#8 PEM, the .key that operator keygen wrote) is needed")
    if st.st_mode & 0o077:
        raise InvalidKey(f"key file {name} is accessible by group or others "
                         f"(mode {stat.S_IMODE(st.st_mode):04o}); chmod 600 it")
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
        raise InvalidKey(f"key file {name}: operator keys must be {TYPES_TEXT}") from None
    if not isinstance(key, (Ed25519PrivateKey, ec.EllipticCurvePrivateKey)):
        raise InvalidKey(f"key file {name}: operator keys must be {TYPES_TEXT}")
    try:
        private_key_type(key)  # P-256 of the curves
    except InvalidKey:
        raise InvalidKey(f"key file {name}: operator keys must be {TYPES_TEXT}") from None
    return key


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

