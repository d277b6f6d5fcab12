"""A development PKI for signerd's mTLS: one CA, one server certificate, one client per principal.

Every key is EC P-256. A client certificate names its principal twice: as the subject CN and as
the SAN URI ``signerd:principal:<id>``; the URI is what the daemon reads (see
:func:`principal_from_cert_der`). Private keys are written unencrypted, created 0600 with
O_EXCL, so an existing file is never overwritten. This is for ``signerd init`` and tests; a
production deployment brings certificates from its own CA.

The CA's private key never sits in the daemon's state folder: ``signerd init DIR`` writes it
beside it (``DIR.ca/ca.key``, see :func:`dev_ca_key_path`), to be moved offline; it is needed
only to issue a certificate (``signerctl pki issue``). A certificate is named, e.g. in the
revocation list, by its SHA-256 fingerprint (:func:`fingerprint`).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from signerd.core.errors import AlreadyExists, InvalidArgument

PRINCIPAL_URI_PREFIX = "signerd:principal:"
PRINCIPAL_RE = re.compile(r"[a-z][a-z0-9_-]{0,63}")

_CLOCK_SKEW = dt.timedelta(minutes=5)


def is_valid_principal(principal: str) -> bool:
    return isinstance(principal, str) and PRINCIPAL_RE.fullmatch(principal) is not None


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _validity(
    days: int, not_before: dt.datetime | None, not_after: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(dt.timezone.utc)
    start = not_before if not_before is not None else now - _CLOCK_SKEW
    end = not_after if not_after is not None else now + dt.timedelta(days=days)
    for name, value in (("not_before", start), ("not_after", end)):
        if value.tzinfo is None:
            raise InvalidArgument(f"{name} must be timezone-aware")
    if end <= start:
        raise InvalidArgument("not_after must be later than not_before")
    return start, end


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer_public_key: ec.EllipticCurvePublicKey,
    start: dt.datetime,
    end: dt.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public_key), critical=False
        )
    )


def _leaf_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def make_ca(
    common_name: str = "signerd dev CA", days: int = 825
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed root that may sign leaves only (path length 0)."""
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start, end = _validity(days, None, None)
    cert = (
        _builder(name, name, key.public_key(), key.public_key(), start, end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue_server(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    hostnames: Iterable[str] = ("localhost",),
    ips: Iterable[str] = ("127.0.0.1", "::1"),
    days: int = 825,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A serverAuth leaf whose SAN lists every hostname and IP address the daemon answers on."""
    hostnames = list(hostnames)
    try:
        addresses = [ipaddress.ip_address(ip) for ip in ips]
    except ValueError as exc:
        raise InvalidArgument(f"issue_server: {exc}") from None
    if not hostnames and not addresses:
        raise InvalidArgument("issue_server: at least one hostname or IP address is required")
    sans: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
    sans += [x509.IPAddress(a) for a in addresses]
    cn = hostnames[0] if hostnames else str(addresses[0])
    start, end = _validity(days, None, None)
    return _leaf(ca_key, ca_cert, cn, start, end, ExtendedKeyUsageOID.SERVER_AUTH, sans)


def issue_client(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    principal: str,
    days: int = 825,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A clientAuth leaf for ``principal`` (CN and SAN URI). not_before/not_after, when given,
    replace the default window (now - 5 min .. now + days), e.g. to make an expired certificate."""
    if not is_valid_principal(principal):
        raise InvalidArgument(
            f"invalid principal id {principal!r}: must match {PRINCIPAL_RE.pattern}"
        )
    start, end = _validity(days, not_before, not_after)
    return _leaf(ca_key, ca_cert, principal, start, end, ExtendedKeyUsageOID.CLIENT_AUTH,
                 [x509.UniformResourceIdentifier(PRINCIPAL_URI_PREFIX + principal)])


def _leaf(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, common_name: str,
          start: dt.datetime, end: dt.datetime, usage: x509.ObjectIdentifier,
          sans: list[x509.GeneralName]) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A new key and its leaf certificate signed by the CA, for ``usage`` (server or client
    authentication) and the names ``sans``."""
    key = _new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        _builder(subject, ca_cert.subject, key.public_key(), ca_key.public_key(), start, end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _write_exclusive(path: Path, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise AlreadyExists(f"{path} already exists; refusing to overwrite") from None
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it; make it exact
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def write_pem_key(path: Path | str, key: ec.EllipticCurvePrivateKey) -> None:
    """PKCS#8 PEM, unencrypted, in a new file with mode 0600 (AlreadyExists if present)."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_exclusive(Path(path), pem, 0o600)


def write_pem_cert(path: Path | str, cert: x509.Certificate) -> None:
    """PEM in a new file with mode 0644 (AlreadyExists if present)."""
    _write_exclusive(Path(path), cert.public_bytes(serialization.Encoding.PEM), 0o644)


def load_cert(path: Path | str) -> x509.Certificate:
    data = Path(path).read_bytes()
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise InvalidArgument(f"{path}: not a PEM certificate ({exc})") from None


def load_ca_key(path: Path | str, ca_cert: x509.Certificate) -> ec.EllipticCurvePrivateKey:
    """The CA's private key from ``path`` (unencrypted PEM), checked to be the key of
    ``ca_cert``."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise InvalidArgument(f"{path}: no such file (the CA key that signerd init wrote "
                              "beside the state folder)") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != ca_cert.public_key():
        raise InvalidArgument(f"{path} is not the private key of the CA "
                              f"{ca_cert.subject.rfc4514_string()}")
    return key


def fingerprint(cert: x509.Certificate) -> str:
    """The SHA-256 of the certificate's DER, as 64 lowercase hex digits."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def write_client(clients: Path, principal: str, key: ec.EllipticCurvePrivateKey,
                 cert: x509.Certificate) -> tuple[Path, Path]:
    """``clients/<principal>.key`` (0600) and ``.pem``; refuses to overwrite either."""
    paths = clients / f"{principal}.key", clients / f"{principal}.pem"
    present = [str(p) for p in paths if p.exists() or p.is_symlink()]
    if present:
        raise AlreadyExists(f"refusing to overwrite {', '.join(present)} (move the old files "
                            "away first; revoke the old certificate if it may be misused)")
    clients.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_pem_key(paths[0], key)
    write_pem_cert(paths[1], cert)
    return paths


REVOKED_HEADER = """\
# Revoked client certificates ([server] revoked). One a line: the SHA-256 fingerprint of a
# certificate (64 hex digits, colons allowed), or serial:HEX for a serial number of the client
# CA; '#' starts a comment. `signerctl pki revoke CERT.pem` appends to it; the daemon reads it
# again whenever it changes, and accepts no certificate while it cannot read it.
"""
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Revocations:
    fingerprints: frozenset[str] = frozenset()
    serials: frozenset[int] = frozenset()

    def revoked(self, fingerprint: str, serial: int) -> bool:
        return fingerprint in self.fingerprints or serial in self.serials


def parse_revocations(text: str, source: str) -> Revocations:
    fps: set[str] = set()
    serials: set[int] = set()
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip().lower()
        if not line:
            continue
        if line.startswith("serial:"):
            digits = line[len("serial:"):].replace(":", "").strip()
            if digits and len(digits) <= 64 and set(digits) <= _HEX:
                serials.add(int(digits, 16))
                continue
        else:
            digits = line.replace(":", "")
            if len(digits) == 64 and set(digits) <= _HEX:
                fps.add(digits)
                continue
        raise InvalidArgument(f"{source} line {n}: {raw.strip()[:80]!r} is neither a SHA-256 "
                              "fingerprint (64 hex digits) nor serial:HEX")
    return Revocations(frozenset(fps), frozenset(serials))


def load_revocations(path: Path | str, name: str = "") -> Revocations:
    """The revocation list in ``path``; InvalidArgument naming it (``name``, else the path)
    and the line when it is missing, unreadable or malformed."""
    source = name or f"revocation list {path}"
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise InvalidArgument(f"{source} does not exist") from None
    except OSError as exc:
        raise InvalidArgument(f"{source}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument(f"{source} is not UTF-8 text") from None
    return parse_revocations(text, source)


def principal_from_cert_der(der: bytes) -> str | None:
    """The principal a client certificate names, or None if it names none or is ambiguous.

    The SAN URI ``signerd:principal:<id>`` wins; the subject CN is the fallback only when the
    certificate carries no such URI. A malformed id, two different ids, or several CNs give
    None. This reads the identity only: the TLS layer must already have verified the chain.
    """
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    except ValueError:
        return None
    ids = {u[len(PRINCIPAL_URI_PREFIX):] for u in uris if u.startswith(PRINCIPAL_URI_PREFIX)}
    if ids:
        if len(ids) != 1:
            return None
        (principal,) = ids
        return principal if is_valid_principal(principal) else None
    try:
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:
        return None
    if len(cns) != 1:
        return None
    cn = cns[0].value
    return cn if isinstance(cn, str) and is_valid_principal(cn) else None


def dev_ca_key_path(state: Path) -> Path:
    """Where ``signerd init STATE`` writes the development CA's private key: beside the state
    folder, never in it (``STATE.ca/ca.key``)."""
    state = Path(state)
    return state.parent / f"{state.name}.ca" / "ca.key"


def make_dev_pki(dir: Path, principals: list[str], ca_key_path: Path) -> None:
    """Write ca.pem, server.pem/server.key and clients/<principal>.pem/.key under dir, and the
    CA's private key at ``ca_key_path`` (its folder made 0700 when missing), which must be
    outside the daemon's state folder: the daemon never needs it.

    dir may exist (``signerd init`` makes it first); no file is ever overwritten.
    """
    bad = [p for p in principals if not is_valid_principal(p)]
    if bad:
        raise InvalidArgument(f"invalid principal ids {bad!r}: must match {PRINCIPAL_RE.pattern}")
    if len(set(principals)) != len(principals):
        raise InvalidArgument("duplicate principal ids")
    dir = Path(dir)
    clients = dir / "clients"
    ca_key_path = Path(ca_key_path)
    targets = [ca_key_path] + [dir / n for n in ("ca.pem", "server.key", "server.pem")]
    targets += [clients / f"{p}.{ext}" for p in principals for ext in ("key", "pem")]
    present = [str(t) for t in targets if t.exists() or t.is_symlink()]
    if present:
        raise AlreadyExists(f"refusing to overwrite {', '.join(present)}")
    dir.mkdir(parents=True, exist_ok=True)
    clients.mkdir(mode=0o700, exist_ok=True)
    ca_key_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca_key, ca_cert = make_ca()
    write_pem_key(ca_key_path, ca_key)
    write_pem_cert(dir / "ca.pem", ca_cert)
    server_key, server_cert = issue_server(ca_key, ca_cert)
    write_pem_key(dir / "server.key", server_key)
    write_pem_cert(dir / "server.pem", server_cert)
    for principal in principals:
        key, cert = issue_client(ca_key, ca_cert, principal)
        write_pem_key(clients / f"{principal}.key", key)
        write_pem_cert(clients / f"{principal}.pem", cert)
