"""An operator's own key on a PKCS#11 token or smartcard (not the daemon's HSM), named by an
RFC 7512 URI: ``pkcs11:token=alice-card;object=alice?pin-source=file:alice.pin``.

signerctl signs approval statements with it and ``operator keygen --pkcs11`` makes it there.
The key is generated on the token (CKA_SENSITIVE, not CKA_EXTRACTABLE, CKA_PRIVATE, never
derivable) and used only through it:

- **P-256**: ``CKM_ECDSA`` over the 32-byte statement digest (never python-pkcs11's default
  ECDSA_SHA512, which would hash it again), the token's raw ``r || s`` turned into canonical DER
  (low S) as ``signerd.core.operator_keys`` verifies it;
- **Ed25519**: ``CKM_EDDSA`` over the digest.

Each signature is verified here against the key's public key before it is used.

The PIN comes from the file named by the URI's ``pin-source=file:PATH`` (owner-only, as a key
file) or is asked on the terminal; never from the command line (``pin-value`` is refused) or the
environment. ``C_Login`` is tried **once** per command: a wrong PIN is reported, never retried,
so a card that locks after a few wrong PINs is not locked by signerctl.

One process holds one python-pkcs11 library object per module path (``_lib``); signerctl is one
process per command and makes PKCS#11 calls from one thread.
"""
from __future__ import annotations

import getpass
import os
import secrets
import stat
import sys
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from signerd.core import operator_keys
from signerd.core.errors import FailedPrecondition, InvalidArgument
from signerd.core.operator_keys import KeyType, PublicKey

# Path attributes of RFC 7512 that select a token or an object; pin-source is a query
# attribute there, and is accepted in the path too (as some tools write it).
_PATH_ATTRS = frozenset({"token", "manufacturer", "model", "serial", "object", "id", "type",
                         "pin-source"})
_QUERY_ATTRS = frozenset({"pin-source", "module-path"})
MAX_PIN_FILE = 1024
CKF_TOKEN_INITIALIZED = 0x400
CKF_USER_PIN_COUNT_LOW = 0x10000
CKF_USER_PIN_FINAL_TRY = 0x20000
CKF_USER_PIN_LOCKED = 0x40000

# DER of the EC parameters a token may give its keys (CKA_EC_PARAMS).
P256_PARAMS = bytes.fromhex("06082a8648ce3d030107")  # OID 1.2.840.10045.3.1.7 (prime256v1)
ED25519_PARAMS = (
    bytes.fromhex("06032b6570"),  # OID 1.3.101.112 (id-Ed25519, RFC 8410)
    b"\x13\x0cedwards25519",  # PrintableString, as PKCS#11 3.0 allows
    bytes.fromhex("06092b06010401da470f01"),  # OID 1.3.6.1.4.1.11591.15.1 (GnuPG's Ed25519)
)


class TokenError(FailedPrecondition):
    """Something about the operator's token that the operator must fix (reason names it)."""

    reason = "OPERATOR_TOKEN"


@dataclass(frozen=True)
class KeyUri:
    """A parsed ``pkcs11:`` URI naming one key on one token."""

    text: str  # the URI as given, for messages (it holds no secret: pin-value is refused)
    token: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None
    object: str | None = None
    id: bytes | None = None
    pin_source: str | None = None
    module_path: str | None = None
    attrs: dict[str, str] = field(default_factory=dict, compare=False)

    def token_text(self) -> str:
        """The token as the URI names it: its label, and what else the URI names."""
        rest = [f"{k} {getattr(self, k)}" for k in ("manufacturer", "model", "serial")
                if getattr(self, k) is not None]
        label = repr(self.token) if self.token is not None else "(any label)"
        return label + (f" ({', '.join(rest)})" if rest else "")

    def object_text(self) -> str:
        parts = []
        if self.object is not None:
            parts.append(f"object={self.object}")
        if self.id is not None:
            parts.append(f"id={urllib.parse.quote_from_bytes(self.id, safe='')}")
        return ";".join(parts)


def is_uri(text: str) -> bool:
    return text.startswith("pkcs11:")


