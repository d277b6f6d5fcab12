from __future__ import annotations

import datetime as dt
import ipaddress
import os
import stat
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from signerd.adapters import pki
from signerd.core.errors import AlreadyExists, InvalidArgument

PRINCIPALS = ["platform", "admin", "auditor", "inv1", "cust1"]


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def ca():
    return pki.make_ca()


@pytest.fixture(scope="module")
def dev_pki(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    pki.make_dev_pki(d, PRINCIPALS, pki.dev_ca_key_path(d))
    return d


def builder(*roots: x509.Certificate) -> verification.PolicyBuilder:
    return verification.PolicyBuilder().store(verification.Store(list(roots)))


# --- chain and profile -------------------------------------------------------------------


def test_ca_profile(ca):
    _, cert = ca
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign
    assert cert.public_key().curve.name == "secp256r1"


def test_server_chain_verifies_for_each_name(ca):
    ca_key, ca_cert = ca
    _, server = pki.issue_server(ca_key, ca_cert)
    for name in (
        verification.DNSName("localhost"),
        verification.IPAddress(ipaddress.ip_address("127.0.0.1")),
        verification.IPAddress(ipaddress.ip_address("::1")),
    ):
        chain = builder(ca_cert).build_server_verifier(name).verify(server, [])
        assert chain[-1] == ca_cert
    with pytest.raises(verification.VerificationError):
        builder(ca_cert).build_server_verifier(verification.DNSName("example.com")).verify(server, [])


def test_client_chain_verifies_and_names_principal(ca):
    ca_key, ca_cert = ca
    _, client = pki.issue_client(ca_key, ca_cert, "cust1")
    verified = builder(ca_cert).build_client_verifier().verify(client, [])
    assert verified.chain[-1] == ca_cert
    assert verified.subjects == [x509.UniformResourceIdentifier("signerd:principal:cust1")]
    eku = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_leaf_roles_are_not_interchangeable(ca):
    ca_key, ca_cert = ca
    _, server = pki.issue_server(ca_key, ca_cert)
    _, client = pki.issue_client(ca_key, ca_cert, "platform")
    with pytest.raises(verification.VerificationError):
        builder(ca_cert).build_client_verifier().verify(server, [])
    with pytest.raises(verification.VerificationError):
        builder(ca_cert).build_server_verifier(verification.DNSName("localhost")).verify(client, [])


def test_other_ca_does_not_verify(ca):
    ca_key, _ = ca
    _, other_ca = pki.make_ca("another CA")
    _, client = pki.issue_client(ca_key, ca[1], "platform")
    with pytest.raises(verification.VerificationError):
        builder(other_ca).build_client_verifier().verify(client, [])


def test_expired_client_is_expired(ca):
    ca_key, ca_cert = ca
    now = dt.datetime.now(dt.timezone.utc)
    _, cert = pki.issue_client(
        ca_key, ca_cert, "inv1",
        not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=1),
    )
    assert cert.not_valid_after_utc < now
    with pytest.raises(verification.VerificationError, match="not valid at validation time"):
        builder(ca_cert).build_client_verifier().verify(cert, [])
    cert.verify_directly_issued_by(ca_cert)  # expired, not forged


def test_validity_window_must_be_sane(ca):
    ca_key, ca_cert = ca
    now = dt.datetime.now(dt.timezone.utc)
    with pytest.raises(InvalidArgument):
        pki.issue_client(
            ca_key, ca_cert, "inv1", not_before=now, not_after=now - dt.timedelta(seconds=1)
        )
    with pytest.raises(InvalidArgument):
        pki.issue_client(ca_key, ca_cert, "inv1", not_after=dt.datetime(2030, 1, 1))


# --- principal parsing -------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["", "Admin", "1abc", "a" * 65, "a b", "op1\n", "платформа"])
def test_issue_client_rejects_bad_principal(ca, bad):
    with pytest.raises(InvalidArgument):
        pki.issue_client(*ca, bad)


def test_principal_from_issued_cert(ca):
    _, cert = pki.issue_client(*ca, "a" * 64)
    assert pki.principal_from_cert_der(der(cert)) == "a" * 64


def _custom(ca, cns: list[str], uris: list[str] | None) -> bytes:
    """A leaf with arbitrary CNs and SAN URIs, to exercise the parser beyond what pki issues."""
    ca_key, ca_cert = ca
    key = pki._new_key()
    now = dt.datetime.now(dt.timezone.utc)
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn) for cn in cns]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if uris is not None:
        b = b.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
            critical=False,
        )
    return der(b.sign(ca_key, hashes.SHA256()))


