"""The HSM edge: secp256k1 custody keys inside a PKCS#11 token.

Keys are generated (or imported) in the token as sensitive, non-extractable objects and used only
through it. Every signature is over a 32-byte digest that signerd computed itself, with an explicit
``CKM_ECDSA`` (python-pkcs11 would otherwise pick ECDSA_SHA512), normalised to low-S and verified
against the cached public key before it leaves this module.

Concurrency: python-pkcs11 calls ``C_Initialize(NULL)``, which makes SoftHSM turn its own locking
off; two threads in the library at once then corrupt its heap. In the default ``os-locking`` mode
the keystore re-initialises the module with ``CKF_OS_LOCKING_OK`` before any session exists (a
``C_Finalize``/``C_Initialize`` pair on the same function list), and each thread signs on a session
of its own from a pool. If the module refuses OS locking, or in ``serialized`` mode, one lock guards
every PKCS#11 call of the process.
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import queue
import secrets
import stat
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import coincurve

from .errors import ConfigError, HsmUnavailable, InvalidArgument, InvalidKey

log = logging.getLogger("signerd.hsm")

SECP256K1_OID = "1.3.132.0.10"
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
CKF_OS_LOCKING_OK = 0x2
CKR_CANT_LOCK = 0xA


_INITIALISED: dict[str, str] = {}  # module path -> concurrency mode, once per process
_GLOBAL_LOCKS: dict[str, threading.RLock] = {}  # serialized mode: one lock per module, process-wide
_SHARED_LOCKS: dict[str, "_SharedLock"] = {}  # os-locking mode: signs shared, management alone


class _SharedLock:
    """Many signers at once, or one management call (generate, import, find) alone.

    SoftHSM with OS locking signs safely in parallel on separate sessions, but creating token
    objects while other sessions look objects up was measured here to fail now and then
    (CKR_GENERAL_ERROR, CKR_OBJECT_HANDLE_INVALID), so object management runs alone.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._waiting_writers += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class _InitArgs(ctypes.Structure):
    _fields_ = [
        ("CreateMutex", ctypes.c_void_p),
        ("DestroyMutex", ctypes.c_void_p),
        ("LockMutex", ctypes.c_void_p),
        ("UnlockMutex", ctypes.c_void_p),
        ("flags", ctypes.c_ulong),
        ("pReserved", ctypes.c_void_p),
    ]


