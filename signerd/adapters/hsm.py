"""The HSM edge: secp256k1 custody keys inside a PKCS#11 token.

Keys are generated (or imported) in the token as sensitive objects, extractable only wrapped
under a key the token's security officer marked trusted (the key backup,
signerd.adapters.hsm_backup), and used only through it. Every signature is over a 32-byte digest
that signerd computed itself, with an explicit ``CKM_ECDSA`` (python-pkcs11 would otherwise pick
ECDSA_SHA512), normalised to low-S and verified against the cached public key before it leaves
this module.

Concurrency: python-pkcs11 calls ``C_Initialize(NULL)``, which makes SoftHSM turn its own locking
off; two threads in the library at once then corrupt its heap. In the default ``os-locking`` mode
the keystore re-initialises the module with ``CKF_OS_LOCKING_OK`` before any session exists (a
``C_Finalize``/``C_Initialize`` pair on the same function list), and each thread signs on a session
of its own from a pool. If the module refuses OS locking, or in ``serialized`` mode, one lock guards
every PKCS#11 call of the process.

Faults: any PKCS#11 error of a call, or a call that takes longer than ``call_timeout``, marks the
HSM down; callers then get ``HsmUnavailable`` at once and a late result is discarded. ``probe``
(run by the health monitor) reconnects when the token is back. A PIN the token refused is not
tried again until the PIN file changes, and no login is tried while the token reports its user PIN
locked, so the reconnect loop can never lock or burn retries of the PIN.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import logging
import os
import queue
import re
import secrets
import stat
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import coincurve

from signerd.core.errors import ConfigError, HsmUnavailable, InvalidArgument, InvalidKey

log = logging.getLogger("signerd.hsm")

SECP256K1_OID = "1.3.132.0.10"
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
CKF_OS_LOCKING_OK = 0x2
CKF_USER_PIN_LOCKED = 0x40000
CKR_CANT_LOCK = 0xA
DEFAULT_CALL_TIMEOUT = 3.0  # seconds one PKCS#11 call may take before the HSM counts as down


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


# The SoftHSM2 configuration of a state folder (hsm/softhsm-config/softhsm2.conf.template).
# SoftHSM reads a relative directories.tokendir against the process's working directory, not
# against this file, so the token folder is written absolute, and place_softhsm_conf writes it
# again whenever the state folder has moved.
SOFTHSM_CONF = """\
# SoftHSM2 configuration for this signerd state folder (written by `signerd init`).
directories.tokendir = {tokendir}
objectstore.backend = file
log.level = ERROR
slots.removable = false
slots.mechanisms = ALL
library.reset_on_fork = false
"""
_TOKENDIR = re.compile(r"^directories\.tokendir\s*=\s*(.*?)\s*$", re.M)


def softhsm_conf_text(tokendir: Path) -> str:
    return SOFTHSM_CONF.format(tokendir=tokendir)


def place_softhsm_conf(conf: Path) -> Path | None:
    """Make a SoftHSM configuration that signerd wrote name the ``tokens`` folder beside it.

    A state folder that was moved (or copied) still names its old token folder; the copy would
    then sign with the original's token, or find none. When ``conf`` is signerd's own text
    (the template, whatever token folder it names) and a ``tokens`` folder sits beside it, a
    token folder named elsewhere is replaced by that one, atomically. Returns the token folder
    it named before, or None when nothing changed (any other configuration, e.g. one for an
    HSM elsewhere, is left as it is)."""
    try:
        text = conf.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None  # the keystore reports what it cannot read
    m = _TOKENDIR.search(text)
    here = conf.parent.resolve() / "tokens"
    if m is None or not here.is_dir():
        return None
    named = Path(m.group(1))
    if text != softhsm_conf_text(named) or (named.is_absolute() and named.resolve() == here):
        return None
    tmp = conf.with_name(f".{conf.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IMODE(conf.stat().st_mode))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(softhsm_conf_text(here))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, conf)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return named


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


def _ping(session: Any) -> None:
    """The cheapest call that needs a live session: 8 random bytes (a module without an RNG
    still answered)."""
    from pkcs11 import exceptions as px

    try:
        session.generate_random(64)
    except (px.FunctionNotSupported, px.RandomNoRNG):
        pass


CHURN_ATTEMPTS = 6


@functools.lru_cache(maxsize=1)
def _churn() -> tuple[type[BaseException], ...]:
    """What SoftHSM's file store answers, now and then, to a process that looks up, creates or
    destroys token objects while another process creates or destroys some (replicas writing
    their anchors, signerd.core.anchor)."""
    from pkcs11 import exceptions as px

    return (px.ObjectHandleInvalid, px.GeneralError, px.FunctionFailed)


def _despite_churn(fn: Callable[[], Any], what: str) -> Any:
    """``fn()``, made again (up to CHURN_ATTEMPTS times, a few ms apart) when another process's
    object churn got in its way; an HSM that keeps failing is down (HsmUnavailable)."""
    last = ""
    for attempt in range(CHURN_ATTEMPTS):
        try:
            return fn()
        except _churn() as e:
            last = type(e).__name__
            time.sleep(0.005 * (attempt + 1))
    raise HsmUnavailable(f"HSM call failed: {what} met {last} {CHURN_ATTEMPTS} times")


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    label: str
    public_key: bytes


def _private_key_attributes(attribute: Any) -> dict[Any, Any]:
    """The attributes every secp256k1 private key signerd puts in the token has: a sensitive
    token object that may sign and may not derive, and that leaves the token only wrapped under
    a key the token's security officer marked trusted (CKA_EXTRACTABLE with
    CKA_WRAP_WITH_TRUSTED: the key backup, signerd.adapters.hsm_backup; never in plaintext,
    CKA_SENSITIVE). Both are one-way in PKCS#11: SENSITIVE and WRAP_WITH_TRUSTED cannot be
    cleared once set. (``attribute``: pkcs11's ``Attribute``, imported where the HSM is used.)"""
    return {
        attribute.TOKEN: True,
        attribute.PRIVATE: True,
        attribute.SENSITIVE: True,
        attribute.EXTRACTABLE: True,
        attribute.WRAP_WITH_TRUSTED: True,
        attribute.DERIVE: False,
        attribute.SIGN: True,
    }


def _public_key_attributes(attribute: Any, kid: bytes, label: str) -> dict[Any, Any]:
    """The public half of a key pair: a public token object that verifies."""
    return {
        attribute.TOKEN: True,
        attribute.PRIVATE: False,
        attribute.VERIFY: True,
        attribute.ID: kid,
        attribute.LABEL: label,
    }


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
        call_timeout: float = DEFAULT_CALL_TIMEOUT,
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
        self.fault_delay = fault_delay  # test-only: every PKCS#11 call takes this much longer
        self.call_timeout = call_timeout
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
        self._refused_pin: bytes | None = None  # SHA-256 of a PIN the token refused
        self._last_fault = ""
        self.manufacturer = ""
        self.model = ""
        self.on_state_change: Callable[[bool], None] | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def up(self) -> bool:
        return self._up

    def _set_up(self, value: bool, *, quiet: bool = False) -> None:
        if value != self._up:
            self._up = value
            if not quiet:
                (log.info if value else log.warning)("hsm %s", "up" if value else "down")
            if self.on_state_change:
                self.on_state_change(value)

    def open(self, *, timed_check: bool = False) -> None:
        """Load the module, find the token and log in. Errors are final (ConfigError/HsmUnavailable).

        Runs alone: no other PKCS#11 call of this module is in flight while the module is
        initialised again and the sessions are replaced. With ``timed_check`` (a reconnect), one
        call on a new session must also answer within ``call_timeout`` before the HSM counts as up.
        """
        import pkcs11
        from pkcs11 import exceptions as px

        pin = read_pin_file(self.pin_file)
        pin_hash = hashlib.sha256(pin.encode()).digest()
        if pin_hash == self._refused_pin:
            self._set_up(False)
            raise ConfigError(f"HSM login refused: the PIN in {self.pin_file} is incorrect "
                              "(not tried again until the file changes)")
        with self._state_lock, self._alone():
            self._close_sessions()
            gen = self._generation + 1
            try:
                if self._lib is None:
                    if not Path(self.module).exists():
                        raise ConfigError(f"PKCS#11 module {self.module} does not exist")
                    try:
                        self._lib = pkcs11.lib(self.module)
                    except px.PKCS11Error as e:
                        raise self._init_failed(e) from None
                    if self.module in _INITIALISED:  # another keystore of this process did it
                        native = _INITIALISED[self.module] == "os-locking"
                        self.concurrency = ("os-locking" if native and
                                            self.requested_concurrency == "os-locking"
                                            else "serialized")
                    else:
                        self._enable_locking()
                        _INITIALISED[self.module] = self.concurrency
                else:
                    try:
                        self._lib.reinitialize()
                    except px.PKCS11Error as e:
                        raise self._init_failed(e) from None
                    self._enable_locking()
                    _INITIALISED[self.module] = self.concurrency
                self._token = self._find_token()
                if int(self._token.flags) & CKF_USER_PIN_LOCKED:  # a login would be refused
                    raise ConfigError(
                        f"HSM login refused: the user PIN of token {self._label()} is locked")
                try:
                    self._login_session = self._token.open(rw=True, user_pin=pin)
                except px.PinIncorrect:
                    self._refused_pin = pin_hash
                    raise ConfigError(
                        f"HSM login refused: the PIN in {self.pin_file} is incorrect"
                    ) from None
                except px.PinLocked:
                    raise ConfigError(
                        f"HSM login refused: the user PIN of token {self._label()} is locked"
                    ) from None
                except px.UserAlreadyLoggedIn:
                    self._login_session = self._token.open(rw=True)
                self._refused_pin = None
                for _ in range(self.pool_size):
                    s = self._token.open(rw=True)
                    self._sessions.append(s)
                    self._pool.put((gen, s))
                if timed_check:
                    self._timed(lambda: _ping(self._sessions[0]))
                self.manufacturer = self._token.manufacturer_id
                self.model = self._token.model
                self._generation = gen
            except ConfigError:
                self._set_up(False)
                raise
            except HsmUnavailable:
                self._set_up(False)
                raise
            except px.PKCS11Error as e:
                self._set_up(False)
                raise HsmUnavailable(f"HSM unavailable: {type(e).__name__}") from None
            self._last_fault = ""
            self._set_up(True)

    def _init_failed(self, e: Exception) -> HsmUnavailable:
        return HsmUnavailable(f"HSM unavailable: the PKCS#11 module {self.module} failed to "
                              f"initialise ({type(e).__name__}); token {self._label()!r} is not "
                              "available")

    @contextlib.contextmanager
    def _alone(self) -> Iterator[None]:
        """No other PKCS#11 call of this module runs meanwhile, in either concurrency mode."""
        with self._global, self._shared.exclusive():
            yield

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
        try:
            slots = self._lib.get_slots(token_present=True)
        except px.PKCS11Error as e:
            raise HsmUnavailable(f"HSM token {self._label()!r} is not reachable "
                                 f"({type(e).__name__})") from None
        for slot in slots:
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
            self._set_up(False, quiet=True)

    def probe(self) -> bool:
        """Check the token is still there and answers in time; reconnect once it is back.

        Returns whether the HSM is up. A fault is logged once when it starts or changes, not at
        every probe.
        """
        from pkcs11 import exceptions as px

        if self._up:
            try:
                self._round_trip()
                return True
            except HsmUnavailable:
                pass
        try:
            self.open(timed_check=True)
        except (ConfigError, HsmUnavailable) as e:
            self._note_fault(e.message)
        except px.PKCS11Error as e:
            self._note_fault(f"HSM unavailable: {type(e).__name__}")
        return self._up

    def _round_trip(self) -> None:
        """One cheap call on a pooled session plus a fresh look for the token (a removed token
        still answers session calls, but its slot is gone)."""
        with self._session() as s:
            def check() -> None:
                _ping(s)
                self._find_token()

            self._call(check)

    def _note_fault(self, message: str) -> None:
        self._set_up(False)
        if message != self._last_fault:
            self._last_fault = message
            log.warning("hsm unavailable: %s", message)

    # ------------------------------------------------------------------ plumbing

    @contextlib.contextmanager
    def _session(self) -> Iterator[Any]:
        if not self._up:
            raise HsmUnavailable(f"HSM token {self._label()!r} is not available")
        try:
            gen, s = self._pool.get(timeout=10)
        except queue.Empty:
            raise HsmUnavailable("no HSM session free within 10 s") from None
        try:
            yield s
        finally:
            if gen == self._generation:  # a session from before a reconnect is dropped
                self._pool.put((gen, s))

    def _call(self, fn: Callable[[], Any], *, parallel: bool = False) -> Any:
        """Run one PKCS#11 call under the concurrency rule: ``parallel`` calls (signatures) may
        overlap each other in os-locking mode; every other call runs alone.

        A PKCS#11 error, or an answer later than ``call_timeout``, marks the HSM down and raises
        HsmUnavailable (a late result is discarded). A key lookup that finds nothing
        (NoSuchKey, MultipleObjectsReturned) and SignatureInvalid are answers, not faults: they
        pass through.
        """
        from pkcs11 import exceptions as px

        try:
            with (self._global if self.concurrency == "serialized" else
                  self._shared.shared() if parallel else self._shared.exclusive()):
                return self._timed(fn)
        except (px.SignatureInvalid, px.NoSuchKey, px.MultipleObjectsReturned):
            raise
        except HsmUnavailable as e:
            self._note_fault(e.message)
            raise
        except (px.PKCS11Error, RuntimeError) as e:
            message = f"HSM call failed: {type(e).__name__}"
            self._note_fault(message)
            raise HsmUnavailable(message) from None

    def _timed(self, fn: Callable[[], Any]) -> Any:
        t0 = time.monotonic()
        if self.fault_delay:
            time.sleep(self.fault_delay)
        result = fn()
        elapsed = time.monotonic() - t0
        if elapsed > self.call_timeout:
            raise HsmUnavailable(f"HSM too slow: a call took {elapsed:.1f} s, more than the "
                                 f"{self.call_timeout:g} s bound; its result was discarded")
        return result

    def _private_key(self, s: Any, key_id: str) -> Any:
        from pkcs11 import ObjectClass

        cache_key = (id(s), key_id)
        k = self._key_cache.get(cache_key)
        if k is None:
            k = self._key_object(s, ObjectClass.PRIVATE_KEY, key_id)
            self._key_cache[cache_key] = k
        return k

    def _key_object(self, s: Any, object_class: Any, key_id: str) -> Any:
        """The token's one key of ``object_class`` with CKA_ID ``key_id``; InvalidKey when the
        token has none (or, wrongly, several)."""
        from pkcs11 import exceptions as px

        try:
            return self._call(lambda: s.get_key(object_class=object_class,
                                                id=bytes.fromhex(key_id)))
        except (px.NoSuchKey, px.MultipleObjectsReturned):
            self._call(self._find_token)  # a removed token also "has no such key"
            raise InvalidKey(f"key {key_id} is not in the HSM token") from None

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
                    public_template=_public_key_attributes(Attribute, kid, label),
                    private_template={
                        **_private_key_attributes(Attribute),
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
        """Put a seized private key into the token as a sensitive object (extractable only wrapped
        under a trusted key, as a generated one).

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
                            **_private_key_attributes(Attribute),
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
                            **_public_key_attributes(Attribute, kid, label),
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

    def alone(self, fn: Callable[[Any], Any]) -> Any:
        """``fn(session)`` on a pooled session of the logged-in token, run as object management
        (no other PKCS#11 call of this process meanwhile), with the HSM's fault rules of
        :meth:`_call` (the key backup, signerd.adapters.hsm_backup)."""
        with self._session() as s:
            return self._call(lambda: fn(s))

    def held_public_key(self, key_id: str) -> bytes:
        """The public key of ``key_id`` if the token holds that key, else b"" (for comparing
        with the key a record names)."""
        try:
            return self.public_key(key_id)
        except InvalidKey:
            return b""

    def public_key(self, key_id: str) -> bytes:
        from pkcs11 import Attribute, ObjectClass

        if key_id in self._pub_cache:
            return self._pub_cache[key_id]
        with self._session() as s:
            pub = self._key_object(s, ObjectClass.PUBLIC_KEY, key_id)
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

    def create_data(self, label: str, value: bytes, *, destroyable: bool = False) -> None:
        """A private token data object whose value cannot be changed (CKA_MODIFIABLE false):
        readable and, with ``destroyable``, destroyable by a logged-in session only. Without
        it, the object can be neither changed nor destroyed: an anchor outside the store (the
        genesis pin). signerd's monotonic anchors (signerd.core.anchor) are destroyable, so that
        the ones a later anchor supersedes can go; their creation is tried again when it meets
        another process's object churn (a repeated value is harmless there)."""
        from pkcs11 import Attribute, ObjectClass

        template = {
            Attribute.CLASS: ObjectClass.DATA,
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.MODIFIABLE: False,
            Attribute.DESTROYABLE: destroyable,
            Attribute.APPLICATION: "signerd",
            Attribute.LABEL: label,
            Attribute.VALUE: bytes(value),
        }
        with self._session() as s:
            if not destroyable:
                self._call(lambda: s.create_object(template))
                return

            def create() -> None:
                _despite_churn(lambda: s.create_object(template), f"creating {label}")
            self._call(create)

    def read_data(self, label: str) -> list[bytes]:
        """The values of every data object with this label (normally one).

        Several processes may share the token (replicas), and each destroys the anchors it has
        superseded (signerd.core.anchor), always after writing a newer one. An object that vanishes
        while this process reads means that a newer one exists, which this search may have
        missed: the search is made again, so that a reader never misses the newest."""
        from pkcs11 import Attribute, ObjectClass

        with self._session() as s:
            def collect() -> list[bytes]:
                return [bytes(obj[Attribute.VALUE]) for obj in
                        s.get_objects({Attribute.CLASS: ObjectClass.DATA,
                                       Attribute.LABEL: label})]
            out: list[bytes] = self._call(
                lambda: _despite_churn(collect, f"reading {label}"))
        return out

    def destroy_data(self, label: str, values: Callable[[bytes], bool]) -> int:
        """Destroy the data objects with this label whose value ``values`` selects; how many.
        Objects that refuse (CKA_DESTROYABLE false) stay; one that another process destroyed
        meanwhile is skipped."""
        from pkcs11 import Attribute, ObjectClass

        done = 0
        with self._session() as s:
            def destroy() -> None:
                nonlocal done
                objects = _despite_churn(lambda: list(s.get_objects({
                    Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: label})),
                    f"finding {label}")
                for obj in objects:
                    try:
                        if values(bytes(obj[Attribute.VALUE])) and obj[Attribute.DESTROYABLE]:
                            obj.destroy()
                            done += 1
                    except _churn():  # gone already: another process destroyed it
                        continue
            self._call(destroy)
        return done

    def sign_digest(self, key_id: str, digest: bytes) -> tuple[int, int]:
        """ECDSA over a 32-byte digest computed by signerd; returns (r, low-s), verified."""
        from pkcs11 import Mechanism

        if not isinstance(digest, (bytes, bytearray)) or len(digest) != 32:
            raise InvalidArgument("the HSM signs 32-byte digests only")
        pub = self.public_key(key_id)
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
