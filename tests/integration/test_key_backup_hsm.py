"""What a SoftHSM 2.6 token enforces for the key backup, against a real token of its own: a
custody key never leaves it in plaintext nor wrapped under a key that is not trusted; only the
security officer makes a key trusted; signerd wraps only under the trusted key with the approved
check value, whatever else the security officer installed; the backup key can be neither
changed, destroyed, nor used to unwrap or decrypt."""
from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path
from typing import Any, Iterator

import coincurve
import pkcs11
import pytest
from cryptography.hazmat.primitives.keywrap import (InvalidUnwrap, aes_key_unwrap_with_padding,
                                                    aes_key_wrap_with_padding)
from cryptography.hazmat.primitives.serialization import (Encoding, PublicFormat,
                                                          load_der_private_key)
from pkcs11 import Attribute as A
from pkcs11 import KeyType as KT
from pkcs11 import Mechanism as M
from pkcs11 import ObjectClass as OC

from signerd.adapters import hsm
from signerd.adapters import hsm_backup as HB
from signerd.core import authority as AU
from signerd.core import backup as BK
from signerd.core.errors import FailedPrecondition, HsmUnavailable

pytestmark = pytest.mark.integration

PIN, SO_PIN = "1234", "so-5678"
KEY_ID = bytes.fromhex("00112233445566778899aabbccddeeff")


@pytest.fixture(scope="module")
def token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HB.BackupToken]:
    from signerd.daemon import find_softhsm_module

    base = tmp_path_factory.mktemp("hsm-backup")
    (base / "tokens").mkdir()
    conf = base / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {base / 'tokens'}\nobjectstore.backend = file\n"
                    "log.level = ERROR\nslots.removable = false\n")
    env = {"SOFTHSM2_CONF": str(conf)}
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "backup-test",
                    "--so-pin", SO_PIN, "--pin", PIN], check=True, capture_output=True,
                   env=dict(os.environ, **env))
    pin = base / "pin"
    pin.write_text(PIN)
    pin.chmod(0o600)
    # SoftHSM reads its token folder when the module is initialised (see test_hsm_keystore).
    hsm._INITIALISED.pop(find_softhsm_module(), None)
    t = HB.BackupToken(find_softhsm_module(), token_label="backup-test", pin_file=pin, env=env)
    t.open()
    yield t
    t.close()


def obj(t: HB.BackupToken, object_class: Any, key_id: str) -> Any:
    return t.alone(lambda s: s.get_key(object_class=object_class, id=bytes.fromhex(key_id)))


def approved(key_id: bytes, value: str) -> AU.BackupKey:
    return AU.BackupKey("c_" + key_id.hex()[:16], value, key_id.hex(), 2, (), "p_x", {})


def test_a_custody_key_leaves_the_token_neither_in_plaintext_nor_under_an_untrusted_key(
        token: HB.BackupToken) -> None:
    generated = token.generate_key("custody-generated")
    imported = token.import_key(bytearray(secrets.token_bytes(31) + b"\x01"), "custody-imported")
    for info in (generated, imported):
        priv = obj(token, OC.PRIVATE_KEY, info.key_id)
        assert (priv[A.SENSITIVE], priv[A.EXTRACTABLE], priv[A.WRAP_WITH_TRUSTED],
                priv[A.DERIVE]) == (True, True, True, False)
        with pytest.raises(pkcs11.exceptions.AttributeSensitive):
            priv[A.VALUE]

        def untrusted(s: Any) -> Any:
            mine = s.create_object({A.CLASS: OC.SECRET_KEY, A.KEY_TYPE: KT.AES, A.TOKEN: False,
                                    A.VALUE: secrets.token_bytes(32), A.WRAP: True})
            for mech in (M.AES_KEY_WRAP_PAD, M.AES_KEY_WRAP):
                with pytest.raises(pkcs11.exceptions.KeyNotWrappable):
                    mine.wrap_key(priv, mechanism=mech)
            # The user PIN cannot make a key trusted, nor create one.
            with pytest.raises(pkcs11.exceptions.AttributeReadOnly):
                mine[A.TRUSTED] = True
            with pytest.raises(pkcs11.exceptions.AttributeReadOnly):
                s.create_object({A.CLASS: OC.SECRET_KEY, A.KEY_TYPE: KT.AES, A.TOKEN: False,
                                 A.TRUSTED: True, A.VALUE: secrets.token_bytes(32),
                                 A.WRAP: True})
            # Nor can the custody key be made plaintext-exportable or trust-free.
            with pytest.raises(pkcs11.exceptions.AttributeReadOnly):
                priv[A.SENSITIVE] = False
            with pytest.raises(pkcs11.exceptions.AttributeReadOnly):
                priv[A.WRAP_WITH_TRUSTED] = False
        token.alone(untrusted)


