"""The HSM's part of the key backup (signerd.core.backup): the trusted backup key, the wrapped
export of custody keys and their import into another token.

**What the token enforces** (measured on SoftHSM 2.6; the key backup's tests show each):

- a custody key (``hsm._private_key_attributes``) is CKA_SENSITIVE (its value is never read),
  CKA_EXTRACTABLE and CKA_WRAP_WITH_TRUSTED: C_WrapKey under a key that is not CKA_TRUSTED fails
  with CKR_KEY_NOT_WRAPPABLE; SENSITIVE and WRAP_WITH_TRUSTED cannot be cleared, and
  EXTRACTABLE can be cleared but never set again (so keys made before are never exportable);
- CKA_TRUSTED can be set only by the security officer (SO-PIN), and the security officer can
  create only public objects (CKA_PRIVATE false): the backup key is a public, sensitive,
  non-extractable, non-modifiable, non-destroyable AES key that may only wrap
  (CKA_WRAP; no UNWRAP, ENCRYPT, DECRYPT). Anyone with a session may wrap with it, but only
  a session logged in with the user PIN can reach the custody keys it could wrap;
- CKM_AES_KEY_WRAP_PAD (RFC 5649) wraps an EC private key as its PKCS#8 encoding; it is
  deterministic, which makes the check value (core.backup.CHECK_KEY wrapped) the key's
  identity. The token's own CKA_CHECK_VALUE (3 bytes) is too short for that.

**Who is stopped.** A security officer who installs a trusted key of their own: signerd wraps
only under the trusted key whose check value a ``backup.key`` proposal of the ledger approved
(:func:`approved_backup_key`). The user-PIN holder alone cannot mark a key trusted. Whoever holds
both PINs of one token can export its keys under a key of their own: keep them with different
people (README, "Key backup and recovery").
"""
from __future__ import annotations

import contextlib
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import coincurve

from signerd.core import backup as BK
from signerd.core.anchor import Anchors
from signerd.core.errors import ConfigError, FailedPrecondition
from .hsm import (_INITIALISED, SECP256K1_OID, Keystore, _decode_ec_point,
                  _private_key_attributes, _public_key_attributes, normalize_s)

GENESIS_LABEL = "signerd-genesis"  # as signerd.app.GENESIS_LABEL (a unit test keeps them equal)
BACKUP_KEY_LABEL = "signerd-backup-key"


@dataclass(frozen=True)
class KeyBackupState:
    """Whether a custody key can leave the token wrapped (made backup-capable)."""

    key_id: str
    present: bool
    extractable: bool
    wrap_with_trusted: bool

    @property
    def capable(self) -> bool:
        return self.present and self.extractable and self.wrap_with_trusted


def _pk() -> Any:
    import pkcs11

    return pkcs11


def check_value(session: Any, key: Any) -> str:
    """The check value of an AES key object: the known key core.backup.CHECK_KEY wrapped under
    it with CKM_AES_KEY_WRAP_PAD (computed by the token; the test key is a public session
    object, destroyed after)."""
    p = _pk()
    A, OC, KT, M = p.Attribute, p.ObjectClass, p.KeyType, p.Mechanism
    test = session.create_object({A.CLASS: OC.SECRET_KEY, A.KEY_TYPE: KT.GENERIC_SECRET,
                                  A.TOKEN: False, A.PRIVATE: False, A.SENSITIVE: False,
                                  A.EXTRACTABLE: True, A.VALUE: BK.CHECK_KEY})
    try:
        return bytes(key.wrap_key(test, mechanism=M.AES_KEY_WRAP_PAD)).hex()
    finally:
        test.destroy()


def _backup_key_template(key_id: bytes, label: str, value: bytes) -> dict[Any, Any]:
    p = _pk()
    A, OC, KT = p.Attribute, p.ObjectClass, p.KeyType
    return {A.CLASS: OC.SECRET_KEY, A.KEY_TYPE: KT.AES, A.TOKEN: True, A.PRIVATE: False,
            A.TRUSTED: True, A.SENSITIVE: True, A.EXTRACTABLE: False, A.MODIFIABLE: False,
            A.DESTROYABLE: False, A.WRAP: True, A.UNWRAP: False, A.ENCRYPT: False,
            A.DECRYPT: False, A.SIGN: False, A.VERIFY: False, A.DERIVE: False,
            A.ID: key_id, A.LABEL: label, A.VALUE: value}


