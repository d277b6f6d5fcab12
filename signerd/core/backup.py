"""Key backup (pure): the backup key's check value, its m-of-n split among custodians, the
custodians' sealed shares, the ceremony record and the backup bundle.

**The backup key** is a 256-bit AES key made at a key ceremony (``signerctl backup ceremony``).
The ceremony installs it in the HSM token as a trusted key (CKA_TRUSTED, set by the token's
security officer), under which alone custody keys (CKA_WRAP_WITH_TRUSTED) leave the token, and
only wrapped (CKM_AES_KEY_WRAP_PAD, RFC 5649). Its plaintext exists in the ceremony's memory and,
at a restore, in the restore's memory, and nowhere else: it is split by Shamir's scheme into
``shares`` shares of which any ``threshold`` rebuild it (two independent splits of its halves
over GF(2^128), pycryptodome's ``Shamir``), each share sealed to one custodian's operator key
(Ed25519, converted to X25519: a libsodium sealed box), so no custodian, and no disk, holds a
usable part.

**Its identity** is its check value: the known key :data:`CHECK_KEY` wrapped under it with
CKM_AES_KEY_WRAP_PAD, which is deterministic. The HSM computes it (the plaintext key is never
given to a software AES); a governance proposal (``backup.key``) records it in the authority
ledger, and signerd wraps custody keys only under a trusted key whose check value is an
approved one. A security officer who installs a trusted key of their own cannot give it an
approved check value without the approved key (AES, 128-bit security); the 3-byte
CKA_CHECK_VALUE of PKCS#11 v3 would be found by trying 2^24 keys.

**The bundle** (``signerctl backup create``, under a ``backup.create`` proposal) carries every
custody key wrapped, with its wallets, public keys and addresses, the genesis document, the
ledger head it was made at and the approved ceremony; its digest is sealed by the audit key the
genesis names. :func:`parse_bundle` checks all of it, byte for byte, before a restore imports
anything.

Python cannot promise that a secret leaves no copy: this module keeps the backup key and each
share in ``bytearray`` objects that its callers wipe (:func:`wipe`), but the libraries it hands
them to (pycryptodome's Shamir, which computes over Python integers; libsodium's sealed box,
whose plaintext is an immutable ``bytes``) make copies it cannot reach. Run the ceremony and the
restore on an offline machine, with no swap, and let the process end.
"""
from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import canonical, seal
from .approval import genesis_statement
from .errors import InvalidArgument, SignerError, echo
from .operator_keys import fingerprint, load_public_pem

CEREMONY_FORMAT = "signerd-backup-ceremony/v1"
SHARE_FORMAT = "signerd-backup-share/v1"
BUNDLE_FORMAT = "signerd-backup-bundle/v1"
BUNDLE_SEAL = "backup/bundle"  # signerd.core.seal's kind for the seal of a bundle's digest
SHARE_TAG = b"signerd-backup-share/v1\n"
BUNDLE_TAG = b"signerd-backup-bundle/v1\n"
MECHANISM = "CKM_AES_KEY_WRAP_PAD"
KEY_BYTES = 32
HALF = 16
# The known key whose wrap under the backup key is its check value (not a secret).
CHECK_KEY = hashlib.sha256(b"signerd-backup-key-check/v1").digest()
CHECK_VALUE = re.compile(r"[0-9a-f]{80}")  # RFC 5649 wrap of 32 bytes: 40 bytes
CEREMONY_ID = re.compile(r"c_[0-9a-f]{16}")
KEY_ID = re.compile(r"[0-9a-f]{2,128}")
MAX_CUSTODIANS = 16
MAX_BUNDLE_BYTES = 64 * 1024 * 1024
KEY_USES = frozenset({"audit", "wallet", "key_share"})

_CEREMONY_KEYS = frozenset({"format", "ceremony_id", "instance_id", "created_at", "threshold",
                            "custodians", "key_id", "key_label", "check_value", "mechanism"})
_CUSTODIAN_KEYS = frozenset({"operator_id", "fingerprint", "index"})
_SHARE_KEYS = frozenset({"format", "ceremony_id", "instance_id", "custodian", "fingerprint",
                         "index", "threshold", "shares", "check_value", "sealed"})