def test_signerd_wraps_only_under_the_trusted_key_with_the_approved_check_value(
        token: HB.BackupToken) -> None:
    custody = token.generate_key("custody-wrap")
    good = BK.new_backup_key()
    good_value = aes_key_wrap_with_padding(bytes(good), BK.CHECK_KEY).hex()
    # The security officer installs a trusted key of their own under the id the governance
    # approved (before the approved key is there): nothing is wrapped under it.
    evil = BK.new_backup_key()
    evil_value = token.install_backup_key(SO_PIN, evil, KEY_ID, HB.BACKUP_KEY_LABEL)
    token.open()
    assert evil_value != good_value
    with pytest.raises(FailedPrecondition, match="holds no trusted backup key with the check "
                                                 "value that the governance approved"):
        HB.wrap_keys(token, approved(KEY_ID, good_value), [custody.key_id])
    # With the approved key installed beside it, the wraps are under the approved key only.
    assert token.install_backup_key(SO_PIN, good, KEY_ID, HB.BACKUP_KEY_LABEL) == good_value
    token.open()
    wrapped = HB.wrap_keys(token, approved(KEY_ID, good_value), [custody.key_id])
    blob = wrapped[custody.key_id]
    with pytest.raises(InvalidUnwrap):
        aes_key_unwrap_with_padding(bytes(evil), blob)
    priv = load_der_private_key(aes_key_unwrap_with_padding(bytes(good), blob), None)
    assert priv.public_key().public_bytes(Encoding.X962,
                                          PublicFormat.CompressedPoint) == custody.public_key
    assert HB.holds_backup_key(token, KEY_ID.hex(), good_value)


def test_the_backup_key_cannot_be_changed_destroyed_or_used_to_unwrap(
        token: HB.BackupToken) -> None:
    key = BK.new_backup_key()
    kid = secrets.token_bytes(8)
    value = token.install_backup_key(SO_PIN, key, kid)
    token.open()
    assert value == aes_key_wrap_with_padding(bytes(key), BK.CHECK_KEY).hex()

    def attempts(s: Any) -> None:
        (bk,) = [o for o in s.get_objects({A.CLASS: OC.SECRET_KEY, A.ID: kid})]
        assert (bk[A.TRUSTED], bk[A.PRIVATE], bk[A.SENSITIVE], bk[A.EXTRACTABLE],
                bk[A.UNWRAP], bk[A.DECRYPT], bk[A.ENCRYPT]) == (
                    True, False, True, False, False, False, False)
        with pytest.raises(pkcs11.exceptions.AttributeSensitive):
            bk[A.VALUE]
        for change in (lambda: bk.__setitem__(A.LABEL, "mine"),
                       lambda: bk.__setitem__(A.UNWRAP, True), bk.destroy):
            with pytest.raises(pkcs11.exceptions.PKCS11Error):  # CKR_ACTION_PROHIBITED
                change()
        # python-pkcs11 gives an object no unwrap or encrypt method without the attribute
        assert not hasattr(bk, "unwrap_key") and not hasattr(bk, "encrypt")
    token.alone(attempts)


