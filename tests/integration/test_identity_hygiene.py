"""Identity hygiene (issue 13), each against a real daemon:

- the development CA's private key is written beside the state folder, never in it, and
  `signerctl pki issue NAME --ca-key FILE` issues a client certificate from it, kept offline;
- client certificates (service principals' too) can be revoked: `signerctl pki revoke` appends
  a fingerprint to the list [server] revoked names, which the gate reads again when it changes;
- a suspended or revoked operator can call nothing, reads included;
- plaintext mode (identity from a request header) only on a loopback address.
"""
from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest

from signerd.adapters import pki
from tests.support.daemon import Daemon, edit_config, signerctl_cmd, signerd_cmd
from tests.support.governance import govern, register_operator
from tests.support.rpc import pb, rpc, rpc_error
from tests.support.matrix import EXPECTED, METHODS, call, channel_with, details
from tests.support.fixtures import DaemonFactory


def signerd_init(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(signerd_cmd("init", str(path), "--listen", "127.0.0.1:0", "--metrics",
                                      "127.0.0.1:0", *extra), capture_output=True, text=True,
                          timeout=120)


def signerctl(d: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(signerctl_cmd("--config", str(d.config), *args), capture_output=True,
                          text=True, timeout=60)


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A state folder from `signerd init`, its CA key moved offline as init tells."""
    root = tmp_path_factory.mktemp("identity")
    r = signerd_init(root / "state")
    assert r.returncode == 0, r.stderr
    beside = root / "state.ca" / "ca.key"
    out = {"stdout": r.stdout, "state": root / "state",
           "ca_dir_mode": stat.S_IMODE(beside.parent.stat().st_mode),
           "ca_key_mode": stat.S_IMODE(beside.stat().st_mode)}
    (root / "offline").mkdir()
    shutil.move(beside.parent, root / "offline" / "ca")
    out["ca_key"] = root / "offline" / "ca" / "ca.key"
    return out


@pytest.fixture(scope="module")
def daemon(daemon_factory: DaemonFactory, offline: dict[str, Any]):
    yield from daemon_factory.run(config=offline["state"] / "signerd.toml", clean_exit=True)


def fresh_channel(d: Daemon, principal: str) -> None:
    ch = d.channels.pop(principal, None)
    if ch is not None:
        ch.close()


# ---------------------------------------------------------------- (d) the CA key offline

def test_init_writes_the_ca_key_beside_the_state_folder(offline: dict[str, Any],
                                                        daemon: Daemon) -> None:
    state = offline["state"]
    assert not (state / "pki" / "ca.key").exists()
    assert not [p for p in state.rglob("*") if p.name == "ca.key"]
    assert (offline["ca_dir_mode"], offline["ca_key_mode"]) == (0o700, 0o600)
    lines = [ln for ln in offline["stdout"].splitlines() if "CA key" in ln]
    assert len(lines) == 1
    assert str(state.parent / "state.ca" / "ca.key") in lines[0]
    assert "move it offline" in lines[0] and "the daemon never reads it" in lines[0]
    # The daemon runs with the key gone from this machine's state folder and its side.
    assert not (state.parent / "state.ca").exists()
    assert daemon.custody().ListWallets(pb.ListWalletsRequest()) is not None


def test_init_refuses_to_overwrite_a_ca_key(tmp_path: Path) -> None:
    (tmp_path / "state.ca").mkdir()
    (tmp_path / "state.ca" / "ca.key").write_text("an earlier CA key")
    r = signerd_init(tmp_path / "state")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"signerd: {tmp_path / 'state.ca' / 'ca.key'} already exists; refusing to overwrite it"]
    assert (tmp_path / "state.ca" / "ca.key").read_text() == "an earlier CA key"


def test_pki_issue_gives_a_new_operator_a_certificate(offline: dict[str, Any],
                                                      daemon: Daemon) -> None:
    from signerd.adapters.key_files import write_keypair
    from signerd.core.operator_keys import generate, public_pem

    key = generate()
    write_keypair(key, daemon.state / "operators" / "cust7.key",
                  daemon.state / "operators" / "cust7.pub", None)
    register_operator(daemon, "cust7", ["custody_officer"], public_pem(key))
    r = signerctl(daemon, "pki", "issue", "cust7", "--ca-key", str(offline["ca_key"]))
    assert r.returncode == 0, r.stderr
    cert_path = daemon.state / "pki" / "clients" / "cust7.pem"
    assert f"issued a client certificate for cust7: {cert_path}" in r.stdout
    cert = pki.load_cert(cert_path)
    assert pki.fingerprint(cert) in r.stdout
    assert stat.S_IMODE((daemon.state / "pki" / "clients" / "cust7.key").stat().st_mode) == 0o600
    assert daemon.approval("cust7").ListPending(pb.ListPendingRequest()) is not None

    def fails(*args: str) -> str:
        r = signerctl(daemon, "pki", "issue", *args)
        assert r.returncode != 0 and r.stdout == ""
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
        return r.stderr.strip()

    ca = str(offline["ca_key"])
    assert "refusing to overwrite" in fails("cust7", "--ca-key", ca)
    assert "is not the private key of the CA" in fails(
        "cust8", "--ca-key", str(daemon.state / "pki" / "server.key"))
    assert "no such file" in fails("cust8", "--ca-key", str(daemon.state / "ca.key"))
    assert "'Not OK' is not a principal name" in fails("Not OK", "--ca-key", ca)
    assert "--ca-key" in fails("cust8")
    assert not (daemon.state / "pki" / "clients" / "cust8.pem").exists()


# ---------------------------------------------------------------- (a) revocation

def test_revoked_service_certificate_is_refused(offline: dict[str, Any],
                                                daemon: Daemon) -> None:
    clients = daemon.state / "pki" / "clients"
    old = ((clients / "platform.key").read_bytes(), (clients / "platform.pem").read_bytes())
    fp = pki.fingerprint(pki.load_cert(clients / "platform.pem"))
    assert daemon.custody().ListWallets(pb.ListWalletsRequest()) is not None
    r = signerctl(daemon, "pki", "revoke", str(clients / "platform.pem"), "--reason",
                  "laptop\nlost")
    assert r.returncode == 0, r.stderr
    assert f"revoked certificate sha256 {fp} (principal platform" in r.stdout
    text = (daemon.state / "pki" / "revoked.txt").read_text()
    assert text.startswith("# Revoked client certificates")
    assert f"{fp}  # principal platform, serial " in text and ": laptop lost\n" in text
    e = rpc_error(daemon.custody().ListWallets, pb.ListWalletsRequest())
    assert e.code() == grpc.StatusCode.UNAUTHENTICATED
    assert e.details() == (f"client certificate sha256:{fp} (principal platform) is revoked: "
                           "listed in the revocation list ([server] revoked)")
    assert ("signerd-reason", "CERT_REVOKED") in (e.trailing_metadata() or ())
    # Every RPC, streams included.
    for method, desc in METHODS:
        assert call(daemon.channel("platform"), method, desc, "platform") == \
            grpc.StatusCode.UNAUTHENTICATED, method
    # Other principals are not affected; revoking twice changes nothing.
    assert daemon.audit().GetHead(pb.GetHeadRequest()) is not None
    r = signerctl(daemon, "pki", "revoke", "--fingerprint", fp.upper())
    assert r.returncode == 0 and "already revoked" in r.stdout
    assert (daemon.state / "pki" / "revoked.txt").read_text() == text
    # A new certificate for the platform, from the offline CA key.
    for ext in ("key", "pem"):
        (clients / f"platform.{ext}").rename(clients / f"platform-old.{ext}")
    r = signerctl(daemon, "pki", "issue", "platform", "--ca-key", str(offline["ca_key"]))
    assert r.returncode == 0, r.stderr
    fresh_channel(daemon, "platform")
    assert daemon.custody().ListWallets(pb.ListWalletsRequest()) is not None
    ch = channel_with(daemon, *old)
    try:
        desc = dict(METHODS)["Custody/ListWallets"]
        assert call(ch, "Custody/ListWallets", desc) == grpc.StatusCode.UNAUTHENTICATED
    finally:
        ch.close()


def test_the_list_is_read_again_when_it_changes(daemon: Daemon) -> None:
    revoked = daemon.state / "pki" / "revoked.txt"
    before = revoked.read_text()
    cert = pki.load_cert(daemon.state / "pki" / "clients" / "auditor.pem")
    fp = pki.fingerprint(cert)
    r = signerctl(daemon, "pki", "revoke", "--fingerprint", ":".join(
        fp[i:i + 2] for i in range(0, 64, 2)))
    assert r.returncode == 0, r.stderr
    e = rpc_error(daemon.audit().GetHead, pb.GetHeadRequest())
    assert e.code() == grpc.StatusCode.UNAUTHENTICATED and "principal auditor" in e.details()
    revoked.write_text(before)  # taken off the list: accepted again
    assert daemon.audit().GetHead(pb.GetHeadRequest()) is not None
    revoked.write_text(before + f"serial:{cert.serial_number:X}  # by serial number\n")
    assert rpc_error(daemon.audit().GetHead, pb.GetHeadRequest()).code() == \
        grpc.StatusCode.UNAUTHENTICATED
    # A list that cannot be read refuses every certificate, naming the line.
    revoked.write_text(before + "not-a-fingerprint\n")
    e = rpc_error(daemon.admin().ListOperators, pb.ListOperatorsRequest())
    assert e.code() == grpc.StatusCode.UNAVAILABLE
    lineno = len(before.splitlines()) + 1
    assert e.details() == (f"the revocation list ([server] revoked) line {lineno}: "
                           "'not-a-fingerprint' is neither a SHA-256 fingerprint (64 hex digits) "
                           "nor serial:HEX; no client certificate is accepted until it is fixed")
    r = signerctl(daemon, "pki", "revoke", "--fingerprint", "ab" * 32)
    assert r.returncode == 1 and f"line {lineno}" in r.stderr
    r = signerctl(daemon, "pki", "revoke", "--fingerprint", "abc")
    assert r.returncode == 1 and "'abc' is not a SHA-256 fingerprint" in r.stderr
    revoked.unlink()
    e = rpc_error(daemon.admin().ListOperators, pb.ListOperatorsRequest())
    assert e.code() == grpc.StatusCode.UNAVAILABLE and "does not exist" in e.details()
    revoked.write_text(before)
    assert daemon.admin().ListOperators(pb.ListOperatorsRequest()) is not None
    assert daemon.audit().GetHead(pb.GetHeadRequest()) is not None


def test_the_daemon_does_not_start_without_a_readable_list(tmp_path: Path) -> None:
    r = signerd_init(tmp_path / "state")
    assert r.returncode == 0, r.stderr
    cfg = tmp_path / "state" / "signerd.toml"
    revoked = tmp_path / "state" / "pki" / "revoked.txt"
    text = revoked.read_text()
    revoked.write_text(text + "xyz\n")
    r = subprocess.run(signerd_cmd("run", "--config", str(cfg)), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"signerd: revocation list {revoked} line {len(text.splitlines()) + 1}: 'xyz' is neither a SHA-256 fingerprint "
        "(64 hex digits) nor serial:HEX"]


# ---------------------------------------------------------------- (b) suspended, revoked

OPERATOR_METHODS = [(m, desc) for m, desc in METHODS if "operator" in EXPECTED[m]]


def test_a_suspended_operator_can_call_nothing(daemon: Daemon) -> None:
    assert daemon.approval("cust2").ListPending(pb.ListPendingRequest()) is not None
    daemon.admin().SuspendOperator(pb.RevokeOperatorRequest(id="cust2", reason="inquiry"))
    for method, desc in OPERATOR_METHODS:
        ch = daemon.channel("cust2")
        assert call(ch, method, desc, "cust2") == grpc.StatusCode.PERMISSION_DENIED, method
        assert details(ch, method, desc, "cust2") == (
            "operator cust2 is suspended in the authority ledger: a suspended operator may "
            "call nothing"), method
    e = rpc_error(daemon.approval("cust2").ListPending, pb.ListPendingRequest())
    assert ("signerd-reason", "OPERATOR_SUSPENDED") in (e.trailing_metadata() or ())
    p = govern(daemon, daemon.admin().ReinstateOperator(pb.RevokeOperatorRequest(
        id="cust2", reason="cleared")))
    assert p.state == "APPROVED", p.failure
    assert daemon.approval("cust2").ListPending(pb.ListPendingRequest()) is not None


def test_a_revoked_operator_can_call_nothing(daemon: Daemon) -> None:
    assert daemon.approval("cust7").ListPending(pb.ListPendingRequest()) is not None
    p = govern(daemon, daemon.admin().RevokeOperator(pb.RevokeOperatorRequest(
        id="cust7", reason="left the unit")))
    assert p.state == "APPROVED", p.failure
    for method, desc in OPERATOR_METHODS:
        ch = daemon.channel("cust7")
        assert call(ch, method, desc, "cust7") == grpc.StatusCode.PERMISSION_DENIED, method
        assert "operator cust7 is revoked in the authority ledger" in \
            details(ch, method, desc, "cust7"), method


# ---------------------------------------------------------------- (c) plaintext on loopback only

def test_insecure_mode_only_on_a_loopback_address(tmp_path: Path) -> None:
    r = subprocess.run(signerd_cmd("init", str(tmp_path / "wide"), "--insecure", "--listen",
                                   "0.0.0.0:7443"), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and not (tmp_path / "wide").exists()
    assert r.stderr.strip().splitlines() == [
        "signerd: [server] insecure = true takes the principal from a request header, so it is "
        "allowed only on a loopback address; listen = '0.0.0.0:7443' is not one"]
    r = signerd_init(tmp_path / "state", "--insecure")
    assert r.returncode == 0, r.stderr
    cfg = tmp_path / "state" / "signerd.toml"
    for listen in ("0.0.0.0:0", "[::]:0", "10.1.2.3:7443", "signerd.example:7443"):
        edit_config(cfg, "server", listen=listen)
        r = subprocess.run(signerd_cmd("run", "--config", str(cfg)), capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 2, listen
        assert r.stderr.strip().splitlines() == [
            "signerd: config: [server] insecure = true takes the principal from a request "
            f"header, so it is allowed only on a loopback address; listen = {listen!r} is not "
            "one"]
    from signerd.adapters import config

    for listen in ("127.0.0.1:0", "127.0.0.2:7443", "[::1]:0", "localhost:7443",
                   "unix:/run/signerd.sock"):
        edit_config(cfg, "server", listen=listen)
        assert config.load(cfg).server.listen == listen
    edit_config(cfg, "server", listen="127.0.0.1:0")
    d = Daemon(cfg).start()
    try:
        ch = grpc.insecure_channel(f"127.0.0.1:{d.port}")
        try:
            rpc.CustodyStub(ch).ListWallets(pb.ListWalletsRequest(), timeout=10,
                                            metadata=(("x-signerd-principal", "platform"),))
        finally:
            ch.close()
    finally:
        assert d.stop() == 0