_BUNDLE_KEYS = frozenset({"format", "body", "digest", "seal"})
_BODY_KEYS = frozenset({"instance_id", "genesis", "genesis_document", "proposal", "created_at",
                        "ceremony", "mechanism", "ledger", "keys", "wallets", "not_backed_up"})
_KEY_KEYS = frozenset({"key_id", "label", "public_key", "use", "wallets", "wrapped"})
_NOT_KEYS = frozenset({"key_id", "label", "public_key", "use", "wallets", "reason"})
_WALLET_KEYS = frozenset({"id", "chain", "network", "chain_ids", "address", "category",
                          "status", "key_ids"})

NOT_BACKED_UP_ADVICE = (
    "made before keys were backup-capable (CKA_EXTRACTABLE false): the HSM cannot export it, "
    "wrapped or not. Move its funds to a new wallet of the same category (its keys are "
    "backup-capable) with an ordinary transfer under the wallet's quorum, then retire it")


class BackupRefused(InvalidArgument):
    """A share, a set of shares or a bundle that restores nothing (the reason says why)."""


def wipe(buf: bytearray | memoryview) -> None:
    """Overwrite a secret in place (as far as Python allows: copies made elsewhere remain)."""
    for i in range(len(buf)):
        buf[i] = 0


def new_ceremony_id() -> str:
    return "c_" + secrets.token_hex(8)


def new_backup_key() -> bytearray:
    return bytearray(secrets.token_bytes(KEY_BYTES))


# --------------------------------------------------------------------------- Shamir


def split(key: bytearray, threshold: int, shares: int) -> list[tuple[int, bytearray]]:
    """``shares`` shares (index 1..shares, 32 bytes each) of which any ``threshold`` rebuild
    ``key``; fewer give no information about it (Shamir's scheme over GF(2^128), each half of
    the key split on its own polynomial)."""
    from Crypto.Protocol.SecretSharing import Shamir

    check_threshold(threshold, shares)
    if len(key) != KEY_BYTES:
        raise InvalidArgument(f"the backup key is {KEY_BYTES} bytes")
    halves = [Shamir.split(threshold, shares, bytes(key[i:i + HALF]), False)
              for i in (0, HALF)]
    out = []
    for (i1, a), (i2, b) in zip(*halves):
        assert i1 == i2
        out.append((i1, bytearray(a) + bytearray(b)))
    return out


def combine(parts: Sequence[tuple[int, bytes | bytearray]], threshold: int) -> bytearray:
    """The key that ``threshold`` distinct shares rebuild. Fewer shares are refused here;
    shares of another key rebuild another key, which the check value then refuses."""
    from Crypto.Protocol.SecretSharing import Shamir

    indices = [i for i, _ in parts]
    if len(set(indices)) != len(indices):
        raise BackupRefused("the same share was given twice")
    if len(parts) < threshold:
        raise BackupRefused(f"{len(parts)} share(s) given; this backup key needs {threshold} "
                            "custodians' shares: nothing was restored")
    use = list(parts)[:threshold]
    key = bytearray()
    for off in (0, HALF):
        half = Shamir.combine([(i, bytes(s[off:off + HALF])) for i, s in use], False)
        key += half
    return key


def check_threshold(threshold: int, shares: int) -> None:
    if not 2 <= shares <= MAX_CUSTODIANS:
        raise InvalidArgument(f"custodians: between 2 and {MAX_CUSTODIANS} custodians are needed")
    if not 2 <= threshold <= shares:
        raise InvalidArgument(f"threshold: between 2 and the number of custodians ({shares}); "
                              "one custodian alone must never restore a key")


# --------------------------------------------------------------------------- custodians


def _x25519_public(pem: str) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    from nacl.bindings import crypto_sign_ed25519_pk_to_curve25519

    raw = load_public_pem(pem.encode()).public_bytes(Encoding.Raw, PublicFormat.Raw)
    return bytes(crypto_sign_ed25519_pk_to_curve25519(raw))


