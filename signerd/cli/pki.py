"""``signerctl pki``: client certificates of the development CA (offline: the state folder's
files only)."""
from __future__ import annotations

import os
from datetime import datetime, timezone

from cryptography.hazmat.primitives.serialization import Encoding

from signerd.adapters import pki
from signerd.cli.args import Commands, command, group, uint
from signerd.cli.context import Context
from signerd.cli.errors import CliError
from signerd.cli.render import Output
from signerd.adapters.config import Config
from signerd.adapters.pki import is_valid_principal


def _state_config(ctx: Context) -> Config:
    if ctx.config is None:
        raise CliError("this command needs the state folder's config (--config FILE or "
                       "SIGNERD_CONFIG)")
    return ctx.config


def cmd_pki_issue(ctx: Context) -> Output:
    """A client certificate for a newly registered operator or a service principal, from the
    offline development CA, into the state folder's pki/clients/."""
    a = ctx.args
    cfg = _state_config(ctx)
    if not is_valid_principal(a.name):
        raise CliError(f"{a.name!r} is not a principal name (it must match "
                       f"{pki.PRINCIPAL_RE.pattern})")
    if a.days < 1:
        raise CliError("--days: at least 1")
    ca_cert = pki.load_cert(cfg.server.client_ca or cfg.base / "pki" / "ca.pem")
    ca_key = pki.load_ca_key(a.ca_key, ca_cert)
    key, cert = pki.issue_client(ca_key, ca_cert, a.name, days=a.days)
    key_path, cert_path = pki.write_client(cfg.base / "pki" / "clients", a.name, key, cert)
    fp = pki.fingerprint(cert)
    until = cert.not_valid_after_utc.strftime("%Y-%m-%d %H:%M UTC")
    return Output({"principal": a.name, "certificate": str(cert_path), "key": str(key_path),
                   "sha256": fp, "serial": f"{cert.serial_number:x}", "not_after": until},
                  f"issued a client certificate for {a.name}: {cert_path} (key {key_path}, mode "
                  f"0600), sha256 {fp}, valid until {until}\n")


def cmd_pki_revoke(ctx: Context) -> Output:
    """Append a certificate's SHA-256 fingerprint to the revocation list the config names; the
    daemon refuses the certificate from its next call."""
    a = ctx.args
    cfg = _state_config(ctx)
    path = cfg.server.revoked
    if path is None:
        raise CliError('the config names no revocation list: add revoked = "pki/revoked.txt" '
                       "under [server] and restart the daemon")
    who = ""
    if a.cert:
        cert = pki.load_cert(a.cert)
        fp = pki.fingerprint(cert)
        who = (f"principal {pki.principal_from_cert_der(cert.public_bytes(Encoding.DER)) or '?'}"
               f", serial {cert.serial_number:x}, ")
    else:
        fp = a.fingerprint.strip().lower().replace(":", "")
        if len(fp) != 64 or any(c not in "0123456789abcdef" for c in fp):
            raise CliError(f"--fingerprint: {a.fingerprint!r} is not a SHA-256 fingerprint "
                           "(64 hex digits)")
    current = pki.load_revocations(path) if path.exists() else pki.Revocations()
    doc = {"sha256": fp, "revocation_list": str(path)}
    if fp in current.fingerprints:
        return Output(doc | {"already": True}, f"certificate sha256 {fp} is already revoked\n")
    reason = " ".join((a.reason or "").split())[:200]
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    line = f"{fp}  # {who}revoked {when}{': ' + reason if reason else ''}\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        if f.tell() == 0:
            f.write(pki.REVOKED_HEADER)
        elif not path.read_bytes().endswith(b"\n"):
            f.write("\n")
        f.write(line)
        f.flush()
        os.fsync(f.fileno())
    return Output(doc | {"already": False},
                  f"revoked certificate sha256 {fp} ({who}listed in {path}); the daemon refuses it "
                  "from its next call\n")


def register(commands: Commands) -> None:
    g = group(commands, "pki", "client certificates of the development CA (offline)")
    sp = command(g, "issue", cmd_pki_issue, "issue a client certificate for a principal into the "
                 "state folder's pki/clients/, from the CA key kept offline", ids=False)
    sp.add_argument("name", help="an operator id, or platform, admin or auditor")
    sp.add_argument("--ca-key", required=True, metavar="FILE",
                    help="the CA's private key (signerd init wrote it beside the state folder)")
    sp.add_argument("--days", type=uint, default=825, metavar="N",
                    help="how long the certificate is valid (default: 825 days)")
    sp = command(g, "revoke", cmd_pki_revoke, "add a client certificate to the revocation list",
                 ids=False)
    which = sp.add_mutually_exclusive_group(required=True)
    which.add_argument("cert", nargs="?", metavar="CERT.pem", help="the certificate to revoke")
    which.add_argument("--fingerprint", metavar="HEX", help="its SHA-256 fingerprint instead")
    sp.add_argument("--reason", metavar="TEXT", help="why, written beside it in the list")