def parse_key_uri(uri: str) -> KeyUri:
    """An RFC 7512 URI naming a token (token, manufacturer, model, serial) and a key on it
    (object, id); InvalidArgument names what is wrong."""
    if not uri.startswith("pkcs11:"):
        raise InvalidArgument(f"a token key is named by a pkcs11: URI, got {uri!r}")
    body, _, query = uri[len("pkcs11:"):].partition("?")
    found: dict[str, str] = {}

    def take(part: str, allowed: frozenset[str], where: str) -> None:
        if not part:
            return
        name, eq, value = part.partition("=")
        name = urllib.parse.unquote(name)
        if not eq:
            raise InvalidArgument(f"key URI {uri}: {where} attribute without '=': {name!r}")
        if name == "pin-value":
            raise InvalidArgument(f"key URI: pin-value is refused: a PIN never goes on the "
                                  f"command line; name a PIN file (pin-source=file:PATH) or "
                                  f"let signerctl ask for the PIN")
        if name == "module-name":
            raise InvalidArgument(f"key URI {uri}: module-name is not supported; name the "
                                  "module's file with --pkcs11-module or module-path")
        if name not in allowed:
            raise InvalidArgument(f"key URI {uri}: unsupported {where} attribute {name!r} "
                                  f"(supported: {', '.join(sorted(allowed))})")
        if name in found:
            raise InvalidArgument(f"key URI {uri}: attribute {name!r} given twice")
        found[name] = value

    for part in body.split(";"):
        take(part, _PATH_ATTRS, "path")
    for part in query.split("&") if query else ():
        take(part, _QUERY_ATTRS, "query")
    text = {k: urllib.parse.unquote(v) for k, v in found.items() if k != "id"}
    if text.get("type", "private") != "private":
        raise InvalidArgument(f"key URI {uri}: type={text['type']}: an operator signs with a "
                              "private key (type=private, or leave type out)")
    if not any(k in text for k in ("token", "serial")):
        raise InvalidArgument(f"key URI {uri}: name the token (token=LABEL or serial=...)")
    key_id = urllib.parse.unquote_to_bytes(found["id"]) if "id" in found else None
    if "object" not in text and key_id is None:
        raise InvalidArgument(f"key URI {uri}: name the key (object=LABEL or id=...)")
    return KeyUri(text=uri, token=text.get("token"), manufacturer=text.get("manufacturer"),
                  model=text.get("model"), serial=text.get("serial"), object=text.get("object"),
                  id=key_id, pin_source=text.get("pin-source"),
                  module_path=text.get("module-path"), attrs=text)


def module_for(uri: KeyUri, option: str | None, configured: str | None) -> str:
    """The PKCS#11 module: --pkcs11-module, else the URI's module-path, else the config's."""
    module = option or uri.module_path or configured
    if not module:
        raise InvalidArgument(
            "which PKCS#11 module talks to the token? pass --pkcs11-module FILE (e.g. OpenSC's "
            "opensc-pkcs11.so), put module-path=FILE in the URI, or set [signerctl] "
            "pkcs11_module in the config")
    if not Path(module).is_file():
        raise TokenError(f"PKCS#11 module {module} does not exist", reason="TOKEN_MODULE")
    return module