def _x25519_private(private_key: Any) -> Any:
    from cryptography.hazmat.primitives.serialization import (Encoding, NoEncryption,
                                                              PrivateFormat)
    from nacl.bindings import crypto_sign_ed25519_sk_to_curve25519, crypto_sign_seed_keypair
    from nacl.public import PrivateKey

    seed = private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    _pk, sk = crypto_sign_seed_keypair(seed)
    return PrivateKey(crypto_sign_ed25519_sk_to_curve25519(sk))


@dataclass(frozen=True)
class Custodian:
    operator_id: str
    public_key_pem: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(load_public_pem(self.public_key_pem.encode()))


def _inner(ceremony_id: str, index: int, share: bytes | bytearray) -> bytes:
    return SHARE_TAG + ceremony_id.encode() + b"\n" + bytes([index]) + bytes(share)


def seal_share(ceremony: Mapping[str, Any], custodian: Custodian, index: int,
               share: bytearray) -> dict[str, Any]:
    """One custodian's share, sealed to their operator key (only their private key opens it).
    The envelope names the ceremony, the custodian and the threshold; the sealed part repeats the
    ceremony and the index, so an envelope edited to pass for another ceremony's opens to a
    mismatch."""
    from nacl.public import PublicKey, SealedBox

    sealed = SealedBox(PublicKey(_x25519_public(custodian.public_key_pem))).encrypt(
        _inner(ceremony["ceremony_id"], index, share))
    return {"format": SHARE_FORMAT, "ceremony_id": ceremony["ceremony_id"],
            "instance_id": ceremony["instance_id"], "custodian": custodian.operator_id,
            "fingerprint": custodian.fingerprint, "index": index,
            "threshold": ceremony["threshold"], "shares": len(ceremony["custodians"]),
            "check_value": ceremony["check_value"],
            "sealed": base64.b64encode(bytes(sealed)).decode()}


def parse_share(data: bytes | str, where: str) -> dict[str, Any]:
    try:
        doc = canonical.loads(data, where)
    except InvalidArgument as e:
        raise BackupRefused(f"{where}: not a share file ({e.message})") from None
    if not isinstance(doc, dict) or set(doc) != _SHARE_KEYS or doc["format"] != SHARE_FORMAT:
        raise BackupRefused(f"{where}: not a {SHARE_FORMAT} share file")
    for key in ("index", "threshold", "shares"):
        if isinstance(doc[key], bool) or not isinstance(doc[key], int):
            raise BackupRefused(f"{where}: {key} must be an integer")
    if not 1 <= doc["index"] <= doc["shares"] <= MAX_CUSTODIANS:
        raise BackupRefused(f"{where}: its index is out of range")
    if not isinstance(doc["ceremony_id"], str) or not CEREMONY_ID.fullmatch(doc["ceremony_id"]):
        raise BackupRefused(f"{where}: its ceremony id is malformed")
    return dict(doc)


def open_share(doc: Mapping[str, Any], private_key: Any, where: str) -> tuple[int, bytearray]:
    """(index, share) of a share file, opened with its custodian's operator private key (an
    Ed25519 key from ``adapters.key_files``). A wrong key, or a sealed part that is not this
    envelope's, is refused naming the file."""
    from nacl.exceptions import CryptoError
    from nacl.public import SealedBox

    if fingerprint(private_key.public_key()) != doc["fingerprint"]:
        raise BackupRefused(f"{where}: this share is sealed to custodian "
                            f"{echo(doc['custodian'], quote=False)}'s key, not to the key given "
                            "with it")
    try:
        raw = bytearray(SealedBox(_x25519_private(private_key)).decrypt(
            canonical.strict_b64decode(str(doc["sealed"]), f"{where}: sealed")))
    except (CryptoError, InvalidArgument):
        raise BackupRefused(f"{where}: the share does not open with the custodian's key "
                            "(damaged or not sealed to it)") from None
    expected = SHARE_TAG + doc["ceremony_id"].encode() + b"\n" + bytes([doc["index"]])
    try:
        if len(raw) != len(expected) + KEY_BYTES or raw[:len(expected)] != expected:
            raise BackupRefused(f"{where}: its sealed part is not share {doc['index']} of "
                                f"ceremony {doc['ceremony_id']} (the envelope was edited)")
        return doc["index"], raw[len(expected):]
    finally:
        wipe(raw)


