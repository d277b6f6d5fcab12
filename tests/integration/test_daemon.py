"""The daemon as a subprocess from `signerd init`: health, reflection, wallets, bad input."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import coincurve
import grpc
import pytest
from Crypto.Hash import keccak
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.support.daemon import Daemon, init_state, signerd_cmd
from tests.support.rpc import pb, rpc_error
from tests.support.fixtures import DaemonFactory


@pytest.fixture(scope="module")
def daemon(daemon_factory: DaemonFactory):
    yield from daemon_factory.run("daemon", clean_exit=True)  # SIGTERM drains and exits 0


def independent_eth_address(pub33: bytes) -> str:
    """keccak-256 of the uncompressed point, last 20 bytes, EIP-55 — written here, not imported."""
    raw = coincurve.PublicKey(pub33).format(compressed=False)[1:]
    h = keccak.new(digest_bits=256)
    h.update(raw)
    addr = h.digest()[-20:].hex()
    h2 = keccak.new(digest_bits=256)
    h2.update(addr.encode())
    check = h2.hexdigest()
    return "0x" + "".join(c.upper() if int(check[i], 16) >= 8 else c for i, c in enumerate(addr))


def test_health_is_serving_and_reflection_lists_services(daemon: Daemon) -> None:
    ch = daemon.channel("platform")
    resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""))
    assert resp.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(ch)
    answers = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
        list_services="")])))
    names = {s.name for s in answers[0].list_services_response.service}
    assert {"signerd.v1.Custody", "signerd.v1.Approval", "signerd.v1.Admin", "signerd.v1.Audit",
            "grpc.health.v1.Health"} <= names


def test_ethereum_wallet_address_matches_hsm_key(daemon: Daemon) -> None:
    w = daemon.custody().CreateWallet(pb.CreateWalletRequest(
        chain=pb.ETHEREUM, chain_ids=[1, 11155111], category=pb.SEIZED, case_ref="CASE-1"))
    assert w.address == independent_eth_address(w.keys[0].public_key)
    assert list(w.chain_ids) == [1, 11155111]
    assert w.category == pb.SEIZED and w.status == pb.ACTIVE and w.case_ref == "CASE-1"
    got = daemon.custody().GetWallet(pb.GetWalletRequest(wallet_id=w.id))
    assert got.address == w.address
    listed = daemon.custody().ListWallets(pb.ListWalletsRequest())
    assert w.id in {x.id for x in listed.wallets}


@pytest.mark.parametrize("network,hrp", [("mainnet", "bc"), ("testnet", "tb"),
                                         ("regtest", "bcrt")])
def test_bitcoin_p2wpkh_wallet_address_matches_hsm_key(daemon: Daemon, network: str,
                                                       hrp: str) -> None:
    from bitcointx import ChainParams
    from bitcointx.core.key import CPubKey
    from bitcointx.wallet import P2WPKHCoinAddress

    w = daemon.custody().CreateWallet(pb.CreateWalletRequest(
        chain=pb.BITCOIN, network=network, category=pb.STRATEGIC, case_ref="RESERVE"))
    params = {"mainnet": "bitcoin", "testnet": "bitcoin/testnet", "regtest": "bitcoin/regtest"}
    with ChainParams(params[network]):
        expected = str(P2WPKHCoinAddress.from_pubkey(CPubKey(w.keys[0].public_key)))
    assert w.address == expected and w.address.startswith(hrp + "1q")
    assert w.descriptor.startswith(f"wpkh({w.keys[0].public_key.hex()})#")


@pytest.mark.parametrize("req,needle", [
    (dict(chain=pb.CHAIN_UNSPECIFIED, network="mainnet", category=pb.SEIZED, case_ref="C"),
     "chain"),
    (dict(chain=pb.BITCOIN, network="moonnet", category=pb.SEIZED, case_ref="C"), "network"),
    (dict(chain=pb.ETHEREUM, chain_ids=[0], category=pb.SEIZED, case_ref="C"), "chain id 0"),
    (dict(chain=pb.ETHEREUM, chain_ids=[], category=pb.SEIZED, case_ref="C"), "chain_ids"),
    (dict(chain=pb.ETHEREUM, chain_ids=[1], category=pb.SEIZED, case_ref=""), "case_ref"),
    (dict(chain=pb.ETHEREUM, chain_ids=[1], category=pb.SEIZED, case_ref="   "), "case_ref"),
    (dict(chain=pb.ETHEREUM, chain_ids=[1], category=pb.CATEGORY_UNSPECIFIED, case_ref="C"),
     "category"),
])
def test_bad_wallet_requests_are_invalid_argument(daemon: Daemon, req: dict, needle: str) -> None:
    e = rpc_error(daemon.custody().CreateWallet, pb.CreateWalletRequest(**req))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in e.details()


def test_unknown_wallet_is_not_found(daemon: Daemon) -> None:
    e = rpc_error(daemon.custody().GetWallet, pb.GetWalletRequest(wallet_id="w_nope"))
    assert e.code() == grpc.StatusCode.NOT_FOUND and "w_nope" in e.details()


def test_payload_of_the_other_chain_is_invalid_argument(daemon: Daemon) -> None:
    c = daemon.custody()
    eth = c.CreateWallet(pb.CreateWalletRequest(chain=pb.ETHEREUM, chain_ids=[1],
                                                category=pb.SEIZED, case_ref="C-MIX"))
    btc = c.CreateWallet(pb.CreateWalletRequest(chain=pb.BITCOIN, network="regtest",
                                                category=pb.SEIZED, case_ref="C-MIX",
                                                script_type=pb.P2WPKH))
    e = rpc_error(c.SubmitTransfer, pb.SubmitTransferRequest(wallet_id=eth.id,
                                                             psbt=b"psbt\xff\x00"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details() == f"psbt: wallet {eth.id} is an ethereum wallet"
    e = rpc_error(c.SubmitTransfer, pb.SubmitTransferRequest(
        wallet_id=btc.id, ethereum=pb.EthereumTransaction(json="{}")))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details() == f"ethereum: wallet {btc.id} is a bitcoin wallet"
    e = rpc_error(c.SubmitTransfer, pb.SubmitTransferRequest(wallet_id="w_none",
                                                             psbt=b"psbt\xff\x00"))
    assert e.code() == grpc.StatusCode.NOT_FOUND


def test_metrics_endpoint_exports_signerd_series(daemon: Daemon) -> None:
    text = daemon.metrics()
    for name in ("signerd_build_info", "signerd_hsm_up 1.0", "signerd_hsm_sign_seconds_bucket",
                 "signerd_wallets{", "signerd_grpc_requests_total{"):
        assert name in text, name


def test_second_init_on_same_folder_is_refused(daemon: Daemon) -> None:
    r = subprocess.run(signerd_cmd("init", str(daemon.state)), capture_output=True, text=True)
    assert r.returncode != 0
    assert "refusing to overwrite" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_wrong_pin_exits_nonzero_naming_the_file(tmp_path: Path) -> None:
    cfg = init_state(tmp_path / "s")
    pin = cfg.parent / "hsm" / "pin"
    secret = pin.read_text().strip()
    pin.write_text("0000wrong0000\n")
    r = subprocess.run(signerd_cmd("run", "--config", str(cfg)), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert str(pin) in last and "incorrect" in last
    assert "0000wrong0000" not in r.stderr and secret not in r.stderr


def test_missing_token_exits_nonzero(tmp_path: Path) -> None:
    cfg = init_state(tmp_path / "s")
    shutil.rmtree(cfg.parent / "hsm" / "tokens")
    (cfg.parent / "hsm" / "tokens").mkdir()
    r = subprocess.run(signerd_cmd("run", "--config", str(cfg)), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode != 0
    assert "no HSM token labelled 'signerd'" in r.stderr.strip().splitlines()[-1]


def test_key_generated_then_daemon_restarted_still_signs(tmp_path: Path) -> None:
    """A wallet's key is found again by CKA_ID after a restart and its public key is unchanged."""
    d = Daemon(init_state(tmp_path / "s")).start()
    w = d.custody().CreateWallet(pb.CreateWalletRequest(
        chain=pb.ETHEREUM, chain_ids=[1], category=pb.CONFISCATED, case_ref="R-1"))
    assert d.stop() == 0
    d.start()
    again = d.custody().GetWallet(pb.GetWalletRequest(wallet_id=w.id))
    assert again.address == w.address
    status = d.admin().KeyStatus(pb.KeyStatusRequest())
    assert status.hsm_up and status.key_count >= 2  # the wallet key and the audit key
    head = d.audit().GetHead(pb.GetHeadRequest())  # signed by the HSM audit key after restart
    digest = hashlib.sha256(b"signerd-audit-head/v1" + head.instance_id.encode()
                            + head.seq.to_bytes(8, "big") + head.hash).digest()
    der = coincurve.ecdsa.cdata_to_der(coincurve.ecdsa.deserialize_compact(head.signature))
    assert coincurve.PublicKey(head.audit_public_key).verify(der, digest, hasher=None)
    assert d.stop() == 0