def read_pin_source(source: str) -> str:
    """The PIN in the file that ``pin-source`` names (``file:PATH``, ``file:///PATH`` or a
    path): one line; the file owner-only, as a key file."""
    if source.startswith("file://"):
        path = urllib.parse.urlparse(source).path
    elif source.startswith("file:"):
        path = source[len("file:"):]
    elif ":" in source.split("/", 1)[0]:
        raise InvalidArgument(f"pin-source {source!r}: only file:PATH is supported")
    else:
        path = source
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise TokenError(f"cannot open the PIN file {path}: {e.strerror}",
                         reason="TOKEN_PIN_FILE") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise TokenError(f"PIN file {path} is not a regular file", reason="TOKEN_PIN_FILE")
        if st.st_mode & 0o077:
            raise TokenError(f"PIN file {path} is accessible by group or others (mode "
                             f"{stat.S_IMODE(st.st_mode):04o}); chmod 600 it",
                             reason="TOKEN_PIN_FILE")
        data = os.read(fd, MAX_PIN_FILE + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_PIN_FILE:
        raise TokenError(f"PIN file {path} is too large to hold a PIN", reason="TOKEN_PIN_FILE")
    try:
        pin = data.decode("utf-8").splitlines()[0] if data.strip() else ""
    except UnicodeDecodeError:
        raise TokenError(f"PIN file {path} is not UTF-8 text", reason="TOKEN_PIN_FILE") from None
    if not pin:
        raise TokenError(f"PIN file {path} is empty", reason="TOKEN_PIN_FILE")
    return pin


def ask_pin(prompt: str, stdin: TextIO | None = None) -> str:
    """The PIN asked on the terminal (not echoed); refused without one."""
    stdin = sys.stdin if stdin is None else stdin
    if stdin is None or not stdin.isatty():
        raise TokenError("no PIN: there is no terminal to ask on; name a PIN file in the URI "
                         "(pin-source=file:PATH)", reason="TOKEN_PIN_FILE")
    pin = getpass.getpass(prompt)
    if not pin:
        raise TokenError("no PIN given", reason="TOKEN_PIN_INCORRECT")
    return pin


_LIBS: dict[str, Any] = {}


def _lib(module: str) -> Any:
    """The process's one python-pkcs11 library object for ``module``."""
    import pkcs11
    from pkcs11 import exceptions as px

    if module not in _LIBS:
        try:
            _LIBS[module] = pkcs11.lib(module)
        except (px.PKCS11Error, OSError, RuntimeError) as e:
            raise TokenError(f"the PKCS#11 module {module} did not start ({type(e).__name__}), "
                             "so no token can be reached (is the card reader service running? "
                             "for SoftHSM: is SOFTHSM2_CONF's token folder there?)",
                             reason="TOKEN_ABSENT") from None
    return _LIBS[module]


def _find_token(lib: Any, uri: KeyUri) -> Any:
    from pkcs11 import exceptions as px

    try:
        slots = lib.get_slots(token_present=True)
        tokens = [t for t in (s.get_token() for s in slots)
                  if int(t.flags) & CKF_TOKEN_INITIALIZED]
    except px.PKCS11Error as e:
        raise TokenError(f"the PKCS#11 module could not list its tokens ({type(e).__name__})",
                         reason="TOKEN_ABSENT") from None
    wanted = {"label": uri.token, "manufacturer_id": uri.manufacturer, "model": uri.model,
              "serial": uri.serial}
    matches = []
    for t in tokens:
        have = {"label": t.label, "manufacturer_id": t.manufacturer_id, "model": t.model,
                "serial": t.serial.decode("ascii", "replace").strip()
                if isinstance(t.serial, bytes) else str(t.serial).strip()}
        if all(v is None or have[k].strip() == v for k, v in wanted.items()):
            matches.append(t)
    if not matches:
        present = ", ".join(repr(t.label) for t in tokens) or "none"
        raise TokenError(f"token {uri.token_text()} is not present (is the card inserted, the "
                         f"reader connected?); tokens present: {present}",
                         reason="TOKEN_ABSENT")
    if len(matches) > 1:
        raise TokenError(f"{len(matches)} tokens match {uri.token_text()}; name one (serial=...)",
                         reason="TOKEN_AMBIGUOUS")
    return matches[0]


def _login(token: Any, uri: KeyUri, pin_for: Callable[[str], str], *, rw: bool = False) -> Any:
    """A session logged in as the user: one C_Login, never retried."""
    from pkcs11 import exceptions as px

    flags = int(token.flags)
    name = uri.token_text()
    if flags & CKF_USER_PIN_LOCKED:
        raise TokenError(f"the user PIN of token {name} is locked (too many wrong PINs); "
                         "unblock it with the card's PUK or SO PIN", reason="TOKEN_PIN_LOCKED")
    if flags & CKF_USER_PIN_FINAL_TRY:
        sys.stderr.write(f"warning: token {name}: one PIN try left before the PIN locks\n")
    pin = (read_pin_source(uri.pin_source) if uri.pin_source
           else pin_for(f"PIN for token {name}: "))
    try:
        return token.open(user_pin=pin, rw=rw)
    except (px.PinIncorrect, px.PinInvalid, px.PinLenRange):
        left = (" (the token says few tries are left)"
                if int(token.flags) & (CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY) else "")
        raise TokenError(f"wrong PIN for token {name}{left}; not tried again, so the card is not "
                         "locked: check the PIN and run the command once more",
                         reason="TOKEN_PIN_INCORRECT") from None
    except px.PinLocked:
        raise TokenError(f"the user PIN of token {name} is locked (too many wrong PINs); "
                         "unblock it with the card's PUK or SO PIN",
                         reason="TOKEN_PIN_LOCKED") from None
    except px.PKCS11Error as e:
        raise TokenError(f"login to token {name} failed ({type(e).__name__})",
                         reason="TOKEN_LOGIN") from None


def _selector(uri: KeyUri) -> dict[Any, Any]:
    from pkcs11 import Attribute

    sel: dict[Any, Any] = {}
    if uri.object is not None:
        sel[Attribute.LABEL] = uri.object
    if uri.id is not None:
        sel[Attribute.ID] = uri.id
    return sel


def _unwrap_octets(value: bytes) -> bytes:
    """CKA_EC_POINT is a DER OCTET STRING on most tokens; some give the point bare."""
    if len(value) >= 2 and value[0] == 0x04:
        n = value[1]
        if n < 0x80 and len(value) == 2 + n:
            return value[2:]
        if n == 0x81 and len(value) >= 3 and len(value) == 3 + value[2]:
            return value[3:]
    return value


def public_key_from(key_type_attr: int, params: bytes, point: bytes) -> PublicKey:
    """A token key's public key from its CKA_KEY_TYPE, CKA_EC_PARAMS and CKA_EC_POINT."""
    from pkcs11 import KeyType as CKK

    raw = _unwrap_octets(point)
    if key_type_attr == CKK.EC and params == P256_PARAMS:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    if key_type_attr == CKK.EC_EDWARDS and params in ED25519_PARAMS and len(raw) == 32:
        return Ed25519PublicKey.from_public_bytes(raw)
    raise TokenError("the key on the token is neither P-256 nor Ed25519 (operator keys are "
                     f"{operator_keys.TYPES_TEXT})", reason="TOKEN_KEY_TYPE")


class TokenKey:
    """An operator's private key on a token, in a logged-in session (close it)."""

    def __init__(self, uri: KeyUri, session: Any, private: Any, public_key: PublicKey):
        self.uri = uri
        self._session = session
        self._private = private
        self.public_key = public_key
        self.key_type = operator_keys.key_type(public_key)

    @property
    def where(self) -> str:
        return f"the key {self.uri.object_text()} on token {self.uri.token_text()}"

    def sign_digest(self, digest: bytes) -> bytes:
        """The operator's signature over a 32-byte statement digest, verified before it is
        returned."""
        from pkcs11 import Mechanism
        from pkcs11 import exceptions as px

        if len(digest) != 32:
            raise InvalidArgument("a statement digest is 32 bytes")
        try:
            if self.key_type is KeyType.P256:
                signature = operator_keys.p256_from_raw(
                    self._private.sign(digest, mechanism=Mechanism.ECDSA))
            else:
                signature = self._private.sign(digest, mechanism=Mechanism.EDDSA)
        except px.PKCS11Error as e:
            raise TokenError(f"{self.where} did not sign ({type(e).__name__})",
                             reason="TOKEN_SIGN") from None
        if not operator_keys.verify(self.public_key, digest, bytes(signature)):
            raise TokenError(f"{self.where} made a signature that does not verify under its "
                             "public key", reason="TOKEN_SIGN")
        return bytes(signature)

    def close(self) -> None:
        from pkcs11 import exceptions as px

        if self._session is not None:
            session, self._session = self._session, None
            try:
                session.close()
            except px.PKCS11Error:  # the token went away: the session is gone with it
                pass


def open_key(uri: KeyUri, module: str, *, pin_for: Callable[[str], str] = ask_pin
             ) -> TokenKey:
    """Log in to the token (once) and find the one private key the URI names, with its public
    key (from the public key object beside it, or a certificate of the same id)."""
    from pkcs11 import Attribute, ObjectClass
    from pkcs11 import exceptions as px

    token = _find_token(_lib(module), uri)
    session = _login(token, uri, pin_for)
    try:
        sel = _selector(uri)
        try:
            found = list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, **sel}))
        except px.PKCS11Error as e:
            raise TokenError(f"could not search token {uri.token_text()} ({type(e).__name__})",
                             reason="TOKEN_KEY_NOT_FOUND") from None
        if not found:
            raise TokenError(f"no private key {uri.object_text()} on token {uri.token_text()} "
                             "(check object= or id= in the URI)", reason="TOKEN_KEY_NOT_FOUND")
        if len(found) > 1:
            raise TokenError(f"{len(found)} private keys match {uri.object_text()} on token "
                             f"{uri.token_text()}; name one (object= and id=)",
                             reason="TOKEN_KEY_AMBIGUOUS")
        private = found[0]
        public_key = _public_key_of(session, private)
        return TokenKey(uri, session, private, public_key)
    except BaseException:
        session.close()
        raise