# --------------------------------------------------------------------------- ceremony


def ceremony_record(*, ceremony_id: str, instance_id: str, created_at: int, threshold: int,
                    custodians: Sequence[Custodian], key_id: str, key_label: str,
                    check_value: str) -> dict[str, Any]:
    """What a ceremony made, as the ``backup.key`` proposal puts it before the governance:
    who holds a share (each custodian's operator id and key fingerprint), how many rebuild the
    key, where the HSM holds it, and its check value. No secret."""
    check_threshold(threshold, len(custodians))
    ids = [c.operator_id for c in custodians]
    if len(set(ids)) != len(ids):
        raise InvalidArgument("custodians: each custodian holds one share (an operator id is "
                              "named twice)")
    fps = [c.fingerprint for c in custodians]
    if len(set(fps)) != len(fps):
        raise InvalidArgument("custodians: two custodians have the same key")
    doc = {"format": CEREMONY_FORMAT, "ceremony_id": ceremony_id, "instance_id": instance_id,
           "created_at": int(created_at), "threshold": threshold,
           "custodians": [{"operator_id": c.operator_id, "fingerprint": c.fingerprint,
                           "index": i} for i, c in enumerate(custodians, 1)],
           "key_id": key_id, "key_label": key_label, "check_value": check_value,
           "mechanism": MECHANISM}
    return check_ceremony(doc, "ceremony")


def check_ceremony(doc: Any, where: str) -> dict[str, Any]:
    """A ceremony record's shape; InvalidArgument names the field."""
    if not isinstance(doc, dict) or set(doc) != _CEREMONY_KEYS:
        raise InvalidArgument(f"{where}: a ceremony record has exactly the fields "
                              f"{', '.join(sorted(_CEREMONY_KEYS))}")
    if doc["format"] != CEREMONY_FORMAT or doc["mechanism"] != MECHANISM:
        raise InvalidArgument(f"{where}: not a {CEREMONY_FORMAT} record with {MECHANISM}")
    if not isinstance(doc["ceremony_id"], str) or not CEREMONY_ID.fullmatch(doc["ceremony_id"]):
        raise InvalidArgument(f"{where}: ceremony_id is malformed")
    for key in ("instance_id", "key_label"):
        if not isinstance(doc[key], str) or not doc[key] or len(doc[key]) > 200:
            raise InvalidArgument(f"{where}: {key} must be a short text")
    if not isinstance(doc["key_id"], str) or not KEY_ID.fullmatch(doc["key_id"]):
        raise InvalidArgument(f"{where}: key_id must be the backup key's CKA_ID in hex")
    if not isinstance(doc["check_value"], str) or not CHECK_VALUE.fullmatch(doc["check_value"]):
        raise InvalidArgument(f"{where}: check_value must be 80 hex digits")
    for key in ("created_at", "threshold"):
        if isinstance(doc[key], bool) or not isinstance(doc[key], int) or doc[key] < 0:
            raise InvalidArgument(f"{where}: {key} must be a non-negative integer")
    custodians = doc["custodians"]
    if not isinstance(custodians, list):
        raise InvalidArgument(f"{where}: custodians must be a list")
    check_threshold(doc["threshold"], len(custodians))
    for i, c in enumerate(custodians, 1):
        if (not isinstance(c, dict) or set(c) != _CUSTODIAN_KEYS or c["index"] != i
                or not isinstance(c["operator_id"], str) or not isinstance(c["fingerprint"], str)):
            raise InvalidArgument(f"{where}: custodian #{i} must name operator_id, fingerprint "
                                  f"and index {i}")
    if len({c["operator_id"] for c in custodians}) != len(custodians):
        raise InvalidArgument(f"{where}: a custodian is named twice")
    return doc


# --------------------------------------------------------------------------- bundle


