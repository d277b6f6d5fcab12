"""Operator key files: modes, no overwrite, passphrases, Ed25519 only."""
from __future__ import annotations

import hashlib
import os
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from signerd.core import operator_keys
from signerd.adapters import key_files
from signerd.core.errors import AlreadyExists, InvalidKey


def raw(public_key) -> bytes:
    return public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def paths(tmp_path):
    return tmp_path / "inv1.key", tmp_path / "inv1.pub"


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_write_and_load_plain(paths, umask):
    key_path, pub_path = paths
    key = operator_keys.generate()
    old = os.umask(umask)
    try:
        key_files.write_keypair(key, key_path, pub_path, None)
    finally:
        os.umask(old)
    assert mode(key_path) == 0o600 and mode(pub_path) == 0o644
    assert key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert pub_path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    loaded = key_files.load_private(key_path)
    assert raw(loaded.public_key()) == raw(key.public_key())
    assert raw(operator_keys.load_public_pem(pub_path.read_bytes())) == raw(key.public_key())


def test_encrypted_key(paths):
    key_path, pub_path = paths
    key = operator_keys.generate()
    key_files.write_keypair(key, key_path, pub_path, b"correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in key_path.read_bytes()
    loaded = key_files.load_private(key_path, b"correct horse")
    assert raw(loaded.public_key()) == raw(key.public_key())
    with pytest.raises(InvalidKey, match=f"wrong passphrase for key file {key_path}"):
        key_files.load_private(key_path, b"battery staple")
    with pytest.raises(InvalidKey, match="passphrase is needed"):
        key_files.load_private(key_path)


def test_empty_passphrase_refused(paths):
    with pytest.raises(InvalidKey, match="passphrase"):
        key_files.write_keypair(operator_keys.generate(), *paths, b"")
    assert not paths[0].exists() and not paths[1].exists()


def test_passphrase_for_plain_key(paths):
    key_files.write_keypair(operator_keys.generate(), *paths, None)
    with pytest.raises(InvalidKey, match="not encrypted"):
        key_files.load_private(paths[0], b"x")


@pytest.mark.parametrize("existing", [0, 1], ids=["private_key", "public_key"])
def test_refuses_to_overwrite_a_key_file(paths, existing):
    """Either file already there: nothing is overwritten and nothing half-written."""
    there, other = paths[existing], paths[1 - existing]
    there.write_bytes(b"precious")
    with pytest.raises(AlreadyExists, match=str(there)):
        key_files.write_keypair(operator_keys.generate(), *paths)
    assert there.read_bytes() == b"precious" and not other.exists()


def test_refuses_dangling_symlink(paths, tmp_path):
    key_path, pub_path = paths
    key_path.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(AlreadyExists):
        key_files.write_keypair(operator_keys.generate(), key_path, pub_path)
    assert not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize("bad_mode", [0o640, 0o604, 0o620, 0o644])
def test_refuses_key_readable_by_others(paths, bad_mode):
    key_files.write_keypair(operator_keys.generate(), *paths)
    os.chmod(paths[0], bad_mode)
    with pytest.raises(InvalidKey, match=f"key file {paths[0]} is accessible by group or others"):
        key_files.load_private(paths[0])


@pytest.mark.parametrize("mode", [0o644, 0o600])
def test_a_public_key_given_as_the_private_key_is_named_as_such(paths, mode):
    """Not "chmod 600 it": a public key file is not a secret, it is the wrong file."""
    key_files.write_keypair(operator_keys.generate(), *paths)
    os.chmod(paths[1], mode)
    with pytest.raises(InvalidKey, match=f"key file {paths[1]} is a public key; an operator's "
                                         r"private key file \(PKCS#8 PEM, the .key"):
        key_files.load_private(paths[1])


def test_missing_and_malformed_key_files(tmp_path):
    with pytest.raises(InvalidKey, match="nope.key"):
        key_files.load_private(tmp_path / "nope.key")
    junk = tmp_path / "junk.key"
    junk.write_bytes(b"not a key")
    junk.chmod(0o600)
    with pytest.raises(InvalidKey, match="junk.key is not a PEM private key"):
        key_files.load_private(junk)
    with pytest.raises(InvalidKey, match="not a regular file"):
        (tmp_path / "dir.key").mkdir(mode=0o700)
        key_files.load_private(tmp_path / "dir.key")


def test_non_ed25519_private_key_refused(tmp_path):
    path = tmp_path / "p256.key"
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    path.write_bytes(pem)
    path.chmod(0o600)
    with pytest.raises(InvalidKey, match="operator keys must be Ed25519"):
        key_files.load_private(path)


def test_load_public_pem_only_ed25519():
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(InvalidKey, match="operator keys must be Ed25519"):
        operator_keys.load_public_pem(p256)
    with pytest.raises(InvalidKey, match="not a PEM"):
        operator_keys.load_public_pem(b"-----BEGIN PUBLIC KEY-----\ngarbage\n")
    with pytest.raises(InvalidKey):
        operator_keys.load_public_pem("text, not bytes")  # type: ignore[arg-type]


def test_fingerprint():
    key = operator_keys.generate()
    fp = operator_keys.fingerprint(key.public_key())
    assert fp == hashlib.sha256(raw(key.public_key())).hexdigest()[:16]
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert fp != operator_keys.fingerprint(operator_keys.generate().public_key())
    # RFC 8032 test 1 public key: the fingerprint does not depend on our serialisation
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    rfc = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    assert operator_keys.fingerprint(Ed25519PublicKey.from_public_bytes(rfc)) == \
        hashlib.sha256(rfc).hexdigest()[:16]


SMALL_ORDER = [  # the eight points of small order (libsodium's blocklist, canonical encodings)
    "0100000000000000000000000000000000000000000000000000000000000000",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000000000000000000000000000080",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
]


@pytest.mark.parametrize("raw", SMALL_ORDER)
def test_small_order_keys_are_refused(raw: str) -> None:
    """Such a key has a signature that verifies over every message (here: R = the identity,
    S = 0 for the identity key), so anyone who can write a decision row could forge it."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from signerd.core.operator_keys import load_public_pem

    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(raw))
    pem = key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(InvalidKey, match="small order|not a point|canonical"):
        load_public_pem(pem)
    if raw.startswith("01"):  # the identity: one signature for every message, for OpenSSL too
        key.verify(bytes.fromhex("01" + "00" * 63), b"any statement at all")


def test_keys_of_full_order_load() -> None:
    from signerd.core.operator_keys import generate, load_public_pem, public_pem

    for _ in range(20):
        load_public_pem(public_pem(generate()))
