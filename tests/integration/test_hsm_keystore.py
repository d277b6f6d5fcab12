"""The keystore against a real SoftHSM token: sensitive keys, low-S signatures, restarts,
and concurrent use from many threads."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
from pathlib import Path

import coincurve
import pytest

from signerd.core.errors import ConfigError, InvalidArgument
from signerd.adapters.hsm import SECP256K1_N, Keystore, read_pin_file
from tests.support.daemon import init_state

N_HALF = SECP256K1_N // 2


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from signerd.adapters import hsm
    from signerd.daemon import find_softhsm_module

    # SoftHSM reads its token folder when the module is initialised: an in-process test before
    # this one may have initialised it for its own folder, so have the first keystore here
    # initialise it again (as the other in-process tests do).
    hsm._INITIALISED.pop(find_softhsm_module(), None)
    return init_state(tmp_path_factory.mktemp("hsm") / "state").parent


def keystore(state: Path, **kw) -> Keystore:
    from signerd.daemon import find_softhsm_module

    return Keystore(find_softhsm_module(), token_label="signerd", pin_file=state / "hsm" / "pin",
                    env={"SOFTHSM2_CONF": str(state / "hsm" / "softhsm2.conf")}, **kw)


def verify(pub: bytes, digest: bytes, r: int, s: int) -> bool:
    der = coincurve.ecdsa.cdata_to_der(coincurve.ecdsa.deserialize_compact(
        r.to_bytes(32, "big") + s.to_bytes(32, "big")))
    return coincurve.PublicKey(pub).verify(der, digest, hasher=None)


def test_generated_key_is_sensitive_and_extractable_only_wrapped_under_a_trusted_key(
        state: Path) -> None:
    import pkcs11
    from pkcs11 import Attribute, ObjectClass

    ks = keystore(state)
    ks.open()
    info = ks.generate_key("extract-test")
    with ks._session() as s:
        key = s.get_key(object_class=ObjectClass.PRIVATE_KEY, id=bytes.fromhex(info.key_id))
        assert key[Attribute.SENSITIVE] is True
        # Extractable only wrapped under a trusted key (the key backup): see
        # test_key_backup_hsm.py for the wraps the token refuses.
        assert key[Attribute.EXTRACTABLE] is True
        assert key[Attribute.WRAP_WITH_TRUSTED] is True
        assert key[Attribute.DERIVE] is False
        assert key[Attribute.SIGN] is True
        assert key[Attribute.TOKEN] is True
        with pytest.raises(pkcs11.exceptions.AttributeSensitive):
            key[Attribute.VALUE]
    ks.close()
    # pkcs11-tool (OpenSC), an independent PKCS#11 client, lists the key on the same token.
    tool = shutil.which("pkcs11-tool")
    if tool is None:
        pytest.skip("pkcs11-tool (opensc) not installed")
    r = subprocess.run(
        [tool, "--module", ks.module, "--token-label", "signerd", "--list-objects",
         "--type", "privkey", "--login", "--pin",
         read_pin_file(state / "hsm" / "pin")],
        env=dict(os.environ, SOFTHSM2_CONF=str(state / "hsm" / "softhsm2.conf")),
        capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "extract-test" in r.stdout
    assert info.key_id in r.stdout.replace(" ", "").lower() or "ID:" in r.stdout


def test_200_signatures_verify_and_are_low_s(state: Path) -> None:
    ks = keystore(state)
    ks.open()
    info = ks.generate_key("sig-test")
    for i in range(200):
        digest = hashlib.sha256(os.urandom(32) + bytes([i])).digest()
        r, s = ks.sign_digest(info.key_id, digest)
        assert 0 < s <= N_HALF
        assert verify(info.public_key, digest, r, s)
    ks.close()


def test_sign_refuses_anything_but_32_bytes(state: Path) -> None:
    ks = keystore(state)
    ks.open()
    info = ks.generate_key("len-test")
    for bad in (b"", b"\x01" * 31, b"\x01" * 33, b"\x01" * 64):
        with pytest.raises(InvalidArgument, match="32-byte"):
            ks.sign_digest(info.key_id, bad)
    ks.close()


def test_key_survives_a_restart(state: Path) -> None:
    ks = keystore(state)
    ks.open()
    info = ks.generate_key("restart-test")
    ks.close()
    ks2 = keystore(state)  # new keystore object, same process: new login, key found by CKA_ID
    ks2.open()
    assert ks2.public_key(info.key_id) == info.public_key
    digest = hashlib.sha256(b"after restart").digest()
    assert verify(info.public_key, digest, *ks2.sign_digest(info.key_id, digest))
    ks2.close()
    # And from another process entirely.
    code = (
        "import sys,hashlib; sys.path.insert(0,'.');"
        "from tests.integration.test_hsm_keystore import keystore, verify;"
        "from pathlib import Path; ks=keystore(Path(sys.argv[1])); ks.open();"
        "d=hashlib.sha256(b'x').digest(); r,s=ks.sign_digest(sys.argv[2], d);"
        "assert verify(ks.public_key(sys.argv[2]), d, r, s); print('ok')")
    r = subprocess.run([os.sys.executable, "-c", code, str(state), info.key_id],
                       capture_output=True, text=True, timeout=60,
                       cwd=Path(__file__).resolve().parents[2])
    assert r.stdout.strip() == "ok", r.stderr


def test_wrong_pin_is_refused_naming_the_file_not_the_pin(state: Path, tmp_path: Path) -> None:
    bad = tmp_path / "pin"
    bad.write_text("not-the-pin-1234\n")
    bad.chmod(0o600)
    from signerd.daemon import find_softhsm_module

    ks = Keystore(find_softhsm_module(), token_label="signerd", pin_file=bad,
                  env={"SOFTHSM2_CONF": str(state / "hsm" / "softhsm2.conf")})
    with pytest.raises(ConfigError) as e:
        ks.open()
    assert str(bad) in e.value.message
    assert "not-the-pin-1234" not in e.value.message


def test_pin_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "pin"
    p.write_text("1234\n")
    p.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by group or others"):
        read_pin_file(p)


@pytest.mark.parametrize("mode", ["os-locking", "serialized"])
def test_sixteen_threads_sign_and_generate_at_once(state: Path, mode: str) -> None:
    ks = keystore(state, concurrency=mode, pool_size=4)
    ks.open()
    assert ks.concurrency == mode
    keys = [ks.generate_key(f"conc-{mode}-{i}") for i in range(4)]
    errors: list[BaseException] = []
    made: list[str] = []

    def worker(n: int) -> None:
        try:
            for j in range(40):
                k = keys[(n + j) % len(keys)]
                d = hashlib.sha256(f"{n}-{j}".encode()).digest()
                r, s = ks.sign_digest(k.key_id, d)
                assert verify(k.public_key, d, r, s)
                if j % 20 == 0:
                    made.append(ks.generate_key(f"conc-{mode}-{n}-{j}").key_id)
                ks.list_keys() if j == 7 else None
        except BaseException as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert len(made) == 32 and len(set(made)) == 32
    ks.close()