def _trusted_candidates(session: Any, key_id: str) -> list[Any]:
    p = _pk()
    A, OC, KT = p.Attribute, p.ObjectClass, p.KeyType
    out = []
    for obj in session.get_objects({A.CLASS: OC.SECRET_KEY, A.ID: bytes.fromhex(key_id)}):
        try:
            if obj[A.KEY_TYPE] == KT.AES and obj[A.TRUSTED] and obj[A.WRAP]:
                out.append(obj)
        except p.exceptions.PKCS11Error:
            continue
    return out


def approved_backup_key(session: Any, key: Any) -> Any:
    """The token's trusted AES key whose check value is the approved one (``key``: an
    authority.BackupKey of the ledger). A trusted key with the same id and another check value
    (installed by whoever holds the SO-PIN) is never used; none at all is FailedPrecondition."""
    found = [k for k in _trusted_candidates(session, key.key_id)
             if check_value(session, k) == key.check_value]
    if not found:
        raise FailedPrecondition(
            f"the HSM token holds no trusted backup key with the check value that the "
            f"governance approved for backup key {key.ceremony_id} (id {key.key_id}): nothing "
            "is wrapped under any other key")
    return found[0]


def holds_backup_key(keystore: Keystore, key_id: str, value: str) -> bool:
    """Whether the logged-in token holds a trusted backup key with this id and check value."""
    def look(s: Any) -> bool:
        return any(check_value(s, k) == value for k in _trusted_candidates(s, key_id))
    return bool(keystore.alone(look))


def backup_states(keystore: Keystore, key_ids: list[str]) -> dict[str, KeyBackupState]:
    """Whether each custody key is in the token and may leave it wrapped."""
    p = _pk()
    A, OC = p.Attribute, p.ObjectClass

    def look(s: Any) -> dict[str, KeyBackupState]:
        out = {}
        for kid in key_ids:
            objs = list(s.get_objects({A.CLASS: OC.PRIVATE_KEY, A.ID: bytes.fromhex(kid)}))
            if len(objs) != 1:
                out[kid] = KeyBackupState(kid, False, False, False)
                continue
            o = objs[0]
            out[kid] = KeyBackupState(kid, True, bool(o[A.EXTRACTABLE]),
                                      bool(o[A.WRAP_WITH_TRUSTED]))
        return out
    return dict(keystore.alone(look))


WRAP_BATCH = 32  # keys wrapped per HSM call (each call is bounded by the keystore's timeout)


def wrap_keys(keystore: Keystore, key: Any, key_ids: list[str]) -> dict[str, bytes]:
    """Every key of ``key_ids`` wrapped (CKM_AES_KEY_WRAP_PAD) under the approved backup key
    ``key`` (an authority.BackupKey), which each call finds again and checks before it wraps."""
    p = _pk()
    OC, M = p.ObjectClass, p.Mechanism
    out: dict[str, bytes] = {}

    def wrap(batch: list[str]) -> Callable[[Any], None]:
        def run(s: Any) -> None:
            bk = approved_backup_key(s, key)
            for kid in batch:
                priv = s.get_key(object_class=OC.PRIVATE_KEY, id=bytes.fromhex(kid))
                out[kid] = bytes(bk.wrap_key(priv, mechanism=M.AES_KEY_WRAP_PAD))
        return run

    for i in range(0, len(key_ids), WRAP_BATCH):
        keystore.alone(wrap(key_ids[i:i + WRAP_BATCH]))
    return out


def _ec_params() -> bytes:
    from pkcs11.util.ec import encode_named_curve_parameters

    return bytes(encode_named_curve_parameters(SECP256K1_OID))


def _proves(key: Any, public_key: bytes) -> bool:
    """Whether private key object ``key`` signs a fresh digest verifiably under
    ``public_key`` (the public-key check of a restored key)."""
    p = _pk()
    digest = hashlib.sha256(b"signerd-backup-restore-check\n" + secrets.token_bytes(32)).digest()
    sig = bytes(key.sign(digest, mechanism=p.Mechanism.ECDSA))
    if len(sig) != 64:
        return False
    r, s_ = int.from_bytes(sig[:32], "big"), normalize_s(int.from_bytes(sig[32:], "big"))
    der = coincurve.ecdsa.cdata_to_der(coincurve.ecdsa.deserialize_compact(
        r.to_bytes(32, "big") + s_.to_bytes(32, "big")))
    try:
        return bool(coincurve.PublicKey(public_key).verify(der, digest, hasher=None))
    except ValueError:
        return False