def test_a_key_made_before_is_never_exportable_and_is_reported(token: HB.BackupToken) -> None:
    """A key made non-extractable (as every key was before the backup) stays so: the token
    refuses to wrap it even under the trusted key, and the backup reports it as not backed up."""
    old = token.generate_key("custody-old")
    priv = obj(token, OC.PRIVATE_KEY, old.key_id)
    token.alone(lambda s: priv.__setitem__(A.EXTRACTABLE, False))
    with pytest.raises(HsmUnavailable, match="AttributeReadOnly"):
        token.alone(lambda s: priv.__setitem__(A.EXTRACTABLE, True))
    token.open()  # a refused call marks the keystore down; this one reconnects
    states = HB.backup_states(token, [old.key_id, "ab" * 16])
    assert not states[old.key_id].capable and states[old.key_id].present
    assert not states["ab" * 16].present
    key = BK.new_backup_key()
    value = token.install_backup_key(SO_PIN, key, KEY_ID, HB.BACKUP_KEY_LABEL)
    token.open()
    with pytest.raises(HsmUnavailable, match="KeyUnextractable"):
        HB.wrap_keys(token, approved(KEY_ID, value), [old.key_id])
    token.open()


def test_a_restored_key_proves_its_public_key_and_a_wrong_one_restores_nothing(
        token: HB.BackupToken, tmp_path: Path) -> None:
    """restore_keys on this token: a bundle whose public key does not match its wrapped key is
    refused after the session-object check, and no key is left behind."""
    key = BK.new_backup_key()
    kid = secrets.token_bytes(8)
    value = token.install_backup_key(SO_PIN, key, kid)
    token.open()
    secret = secrets.token_bytes(31) + b"\x02"
    blob = aes_key_wrap_with_padding(bytes(key), _pkcs8(secret))
    wrong_pub = coincurve.PrivateKey(b"\x03" * 32).public_key.format()
    ceremony = {"format": BK.CEREMONY_FORMAT, "ceremony_id": "c_" + kid.hex(),
                "instance_id": "x", "created_at": 0, "threshold": 2,
                "custodians": [{"operator_id": "a", "fingerprint": "f1", "index": 1},
                               {"operator_id": "b", "fingerprint": "f2", "index": 2}],
                "key_id": kid.hex(), "key_label": HB.BACKUP_KEY_LABEL, "check_value": value,
                "mechanism": BK.MECHANISM}
    kid_hex = secrets.token_hex(16)
    body = {"ceremony": ceremony, "mechanism": BK.MECHANISM, "instance_id": "x",
            "ledger": {"seq": 1, "hash": "00" * 32}, "genesis": "00" * 32,
            "keys": [BK.bundle_key_json(kid_hex, "restored", wrong_pub, "audit", (), blob)]}
    bundle = BK.Bundle(body, "d", BK._bundle_keys({**body, "wallets": [], "not_backed_up": []}))
    with pytest.raises(BK.BackupRefused, match="does not match its public key"):
        token.restore_keys(bundle, key)
    assert token.held_public_key(kid_hex) == b""
    assert not token.alone(lambda s: list(s.get_objects({A.CLASS: OC.PRIVATE_KEY,
                                                         A.ID: bytes.fromhex(kid_hex)})))
    # The same bundle with the right public key restores it, and the key signs.
    right = coincurve.PrivateKey(secret).public_key.format()
    body["keys"] = [BK.bundle_key_json(kid_hex, "restored", right, "audit", (), blob)]
    bundle = BK.Bundle(body, "d", BK._bundle_keys({**body, "wallets": [], "not_backed_up": []}))
    done = token.restore_keys(bundle, key)
    assert any(kid_hex in line for line in done)
    assert token.public_key(kid_hex) == right
    token.sign_digest(kid_hex, b"\x11" * 32)  # verified against the public key inside


def _pkcs8(secret: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    priv = ec.derive_private_key(int.from_bytes(secret, "big"), ec.SECP256K1())
    return priv.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
