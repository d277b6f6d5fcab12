"""Ethereum end to end: submit, 2-of-n approvals with roles, HSM signature, checked by eth-account
and mined on py-evm through eth-tester."""
from __future__ import annotations

import json

import grpc
import pytest
from eth_account import Account

from tests.unit.eth_oracle import CHAIN_ID, mine_raw_tx
from tests.support.daemon import Daemon, init_state
from tests.support.governance import decide, set_policy
from tests.support.rpc import pb, rpc_error
from tests.support.ethereum import GWEI, eth_wallet, submit, tx_fields
from tests.support.fixtures import DaemonFactory


@pytest.fixture(scope="module")
def daemon(daemon_factory: DaemonFactory):
    yield from daemon_factory.run("eth")


def test_two_key_transfer_is_signed_once_and_mines(daemon: Daemon) -> None:
    w = eth_wallet(daemon)
    t = submit(daemon, w.id, tx_fields())
    assert t.state == pb.PENDING_APPROVAL
    assert "investigator x1" in t.requirement and "custody_officer x1" in t.requirement
    t = decide(daemon, t.id, "inv1")
    assert t.state == pb.PENDING_APPROVAL and "custody_officer" in t.remaining and not t.raw_tx
    t = decide(daemon, t.id, "cust1")
    assert t.state == pb.SIGNED and t.raw_tx
    raw = bytes.fromhex(t.raw_tx)
    assert Account.recover_transaction(raw) == w.address
    receipt = mine_raw_tx(raw, w.address, 10**18)
    assert receipt["status"] == 1
    again = daemon.custody().GetTransfer(pb.GetTransferRequest(transfer_id=t.id))
    assert again.raw_tx == t.raw_tx and again.tx_hash == t.tx_hash


def test_nonce_conflict_is_refused_and_released_after_cancel(daemon: Daemon) -> None:
    w = eth_wallet(daemon)
    first = submit(daemon, w.id, tx_fields(nonce=5))
    e = rpc_error(submit, daemon, w.id, tx_fields(nonce=5, value=1))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and "already held" in e.details()
    daemon.custody().CancelTransfer(pb.CancelTransferRequest(transfer_id=first.id, reason="x"))
    assert submit(daemon, w.id, tx_fields(nonce=5, value=1)).state == pb.PENDING_APPROVAL


@pytest.mark.parametrize("fields,needle", [
    (tx_fields(to="0x12"), "to"),
    (tx_fields(to="0x000000000000000000000000000000000000DEAD"[:-1] + "d"), "to"),
    (tx_fields(chainId=1), "chainId"),
    (tx_fields(maxPriorityFeePerGas=3 * GWEI, maxFeePerGas=2 * GWEI), "maxPriorityFeePerGas"),
    (tx_fields(value=2**256), "value"),
    (tx_fields(value="0xzz"), "value"),
    (tx_fields(nonce=-1), "nonce"),
    (tx_fields(data="0x" + "00" * 200_000), "data"),
])
def test_bad_ethereum_fields_are_invalid_argument(daemon: Daemon, fields: dict, needle: str
                                                  ) -> None:
    w = eth_wallet(daemon)
    e = rpc_error(submit, daemon, w.id, fields)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()
    assert needle in e.details()


def test_ten_megabyte_data_is_refused_by_the_size_limit(daemon: Daemon) -> None:
    w = eth_wallet(daemon)
    e = rpc_error(submit, daemon, w.id, tx_fields(data="0x" + "ab" * 5_000_000))
    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than" in e.details() or "message" in e.details()


def test_unknown_wallet_is_not_found(daemon: Daemon) -> None:
    e = rpc_error(submit, daemon, "w_missing", tx_fields())
    assert e.code() == grpc.StatusCode.NOT_FOUND and "w_missing" in e.details()


