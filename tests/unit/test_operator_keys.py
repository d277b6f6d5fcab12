"""Operator keys (Ed25519 and P-256): key files (modes, no overwrite, passphrases), public keys,
fingerprints, and the one form of signature each key type verifies."""
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


def test_private_keys_of_other_types_refused(tmp_path):
    path = tmp_path / "k1.key"
    pem = ec.generate_private_key(ec.SECP256K1()).private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    path.write_bytes(pem)
    path.chmod(0o600)
    with pytest.raises(InvalidKey, match="operator keys must be Ed25519 or P-256"):
        key_files.load_private(path)


def test_load_public_pem_only_ed25519_and_p256():
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = p256.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    assert operator_keys.key_type(operator_keys.load_public_pem(pem)) is operator_keys.KeyType.P256
    for curve in (ec.SECP256K1(), ec.SECP384R1()):
        other = ec.generate_private_key(curve).public_key().public_bytes(
            Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        with pytest.raises(InvalidKey, match="operator keys must be Ed25519 or P-256"):
            operator_keys.load_public_pem(other)
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


# ---------------------------------------------------------------- P-256 and the key types

from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.utils import (  # noqa: E402
    Prehashed,
    decode_dss_signature,
    encode_dss_signature,
)

from signerd.core.approval import sign_statement, signature_valid, verify_statement  # noqa: E402
from signerd.core.errors import InvalidApproval  # noqa: E402
from signerd.core.operator_keys import P256_N, KeyType  # noqa: E402

STATEMENT = b"signerd-approval/v1\n{\"decision\":\"APPROVE\"}"
DIGEST = hashlib.sha256(STATEMENT).digest()


def pem(private) -> bytes:
    return operator_keys.public_pem(private)


def test_p256_key_files_round_trip(paths):
    key_path, pub_path = paths
    key = operator_keys.generate(KeyType.P256)
    key_files.write_keypair(key, key_path, pub_path, b"s3cret")
    loaded = key_files.FileKey(key_path, key_files.load_private(key_path, b"s3cret"))
    assert loaded.key_type is KeyType.P256
    assert operator_keys.key_type(operator_keys.load_public_pem(pub_path.read_bytes())) \
        is KeyType.P256
    signature = loaded.sign_digest(DIGEST)
    verify_statement(pub_path.read_bytes(), STATEMENT, signature, operator_id="cust1")


def test_p256_signature_is_ecdsa_over_the_statement_digest():
    """The hashed message is SHA-256 of the statement: the same signature verifies as
    ECDSA-SHA256 over the statement itself (what CKM_ECDSA_SHA256 on a token would make)."""
    key = operator_keys.generate(KeyType.P256)
    signature = sign_statement(key, STATEMENT)
    key.public_key().verify(signature, STATEMENT, ec.ECDSA(hashes.SHA256()))
    assert signature_valid(pem(key), STATEMENT, signature)
    other = key.sign(STATEMENT, ec.ECDSA(hashes.SHA256()))  # made by another tool
    r, s = decode_dss_signature(other)
    assert signature_valid(pem(key), STATEMENT, operator_keys.p256_der(r, s))


@pytest.mark.parametrize("how", ["sha512 of the digest (ECDSA_SHA512)",
                                 "sha256 of the digest", "sha384 of the statement",
                                 "sha512 of the statement"])
def test_p256_signature_over_another_hash_does_not_verify(how):
    """python-pkcs11's default mechanism (ECDSA_SHA512 on the digest) and every other hash of
    the statement make a signature that never counts."""
    key = operator_keys.generate(KeyType.P256)
    message, algorithm = {
        "sha512 of the digest (ECDSA_SHA512)": (DIGEST, hashes.SHA512()),
        "sha256 of the digest": (DIGEST, hashes.SHA256()),
        "sha384 of the statement": (STATEMENT, hashes.SHA384()),
        "sha512 of the statement": (STATEMENT, hashes.SHA512()),
    }[how]
    r, s = decode_dss_signature(key.sign(message, ec.ECDSA(algorithm)))
    signature = operator_keys.p256_der(r, s)
    assert not signature_valid(pem(key), STATEMENT, signature)
    with pytest.raises(InvalidApproval, match="does not verify"):
        verify_statement(pem(key), STATEMENT, signature)


def test_p256_high_s_and_non_canonical_der_are_refused():
    """(r, n - s) verifies under plain ECDSA; signerd counts only the low-S, strict-DER form, so
    one signature has one encoding."""
    key = operator_keys.generate(KeyType.P256)
    good = sign_statement(key, STATEMENT)
    r, s = decode_dss_signature(good)
    assert s <= P256_N // 2
    high = encode_dss_signature(r, P256_N - s)
    key.public_key().verify(high, DIGEST, ec.ECDSA(Prehashed(hashes.SHA256())))  # plain: valid
    assert not signature_valid(pem(key), STATEMENT, high)
    with pytest.raises(InvalidApproval, match="high S"):
        verify_statement(pem(key), STATEMENT, high)
    # BER-style long-form length of the SEQUENCE: the same r and s, another encoding
    body = good[2:]
    long_form = bytes([0x30, 0x81, len(body)]) + body
    assert not signature_valid(pem(key), STATEMENT, long_form)
    with pytest.raises(InvalidApproval, match="DER"):
        verify_statement(pem(key), STATEMENT, long_form)
    assert not signature_valid(pem(key), STATEMENT, good + b"\x00")  # trailing bytes
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")  # the token's r||s, not converted
    assert not signature_valid(pem(key), STATEMENT, raw)
    assert operator_keys.p256_from_raw(raw) == good
    assert operator_keys.p256_from_raw(r.to_bytes(32, "big") + (P256_N - s).to_bytes(32, "big")) \
        == good


def test_a_signature_made_for_one_key_type_never_verifies_as_another():
    """Verification follows the registered key's type: an Ed25519 signature offered for a P-256
    key (or the reverse), or a P-256 signature in the raw 64-byte form an Ed25519 signature has,
    never verifies."""
    ed = operator_keys.generate(KeyType.ED25519)
    p256 = operator_keys.generate(KeyType.P256)
    ed_sig = sign_statement(ed, STATEMENT)
    p_sig = sign_statement(p256, STATEMENT)
    assert signature_valid(pem(ed), STATEMENT, ed_sig) and signature_valid(pem(p256), STATEMENT,
                                                                            p_sig)
    assert not signature_valid(pem(p256), STATEMENT, ed_sig)
    assert not signature_valid(pem(ed), STATEMENT, p_sig)
    r, s = decode_dss_signature(p_sig)
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    assert len(raw) == len(ed_sig) == 64
    assert not signature_valid(pem(ed), STATEMENT, raw)
    assert not signature_valid(pem(p256), STATEMENT, raw)
    with pytest.raises(InvalidApproval, match="the operator's key is P-256"):
        verify_statement(pem(p256), STATEMENT, ed_sig, operator_id="cust9")
    with pytest.raises(InvalidApproval, match=r"must be 64 bytes \(the operator's key is Ed25519"):
        verify_statement(pem(ed), STATEMENT, p_sig, operator_id="inv9")


def test_ed25519_keys_and_signatures_are_unchanged():
    """An Ed25519 operator's fingerprint, SubjectPublicKeyInfo digest and signatures are what
    they were before P-256 keys existed (RFC 8032 test 1)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
    assert operator_keys.fingerprint(key.public_key()) == hashlib.sha256(
        raw(key.public_key())).hexdigest()[:16]
    spki = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert operator_keys.spki_digest(key.public_key()) == hashlib.sha256(spki).hexdigest()
    assert sign_statement(key, STATEMENT) == key.sign(DIGEST)  # deterministic, as before


def test_one_p256_key_in_two_encodings_has_one_digest():
    """A compressed point is the same key: the canonical SubjectPublicKeyInfo digest (what makes
    a key one identity) and the fingerprint do not change with the encoding."""
    key = operator_keys.generate(KeyType.P256).public_key()
    uncompressed_pem = key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    point = key.public_bytes(Encoding.X962, PublicFormat.CompressedPoint)
    # A SubjectPublicKeyInfo with the compressed point (cryptography writes uncompressed only):
    # SEQUENCE { AlgorithmIdentifier, BIT STRING { 0 unused bits, point } }
    from cryptography.hazmat.primitives.serialization import load_der_public_key
    import base64
    der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert der[:2] == b"\x30\x59" and der[-68:-65] == b"\x03\x42\x00"
    algorithm = der[2:-68]
    inner = algorithm + b"\x03\x22\x00" + point
    comp_der = bytes([0x30, len(inner)]) + inner
    again = load_der_public_key(comp_der)
    assert again.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint) == key.public_bytes(
        Encoding.X962, PublicFormat.UncompressedPoint)
    comp_pem = (b"-----BEGIN PUBLIC KEY-----\n" + base64.encodebytes(comp_der)
                + b"-----END PUBLIC KEY-----\n")
    assert comp_pem != uncompressed_pem
    loaded = operator_keys.load_public_pem(comp_pem)
    assert operator_keys.spki_digest(loaded) == operator_keys.spki_digest(key)
    assert operator_keys.fingerprint(loaded) == operator_keys.fingerprint(key)
