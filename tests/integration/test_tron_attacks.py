"""Tron, attacked from inside, on a real daemon.

A Tron address is the same 21 bytes on every Tron network, and a Tron signature names no
network (the transaction's ``ref_block_hash``, which the submitting platform chooses, is the
only tie to one). So a wallet of signerd on another Tron network is, on this one, an address
whose funds no wallet of this network governs: a transfer to it is no transfer to our own
wallet. And one seized key never makes wallets on two Tron networks."""
from __future__ import annotations

import json

import grpc
import pytest
from tronpy.keys import PrivateKey

from tests.support import tron as X
from tests.support.daemon import Daemon
from tests.support.fixtures import DaemonFactory
from tests.support.governance import govern
from tests.support.rpc import pb, rpc_error


@pytest.fixture(scope="module")
def daemon(daemon_factory: DaemonFactory):
    yield from daemon_factory.run("tron")


def test_a_wallet_on_another_tron_network_is_no_own_wallet(daemon: Daemon) -> None:
    mainnet = X.tron_wallet(daemon, network="mainnet")
    nile = X.tron_wallet(daemon, network="nile")
    also_mainnet = X.tron_wallet(daemon, network="mainnet")
    t = X.submit(daemon, mainnet.id, X.payload(X.trx_raw(mainnet.address, to=nile.address)))
    out = t.movement.outputs[0]
    assert out.address == nile.address
    assert out.destination_class == "external", (out.destination_class, out.wallet_id)
    assert not out.wallet_id
    # the other way round too
    t = X.submit(daemon, nile.id, X.payload(X.trx_raw(nile.address, to=mainnet.address)))
    assert t.movement.outputs[0].destination_class == "external"
    # on the same network it is our own wallet, as before
    t = X.submit(daemon, mainnet.id, X.payload(X.trx_raw(mainnet.address,
                                                         to=also_mainnet.address)))
    out = t.movement.outputs[0]
    assert out.destination_class == "own_wallet" and out.wallet_id == also_mainnet.id


def test_a_seized_key_makes_no_second_wallet_on_another_tron_network(daemon: Daemon) -> None:
    key = PrivateKey(b"\x3c" * 32)
    p = daemon.admin().ImportKey(pb.ImportKeyRequest(
        chain=pb.TRON, network="mainnet", case_ref="CASE-TRON-X", seizure_record="SR-X",
        hex=key.hex()))
    assert govern(daemon, p).state == "APPROVED"
    wallet_id = json.loads(p.body_json)["change"]["wallet"]["id"]
    w = daemon.custody().GetWallet(pb.GetWalletRequest(wallet_id=wallet_id))
    assert (w.network, w.address) == ("mainnet", key.public_key.to_base58check_address())
    for network in ("nile", "shasta", "mainnet"):
        e = rpc_error(daemon.admin().ImportKey, pb.ImportKeyRequest(
            chain=pb.TRON, network=network, case_ref="CASE-TRON-X", seizure_record="SR-X",
            hex=key.hex()))
        assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e.details()
        assert "never serves two wallets" in e.details()


def test_a_non_canonical_encoding_is_refused_at_submission(daemon: Daemon) -> None:
    """The platform cannot have the quorum approve an id java-tron would not compute: the
    same transaction with ``fee_limit = 0`` written out parses to the same message, but
    java-tron's id (over its re-encoding) is not SHA-256 of these bytes."""
    w = X.tron_wallet(daemon)
    raw = X.trx_raw(w.address) + bytes.fromhex("900100")  # field 18 (fee_limit) = 0
    e = rpc_error(X.submit, daemon, w.id, X.payload(raw))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()
    assert "raw_data.fee_limit: written with its default value" in e.details()


def test_a_tron_transfer_replaces_no_other_transaction(daemon: Daemon) -> None:
    """Tron has no nonce: another transaction "replacing" a transfer would not stop the first
    from executing, so a replacement must be the very same transaction."""
    w = X.tron_wallet(daemon)
    first = X.submit(daemon, w.id, X.payload(X.trx_raw(w.address, amount=1_000)))
    e = rpc_error(daemon.custody().SubmitTransfer, pb.SubmitTransferRequest(
        wallet_id=w.id, replaces=first.id, tron=pb.TronTransaction(
            json=X.payload(X.trx_raw(w.address, amount=2_000)).decode())))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, e.details()
    assert "does not spend the same nonce or outputs" in e.details()