@pytest.mark.parametrize(
    "cns, uris, expected",
    [
        (["judge1"], ["signerd:principal:admin"], "admin"),  # SAN wins over CN
        (["judge1"], None, "judge1"),  # CN fallback without SAN
        (["judge1"], ["https://example.com/x"], "judge1"),  # unrelated URI: CN fallback
        (["judge1"], ["signerd:principal:Admin"], None),  # bad SAN id: no fallback to CN
        (["judge1"], ["signerd:principal:a", "signerd:principal:b"], None),  # ambiguous
        (["judge1"], ["signerd:principal:a", "signerd:principal:a"], "a"),
        (["Judge 1"], None, None),
        (["a", "b"], None, None),  # two CNs
        ([], None, None),
    ],
)
def test_principal_parsing(ca, cns, uris, expected):
    assert pki.principal_from_cert_der(_custom(ca, cns, uris)) == expected


def test_principal_from_garbage_is_none():
    assert pki.principal_from_cert_der(b"") is None
    assert pki.principal_from_cert_der(b"\x30\x03\x02\x01\x00") is None


# --- files -------------------------------------------------------------------------------


def test_dev_pki_layout_and_modes(dev_pki):
    expected = {"ca.pem", "server.pem", "server.key", "clients"}  # the CA key is not in it
    assert {p.name for p in dev_pki.iterdir()} == expected
    assert {p.name for p in (dev_pki / "clients").iterdir()} == {
        f"{p}.{ext}" for p in PRINCIPALS for ext in ("pem", "key")
    }
    keys = [pki.dev_ca_key_path(dev_pki), dev_pki / "server.key"]
    keys += [dev_pki / "clients" / f"{p}.key" for p in PRINCIPALS]
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
        serialization.load_pem_private_key(key.read_bytes(), password=None)


def test_dev_pki_chains_and_principals(dev_pki):
    ca_cert = pki.load_cert(dev_pki / "ca.pem")
    server = pki.load_cert(dev_pki / "server.pem")
    builder(ca_cert).build_server_verifier(verification.DNSName("localhost")).verify(server, [])
    for p in PRINCIPALS:
        cert = pki.load_cert(dev_pki / "clients" / f"{p}.pem")
        builder(ca_cert).build_client_verifier().verify(cert, [])
        assert pki.principal_from_cert_der(der(cert)) == p
        key = serialization.load_pem_private_key((dev_pki / "clients" / f"{p}.key").read_bytes(), None)
        assert key.public_key() == cert.public_key()


def test_write_key_is_exclusive(tmp_path, ca):
    key, _ = ca
    path = tmp_path / "k.pem"
    pki.write_pem_key(path, key)
    with pytest.raises(AlreadyExists):
        pki.write_pem_key(path, key)
    link = tmp_path / "link.pem"
    link.symlink_to(tmp_path / "elsewhere.pem")
    with pytest.raises(AlreadyExists):
        pki.write_pem_key(link, key)
    assert not (tmp_path / "elsewhere.pem").exists()


def test_write_key_mode_ignores_permissive_umask(tmp_path, ca):
    old = os.umask(0)
    try:
        pki.write_pem_key(tmp_path / "k.pem", ca[0])
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "k.pem").stat().st_mode) == 0o600


def test_make_dev_pki_refuses_to_overwrite(dev_pki, tmp_path):
    ca_key = pki.dev_ca_key_path(dev_pki)
    before = ca_key.read_bytes()
    with pytest.raises(AlreadyExists):
        pki.make_dev_pki(dev_pki, ["platform"], ca_key)
    assert ca_key.read_bytes() == before
    with pytest.raises(AlreadyExists):  # a fresh folder, but the CA key is there already
        pki.make_dev_pki(tmp_path / "fresh", ["platform"], ca_key)
    assert ca_key.read_bytes() == before and not (tmp_path / "fresh" / "ca.pem").exists()


def test_the_ca_key_is_loaded_only_for_its_own_ca(dev_pki, tmp_path):
    ca_cert = pki.load_cert(dev_pki / "ca.pem")
    key = pki.load_ca_key(pki.dev_ca_key_path(dev_pki), ca_cert)
    assert key.public_key() == ca_cert.public_key()
    with pytest.raises(InvalidArgument, match="is not the private key of the CA"):
        pki.load_ca_key(dev_pki / "server.key", ca_cert)
    (tmp_path / "junk.key").write_text("junk")
    with pytest.raises(InvalidArgument, match="not an unencrypted PEM private key"):
        pki.load_ca_key(tmp_path / "junk.key", ca_cert)
    with pytest.raises(InvalidArgument, match="no such file"):
        pki.load_ca_key(tmp_path / "missing.key", ca_cert)