@dataclass(frozen=True)
class BundleKey:
    key_id: str
    label: str
    public_key: bytes  # 33-byte compressed secp256k1 point
    use: str  # audit | wallet | key_share
    wallets: tuple[str, ...]
    wrapped: bytes


@dataclass(frozen=True)
class Bundle:
    body: dict[str, Any]
    digest: str
    keys: tuple[BundleKey, ...]

    @property
    def ceremony(self) -> dict[str, Any]:
        return dict(self.body["ceremony"])

    @property
    def instance_id(self) -> str:
        return str(self.body["instance_id"])

    @property
    def genesis(self) -> bytes:
        return bytes.fromhex(self.body["genesis"])

    @property
    def ledger(self) -> tuple[int, bytes]:
        return int(self.body["ledger"]["seq"]), bytes.fromhex(self.body["ledger"]["hash"])

    @property
    def audit_key(self) -> tuple[str, bytes]:
        key = self.body["genesis_document"]["audit_key"]
        return str(key["key_id"]), bytes.fromhex(key["public_key"])


def bundle_digest(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(BUNDLE_TAG + canonical.dumps(dict(body))).hexdigest()


def seal_record(body: Mapping[str, Any], digest: str) -> dict[str, Any]:
    """What the audit key seals of a bundle: its digest, bound to the instance and the
    proposal that made it."""
    return {"instance_id": body["instance_id"], "proposal": body["proposal"], "digest": digest}


def bundle_key_json(key_id: str, label: str, public_key: bytes, use: str,
                    wallets: Iterable[str], wrapped: bytes) -> dict[str, Any]:
    return {"key_id": key_id, "label": label, "public_key": public_key.hex(), "use": use,
            "wallets": sorted(set(wallets)), "wrapped": wrapped.hex()}


def encode_bundle(body: Mapping[str, Any], seal_hex: str) -> bytes:
    digest = bundle_digest(body)
    return canonical.dumps({"format": BUNDLE_FORMAT, "body": dict(body), "digest": digest,
                            "seal": seal_hex})


def parse_bundle(data: bytes, *, pinned_genesis: bytes) -> Bundle:
    """A bundle that may be restored into this instance's token: exactly the canonical bytes
    signerd wrote (one changed byte anywhere, even a space, is refused), its digest over its
    body, its seal by the audit key of the genesis document it carries, that genesis the one
    ``pinned_genesis`` names (the config's), and every key well formed. Refusals are
    :class:`BackupRefused` naming what is wrong; nothing is imported before this passed."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BackupRefused(f"bundle: larger than {MAX_BUNDLE_BYTES} bytes")
    try:
        doc = canonical.loads(data, "bundle")
    except InvalidArgument as e:
        raise BackupRefused(f"bundle: not a signerd backup bundle ({e.message})") from None
    if not isinstance(doc, dict) or set(doc) != _BUNDLE_KEYS or doc["format"] != BUNDLE_FORMAT:
        raise BackupRefused(f"bundle: not a {BUNDLE_FORMAT} document")
    body = doc["body"]
    if not isinstance(body, dict) or set(body) != _BODY_KEYS:
        raise BackupRefused("bundle: its body is malformed")
    if not isinstance(doc["digest"], str) or bundle_digest(body) != doc["digest"]:
        raise BackupRefused("bundle: its digest does not match its content (the bundle was "
                            "changed after signerd made it)")
    gdoc = body["genesis_document"]
    try:
        genesis = hashlib.sha256(genesis_statement(gdoc)).digest()
        key = gdoc["audit_key"]
        audit_public = bytes.fromhex(key["public_key"])
    except (SignerError, KeyError, TypeError, ValueError, AttributeError):
        raise BackupRefused("bundle: its genesis document is malformed") from None
    if genesis.hex() != body["genesis"]:
        raise BackupRefused("bundle: its genesis document is not the genesis it names")
    if genesis != pinned_genesis:
        raise BackupRefused(f"bundle: it is a backup of the instance whose genesis is "
                            f"{genesis.hex()[:16]}..., not of this one (the config pins "
                            f"{pinned_genesis.hex()[:16]}...)")
    if not seal.valid(audit_public, BUNDLE_SEAL, seal_record(body, doc["digest"]),
                      str(doc["seal"])):
        raise BackupRefused("bundle: its seal does not verify under the audit key of its "
                            "genesis (not made by this instance's signerd)")
    return Bundle(body, doc["digest"], _bundle_keys(body))


def _bundle_keys(body: dict[str, Any]) -> tuple[BundleKey, ...]:
    """The keys of a sealed body, every field checked (a sealed body is signerd's; the checks
    keep a bug from importing something odd)."""
    import coincurve

    try:
        check_ceremony(body["ceremony"], "bundle: ceremony")
    except InvalidArgument as e:
        raise BackupRefused(e.message) from None
    if body["mechanism"] != MECHANISM:
        raise BackupRefused(f"bundle: wrapped with {echo(body['mechanism'])}, not {MECHANISM}")
    ledger = body["ledger"]
    if (not isinstance(ledger, dict) or set(ledger) != {"seq", "hash"}
            or not isinstance(ledger["seq"], int) or not isinstance(ledger["hash"], str)):
        raise BackupRefused("bundle: ledger must name seq and hash")
    keys = []
    seen: set[str] = set()
    if not isinstance(body["keys"], list) or not body["keys"]:
        raise BackupRefused("bundle: it holds no keys")
    for i, k in enumerate(body["keys"]):
        if not isinstance(k, dict) or set(k) != _KEY_KEYS:
            raise BackupRefused(f"bundle: key #{i + 1} is malformed")
        try:
            pub = coincurve.PublicKey(bytes.fromhex(k["public_key"])).format(compressed=True)
            wrapped = bytes.fromhex(k["wrapped"])
        except (ValueError, TypeError):
            raise BackupRefused(f"bundle: key #{i + 1} has a malformed public key or "
                                "wrapped key") from None
        if (not isinstance(k["key_id"], str) or not KEY_ID.fullmatch(k["key_id"])
                or k["key_id"] in seen or k["use"] not in KEY_USES
                or not isinstance(k["label"], str) or not isinstance(k["wallets"], list)):
            raise BackupRefused(f"bundle: key #{i + 1} is malformed")
        seen.add(k["key_id"])
        keys.append(BundleKey(k["key_id"], k["label"], pub, k["use"],
                              tuple(str(w) for w in k["wallets"]), wrapped))
    if sum(1 for k in keys if k.use == "audit") != 1:
        raise BackupRefused("bundle: it must hold the audit key exactly once")
    return tuple(keys)


def check_shares_for(bundle: Bundle, shares: Sequence[Mapping[str, Any]],
                     where: Sequence[str]) -> None:
    """Every share is of the bundle's ceremony and instance, each index once, and there are
    enough of them: refused (BackupRefused, naming the file) before any share is opened."""
    c = bundle.ceremony
    for doc, name in zip(shares, where):
        if doc["ceremony_id"] != c["ceremony_id"]:
            raise BackupRefused(f"{name}: this share is from ceremony {doc['ceremony_id']}, not "
                                f"from ceremony {c['ceremony_id']} whose key wrapped this bundle: "
                                "nothing was restored")
        if doc["instance_id"] != bundle.instance_id or doc["check_value"] != c["check_value"]:
            raise BackupRefused(f"{name}: this share is of another backup key than this "
                                "bundle's: nothing was restored")
        custodian = next((x for x in c["custodians"] if x["index"] == doc["index"]), None)
        if custodian is None or custodian["fingerprint"] != doc["fingerprint"]:
            raise BackupRefused(f"{name}: share {doc['index']} is not the one ceremony "
                                f"{c['ceremony_id']} sealed to {echo(doc['custodian'])}")
    indices = [d["index"] for d in shares]
    if len(set(indices)) != len(indices):
        raise BackupRefused("the same custodian's share was given twice: nothing was restored")
    if len(shares) < c["threshold"]:
        raise BackupRefused(f"{len(shares)} share(s) given; ceremony {c['ceremony_id']} needs "
                            f"{c['threshold']} of its {len(c['custodians'])} custodians: nothing "
                            "was restored")