def _public_key_of(session: Any, private: Any) -> PublicKey:
    from pkcs11 import Attribute, ObjectClass
    from pkcs11 import exceptions as px

    try:
        kid = private[Attribute.ID]
    except px.PKCS11Error:
        kid = None
    key_type_attr = int(private[Attribute.KEY_TYPE])
    sel: dict[Any, Any] = {Attribute.CLASS: ObjectClass.PUBLIC_KEY}
    if kid:
        sel[Attribute.ID] = kid
    else:
        sel[Attribute.LABEL] = private[Attribute.LABEL]
    publics = list(session.get_objects(sel))
    if len(publics) == 1:
        pub = publics[0]
        return public_key_from(key_type_attr, pub[Attribute.EC_PARAMS], pub[Attribute.EC_POINT])
    if kid:
        certs = list(session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE,
                                          Attribute.ID: kid}))
        if len(certs) == 1:
            key = x509.load_der_x509_certificate(certs[0][Attribute.VALUE]).public_key()
            if isinstance(key, (Ed25519PublicKey, ec.EllipticCurvePublicKey)):
                operator_keys.key_type(key)
                return key
    raise TokenError("the token holds no public key or certificate beside the private key "
                     "(same CKA_ID); signerctl cannot tell which key it is",
                     reason="TOKEN_KEY_NOT_FOUND")


