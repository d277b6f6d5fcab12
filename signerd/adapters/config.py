"""The daemon's TOML configuration. Relative paths are relative to the config file's folder
(a state folder made by ``signerd init DIR``); a production configuration in /etc/signerd names
absolute paths, and its secrets (HSM PIN, server TLS key, PostgreSQL URL) as ``credential:NAME``,
systemd credentials."""
from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from signerd.core.errors import ConfigError
from signerd.core.limits import Limits

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


@dataclass(frozen=True)
class ServerConfig:
    listen: str = "127.0.0.1:7443"
    insecure: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None
    revoked: Path | None = None  # the revocation list of client certificates
    max_message_bytes: int = 4 * 1024 * 1024
    workers: int = 16
    grace_seconds: float = 10.0


@dataclass(frozen=True)
class HsmConfig:
    module: str = DEFAULT_MODULE
    token: str = "pkcs11:token=signerd"
    pin_file: Path = Path("hsm/pin")
    softhsm_conf: Path | None = None
    concurrency: str = "os-locking"
    sessions: int = 4
    probe_seconds: float = 2.0
    call_timeout: float = 3.0


@dataclass(frozen=True)
class AuditConfig:
    """When the monitor checkpoints the audit chain: once the head has moved past the latest
    checkpoint and either ``checkpoint_events`` events have accumulated or the oldest of them is
    ``checkpoint_seconds`` old. GetHead and Export always checkpoint first."""

    checkpoint_seconds: float = 60.0
    checkpoint_events: int = 1000


@dataclass(frozen=True)
class Config:
    path: Path
    instance_id: str
    server: ServerConfig
    hsm: HsmConfig
    store_url: str
    metrics_listen: str
    policies_dir: Path
    default_policy: str  # the template a wallet gets when the platform names none
    principals: dict[str, str] = field(default_factory=dict)
    limits: Limits = Limits()
    log_format: str = "json"
    testing: dict[str, Any] = field(default_factory=dict)
    genesis: bytes = b""  # the pinned genesis digest ([governance] genesis)
    audit: AuditConfig = AuditConfig()
    # [signerctl] pkcs11_module: the PKCS#11 module of operators' tokens (signerctl only; the
    # daemon's HSM is [hsm] module)
    operator_pkcs11_module: Path | None = None

    @property
    def base(self) -> Path:
        return self.path.parent


def is_loopback_listen(listen: str) -> bool:
    """Whether a listen address is reachable from this host only (loopback or a Unix socket)."""
    if listen.startswith(("unix:", "unix-abstract:")):
        return True
    host = (listen.rsplit(":", 1)[0] if ":" in listen else listen).strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def insecure_listen_error(listen: str) -> str:
    return (f"[server] insecure = true takes the principal from a request header, so it is "
            f"allowed only on a loopback address; listen = {listen!r} is not one")


def _path(base: Path, value: Any, key: str) -> Path:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"config: {key} must be a non-empty path string")
    p = Path(value)
    return p if p.is_absolute() else base / p


CREDENTIAL = "credential:"


def _credential(value: str, key: str) -> Path:
    """The file of the systemd credential ``credential:NAME`` (LoadCredential=NAME:SOURCE in
    the unit: systemd hands it to the daemon alone, in $CREDENTIALS_DIRECTORY)."""
    name = value[len(CREDENTIAL):]
    if not name or "/" in name or name in (".", ".."):
        raise ConfigError(f"config: {key} = {value!r}: {name!r} is not a credential name")
    creds = os.environ.get("CREDENTIALS_DIRECTORY")
    if not creds:
        raise ConfigError(f"config: {key} = {value!r} needs systemd's CREDENTIALS_DIRECTORY "
                          "(LoadCredential= in the unit; outside systemd, as root, set "
                          "CREDENTIALS_DIRECTORY to the folder of the credential files)")
    return Path(creds) / name


def _secret_path(base: Path, value: Any, key: str) -> Path:
    """``credential:NAME`` is a systemd credential (LoadCredential=); anything else a path."""
    if isinstance(value, str) and value.startswith(CREDENTIAL):
        return _credential(value, key)
    return _path(base, value, key)


def _store_url(base: Path, value: Any) -> str:
    """``[store] url``: ``sqlite:///PATH`` (relative to the config's folder), a PostgreSQL URL,
    or ``credential:NAME``, a systemd credential holding the PostgreSQL URL (its password stays
    out of the config file). Never quoted in an error: it may hold a password."""
    if not isinstance(value, str) or not value:
        raise ConfigError("config: store.url must be sqlite:///PATH, postgresql://... or "
                          "credential:NAME")
    if value.startswith(CREDENTIAL):
        path = _credential(value, "store.url")
        try:
            url = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else "not text"
            raise ConfigError(f"config: store.url: the credential {path} cannot be read "
                              f"({why})") from None
        if not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"config: store.url: the credential {path} must hold one "
                              "postgresql://... URL")
        return url
    if value.startswith("sqlite:///"):
        db = Path(value[len("sqlite:///"):])
        return "sqlite:///" + str(db if db.is_absolute() else base / db)
    if not value.startswith(("postgresql://", "postgres://")):
        raise ConfigError("config: store.url must be sqlite:///PATH, postgresql://... or "
                          "credential:NAME")
    return value


def _take(section: dict[str, Any], name: str, allowed: set[str]) -> None:
    unknown = set(section) - allowed
    if unknown:
        raise ConfigError(f"config: unknown key(s) in [{name}]: {', '.join(sorted(unknown))}")


