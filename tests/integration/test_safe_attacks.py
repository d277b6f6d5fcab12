"""Safe wallets attacked by one insider, on anvil: the platform (which creates wallets and submits
SafeTxs alone) and a wallet quorum under a policy that allows DELEGATECALL.

- A Safe "deployed" by a factory of the platform's choosing sits at exactly the CREATE2 address
  signerd predicts from the setup, yet its owners are whoever that factory put there: signerd
  must record Safes only of the canonical v1.4.1 factory and singleton (and fallback handler).
- A DELEGATECALL runs its target's code as the Safe itself: through MultiSend it calls the Safe's
  own ``addOwnerWithThreshold``, so it changes who controls the Safe and needs the governance
  quorum's ``safe.owners`` approval like a direct call of the Safe to itself.

The judges are the Safe contracts themselves (``getOwners``, ``execTransaction``), eth-abi from
the artifacts' ABI and eth-utils; never signerd's own Safe code."""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import coincurve
import grpc
import pytest
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from tests.support import evm
from tests.support.attacks import (FRESH, assert_no_signature, monitor_ticks, sqlite_writer,
                                   wait_state)
from tests.support.daemon import Daemon
from tests.support.governance import decide, govern, set_policy
from tests.support.rpc import pb, rpc_error
from tests.support.safe import Contract, SafeDeployment, dumps, moves_policy, safe_tx

pytestmark = evm.needs_evm()

CHAIN_ID = 31337
CASE = "CASE-SAFE-ATTACK"
POLICY = """name = "safe-batches"
expiry = "1h"
allow_contract_calls = true

[[rule]]
name = "batches"
asset = "ETH"
contract_call = true
delegatecall = true
approvers = 2
roles = { investigator = 1, custody_officer = 1 }
"""

# A factory with SafeProxyFactory's interface that deploys the real SafeProxy at the CREATE2
# address of the initializer it is given, then sets the Safe up for its caller instead.
EVIL_FACTORY = """// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;
interface ISafeSetup {
    function setup(address[] calldata owners, uint256 threshold, address to, bytes calldata data,
                   address fallbackHandler, address paymentToken, uint256 payment,
                   address payable paymentReceiver) external;
}
contract LookalikeFactory {
    bytes public creationCode;
    constructor(bytes memory code) { creationCode = code; }
    function createProxyWithNonce(address singleton, bytes memory initializer, uint256 saltNonce)
            external returns (address proxy) {
        bytes32 salt = keccak256(abi.encodePacked(keccak256(initializer), saltNonce));
        bytes memory init = abi.encodePacked(creationCode, uint256(uint160(singleton)));
        assembly { proxy := create2(0x0, add(0x20, init), mload(init), salt) }
        require(proxy != address(0), "create2 failed");
        address[] memory owners = new address[](1);
        owners[0] = msg.sender;
        ISafeSetup(proxy).setup(owners, 1, address(0), "", address(0), address(0), 0,
                                payable(address(0)));
    }
}
"""


def address_from_pubkey(compressed: bytes) -> str:
    point = coincurve.PublicKey(compressed).format(compressed=False)[1:]
    return to_checksum_address(keccak(point)[12:])


class World:
    def __init__(self, node: evm.Anvil, d: Daemon):
        self.node, self.d = node, d
        self.dep = SafeDeployment(node)
        self.platform = node.accounts[2]  # the platform's own account on chain

    def key_share(self) -> tuple[str, str]:
        share = self.d.custody().CreateKeyShare(pb.CreateKeyShareRequest(
            category=pb.SEIZED, case_ref=CASE))
        return share.key_id, address_from_pubkey(bytes(share.public_key))

    def create_wallet(self, share: str, address: str, setup: dict[str, Any]) -> pb.Wallet:
        return self.d.custody().CreateWallet(pb.CreateWalletRequest(
            chain=pb.ETHEREUM, chain_ids=[CHAIN_ID], script_type=pb.SAFE, category=pb.SEIZED,
            case_ref=CASE, hsm_key_ids=[share], safe_address=address,
            safe_setup=json.dumps(setup)))


@pytest.fixture(scope="module")
def world(daemon_factory: Any) -> Iterator[World]:
    with evm.Anvil.start(CHAIN_ID) as node:
        yield World(node, daemon_factory.start("safe_attacks", **FRESH))