class BackupToken(Keystore):
    """A keystore that also acts as the token's security officer (the ceremony, and the restore
    into a new token), and imports wrapped keys. Used offline by ``signerctl backup``; the
    daemon never holds the SO-PIN."""

    def __init__(self, module: str, **kw: Any):
        super().__init__(module, **{**kw, "concurrency": "serialized", "pool_size": 1})

    def _load(self) -> None:
        """The module loaded and the token found, without logging in (a later :meth:`open`
        logs the user in on the same module)."""
        import pkcs11

        if self._lib is None:
            try:
                self._lib = pkcs11.lib(self.module)
            except pkcs11.exceptions.PKCS11Error as e:
                raise self._init_failed(e) from None
            _INITIALISED.setdefault(self.module, self.concurrency)
        self._token = self._find_token()

    @contextlib.contextmanager
    def security_officer(self, so_pin: str) -> Iterator[Any]:
        """A read-write session logged in as the token's security officer (the user's sessions
        of this process are closed first: PKCS#11 logs a process in as one of them at a time)."""
        import pkcs11

        with self._state_lock, self._alone():
            self._close_sessions()
            self._set_up(False, quiet=True)
            self._load()
            try:
                session = self._token.open(rw=True, so_pin=so_pin)
            except pkcs11.exceptions.PinIncorrect:
                raise ConfigError("the token refused the security officer's PIN") from None
            except pkcs11.exceptions.PinLocked:
                raise ConfigError("the security officer's PIN of this token is locked") from None
            try:
                yield session
            finally:
                session.close()

    def check_value_of(self, so_pin: str, key: bytearray) -> str:
        """The check value of ``key``, computed by the token on a session copy of it (nothing is
        installed): the ceremony writes the shares before it installs the key."""
        A = _pk().Attribute
        with self.security_officer(so_pin) as s:
            probe = s.create_object({**_backup_key_template(b"probe", "probe", bytes(key)),
                                     A.TOKEN: False, A.TRUSTED: False, A.DESTROYABLE: True})
            try:
                return check_value(s, probe)
            finally:
                probe.destroy()

    def install_backup_key(self, so_pin: str, key: bytearray, key_id: bytes,
                           label: str = BACKUP_KEY_LABEL, *, expect: str = "") -> str:
        """Install ``key`` as the token's trusted backup key (as the security officer) and return
        its check value, computed by the token on a session copy first. With ``expect`` (a
        restore), a key whose check value differs is refused before anything is installed. A
        trusted key with this id and the same check value already there is kept (a restore
        run again)."""
        A = _pk().Attribute
        with self.security_officer(so_pin) as s:
            value = bytes(key)
            probe = s.create_object({**_backup_key_template(key_id, label, value),
                                     A.TOKEN: False, A.TRUSTED: False, A.DESTROYABLE: True})
            try:
                wanted = check_value(s, probe)
            finally:
                probe.destroy()
            if expect and wanted != expect:
                raise BK.BackupRefused("the shares do not rebuild the backup key of this "
                                       "bundle's ceremony (its check value differs): nothing "
                                       "was restored")
            for k in _trusted_candidates(s, key_id.hex()):
                if check_value(s, k) == wanted:
                    return wanted
            installed = s.create_object(_backup_key_template(key_id, label, value))
            return check_value(s, installed)

    def restore_keys(self, bundle: BK.Bundle, key: bytearray,
                     progress: Callable[[str], None] = lambda _m: None) -> list[str]:
        """Import every key of ``bundle`` into this (logged-in) token, or none.

        ``key`` (the rebuilt backup key) must have the ceremony's check value, computed by the
        token on a session copy of it. Each wrapped key is unwrapped first as a session object
        and must sign a fresh digest that verifies under the bundle's public key; only when
        all have, are they unwrapped again as token objects (the same attributes as keys
        generated here: sensitive, extractable only wrapped under a trusted key), checked
        again, their public keys stored beside them, and the genesis pin and the ledger's
        anchor written. Any failure destroys what this call created. Returns what it did."""
        p = _pk()
        A, OC, KT, M = p.Attribute, p.ObjectClass, p.KeyType, p.Mechanism
        ceremony = bundle.ceremony
        done: list[str] = []

        def run(s: Any) -> None:
            unwrapper = s.create_object({
                A.CLASS: OC.SECRET_KEY, A.KEY_TYPE: KT.AES, A.TOKEN: False, A.PRIVATE: True,
                A.SENSITIVE: True, A.EXTRACTABLE: False, A.WRAP: True, A.UNWRAP: True,
                A.ENCRYPT: False, A.DECRYPT: False, A.VALUE: bytes(key)})
            created: list[Any] = []
            try:
                if check_value(s, unwrapper) != ceremony["check_value"]:
                    raise BK.BackupRefused(
                        f"the shares do not rebuild backup key {ceremony['ceremony_id']} (its "
                        "check value differs): nothing was restored")
                present = self._present(s, bundle)

                def unwrap(k: BK.BundleKey, token: bool) -> Any:
                    template = {A.ENCRYPT: p.DEFAULT, A.VERIFY: p.DEFAULT, A.WRAP: p.DEFAULT,
                                **_private_key_attributes(A), A.TOKEN: token,
                                A.DECRYPT: False, A.UNWRAP: False,
                                A.ID: bytes.fromhex(k.key_id), A.LABEL: k.label}
                    try:
                        obj = unwrapper.unwrap_key(OC.PRIVATE_KEY, KT.EC, k.wrapped,
                                                   mechanism=M.AES_KEY_WRAP_PAD,
                                                   template=template)
                    except p.exceptions.PKCS11Error:
                        raise BK.BackupRefused(
                            f"key {k.key_id} ({k.label}) does not unwrap under the backup key: "
                            "nothing was restored") from None
                    if token:
                        created.append(obj)
                    if obj[A.EC_PARAMS] != _ec_params() or not _proves(obj, k.public_key):
                        if not token:
                            obj.destroy()
                        raise BK.BackupRefused(
                            f"key {k.key_id} ({k.label}) does not match its public key "
                            f"{k.public_key.hex()} in the bundle: nothing was restored")
                    return obj

                todo = [k for k in bundle.keys if k.key_id not in present]
                for k in todo:  # first as session objects: all must prove their public key
                    unwrap(k, False).destroy()
                progress(f"{len(todo)} keys unwrapped and checked against their public keys")
                for k in todo:
                    unwrap(k, True)
                    pub65 = coincurve.PublicKey(k.public_key).format(compressed=False)
                    created.append(s.create_object({
                        A.CLASS: OC.PUBLIC_KEY, A.KEY_TYPE: KT.EC,
                        **_public_key_attributes(A, bytes.fromhex(k.key_id), k.label),
                        A.EC_PARAMS: _ec_params(), A.EC_POINT: b"\x04\x41" + pub65}))
                    done.append(f"restored {k.use} key {k.key_id} ({k.label})"
                                + (f" of wallet(s) {', '.join(k.wallets)}" if k.wallets else ""))
                done.extend(f"already held: key {kid}" for kid in sorted(present))
            except BaseException:
                for obj in reversed(created):
                    try:
                        obj.destroy()
                    except p.exceptions.PKCS11Error:
                        pass
                raise
            finally:
                unwrapper.destroy()

        self.alone(run)
        pins = set(self.read_data(GENESIS_LABEL))
        if pins - {bundle.genesis}:
            raise FailedPrecondition("the token pins another genesis: it is not this "
                                     "instance's token")
        if not pins:
            self.create_data(GENESIS_LABEL, bundle.genesis)
            done.append("genesis pinned in the token")
        seq, head = bundle.ledger
        if Anchors(self, bundle.instance_id).advance_ledger(seq, head):
            done.append(f"ledger anchored at entry {seq} (the store must reach it)")
        return done

    def _present(self, s: Any, bundle: BK.Bundle) -> set[str]:
        """The bundle's keys the token holds already with the same public key (a restore run
        again); a key id held with another public key is refused."""
        p = _pk()
        A, OC = p.Attribute, p.ObjectClass
        present = set()
        for k in bundle.keys:
            privs = list(s.get_objects({A.CLASS: OC.PRIVATE_KEY, A.ID: bytes.fromhex(k.key_id)}))
            pubs = list(s.get_objects({A.CLASS: OC.PUBLIC_KEY, A.ID: bytes.fromhex(k.key_id)}))
            if not privs and not pubs:
                continue
            if (len(privs) == 1 and len(pubs) == 1
                    and _decode_ec_point(pubs[0][A.EC_POINT]) == k.public_key):
                present.add(k.key_id)
                continue
            raise BK.BackupRefused(f"the token already holds another key with id {k.key_id}: "
                                   "restore into a fresh token; nothing was restored")
        return present
