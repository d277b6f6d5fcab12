"""Only the right caller: every RPC against every principal, and certificates that must not pass.

Each RPC is called with an empty request (SubmitApproval names the caller as its operator) by the
platform, an operator (inv1), the admin and the auditor, over mTLS with the state folder's
certificates. A principal the RPC allows passes the gate (the call may still fail later, e.g.
INVALID_ARGUMENT or NOT_FOUND for the empty request); every other principal gets
PERMISSION_DENIED, counted by method in ``signerd_grpc_permission_denied_total`` and audited as
``rpc.denied``. No certificate, an expired one, and one from another CA never get past TLS.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from signerd.adapters import pki
from signerd.api.server import ALLOWED
from tests.support import daemon as helpers
from tests.support.daemon import Daemon, edit_config, init_state, signerd_cmd
from tests.support.rpc import pb, rpc
from tests.support.matrix import EXPECTED, METHODS, call, channel_with, details
from tests.support.fixtures import DaemonFactory

PRINCIPALS = {"platform": "platform", "inv1": "operator", "admin": "admin", "auditor": "auditor"}
# What an allowed call may answer for an empty request: anything but an authorization failure.
PASSED_GATE = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
               grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNIMPLEMENTED}


@pytest.fixture(scope="module")
def daemon(daemon_factory: DaemonFactory):
    yield from daemon_factory.run("matrix")


def pem_pair(key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> tuple[bytes, bytes]:
    return (key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()),
            cert.public_bytes(Encoding.PEM))


def dev_ca(d: Daemon) -> tuple[Any, x509.Certificate]:
    return helpers.dev_ca(d.state)


def metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if m and ",".join(sorted(m.group(1).split(","))) == want:
            return float(m.group(2))
    return 0.0


def audit_events(d: Daemon, action: str) -> list[pb.AuditEvent]:
    out, after = [], 0
    while True:
        evs = d.audit().ListEvents(pb.ListEventsRequest(after_seq=after, limit=1000)).events
        out += [e for e in evs if e.action == action]
        if len(evs) < 1000:
            return out
        after = evs[-1].seq


# ---------------------------------------------------------------- the table itself

def test_allowed_table_is_the_design_and_covers_every_rpc() -> None:
    assert {m for m, _ in METHODS} == set(EXPECTED)
    assert {m: set(k) for m, k in ALLOWED.items()} == EXPECTED


@pytest.mark.parametrize("principal", list(PRINCIPALS))
@pytest.mark.parametrize("method,desc", METHODS, ids=[m for m, _ in METHODS])
def test_matrix(daemon: Daemon, method: str, desc: Any, principal: str) -> None:
    code = call(daemon.channel(principal), method, desc, principal)
    if PRINCIPALS[principal] in EXPECTED[method]:
        assert code in PASSED_GATE, f"{principal} allowed on {method} but got {code}"
    else:
        assert code == grpc.StatusCode.PERMISSION_DENIED, f"{principal} on {method}: {code}"
        assert f"may not call {method}" in details(daemon.channel(principal), method, desc,
                                                   principal)


# ---------------------------------------------------------------- certificates that must not pass

BAD = ["no_certificate", "expired_certificate", "other_ca", "plaintext"]


@pytest.fixture(scope="module")
def bad_channels(daemon: Daemon):
    ca_key, ca_cert = dev_ca(daemon)
    now = dt.datetime.now(dt.timezone.utc)
    expired = pem_pair(*pki.issue_client(ca_key, ca_cert, "platform",
                                         not_before=now - dt.timedelta(days=30),
                                         not_after=now - dt.timedelta(days=1)))
    other_key, other_cert = pki.make_ca("another CA")
    foreign = pem_pair(*pki.issue_client(other_key, other_cert, "platform"))
    chans = {
        "no_certificate": channel_with(daemon, None, None),
        "expired_certificate": channel_with(daemon, *expired),
        "other_ca": channel_with(daemon, *foreign),
        "plaintext": grpc.insecure_channel(f"127.0.0.1:{daemon.port}"),
    }
    yield chans
    for ch in chans.values():
        ch.close()


@pytest.mark.parametrize("case", BAD)
@pytest.mark.parametrize("method,desc", METHODS, ids=[m for m, _ in METHODS])
def test_bad_certificates_never_reach_a_method(daemon: Daemon, bad_channels: dict, case: str,
                                               method: str, desc: Any) -> None:
    code = call(bad_channels[case], method, desc, "platform", timeout=5)
    assert code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED), (case, code)


def test_bad_certificates_leave_no_trace_in_the_store(daemon: Daemon, bad_channels: dict) -> None:
    before = daemon.custody().ListWallets(pb.ListWalletsRequest()).wallets
    for ch in bad_channels.values():
        assert call(ch, "Custody/CreateWallet", dict(METHODS)["Custody/CreateWallet"],
                    timeout=5) != grpc.StatusCode.OK
    assert daemon.custody().ListWallets(pb.ListWalletsRequest()).wallets == before


def test_certificate_of_an_unknown_principal_is_denied_and_audited(daemon: Daemon) -> None:
    key, cert = pki.issue_client(*dev_ca(daemon), "mallory")
    ch = channel_with(daemon, *pem_pair(key, cert))
    try:
        for method, desc in METHODS:
            assert call(ch, method, desc, "mallory") == grpc.StatusCode.PERMISSION_DENIED, method
        assert "mallory is not known" in details(ch, "Audit/GetHead", dict(METHODS)["Audit/GetHead"])
    finally:
        ch.close()
    denied = [e for e in audit_events(daemon, "rpc.denied") if e.actor == "mallory"]
    assert {e.object for e in denied} == set(EXPECTED)


def test_certificate_without_a_single_principal_is_unauthenticated(daemon: Daemon) -> None:
    """From the right CA, but naming two principals: no identity, so no call."""
    ca_key, ca_cert = dev_ca(daemon)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "platform")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
            .add_extension(x509.SubjectAlternativeName([
                x509.UniformResourceIdentifier("signerd:principal:platform"),
                x509.UniformResourceIdentifier("signerd:principal:admin")]), False)
            .sign(ca_key, hashes.SHA256()))
    ch = channel_with(daemon, *pem_pair(key, cert))
    try:
        desc = dict(METHODS)["Custody/ListWallets"]
        assert call(ch, "Custody/ListWallets", desc) == grpc.StatusCode.UNAUTHENTICATED
        assert "client certificate naming a principal" in details(ch, "Custody/ListWallets", desc)
    finally:
        ch.close()


# ---------------------------------------------------------------- denials: metrics and audit

def test_denials_are_counted_by_method_and_audited(daemon: Daemon) -> None:
    before_text = daemon.metrics()
    before_events = len(audit_events(daemon, "rpc.denied"))
    denied: dict[str, int] = {}
    for method, desc in METHODS:
        for principal, kind in PRINCIPALS.items():
            if kind not in EXPECTED[method]:
                assert call(daemon.channel(principal), method, desc, principal) == \
                    grpc.StatusCode.PERMISSION_DENIED
                denied[method] = denied.get(method, 0) + 1
    after_text = daemon.metrics()
    for method, n in denied.items():
        grown = (metric(after_text, "signerd_grpc_permission_denied_total", method=method)
                 - metric(before_text, "signerd_grpc_permission_denied_total", method=method))
        assert grown == n, method
    events = audit_events(daemon, "rpc.denied")[before_events:]
    assert len(events) == sum(denied.values())
    for e in events:
        assert e.object in EXPECTED and e.actor in PRINCIPALS
        assert json.loads(e.details_json)["kind"] == PRINCIPALS[e.actor]


def test_approval_under_another_operators_id_is_denied_counted_and_audited(daemon: Daemon
                                                                            ) -> None:
    before = metric(daemon.metrics(), "signerd_grpc_permission_denied_total",
                    method="Approval/SubmitApproval")
    e = None
    try:
        daemon.approval("inv1").SubmitApproval(pb.SubmitApprovalRequest(
            transfer_id="t_x", operator_id="cust1", decision=pb.APPROVE, signature=b"\0" * 64))
    except grpc.RpcError as err:
        e = err
    assert e is not None and e.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "does not match the caller inv1" in e.details()
    assert metric(daemon.metrics(), "signerd_grpc_permission_denied_total",
                  method="Approval/SubmitApproval") == before + 1
    last = audit_events(daemon, "rpc.denied")[-1]
    assert (last.actor, last.object) == ("inv1", "Approval/SubmitApproval")


# ---------------------------------------------------------------- plaintext only when asked

def test_insecure_flag_listens_in_plaintext_and_warns_at_every_start(tmp_path: Path) -> None:
    cfg = init_state(tmp_path / "state", "--insecure")
    d = Daemon(cfg)
    logs = []
    for _ in range(2):
        d.start()
        ch = grpc.insecure_channel(f"127.0.0.1:{d.port}")
        try:
            stub = rpc.CustodyStub(ch)
            stub.ListWallets(pb.ListWalletsRequest(), timeout=10,
                             metadata=(("x-signerd-principal", "platform"),))
            with pytest.raises(grpc.RpcError) as e:
                stub.ListWallets(pb.ListWalletsRequest(), timeout=10)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        finally:
            ch.close()
        assert d.stop() == 0
        logs.append(d.log_path.read_text())
    for text in logs:
        warnings = [json.loads(line) for line in text.splitlines()
                    if line.startswith("{") and "INSECURE" in line]
        assert len(warnings) == 1 and warnings[0]["level"] == "warning"


def test_without_the_insecure_flag_tls_files_are_required(tmp_path: Path) -> None:
    cfg = init_state(tmp_path / "state")
    text = cfg.read_text()
    cfg.write_text(re.sub(r'(?m)^(tls_cert|tls_key|client_ca) = .*\n', "", text))
    r = subprocess.run(signerd_cmd("run", "--config", str(cfg)), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0
    assert "needs tls_cert, tls_key and client_ca (or insecure = true)" in r.stderr
    edit_config(cfg, "server", insecure=False)
    r = subprocess.run(signerd_cmd("run", "--config", str(cfg)), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0 and "tls_cert" in r.stderr