def test_a_safe_of_a_lookalike_factory_is_not_recorded(world: World) -> None:
    """The platform names its own factory in a 1-of-1 setup of signerd's owner key (such a
    wallet needs no governance act). The factory deploys the genuine SafeProxy at the very
    address signerd computes from the setup, but sets it up with the platform as sole owner:
    the Safe (its own getOwners) belongs to the platform, which empties it with a signature of
    its own. signerd must refuse to record it, naming the factory."""
    node, dep = world.node, world.dep
    creation = bytes(dep.factory.call("proxyCreationCode"))  # the canonical factory's
    art = evm.compile_solidity({"Lookalike.sol": EVIL_FACTORY})["LookalikeFactory"]
    evil = Contract(node, node.deploy(art["bytecode"] + abi_encode(["bytes"], [creation]).hex()),
                    art["abi"])
    share, owner = world.key_share()
    setup = dict(dep.setup_json([owner], 1, salt=99), factory=evil.address)
    initializer = bytes.fromhex(dep.initializer(setup)[2:])
    rec = node.send(world.platform, evil.address,
                    evil.calldata("createProxyWithNonce", setup["singleton"], initializer, 99))
    assert int(rec["status"], 16) == 1, rec
    # The CREATE2 address of that initializer, computed here with eth-utils.
    salt = keccak(keccak(initializer) + (99).to_bytes(32, "big"))
    init_code = creation + bytes(12) + bytes.fromhex(setup["singleton"][2:])
    address = to_checksum_address(
        keccak(b"\xff" + bytes.fromhex(evil.address[2:]) + salt + keccak(init_code))[12:])
    safe = Contract(node, address, dep.safe_abi)
    assert [str(o).lower() for o in safe.call("getOwners")] == [world.platform.lower()]
    assert int(node.rpc("eth_getCode", address, "latest"), 16)  # deployed there

    e = rpc_error(world.create_wallet, share, address, setup)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()
    assert "factory" in e.details() and evil.address in e.details(), e.details()


@pytest.mark.parametrize("key", ["singleton", "fallbackHandler"])
def test_a_safe_with_another_singleton_or_fallback_handler_is_not_recorded(
        world: World, key: str) -> None:
    """The singleton is the Safe's code; the fallback handler answers EIP-1271 signature checks
    for the Safe (isValidSignature). Anything but the canonical v1.4.1 contracts is code of the
    platform's choosing: refused, naming the field."""
    share, owner = world.key_share()
    stranger = to_checksum_address("0x" + "5a" * 20)
    setup = dict(world.dep.setup_json([owner], 1, salt=5), **{key: stranger})
    factory = bytes.fromhex(setup["factory"][2:])
    initializer = bytes.fromhex(world.dep.initializer(setup)[2:])
    creation = bytes(world.dep.factory.call("proxyCreationCode"))
    salt = keccak(keccak(initializer) + (5).to_bytes(32, "big"))
    init_code = creation + bytes(12) + bytes.fromhex(setup["singleton"][2:])
    address = to_checksum_address(keccak(b"\xff" + factory + salt + keccak(init_code))[12:])
    e = rpc_error(world.create_wallet, share, address, setup)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()
    assert f"{key}: {stranger}" in e.details(), e.details()


def multisend_payload(calls: list[tuple[int, str, int, bytes]]) -> bytes:
    """MultiSend's packed transactions: operation (1 byte), to (20), value (32), data length
    (32), data."""
    out = b""
    for op, to, value, data in calls:
        out += bytes([op]) + bytes.fromhex(to[2:]) + value.to_bytes(32, "big") + \
            len(data).to_bytes(32, "big") + data
    return out


def test_a_delegatecall_that_adds_an_owner_needs_the_governance_quorum(world: World) -> None:
    """A policy allows DELEGATECALL (for MultiSend batches). A batch whose one call is the
    Safe's own addOwnerWithThreshold reaches the wallet's quorum: it must stay APPROVED,
    unsigned, until the governance quorum approves its safe.owners proposal, as a direct call
    of the Safe to itself does; then it executes and the Safe has the new owner."""
    node, dep, d = world.node, world.dep, world.d
    share, owner = world.key_share()
    setup = dep.setup_json([owner], 1, salt=11)
    safe = dep.deploy_safe(setup)
    wallet = world.create_wallet(share, safe.address, setup)
    assert wallet.status == pb.ACTIVE  # 1-of-1 of this signerd: no governance act
    set_policy(d, wallet.id, POLICY)
    ms_art = evm.safe_artifact("libraries/MultiSend.sol/MultiSend.json")
    multisend = Contract(node, node.deploy(ms_art["bytecode"]), ms_art["abi"])
    newcomer = Account.create().address
    add = bytes.fromhex(safe.calldata("addOwnerWithThreshold", newcomer, 1)[2:])
    data = multisend.calldata("multiSend", multisend_payload([(0, safe.address, 0, add)]))
    tx = safe_tx(multisend.address, data=data, operation=1, nonce=int(safe.call("nonce")))
    t = d.custody().SubmitTransfer(pb.SubmitTransferRequest(wallet_id=wallet.id,
                                                            safe_tx=dumps(tx)))
    fields = {f.name: f.value for f in t.movement.safe}
    assert fields["operation"] == "1 (DELEGATECALL)"
    assert "owner_change" in fields, fields  # named for the approvers and the governance
    decide(d, t.id, "inv1")
    t = decide(d, t.id, "cust1")
    assert t.state == pb.APPROVED, t.state  # the wallet's approvers alone
    monitor_ticks()
    assert_no_signature(d, sqlite_writer(d), t.id)
    p = govern(d, d.admin().ProposeSafeOwners(pb.ProposeSafeOwnersRequest(transfer_id=t.id)))
    assert p.state == "APPROVED", p.failure
    wait_state(d, t.id, pb.SIGNED)
    done = d.custody().GetSafeSignatures(pb.GetTransferRequest(transfer_id=t.id))
    assert done.complete
    rec = node.send(node.accounts[1], done.exec_to, done.exec_calldata)
    assert int(rec["status"], 16) == 1, rec
    assert newcomer.lower() in [str(o).lower() for o in safe.call("getOwners")]