def test_make_dev_pki_rejects_bad_principals(tmp_path):
    with pytest.raises(InvalidArgument):
        pki.make_dev_pki(tmp_path / "x", ["ok", "Not OK"], tmp_path / "x.ca" / "ca.key")
    with pytest.raises(InvalidArgument):
        pki.make_dev_pki(tmp_path / "y", ["dup", "dup"], tmp_path / "y.ca" / "ca.key")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_load_cert_rejects_non_pem(tmp_path):
    (tmp_path / "x.pem").write_bytes(b"not a certificate")
    with pytest.raises(InvalidArgument):
        pki.load_cert(tmp_path / "x.pem")


# --- a real mTLS handshake through gRPC ----------------------------------------------------


class _RecordingHealth(health.HealthServicer):
    """The standard health service, also recording the principal each caller's cert names."""

    def __init__(self):
        super().__init__()
        self.principals: list[str | None] = []

    def Check(self, request, context):
        pems = context.auth_context().get("x509_pem_cert", [])
        if pems:
            cert = x509.load_pem_x509_certificate(pems[0])
            self.principals.append(pki.principal_from_cert_der(der(cert)))
        return super().Check(request, context)


@pytest.fixture(scope="module")
def mtls_server(dev_pki):
    creds = grpc.ssl_server_credentials(
        [((dev_pki / "server.key").read_bytes(), (dev_pki / "server.pem").read_bytes())],
        root_certificates=(dev_pki / "ca.pem").read_bytes(),
        require_client_auth=True,
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = _RecordingHealth()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", creds)
    assert port
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(grace=None)


def _check(target: str, ca_pem: bytes, key_pem: bytes | None = None, cert_pem: bytes | None = None):
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
    )
    with grpc.secure_channel(target, creds) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)


def test_mtls_client_with_cert_succeeds(mtls_server, dev_pki):
    target, servicer = mtls_server
    clients = dev_pki / "clients"
    reply = _check(
        target,
        (dev_pki / "ca.pem").read_bytes(),
        (clients / "inv1.key").read_bytes(),
        (clients / "inv1.pem").read_bytes(),
    )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    assert servicer.principals[-1] == "inv1"


def test_mtls_client_from_other_ca_fails(mtls_server, dev_pki, tmp_path):
    target, servicer = mtls_server
    pki.make_dev_pki(tmp_path, ["inv1"], pki.dev_ca_key_path(tmp_path))
    seen = len(servicer.principals)
    with pytest.raises(grpc.RpcError) as err:
        _check(
            target,
            (dev_pki / "ca.pem").read_bytes(),
            (tmp_path / "clients" / "inv1.key").read_bytes(),
            (tmp_path / "clients" / "inv1.pem").read_bytes(),
        )
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(servicer.principals) == seen


def test_mtls_client_without_cert_fails(mtls_server, dev_pki):
    target, servicer = mtls_server
    seen = len(servicer.principals)
    with pytest.raises(grpc.RpcError) as err:
        _check(target, (dev_pki / "ca.pem").read_bytes())
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(servicer.principals) == seen


def test_mtls_expired_client_cert_fails(mtls_server, dev_pki, tmp_path):
    target, _ = mtls_server
    ca_key = serialization.load_pem_private_key(pki.dev_ca_key_path(dev_pki).read_bytes(), None)
    ca_cert = pki.load_cert(dev_pki / "ca.pem")
    now = dt.datetime.now(dt.timezone.utc)
    key, cert = pki.issue_client(
        ca_key, ca_cert, "inv2",
        not_before=now - dt.timedelta(days=30), not_after=now - dt.timedelta(days=1),
    )
    pki.write_pem_key(tmp_path / "inv2.key", key)
    pki.write_pem_cert(tmp_path / "inv2.pem", cert)
    with pytest.raises(grpc.RpcError) as err:
        _check(
            target,
            (dev_pki / "ca.pem").read_bytes(),
            (tmp_path / "inv2.key").read_bytes(),
            (tmp_path / "inv2.pem").read_bytes(),
        )
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mtls_client_rejects_server_from_other_ca(mtls_server, dev_pki, tmp_path):
    target, _ = mtls_server
    pki.make_dev_pki(tmp_path, ["inv1"], pki.dev_ca_key_path(tmp_path))
    with pytest.raises(grpc.RpcError) as err:
        _check(
            target,
            (tmp_path / "ca.pem").read_bytes(),
            (dev_pki / "clients" / "inv1.key").read_bytes(),
            (dev_pki / "clients" / "inv1.pem").read_bytes(),
        )
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
