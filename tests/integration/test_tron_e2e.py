"""Tron end to end on a real daemon: wallets with HSM keys, seized keys imported under the
governance quorum, TRX and registered TRC-20 transfers signed after the quorum. Inputs are made
by tronpy's builder and the protobuf messages tronpy ships; the signed transactions are read
back with those messages and their signer recovered with tronpy's keys, never with signerd's
code."""
from __future__ import annotations

import hashlib
import json
import time

import coincurve
import grpc
import pytest
from tronpy import Tron
from tronpy.keys import PrivateKey, PublicKey

from tests.support import tron as X
from tests.support.cli import ctl
from tests.support.daemon import Daemon
from tests.support.fixtures import DaemonFactory
from tests.support.governance import decide, govern
from tests.support.rpc import pb, rpc_error

MNEMONIC = ("abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon "
            "abandon about")
OTHER_CONTRACT = PrivateKey(b"\x0b" * 32).public_key.to_base58check_address()


@pytest.fixture(scope="module")
def daemon(daemon_factory: DaemonFactory):
    yield from daemon_factory.run("tron")


@pytest.fixture(scope="module")
def usdt(daemon: Daemon) -> str:
    """USDT registered as a trc20 token on nile through the governance quorum."""
    p = govern(daemon, daemon.admin().SetToken(pb.SetTokenRequest(
        chain_id=X.NILE_CHAIN_ID, address=X.CONTRACT, symbol="USDT", decimals=6,
        standard="trc20")))
    assert p.state == "APPROVED", p.failure
    return X.CONTRACT


def tronpy_address(compressed: bytes) -> str:
    uncompressed = coincurve.PublicKey(compressed).format(compressed=False)
    return PublicKey(uncompressed[1:]).to_base58check_address()