MOVES = moves_policy("safe-moves")


def test_a_store_writer_reopening_a_signed_safe_nonce_gets_no_second_signature(
        world: World) -> None:
    """A SafeTx for nonce N is signed. A store writer sets that transfer's row to CANCELLED
    (its state is not under its seal) and deletes its lock; the platform submits another
    SafeTx for nonce N, which the quorum approves (believing the first one dead). signerd
    never signs two SafeTx hashes for one Safe nonce: the sign step knows the first one signed
    from the verified audit chain, whatever its row's state says, and the second ends FAILED
    naming it. A row whose movement was rewritten (another nonce) does not verify: nothing
    signed either."""
    node, dep, d = world.node, world.dep, world.d
    share, owner = world.key_share()
    setup = dep.setup_json([owner], 1, salt=12)
    safe = dep.deploy_safe(setup)
    wallet = world.create_wallet(share, safe.address, setup)
    set_policy(d, wallet.id, MOVES)
    dest = to_checksum_address("0x" + "be" * 20)

    def signed(value: int) -> pb.Transfer:
        t = d.custody().SubmitTransfer(pb.SubmitTransferRequest(
            wallet_id=wallet.id, safe_tx=dumps(safe_tx(dest, value=value, nonce=0))))
        decide(d, t.id, "inv1")
        return decide(d, t.id, "cust1")

    first = signed(1)
    assert first.state == pb.SIGNED
    db = sqlite_writer(d)
    db.run(("UPDATE transfers SET state = 'CANCELLED' WHERE id = ?", (first.id,)),
           ("DELETE FROM transfer_locks WHERE transfer_id = ?", (first.id,)))
    second = signed(2)
    monitor_ticks()
    got = assert_no_signature(d, db, second.id)
    assert got.state == pb.FAILED and f"was signed already for another SafeTx by transfer " \
        f"{first.id}" in got.failure, got
    # the first one's movement rewritten to another nonce: its seal does not verify
    db.run(("DELETE FROM transfer_locks WHERE transfer_id = ?", (second.id,)),
           ("UPDATE transfers SET movement = replace(movement, '\"nonce\": 0,', "
            "'\"nonce\": 9,') WHERE id = ?", (first.id,)))
    third = signed(3)
    monitor_ticks()
    got = assert_no_signature(d, db, third.id)
    assert got.state == pb.FAILED and first.id in got.failure and "seal" in got.failure, got


def test_the_refund_signerd_bounds_is_at_least_what_the_safe_pays(world: World) -> None:
    """The movement's fee for a refund (``refund``: what max_fee bounds) against the payment the
    Safe itself reports (ExecutionSuccess / ExecutionFailure) in the costliest cases: all of
    safeTxGas burnt by the callee, a value to a new account, a DELEGATECALL, up to 128 KiB of
    calldata. A 1-of-1 Safe of an eth-account key; gasPrice 1 wei, so the payment is the gas
    the Safe counted."""
    import os

    from signerd.core.ethereum import safe as S
    from tests.support.safe import exec_calldata_by_hand, safe_tx_hash_onchain

    node, dep = world.node, world.dep
    key = Account.create()
    safe = dep.deploy_safe(dep.setup_json([key.address], 1, salt=13))
    node.fund(safe.address, 10 * 10**18)
    burner = "0x" + "fe" * 20  # INVALID: the call burns every gas it is given
    node.rpc("anvil_setCode", burner, "0xfe")
    events = {"0x" + keccak(text=f"Execution{k}(bytes32,uint256)").hex()
              for k in ("Success", "Failure")}
    for size in (0, 4096, 131_072):
        for to, value, op in ((to_checksum_address(os.urandom(20)), 1, 0), (burner, 1, 0),
                              (burner, 0, 1)):
            tx = safe_tx(to, value=value, data="0x" + "ff" * size, operation=op,
                         nonce=int(safe.call("nonce")), gas_price=1)
            tx["safeTxGas"], tx["baseGas"] = 60_000, 1_000
            sig = key.unsafe_sign_hash(safe_tx_hash_onchain(safe, tx))
            packed = sig.r.to_bytes(32, "big") + sig.s.to_bytes(32, "big") + bytes([sig.v])
            rec = node.send(node.accounts[1], safe.address,
                            exec_calldata_by_hand(safe, tx, packed), gas=29_000_000)
            assert int(rec["status"], 16) == 1, rec
            (log,) = [lg for lg in rec["logs"] if lg["topics"][0] in events]
            paid = int(log["data"][-64:], 16)
            bound = S.refund(S.SafeTx.from_json(tx))
            # what it pays covers what the call burnt (safeTxGas + baseGas; a new account's
            # 25,000), and signerd's bound covers what it pays
            assert paid >= (61_000 if to == burner else 26_000), (size, to, op, paid)
            assert paid <= bound, (size, to, op, paid, bound)