def test_sixteen_clients_create_wallets_at_once(daemon: Daemon) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def make(i: int) -> str:
        chain = pb.ETHEREUM if i % 2 else pb.BITCOIN
        req = pb.CreateWalletRequest(chain=chain, category=pb.SEIZED, case_ref=f"C-{i}",
                                     **({"chain_ids": [1]} if chain == pb.ETHEREUM
                                        else {"network": "regtest"}))
        return daemon.custody().CreateWallet(req).address

    with ThreadPoolExecutor(16) as ex:
        addrs = list(ex.map(make, range(48)))
    assert len(set(addrs)) == 48


def test_logs_are_json_lines_with_request_ids(daemon: Daemon) -> None:
    import json as _json

    daemon.custody().ListWallets(pb.ListWalletsRequest())
    lines = [l for l in daemon.log_path.read_text().splitlines() if l.strip()]
    docs = [_json.loads(l) for l in lines]  # every line is one JSON object
    rpcs = [d for d in docs if d.get("msg") == "rpc"]
    assert rpcs and all(d["request_id"] and d["rpc"] and d["code"] for d in rpcs)
    assert any(d["rpc"] == "Custody/ListWallets" and d["principal"] == "platform" for d in rpcs)


def test_systemd_readiness_is_notified_once_serving(tmp_path: Path) -> None:
    """Type=notify: READY=1 arrives on NOTIFY_SOCKET after the HSM, store and port are ready."""
    import os
    import socket

    sock_path = tmp_path / "notify.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(str(sock_path))
    srv.settimeout(60)
    d = Daemon(init_state(tmp_path / "s"))
    saved = {k: os.environ.get(k) for k in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    os.environ["NOTIFY_SOCKET"] = str(sock_path)
    os.environ["WATCHDOG_USEC"] = "30000000"
    try:
        d.start()
    finally:
        for k, v in saved.items():
            if v is None:
                del os.environ[k]
            else:
                os.environ[k] = v
    try:
        msg = srv.recv(4096).decode()
        assert "READY=1" in msg
        assert srv.recv(4096).decode() == "WATCHDOG=1"  # the monitor pings after each probe
        ch = d.channel("platform")
        assert health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest()).status == \
            health_pb2.HealthCheckResponse.SERVING
    finally:
        assert d.stop() == 0
    rest = []
    while True:
        m = srv.recv(4096).decode()
        rest.append(m)
        if "STOPPING=1" in m:
            break
    srv.close()


def test_a_normal_start_and_stop_log_nothing_above_info(tmp_path: Path) -> None:
    """Warnings are for what an operator should look at: a normal start (HSM up, listening)
    and a drained stop are info."""
    d = Daemon(init_state(tmp_path / "state")).start()
    assert d.stop() == 0
    assert d.log_path is not None
    lines = [json.loads(line) for line in d.log_path.read_text().splitlines()
             if line.startswith("{")]
    assert {"hsm up", "started", "stopped"} <= {line["msg"] for line in lines}
    assert [line for line in lines if line["level"] != "info"] == []