def read_pin_file(path: str | Path) -> str:
    """Read the user PIN from a file the owner alone may read; the PIN never appears in errors."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as e:
        raise ConfigError(f"PIN file {p} cannot be read: {e.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"PIN file {p} is readable by group or others (mode {stat.S_IMODE(st.st_mode):o}); "
            "chmod 600 it"
        )
    try:
        pin = p.read_text(encoding="utf-8").strip("\r\n")
    except (OSError, UnicodeDecodeError):
        raise ConfigError(f"PIN file {p} cannot be read") from None
    if not pin:
        raise ConfigError(f"PIN file {p} is empty")
    return pin


def parse_pkcs11_uri(uri: str) -> dict[str, str]:
    """The path attributes of an RFC 7512 ``pkcs11:`` URI that select a token."""
    if not uri.startswith("pkcs11:"):
        raise ConfigError(f"token URI must start with 'pkcs11:', got {uri!r}")
    body = uri[len("pkcs11:"):].split("?", 1)[0]
    attrs: dict[str, str] = {}
    for part in filter(None, body.split(";")):
        if "=" not in part:
            raise ConfigError(f"token URI attribute without '=': {part!r}")
        k, v = part.split("=", 1)
        attrs[k] = urllib.parse.unquote(v)
    known = {"token", "manufacturer", "serial", "model", "object", "id", "type", "slot-id"}
    unknown = set(attrs) - known
    if unknown:
        raise ConfigError(f"token URI has unsupported attributes: {', '.join(sorted(unknown))}")
    return attrs


def normalize_s(s: int) -> int:
    return SECP256K1_N - s if s > SECP256K1_N // 2 else s


def _decode_ec_point(der: bytes) -> bytes:
    """CKA_EC_POINT is a DER OCTET STRING around the uncompressed point; return it compressed."""
    raw = der
    if len(der) >= 2 and der[0] == 0x04 and der[1] in (0x41, 0x21):
        raw = der[2:]
    elif len(der) >= 3 and der[0] == 0x04 and der[1] == 0x81:
        raw = der[3:]
    try:
        return coincurve.PublicKey(raw).format(compressed=True)
    except ValueError:
        raise HsmUnavailable("the HSM returned an EC point that is not on secp256k1") from None


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    label: str
    public_key: bytes


class Keystore:
    """One PKCS#11 token, logged in once for the life of the process."""

    def __init__(
        self,
        module: str,
        *,
        token_label: str | None = None,
        token_uri: str | None = None,
        pin_file: str | Path,
        concurrency: str = "os-locking",
        pool_size: int = 4,
        env: dict[str, str] | None = None,
        fault_delay: float = 0.0,
    ):
        if concurrency not in ("os-locking", "serialized"):
            raise ConfigError("hsm.concurrency must be 'os-locking' or 'serialized'")
        self.module = module
        self.selector: dict[str, str] = {}
        if token_uri:
            self.selector = parse_pkcs11_uri(token_uri)
        if token_label:
            self.selector.setdefault("token", token_label)
        if not self.selector:
            raise ConfigError("the HSM token needs a label or a pkcs11: URI")
        self.pin_file = Path(pin_file)
        self.requested_concurrency = concurrency
        self.concurrency = concurrency
        self.pool_size = max(1, pool_size)
        self.fault_delay = fault_delay
        if env:
            os.environ.update(env)
        self._lib: Any = None
        self._token: Any = None
        self._login_session: Any = None
        self._pool: queue.Queue[Any] = queue.Queue()
        self._sessions: list[Any] = []
        self._key_cache: dict[tuple[int, str], Any] = {}
        self._pub_cache: dict[str, bytes] = {}
        self._global = _GLOBAL_LOCKS.setdefault(module, threading.RLock())
        self._shared = _SHARED_LOCKS.setdefault(module, _SharedLock())
        self._state_lock = threading.RLock()
        self._up = False
        self._generation = 0
        self.manufacturer = ""
        self.model = ""
        self.on_state_change: Callable[[bool], None] | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def up(self) -> bool:
        return self._up

    def _set_up(self, value: bool) -> None:
        if value != self._up:
            self._up = value
            log.warning("hsm %s", "up" if value else "down")
            if self.on_state_change:
                self.on_state_change(value)

    def open(self) -> None:
        """Load the module, find the token and log in. Errors are final (ConfigError/HsmUnavailable)."""
        import pkcs11
        from pkcs11 import exceptions as px

        pin = read_pin_file(self.pin_file)
        with self._state_lock:
            self._close_sessions()
            try:
                if self._lib is None:
                    if not Path(self.module).exists():
                        raise ConfigError(f"PKCS#11 module {self.module} does not exist")
                    self._lib = pkcs11.lib(self.module)
                    if self.module in _INITIALISED:  # another keystore of this process did it
                        native = _INITIALISED[self.module] == "os-locking"
                        self.concurrency = ("os-locking" if native and
                                            self.requested_concurrency == "os-locking"
                                            else "serialized")
                    else:
                        self._enable_locking()
                        _INITIALISED[self.module] = self.concurrency
                else:
                    self._lib.reinitialize()
                    self._enable_locking()
                    _INITIALISED[self.module] = self.concurrency
                self._token = self._find_token()
                try:
                    self._login_session = self._token.open(rw=True, user_pin=pin)
                except px.PinIncorrect:
                    raise ConfigError(
                        f"HSM login refused: the PIN in {self.pin_file} is incorrect"
                    ) from None
                except px.PinLocked:
                    raise ConfigError(
                        f"HSM login refused: the user PIN of token {self._label()} is locked"
                    ) from None
                except px.UserAlreadyLoggedIn:
                    self._login_session = self._token.open(rw=True)
                for _ in range(self.pool_size):
                    s = self._token.open(rw=True)
                    self._sessions.append(s)
                    self._pool.put(s)
                self.manufacturer = self._token.manufacturer_id
                self.model = self._token.model
                self._generation += 1
            except ConfigError:
                self._set_up(False)
                raise
            except px.PKCS11Error as e:
                self._set_up(False)
                raise HsmUnavailable(f"HSM unavailable: {type(e).__name__}") from None
            self._set_up(True)

    def _label(self) -> str:
        return self.selector.get("token", "?")

    def _enable_locking(self) -> None:
        if self.requested_concurrency != "os-locking":
            self.concurrency = "serialized"
            return
        dl = ctypes.CDLL(self.module)
        rv = dl.C_Finalize(None)
        args = _InitArgs(None, None, None, None, CKF_OS_LOCKING_OK, None)
        rv = dl.C_Initialize(ctypes.byref(args))
        if rv != 0:
            log.warning("PKCS#11 module refused OS locking (CKR 0x%x); serialising all calls", rv)
            self.concurrency = "serialized"
            dl.C_Initialize(None)
        else:
            self.concurrency = "os-locking"

    def _find_token(self) -> Any:
        from pkcs11 import exceptions as px

        want = self.selector
        for slot in self._lib.get_slots(token_present=True):
            try:
                tok = slot.get_token()
            except px.PKCS11Error:
                continue
            if "token" in want and tok.label != want["token"]:
                continue
            if "serial" in want and tok.serial.decode(errors="replace").strip() != want["serial"]:
                continue
            if "manufacturer" in want and tok.manufacturer_id != want["manufacturer"]:
                continue
            if "model" in want and tok.model != want["model"]:
                continue
            return tok
        raise HsmUnavailable(f"no HSM token labelled {self._label()!r} is present")

    def _close_sessions(self) -> None:
        self._key_cache.clear()
        while not self._pool.empty():
            self._pool.get_nowait()
        for s in self._sessions:
            with contextlib.suppress(Exception):
                s.close()
        self._sessions.clear()
        if self._login_session is not None:
            with contextlib.suppress(Exception):
                self._login_session.close()
            self._login_session = None

    def close(self) -> None:
        with self._state_lock:
            self._close_sessions()
            self._set_up(False)

    def probe(self) -> bool:
        """Check the token is still there; reconnect if it was gone and is back. Returns up."""
        from pkcs11 import exceptions as px

        if self._up:
            try:
                with self._session() as s:
                    self._call(lambda: list(s.get_objects({})) and None)
                    self._call(lambda: self._find_token())
                return True
            except HsmUnavailable:
                pass
        try:
            self.open()
        except (ConfigError, HsmUnavailable, px.PKCS11Error) as e:
            log.debug("hsm reconnect failed: %s", e)
            self._set_up(False)
        return self._up

    # ------------------------------------------------------------------ plumbing

    @contextlib.contextmanager
    def _session(self) -> Iterator[Any]:
        if not self._up:
            raise HsmUnavailable(f"HSM token {self._label()!r} is not available")
        try:
            s = self._pool.get(timeout=10)
        except queue.Empty:
            raise HsmUnavailable("no HSM session free within 10 s") from None
        try:
            yield s
        finally:
            self._pool.put(s)

    def _call(self, fn: Callable[[], Any], *, parallel: bool = False) -> Any:
        """Run one PKCS#11 call under the concurrency rule: ``parallel`` calls (signatures) may
        overlap each other in os-locking mode; every other call runs alone."""
        from pkcs11 import exceptions as px

        try:
            if self.concurrency == "serialized":
                with self._global:
                    return fn()
            with (self._shared.shared() if parallel else self._shared.exclusive()):
                return fn()
        except (px.PKCS11Error, RuntimeError) as e:
            if isinstance(e, (px.SignatureInvalid,)):
                raise
            log.error("hsm call failed: %s", type(e).__name__)
            self._set_up(False)
            raise HsmUnavailable(f"HSM call failed: {type(e).__name__}") from None

    def _private_key(self, s: Any, key_id: str) -> Any:
        from pkcs11 import ObjectClass
        from pkcs11 import exceptions as px

        cache_key = (id(s), key_id)
        k = self._key_cache.get(cache_key)
        if k is None:
            try:
                k = self._call(
                    lambda: s.get_key(object_class=ObjectClass.PRIVATE_KEY, id=bytes.fromhex(key_id))
                )
            except (px.NoSuchKey, px.MultipleObjectsReturned):
                raise InvalidKey(f"key {key_id} is not in the HSM token") from None
            self._key_cache[cache_key] = k
        return k

    # ------------------------------------------------------------------ keys

    def generate_key(self, label: str) -> KeyInfo:
        """A new secp256k1 key pair inside the token, every attribute set explicitly."""
        from pkcs11 import Attribute, KeyType, Mechanism
        from pkcs11.util.ec import encode_named_curve_parameters

        kid = secrets.token_bytes(16)
        with self._session() as s:
            def gen() -> Any:
                params = s.create_domain_parameters(
                    KeyType.EC,
                    {Attribute.EC_PARAMS: encode_named_curve_parameters(SECP256K1_OID)},
                    local=True,
                )
                return params.generate_keypair(
                    mechanism=Mechanism.EC_KEY_PAIR_GEN,
                    store=True,
                    public_template={
                        Attribute.TOKEN: True,
                        Attribute.PRIVATE: False,
                        Attribute.VERIFY: True,
                        Attribute.ID: kid,
                        Attribute.LABEL: label,
                    },
                    private_template={
                        Attribute.TOKEN: True,
                        Attribute.PRIVATE: True,
                        Attribute.SENSITIVE: True,
                        Attribute.EXTRACTABLE: False,
                        Attribute.DERIVE: False,
                        Attribute.SIGN: True,
                        Attribute.DECRYPT: False,
                        Attribute.UNWRAP: False,
                        Attribute.ID: kid,
                        Attribute.LABEL: label,
                    },
                )

            pub, _priv = self._call(gen)
            point = self._call(lambda: pub[Attribute.EC_POINT])
        info = KeyInfo(kid.hex(), label, _decode_ec_point(point))
        self._pub_cache[info.key_id] = info.public_key
        return info

    def import_key(self, secret: bytearray, label: str) -> KeyInfo:
        """Put a seized private key into the token as a sensitive, non-extractable object.

        ``secret`` (32 bytes) is wiped in place afterwards, as far as Python allows.
        """
        from pkcs11 import Attribute, KeyType, ObjectClass
        from pkcs11.util.ec import encode_named_curve_parameters

        try:
            if len(secret) != 32:
                raise InvalidKey("a secp256k1 private key is 32 bytes")
            d = int.from_bytes(secret, "big")
            if not 0 < d < SECP256K1_N:
                raise InvalidKey("private key is out of range for secp256k1")
            pub33 = coincurve.PrivateKey(bytes(secret)).public_key.format(compressed=True)
            pub65 = coincurve.PublicKey(pub33).format(compressed=False)
            kid = secrets.token_bytes(16)
            params = encode_named_curve_parameters(SECP256K1_OID)
            with self._session() as s:
                self._call(
                    lambda: s.create_object(
                        {
                            Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                            Attribute.KEY_TYPE: KeyType.EC,
                            Attribute.TOKEN: True,
                            Attribute.PRIVATE: True,
                            Attribute.SENSITIVE: True,
                            Attribute.EXTRACTABLE: False,
                            Attribute.DERIVE: False,
                            Attribute.SIGN: True,
                            Attribute.ID: kid,
                            Attribute.LABEL: label,
                            Attribute.EC_PARAMS: params,
                            Attribute.VALUE: bytes(secret),
                        }
                    )
                )
                self._call(
                    lambda: s.create_object(
                        {
                            Attribute.CLASS: ObjectClass.PUBLIC_KEY,
                            Attribute.KEY_TYPE: KeyType.EC,
                            Attribute.TOKEN: True,
                            Attribute.PRIVATE: False,
                            Attribute.VERIFY: True,
                            Attribute.ID: kid,
                            Attribute.LABEL: label,
                            Attribute.EC_PARAMS: params,
                            Attribute.EC_POINT: b"\x04\x41" + pub65,
                        }
                    )
                )
        finally:
            for i in range(len(secret)):
                secret[i] = 0
        info = KeyInfo(kid.hex(), label, pub33)
        self._pub_cache[info.key_id] = pub33
        return info

    def public_key(self, key_id: str) -> bytes:
        from pkcs11 import Attribute, ObjectClass
        from pkcs11 import exceptions as px

        if key_id in self._pub_cache:
            return self._pub_cache[key_id]
        with self._session() as s:
            try:
                pub = self._call(
                    lambda: s.get_key(object_class=ObjectClass.PUBLIC_KEY, id=bytes.fromhex(key_id))
                )
            except (px.NoSuchKey, px.MultipleObjectsReturned):
                raise InvalidKey(f"key {key_id} is not in the HSM token") from None
            point = self._call(lambda: pub[Attribute.EC_POINT])
        pk = _decode_ec_point(point)
        self._pub_cache[key_id] = pk
        return pk

    def list_keys(self) -> list[KeyInfo]:
        from pkcs11 import Attribute, ObjectClass

        out: list[KeyInfo] = []
        with self._session() as s:
            def collect() -> None:
                for obj in s.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY}):
                    out.append(
                        KeyInfo(obj[Attribute.ID].hex(), obj[Attribute.LABEL],
                                _decode_ec_point(obj[Attribute.EC_POINT]))
                    )
            self._call(collect)
        return out

    def sign_digest(self, key_id: str, digest: bytes) -> tuple[int, int]:
        """ECDSA over a 32-byte digest computed by signerd; returns (r, low-s), verified."""
        from pkcs11 import Mechanism

        if not isinstance(digest, (bytes, bytearray)) or len(digest) != 32:
            raise InvalidArgument("the HSM signs 32-byte digests only")
        pub = self.public_key(key_id)
        if self.fault_delay:
            time.sleep(self.fault_delay)
        with self._session() as s:
            key = self._private_key(s, key_id)
            sig = self._call(lambda: key.sign(bytes(digest), mechanism=Mechanism.ECDSA),
                             parallel=True)
        if len(sig) != 64:
            raise HsmUnavailable(f"the HSM returned a {len(sig)}-byte ECDSA signature, expected 64")
        r = int.from_bytes(sig[:32], "big")
        s_ = normalize_s(int.from_bytes(sig[32:], "big"))
        compact = r.to_bytes(32, "big") + s_.to_bytes(32, "big")
        der = coincurve.ecdsa.cdata_to_der(coincurve.ecdsa.deserialize_compact(compact))
        if not coincurve.PublicKey(pub).verify(der, bytes(digest), hasher=None):
            raise HsmUnavailable(f"the HSM signature by key {key_id} does not verify")
        return r, s_