def test_wallet_without_matching_rule_is_refused_naming_it(daemon: Daemon) -> None:
    policy = ('name = "tiny"\n[[rule]]\nname = "tiny"\nasset = "ETH"\nmax_amount = "10"\n'
              'approvers = 2\n')
    w = eth_wallet(daemon, policy=policy)
    e = rpc_error(submit, daemon, w.id, tx_fields(value=11))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and w.id in e.details()


def test_watch_streams_state_changes_until_signed(daemon: Daemon) -> None:
    import threading

    w = eth_wallet(daemon)
    t = submit(daemon, w.id, tx_fields(nonce=77))
    seen: list[int] = []
    stream = daemon.custody().WatchTransfer(pb.WatchTransferRequest(transfer_id=t.id),
                                            timeout=60)
    reader = threading.Thread(target=lambda: seen.extend(x.state for x in stream))
    reader.start()
    decide(daemon, t.id, "inv1")
    decide(daemon, t.id, "cust2")
    reader.join(60)
    assert seen[0] == pb.PENDING_APPROVAL and seen[-1] == pb.SIGNED


def test_list_and_cancel(daemon: Daemon) -> None:
    w = eth_wallet(daemon)
    t = submit(daemon, w.id, tx_fields(nonce=78))
    listed = daemon.custody().ListTransfers(pb.ListTransfersRequest(
        wallet_id=w.id, state=pb.PENDING_APPROVAL))
    assert [x.id for x in listed.transfers] == [t.id]
    c = daemon.custody().CancelTransfer(pb.CancelTransferRequest(transfer_id=t.id, reason="typo"))
    assert c.state == pb.CANCELLED
    e = rpc_error(decide, daemon, t.id, "inv1")
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and "CANCELLED" in e.details()
    e = rpc_error(daemon.custody().CancelTransfer, pb.CancelTransferRequest(transfer_id=t.id))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_signed_nonce_stays_held_until_an_explicit_replacement(daemon: Daemon) -> None:
    w = eth_wallet(daemon)
    t = submit(daemon, w.id, tx_fields(nonce=90))
    decide(daemon, t.id, "inv1")
    assert decide(daemon, t.id, "cust1").state == pb.SIGNED
    bump = tx_fields(nonce=90, maxFeePerGas=3 * GWEI)
    e = rpc_error(submit, daemon, w.id, bump)
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and "already held" in e.details()
    r = daemon.custody().SubmitTransfer(pb.SubmitTransferRequest(
        wallet_id=w.id, replaces=t.id, ethereum=pb.EthereumTransaction(json=json.dumps(bump))))
    assert r.replaces == t.id and r.state == pb.PENDING_APPROVAL  # judged by policy again
    # A pending replacement supersedes: a second bump replaces it and cancels it.
    r2 = daemon.custody().SubmitTransfer(pb.SubmitTransferRequest(
        wallet_id=w.id, replaces=r.id, ethereum=pb.EthereumTransaction(
            json=json.dumps(tx_fields(nonce=90, maxFeePerGas=4 * GWEI)))))
    old = daemon.custody().GetTransfer(pb.GetTransferRequest(transfer_id=r.id))
    assert old.state == pb.CANCELLED and r2.id in old.failure


def test_the_default_template_caps_the_fee_in_wei(daemon: Daemon) -> None:
    """two-key bounds an Ethereum fee (gas x maxFeePerGas) at 0.05 ETH; before, any fee passed."""
    w = eth_wallet(daemon)
    e = rpc_error(submit, daemon, w.id, tx_fields(nonce=200, gas=500_000,
                                                  maxFeePerGas=2_000 * GWEI))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "fee 1000000000000000000 wei (1 ETH) exceeds max_fee.ETH 50000000000000000 wei (0.05 ETH)" in e.details()
    t = submit(daemon, w.id, tx_fields(nonce=200, gas=250_000, maxFeePerGas=200 * GWEI))
    assert t.state == pb.PENDING_APPROVAL and t.movement.fee == str(5 * 10**16)
