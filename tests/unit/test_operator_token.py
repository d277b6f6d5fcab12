"""The operator-token edge without a token: RFC 7512 key URIs, the PIN source, one login per
command, and public keys read from token attributes."""
from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pkcs11 import KeyType as CKK
from pkcs11 import exceptions as px

from signerd.adapters import operator_token as ot
from signerd.core import operator_keys
from signerd.core.errors import InvalidArgument
from signerd.core.operator_keys import KeyType


def test_a_key_uri_names_a_token_and_a_key() -> None:
    u = ot.parse_key_uri("pkcs11:token=alice%20card;object=alice;id=%01%02"
                         "?pin-source=file:/home/alice/pin&module-path=/usr/lib/opensc.so")
    assert (u.token, u.object, u.id, u.pin_source, u.module_path) == (
        "alice card", "alice", b"\x01\x02", "file:/home/alice/pin", "/usr/lib/opensc.so")
    # pin-source in the path, as some tools write it
    assert ot.parse_key_uri("pkcs11:token=t;object=o;pin-source=file:p").pin_source == "file:p"
    assert ot.parse_key_uri("pkcs11:serial=1234;id=%09%0a").serial == "1234"


@pytest.mark.parametrize("uri,needle", [
    ("pkcs11:token=t;object=o?pin-value=1234", "pin-value is refused"),
    ("pkcs11:token=t;object=o;pin-value=1234", "pin-value is refused"),
    ("pkcs11:token=t;object=o?module-name=opensc", "module-name is not supported"),
    ("pkcs11:token=t;object=o;slot-id=3", "unsupported path attribute 'slot-id'"),
    ("pkcs11:token=t;object=o;type=public", "type=public: an operator signs with a private key"),
    ("pkcs11:object=o", "name the token"),
    ("pkcs11:token=t", "name the key"),
    ("pkcs11:token=t;token=u;object=o", "given twice"),
    ("pkcs11:token;object=o", "without '='"),
    ("/home/alice/alice.key", "pkcs11: URI"),
])
def test_bad_key_uris_are_named(uri: str, needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle) as e:
        ot.parse_key_uri(uri)
    assert "1234" not in str(e.value)


def test_the_pin_file(tmp_path) -> None:
    pin = tmp_path / "pin"
    pin.write_text("4321\n")
    pin.chmod(0o600)
    assert ot.read_pin_source(f"file:{pin}") == "4321"
    assert ot.read_pin_source(f"file://{pin}") == "4321"
    pin.chmod(0o640)
    with pytest.raises(ot.TokenError, match="chmod 600"):
        ot.read_pin_source(f"file:{pin}")
    with pytest.raises(ot.TokenError, match="cannot open the PIN file"):
        ot.read_pin_source(f"file:{tmp_path / 'none'}")
    with pytest.raises(InvalidArgument, match="only file:PATH"):
        ot.read_pin_source("exec:/bin/echo")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
    with pytest.raises(ot.TokenError, match="is empty"):
        ot.read_pin_source(f"file:{empty}")


class FakeToken:
    """A token whose user PIN is ``pin``; counts the logins tried."""

    def __init__(self, pin: str, flags: int = 0):
        self.pin = pin
        self.flags = flags
        self.logins = 0

    def open(self, user_pin: str, rw: bool = False) -> object:
        self.logins += 1
        if user_pin != self.pin:
            raise px.PinIncorrect()
        return object()


def test_one_login_per_command_never_retried(tmp_path) -> None:
    """A wrong PIN fails the command after one C_Login: the PIN is not asked again nor tried
    again, so a card that locks after a few wrong PINs is not locked by signerctl."""
    asked: list[str] = []

    def pin_for(prompt: str) -> str:
        asked.append(prompt)
        return "0000"

    token = FakeToken("1234")
    uri = ot.parse_key_uri("pkcs11:token=card;object=alice")
    with pytest.raises(ot.TokenError, match="wrong PIN for token 'card'.*not tried again") as e:
        ot._login(token, uri, pin_for)
    assert e.value.reason == "TOKEN_PIN_INCORRECT"
    assert (token.logins, len(asked)) == (1, 1)
    locked = FakeToken("1234", flags=ot.CKF_USER_PIN_LOCKED)
    with pytest.raises(ot.TokenError, match="locked") as e:
        ot._login(locked, uri, pin_for)
    assert locked.logins == 0 and e.value.reason == "TOKEN_PIN_LOCKED"
    assert ot._login(FakeToken("0000"), uri, pin_for) is not None


def test_public_keys_from_token_attributes() -> None:
    p256 = operator_keys.generate(KeyType.P256).public_key()
    point = p256.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    for wrapped in (b"\x04\x41" + point, point):  # DER OCTET STRING, or bare
        key = ot.public_key_from(CKK.EC, ot.P256_PARAMS, wrapped)
        assert operator_keys.spki_digest(key) == operator_keys.spki_digest(p256)
    ed = operator_keys.generate(KeyType.ED25519).public_key()
    raw = ed.public_bytes(Encoding.Raw, PublicFormat.Raw)
    for params in ot.ED25519_PARAMS:
        key = ot.public_key_from(CKK.EC_EDWARDS, params, b"\x04\x20" + raw)
        assert operator_keys.key_type(key) is KeyType.ED25519
    with pytest.raises(ot.TokenError, match="neither P-256 nor Ed25519"):
        ot.public_key_from(CKK.EC, bytes.fromhex("06052b8104000a"), b"\x04\x41" + point)
    with pytest.raises(ot.TokenError, match="neither P-256 nor Ed25519"):
        ot.public_key_from(CKK.RSA, b"", b"")