def load(path: str | Path) -> Config:
    p = Path(path).resolve()
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {p} is not valid TOML: {e}") from None
    base = p.parent
    _take(doc, "top level", {"instance_id", "server", "hsm", "store", "metrics", "policies",
                             "principals", "limits", "log", "testing", "governance",
                             "audit", "signerctl"})
    instance_id = doc.get("instance_id")
    if not isinstance(instance_id, str) or not instance_id:
        raise ConfigError("config: instance_id must be set")

    s = doc.get("server", {})
    _take(s, "server", {"listen", "insecure", "tls_cert", "tls_key", "client_ca", "revoked",
                        "max_message_bytes", "workers", "grace_seconds"})
    insecure = bool(s.get("insecure", False))
    server = ServerConfig(
        listen=str(s.get("listen", "127.0.0.1:7443")),
        insecure=insecure,
        tls_cert=_path(base, s["tls_cert"], "server.tls_cert") if "tls_cert" in s else None,
        tls_key=_secret_path(base, s["tls_key"], "server.tls_key") if "tls_key" in s else None,
        client_ca=_path(base, s["client_ca"], "server.client_ca") if "client_ca" in s else None,
        revoked=_path(base, s["revoked"], "server.revoked") if "revoked" in s else None,
        max_message_bytes=int(s.get("max_message_bytes", 4 * 1024 * 1024)),
        workers=int(s.get("workers", 16)),
        grace_seconds=float(s.get("grace_seconds", 10.0)),
    )
    if insecure and not is_loopback_listen(server.listen):
        raise ConfigError(f"config: {insecure_listen_error(server.listen)}")
    if not insecure and not (server.tls_cert and server.tls_key and server.client_ca):
        raise ConfigError(
            "config: [server] needs tls_cert, tls_key and client_ca (or insecure = true)"
        )

    h = doc.get("hsm", {})
    _take(h, "hsm", {"module", "token", "pin_file", "softhsm_conf", "concurrency", "sessions",
                     "probe_seconds", "call_timeout"})
    hsm = HsmConfig(
        module=str(h.get("module", DEFAULT_MODULE)),
        token=str(h.get("token", "pkcs11:token=signerd")),
        pin_file=_secret_path(base, h.get("pin_file", "hsm/pin"), "hsm.pin_file"),
        softhsm_conf=_path(base, h["softhsm_conf"], "hsm.softhsm_conf") if "softhsm_conf" in h else None,
        concurrency=str(h.get("concurrency", "os-locking")),
        sessions=int(h.get("sessions", 4)),
        probe_seconds=float(h.get("probe_seconds", 2.0)),
        call_timeout=float(h.get("call_timeout", 3.0)),
    )

    st = doc.get("store", {})
    _take(st, "store", {"url"})
    url = _store_url(base, st.get("url", "sqlite:///signerd.db"))

    m = doc.get("metrics", {})
    _take(m, "metrics", {"listen"})
    pol = doc.get("policies", {})
    _take(pol, "policies", {"dir", "default"})
    principals = doc.get("principals", {})
    if not isinstance(principals, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in principals.items()
    ):
        raise ConfigError("config: [principals] maps certificate names to principal kinds")
    lim = doc.get("limits", {})
    _take(lim, "limits", set(Limits.__dataclass_fields__))
    limits = Limits(**{k: type(getattr(Limits(), k))(v) for k, v in lim.items()})
    if limits.max_streams < 1 or limits.max_streams_per_principal < 1:
        raise ConfigError("config: [limits] max_streams and max_streams_per_principal must be "
                          "at least 1")
    lg = doc.get("log", {})
    _take(lg, "log", {"format"})
    gov = doc.get("governance", {})
    _take(gov, "governance", {"genesis"})
    genesis = gov.get("genesis", "")
    if not isinstance(genesis, str) or (genesis and not _is_hex32(genesis)):
        raise ConfigError("config: [governance] genesis must be the 64 hex digits of the "
                          "genesis digest that `signerd init` printed")
    au = doc.get("audit", {})
    _take(au, "audit", set(AuditConfig.__dataclass_fields__))
    try:
        audit = AuditConfig(
            checkpoint_seconds=float(au.get("checkpoint_seconds", 60.0)),
            checkpoint_events=int(au.get("checkpoint_events", 1000)))
    except (TypeError, ValueError):
        raise ConfigError("config: [audit] checkpoint_seconds and checkpoint_events must be "
                          "numbers") from None
    if audit.checkpoint_seconds < 0 or audit.checkpoint_events < 1:
        raise ConfigError("config: [audit] checkpoint_seconds must be >= 0 and "
                          "checkpoint_events >= 1")
    ctl = doc.get("signerctl", {})
    _take(ctl, "signerctl", {"pkcs11_module"})
    return Config(
        path=p,
        instance_id=instance_id,
        server=server,
        hsm=hsm,
        store_url=url,
        metrics_listen=str(m.get("listen", "127.0.0.1:9464")),
        policies_dir=_path(base, pol.get("dir", "policies"), "policies.dir"),
        default_policy=str(pol.get("default", "two-key.toml")),
        principals=dict(principals),
        limits=limits,
        log_format=str(lg.get("format", "json")),
        testing=dict(doc.get("testing", {})),
        genesis=bytes.fromhex(genesis),
        audit=audit,
        operator_pkcs11_module=(_path(base, ctl["pkcs11_module"], "signerctl.pkcs11_module")
                                if "pkcs11_module" in ctl else None),
    )


def _is_hex32(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)