def test_wallet_address_is_its_hsm_key(daemon: Daemon) -> None:
    w = X.tron_wallet(daemon)
    assert w.chain == pb.TRON and w.network == "nile" and w.address.startswith("T")
    assert len(w.keys) == 1 and w.keys[0].hsm_held
    assert w.address == tronpy_address(w.keys[0].public_key)
    e = rpc_error(daemon.custody().CreateWallet, pb.CreateWalletRequest(
        chain=pb.TRON, network="testnet", category=pb.SEIZED, case_ref="C"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "Tron network" in e.details()


def test_trx_transfer_through_quorum_is_signed_by_the_wallet(daemon: Daemon) -> None:
    w = X.tron_wallet(daemon)
    raw = X.trx_raw(w.address, amount=1_500_000, memo="CASE-TRON")
    t = X.submit(daemon, w.id, X.payload(raw))
    assert t.state == pb.PENDING_APPROVAL
    assert [(o.address, o.amount, o.asset) for o in t.movement.outputs] == [
        (X.RECIPIENT, "1500000", "TRX")]
    assert t.movement.fee_asset == "TRX" and t.movement.chain_id == X.NILE_CHAIN_ID
    assert list(t.movement.digests) == [hashlib.sha256(raw).digest()]
    st = daemon.approval("inv1").GetStatement(pb.GetStatementRequest(
        transfer_id=t.id, decision=pb.APPROVE))
    body = json.loads(st.statement.split(b"\n", 1)[1])
    assert body["extra"]["tron_expiration"] == str(X.independent_decode(raw)["expiration"])
    assert body["extra"]["tron_memo"] == b"CASE-TRON".hex()
    assert decide(daemon, t.id, "inv1").state == pb.PENDING_APPROVAL
    t = decide(daemon, t.id, "cust1")
    assert t.state == pb.SIGNED, t.failure
    checked = X.check_signed(t.raw_tx)
    assert checked.signer == w.address
    assert checked.txid == t.tx_hash == hashlib.sha256(raw).hexdigest()
    assert checked.fields == X.independent_decode(raw)
    again = daemon.custody().GetTransfer(pb.GetTransferRequest(transfer_id=t.id))
    assert (again.raw_tx, again.tx_hash) == (t.raw_tx, t.tx_hash)
    # The same transaction cannot be submitted again: its id stays held.
    e = rpc_error(X.submit, daemon, w.id, X.payload(raw))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and "already held" in e.details()


def test_trc20_transfer_through_quorum_and_signerctl(daemon: Daemon, usdt: str, tmp_path
                                                     ) -> None:
    w = X.tron_wallet(daemon)
    raw = X.trc20_raw(w.address, amount=250 * 10**6, contract=usdt, fee_limit=30_000_000)
    path = tmp_path / "usdt.json"
    path.write_bytes(X.payload(raw))
    r = ctl(daemon, "--as", "platform", "--json", "transfer", "submit", w.id, "--tron-tx",
            str(path))
    t = json.loads(r.stdout)
    assert t["state"] == "PENDING_APPROVAL"
    assert [(o["address"], o["amount"], o["asset"]) for o in t["movement"]["outputs"]] == [
        (X.RECIPIENT, str(250 * 10**6), f"TRC20:{usdt}")]
    shown = ctl(daemon, "--as", "inv1", "transfer", "show", t["id"]).stdout
    assert "250.00 USDT (250000000 base units)" in shown and X.RECIPIENT in shown
    assert "30.000000 TRX (30000000 sun)" in shown and "tx expiration:" in shown
    for op in ("inv1", "cust1"):
        ctl(daemon, "--as", op, "transfer", "approve", t["id"], "--key",
            str(daemon.state / "operators" / f"{op}.key"), "--yes")
    r = ctl(daemon, "--as", "platform", "--json", "transfer", "result", t["id"])
    doc = json.loads(r.stdout)
    assert doc["state"] == "SIGNED"
    checked = X.check_signed(doc["raw_tx"])
    assert checked.signer == w.address and checked.fields == X.independent_decode(raw)
    signed = doc["tron_transaction"]
    assert signed["txID"] == checked.txid and signed["raw_data_hex"] == raw.hex()
    assert len(signed["signature"]) == 1
    assert signed["raw_data"]["contract"][0]["parameter"]["value"]["data"] == \
        X.independent_decode(raw)["call_data"].hex()
    assert signed["raw_data"]["fee_limit"] == 30_000_000


def _raw_with(owner: str, mutate) -> bytes:  # type: ignore[no-untyped-def]
    from tronpy.proto import tron_pb2

    msg = tron_pb2.Transaction.raw.FromString(X.trx_raw(owner))
    mutate(msg)
    return msg.SerializeToString()


def _asset_contract(msg, owner: str) -> None:  # type: ignore[no-untyped-def]
    from tronpy.proto import tron_pb2

    c = msg.contract[0]
    c.type = tron_pb2.Transaction.Contract.ContractType.TransferAssetContract
    c.parameter.type_url = X.TYPE_URL + "TransferAssetContract"
    c.parameter.value = tron_pb2.TransferAssetContract(
        asset_name=b"1002000", owner_address=X.raw_address(owner),
        to_address=X.raw_address(X.RECIPIENT), amount=5).SerializeToString()


@pytest.mark.parametrize("case", ["unregistered", "contract-type", "trailing", "expired",
                                  "beyond-window", "fee", "owner", "approve"])
def test_bad_tron_transactions_are_refused_naming_the_problem(daemon: Daemon, usdt: str,
                                                              case: str) -> None:
    w = X.tron_wallet(daemon)
    now = X.now_ms()
    code = grpc.StatusCode.INVALID_ARGUMENT
    if case == "unregistered":
        raw, needle = X.trc20_raw(w.address, contract=OTHER_CONTRACT), "not a TRC-20 token registered"
    elif case == "contract-type":
        raw, needle = _raw_with(w.address, lambda m: _asset_contract(m, w.address)), "contract type 2"
    elif case == "trailing":
        raw, needle = X.trx_raw(w.address) + b"\x00", "invalid field number 0"
    elif case == "expired":
        raw, needle = X.trc20_raw(w.address, expiration_ms=now - 1_000), "expired at"
    elif case == "beyond-window":  # two-key's window is 24h
        raw, needle = (X.trc20_raw(w.address, expiration_ms=now + 25 * 3600_000),
                       "after the transfer's own expiry")
    elif case == "fee":  # two-key bounds the fee_limit at 100 TRX
        raw, needle = X.trc20_raw(w.address, fee_limit=150_000_000), "exceeds max_fee.TRX"
        code = grpc.StatusCode.FAILED_PRECONDITION
    elif case == "owner":
        raw, needle = X.trx_raw(X.RECIPIENT), "is not this wallet's address"
    else:
        approve = bytes.fromhex("095ea7b3") + X.trc20_transfer_data(X.RECIPIENT, 1)[4:]
        raw, needle = X.trc20_raw(w.address, data=approve), "transfer(address,uint256)"
    e = rpc_error(X.submit, daemon, w.id, X.payload(raw))
    assert e.code() == code, e.details()
    assert needle in e.details()


def test_a_transaction_that_expires_before_the_quorum_is_never_signed(daemon: Daemon) -> None:
    w = X.tron_wallet(daemon)
    raw = X.trx_raw(w.address, expiration_ms=6_000)  # room for the first approval under load
    t = X.submit(daemon, w.id, X.payload(raw))
    decide(daemon, t.id, "inv1")
    time.sleep(6.5)
    t = decide(daemon, t.id, "cust1")
    for _ in range(50):
        if t.state not in (pb.PENDING_APPROVAL, pb.APPROVED):
            break
        time.sleep(0.1)
        t = daemon.custody().GetTransfer(pb.GetTransferRequest(transfer_id=t.id))
    assert t.state == pb.EXPIRED and not t.raw_tx
    assert "Tron transaction's expiration passed" in t.failure


def test_seized_keys_import_as_hex_and_mnemonic_under_the_governance_quorum(
        daemon: Daemon) -> None:
    key = PrivateKey(b"\x2a" * 32)
    wallets = []
    for req in (dict(hex=key.hex()),
                dict(mnemonic=MNEMONIC, derivation_path="m/44'/195'/0'/0/0")):
        p = daemon.admin().ImportKey(pb.ImportKeyRequest(
            chain=pb.TRON, network="nile", case_ref="CASE-TRON-SEIZED",
            seizure_record="SR-TRON-1", **req))
        assert p.kind == "wallet.import" and p.state == "PENDING_APPROVAL"
        wallet_id = json.loads(p.body_json)["change"]["wallet"]["id"]
        assert daemon.custody().GetWallet(pb.GetWalletRequest(
            wallet_id=wallet_id)).status == pb.AWAITING_APPROVAL
        assert govern(daemon, p).state == "APPROVED"
        wallets.append(daemon.custody().GetWallet(pb.GetWalletRequest(wallet_id=wallet_id)))
    assert wallets[0].address == key.public_key.to_base58check_address()
    derived = Tron(network="nile").generate_address_from_mnemonic(MNEMONIC)
    assert wallets[1].address == derived["base58check_address"]
    e = rpc_error(daemon.admin().ImportKey, pb.ImportKeyRequest(
        chain=pb.TRON, network="mainnet", case_ref="C", seizure_record="S",
        wif="KwDiBf89QgGbjEhKnhXJuH7LrciVrZi3qYjgd9M7rFU73sVHnoWn"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "WIF" in e.details()
    # The imported wallet signs under its policy (seized-sweep) like any other.
    seized = wallets[0]
    raw = X.trx_raw(seized.address, amount=42)
    t = X.submit(daemon, seized.id, X.payload(raw))
    for op in ("inv1", "cust1", "cust2", "pros1", "judge1"):
        if t.state != pb.PENDING_APPROVAL:
            break
        t = decide(daemon, t.id, op)
    assert t.state == pb.SIGNED, (t.state, t.requirement, t.failure)
    assert X.check_signed(t.raw_tx).signer == seized.address


def test_oversized_tron_payloads_are_refused_before_decoding(daemon: Daemon) -> None:
    w = X.tron_wallet(daemon)
    for body, needle in [
        (json.dumps({"raw_data_hex": "0a" * 70_000}).encode(), "more than 65536"),
        (json.dumps({"raw_data_hex": "0a" * 300_000}).encode(), "more than"),
        (b" " * 700_000 + b"{}", "larger than the limit"),
    ]:
        e = rpc_error(X.submit, daemon, w.id, body)
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()
        assert needle in e.details()
    e = rpc_error(daemon.custody().SubmitTransfer, pb.SubmitTransferRequest(
        wallet_id=X.tron_wallet(daemon).id, ethereum=pb.EthereumTransaction(json="{}")))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "tron wallet" in e.details()


def test_signerctl_imports_a_seized_tron_key_from_a_file(daemon: Daemon, tmp_path) -> None:
    key = PrivateKey(b"\x2b" * 32)
    path = tmp_path / "seized.hex"
    path.write_text(key.hex() + "\n")
    path.chmod(0o600)
    r = ctl(daemon, "--as", "admin", "--json", "key", "import", "CASE-TRON-CLI", "--chain",
            "tron", "--network", "shasta", "--hex", str(path), "--seizure-record", "SR-CLI")
    p = json.loads(r.stdout)
    assert p["kind"] == "wallet.import" and p["state"] == "PENDING_APPROVAL"
    record = p["change"]["wallet"]
    assert record["chain"] == "tron" and record["network"] == "shasta"
    assert record["address"] == key.public_key.to_base58check_address()
    r = ctl(daemon, "--as", "admin", "key", "import", "CASE-TRON-CLI", "--chain", "tron",
            "--network", "shasta", "--wif", str(path), "--seizure-record", "SR-CLI", ok=False)
    assert r.returncode != 0 and "WIF" in r.stderr


def test_the_trc20_statement_binds_the_registry_entry(daemon: Daemon, usdt: str) -> None:
    w = X.tron_wallet(daemon)
    t = X.submit(daemon, w.id, X.payload(X.trc20_raw(w.address, contract=usdt)))
    st = daemon.approval("inv1").GetStatement(pb.GetStatementRequest(
        transfer_id=t.id, decision=pb.APPROVE))
    body = json.loads(st.statement.split(b"\n", 1)[1])
    assert body["tokens"] == [{"chain_id": str(X.NILE_CHAIN_ID), "address": usdt,
                               "standard": "trc20", "symbol": "USDT", "decimals": "6"}]
    assert body["chain"] == "tron" and body["network"] == "nile"
    assert body["outputs"][0]["asset"] == f"TRC20:{usdt}" and body["fee_asset"] == "TRX"
    assert body["extra"]["tron_contract"] == "TriggerSmartContract"