def generate(uri: KeyUri, module: str, kind: KeyType, *,
             pin_for: Callable[[str], str] = ask_pin) -> TokenKey:
    """Generate an operator key pair on the token: the private key sensitive, never
    extractable, private (login needed to use it), for signing only; the public key beside it
    with the same label and id. Refuses a label or id that names an object already there."""
    from pkcs11 import Attribute, KeyType as CKK, Mechanism, ObjectClass
    from pkcs11 import exceptions as px

    if uri.object is None:
        raise InvalidArgument(f"key URI {uri.text}: name the new key (object=LABEL)")
    token = _find_token(_lib(module), uri)
    session = _login(token, uri, pin_for, rw=True)
    try:
        for sel in ({Attribute.LABEL: uri.object},
                    *(({Attribute.ID: uri.id},) if uri.id is not None else ())):
            if list(session.get_objects(sel)):
                raise TokenError(f"token {uri.token_text()} already holds an object "
                                 f"{uri.object_text()}; name the new key otherwise",
                                 reason="TOKEN_KEY_EXISTS")
        kid = uri.id if uri.id is not None else secrets.token_bytes(16)
        common = {Attribute.TOKEN: True, Attribute.LABEL: uri.object, Attribute.ID: kid}
        params = P256_PARAMS if kind is KeyType.P256 else ED25519_PARAMS[0]
        public_template = {**common, Attribute.PRIVATE: False, Attribute.VERIFY: True,
                           Attribute.EC_PARAMS: params}
        private_template = {**common, Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
                            Attribute.EXTRACTABLE: False, Attribute.SIGN: True,
                            Attribute.DERIVE: False, Attribute.DECRYPT: False,
                            Attribute.UNWRAP: False}
        try:
            if kind is KeyType.P256:
                session.generate_keypair(CKK.EC, None, store=True, mechanism=Mechanism.EC_KEY_PAIR_GEN,
                                         public_template=public_template,
                                         private_template=private_template)
            else:
                session.generate_keypair(CKK.EC_EDWARDS, None, store=True,
                                         mechanism=Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
                                         public_template=public_template,
                                         private_template=private_template)
        except px.PKCS11Error as e:
            raise TokenError(f"token {uri.token_text()} did not generate a {kind.label} key "
                             f"({type(e).__name__}; does it support "
                             f"{'CKM_EC_KEY_PAIR_GEN on P-256' if kind is KeyType.P256 else 'CKM_EC_EDWARDS_KEY_PAIR_GEN'}?)",
                             reason="TOKEN_KEYGEN") from None
        found = list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                                          Attribute.ID: kid}))
        if len(found) != 1:
            raise TokenError("the generated key is not on the token", reason="TOKEN_KEYGEN")
        private = found[0]
        if not private[Attribute.SENSITIVE] or private[Attribute.EXTRACTABLE]:
            raise TokenError("the token made the key extractable; do not use it",
                             reason="TOKEN_KEYGEN")
        key = TokenKey(uri, session, private, _public_key_of(session, private))
        if key.key_type is not kind:
            raise TokenError(f"the token made a {key.key_type.label} key, not {kind.label}",
                             reason="TOKEN_KEYGEN")
        return key
    except BaseException:
        session.close()
        raise


def describe_token(uri: KeyUri, module: str) -> str:
    """The token as it names itself (manufacturer, model, serial, label), for the operator's
    declaration that their key is held on it."""
    t = _find_token(_lib(module), uri)
    serial = (t.serial.decode("ascii", "replace") if isinstance(t.serial, bytes)
              else str(t.serial)).strip()
    return " ".join(f"{t.manufacturer_id.strip()} {t.model.strip()} serial {serial} token "
                    f"{t.label.strip()}".split())
