"""Safe (v1.4.1) multisig end to end: a 2-of-3 Safe owned by two signerd daemons (two state
folders, two SoftHSM tokens) and one outside eth-account key, on anvil.

Each daemon records the Safe only after checking its address against the setup and its own
owner key among the owners (outside owners: a governance act). SafeTx transfers go through both
daemons' quorums; the owners' signatures are combined and ``execTransaction`` is sent to the
Safe and mined, balances checked after. The judges are the Safe contracts themselves
(``getTransactionHash``, ``execTransaction``'s signature checks), eth-account for the outside
owner, and eth-abi from the artifacts' ABI; never signerd's own Safe code."""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import coincurve
import grpc
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak, to_checksum_address

from tests.support import evm
from tests.support.attacks import (FRESH, assert_no_signature, monitor_ticks, sqlite_writer,
                                   wait_state)
from tests.support.daemon import Daemon
from tests.support.governance import decide, decide_proposal, govern, set_policy
from tests.support.rpc import pb, rpc_error
from tests.support.safe import (ETHER, SafeDeployment, dumps, exec_calldata_by_hand, safe_tx,
                                safe_tx_hash_onchain)

pytestmark = evm.needs_evm()

CHAIN_ID = 31337
CASE = "CASE-SAFE-1"
POLICY = """name = "safe"
expiry = "1h"
allow_contract_calls = true

[[rule]]
name = "moves"
asset = "*"
approvers = 2
roles = { investigator = 1, custody_officer = 1 }

[[rule]]
name = "calls"
asset = "ETH"
contract_call = true
approvers = 2
roles = { investigator = 1, custody_officer = 1 }
"""
DEST = to_checksum_address("0x00000000000000000000000000000000000beef1")
TOKEN_DEST = to_checksum_address("0x00000000000000000000000000000000000beef2")


def address_from_pubkey(compressed: bytes) -> str:
    """An HSM key's Ethereum address, computed here (coincurve, eth-utils)."""
    point = coincurve.PublicKey(compressed).format(compressed=False)[1:]
    return to_checksum_address(keccak(point)[12:])


class World:
    def __init__(self, node: evm.Anvil, a: Daemon, b: Daemon):
        self.node, self.a, self.b = node, a, b
        self.dep = SafeDeployment(node)
        self.sender = node.accounts[1]
        self.outside = Account.create()
        share_a = a.custody().CreateKeyShare(pb.CreateKeyShareRequest(
            category=pb.SEIZED, case_ref=CASE))
        share_b = b.custody().CreateKeyShare(pb.CreateKeyShareRequest(
            category=pb.SEIZED, case_ref=CASE))
        self.owner_a = address_from_pubkey(bytes(share_a.public_key))
        self.owner_b = address_from_pubkey(bytes(share_b.public_key))
        self.setup = self.dep.setup_json([self.owner_a, self.owner_b, self.outside.address], 2,
                                         salt=7)
        self.shares = {"a": share_a.key_id, "b": share_b.key_id}
        self.safe = self.dep.deploy_safe(self.setup)
        node.fund(self.safe.address, 10 * ETHER)
        self.token = self.dep.deploy_token(self.safe.address, 1_000 * ETHER)

    def create_wallet(self, d: Daemon, share: str, **over: Any) -> pb.Wallet:
        fields = dict(chain=pb.ETHEREUM, chain_ids=[CHAIN_ID], script_type=pb.SAFE,
                      category=pb.SEIZED, case_ref=CASE, hsm_key_ids=[share],
                      safe_address=self.safe.address, safe_setup=json.dumps(self.setup))
        fields.update(over)
        return d.custody().CreateWallet(pb.CreateWalletRequest(**fields))

    def nonce(self) -> int:
        return int(self.safe.call("nonce"))


def activate(d: Daemon, w: pb.Wallet) -> pb.Wallet:
    """A Safe with outside owners waits for the governance quorum, like a Bitcoin multisig
    with outside cosigners; then its policy, and the test token, through governance."""
    assert w.status == pb.AWAITING_APPROVAL and w.proposal_id
    p = d.governance().GetProposal(pb.GetProposalRequest(proposal_id=w.proposal_id))
    assert govern(d, p).state == "APPROVED"
    set_policy(d, w.id, POLICY)
    return d.custody().GetWallet(pb.GetWalletRequest(wallet_id=w.id))


@pytest.fixture(scope="module")
def world(daemon_factory: Any) -> Iterator[World]:
    with evm.Anvil.start(CHAIN_ID) as node:
        a = daemon_factory.start("safe_a", **FRESH)
        b = daemon_factory.start("safe_b", **FRESH)
        yield World(node, a, b)


@pytest.fixture(scope="module")
def wallets(world: World) -> tuple[pb.Wallet, pb.Wallet]:
    wa = activate(world.a, world.create_wallet(world.a, world.shares["a"]))
    wb = activate(world.b, world.create_wallet(world.b, world.shares["b"]))
    for d in (world.a, world.b):
        p = govern(d, d.admin().SetToken(pb.SetTokenRequest(
            chain_id=CHAIN_ID, address=world.token.address, symbol="CTT", decimals=18)))
        assert p.state == "APPROVED", p.failure
    return wa, wb


def submit(d: Daemon, w: pb.Wallet, tx: dict[str, Any]) -> pb.Transfer:
    return d.custody().SubmitTransfer(pb.SubmitTransferRequest(wallet_id=w.id,
                                                               safe_tx=dumps(tx)))


def quorum(d: Daemon, t: pb.Transfer) -> pb.Transfer:
    decide(d, t.id, "inv1")
    return decide(d, t.id, "cust1")


def signatures(d: Daemon, transfer_id: str) -> pb.SafeSignatures:
    return d.custody().GetSafeSignatures(pb.GetTransferRequest(transfer_id=transfer_id))


def combine(d: Daemon, transfer_id: str, owner: str, signature: bytes) -> pb.SafeSignatures:
    return d.custody().CombineSafeSignature(pb.CombineSafeSignatureRequest(
        transfer_id=transfer_id, owner=owner, signature=signature))


def execute(world: World, to: str, calldata: str) -> dict[str, Any]:
    rec = world.node.send(world.sender, to, calldata)
    assert int(rec["status"], 16) == 1, rec
    return rec


def outside_sign(world: World, digest: bytes, eth_sign: bool = False) -> bytes:
    """The outside owner's signature by eth-account: EIP-712 over the hash (v 27/28), or an
    eth_sign of it (v 31/32 as the Safe marks it)."""
    if not eth_sign:
        return bytes(world.outside.unsafe_sign_hash(digest).signature)
    sig = bytes(world.outside.sign_message(encode_defunct(primitive=digest)).signature)
    return sig[:64] + bytes([sig[64] + 4])


def test_wallet_creation_checks_the_setup(world: World) -> None:
    """The address must be the one the setup deploys to, and the key share's owner address must
    be among the owners; each mismatch names what differs and records nothing."""
    other = dict(world.setup, saltNonce=8)
    e = rpc_error(world.create_wallet, world.a, world.shares["a"], safe_setup=json.dumps(other))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"safe_address: {world.safe.address} is not the address of this setup" in e.details()
    stranger = world.a.custody().CreateKeyShare(pb.CreateKeyShareRequest(
        category=pb.SEIZED, case_ref=CASE))
    e = rpc_error(world.create_wallet, world.a, stranger.key_id)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "is not among the Safe's owners" in e.details(), e.details()
    e = rpc_error(world.create_wallet, world.a, world.shares["a"], chain_ids=[CHAIN_ID, 1])
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "exactly one chain id" in e.details()


def test_native_eth_through_both_quorums_is_executed(world: World,
                                                     wallets: tuple[pb.Wallet, pb.Wallet]
                                                     ) -> None:
    wa, wb = wallets
    assert wa.address == wb.address == world.safe.address
    assert list(wa.safe_owners) == world.setup["owners"] and wa.threshold == 2
    tx = safe_tx(DEST, value=ETHER, nonce=world.nonce())
    ta = submit(world.a, wa, tx)
    digest = safe_tx_hash_onchain(world.safe, tx)
    assert ta.movement.digests == [digest]  # the Safe's own EIP-712 hash
    fields = {f.name: f.value for f in ta.movement.safe}
    assert fields["safe"] == world.safe.address and fields["operation"] == "0 (CALL)"
    assert fields["gas_refund"] == "none" and fields["safe_nonce"] == str(tx["nonce"])
    st = world.a.approval("inv1").GetStatement(pb.GetStatementRequest(transfer_id=ta.id,
                                                                      decision=pb.APPROVE))
    assert world.safe.address in st.rendered and "0x" + digest.hex() in st.rendered
    assert b'"safe":[["safe","' + world.safe.address.encode() in st.statement
    ta = quorum(world.a, ta)
    assert ta.state == pb.SIGNED and not ta.raw_tx
    ra = signatures(world.a, ta.id)
    assert ra.owner == world.owner_a and ra.owner_signature and not ra.complete
    assert not ra.exec_calldata
    tb = quorum(world.b, submit(world.b, wb, tx))
    assert tb.state == pb.SIGNED
    rb = signatures(world.b, tb.id)
    # B's owner signature, brought to A: verified against A's own SafeTx hash.
    done = combine(world.a, ta.id, world.owner_b, bytes.fromhex(rb.owner_signature[2:]))
    assert done.complete and done.exec_to == world.safe.address
    assert {s.owner for s in done.signatures} == {world.owner_a, world.owner_b}
    before = world.node.balance(DEST)
    execute(world, done.exec_to, done.exec_calldata)
    assert world.node.balance(DEST) - before == ETHER
    assert world.nonce() == tx["nonce"] + 1


def test_erc20_through_both_quorums_and_the_outside_owner_is_executed(
        world: World, wallets: tuple[pb.Wallet, pb.Wallet]) -> None:
    wa, wb = wallets
    amount = 25 * ETHER
    data = world.token.calldata("transfer", TOKEN_DEST, amount)
    tx = safe_tx(world.token.address, data=data, nonce=world.nonce())
    ta = submit(world.a, wa, tx)
    (out,) = ta.movement.outputs
    assert (out.address, out.amount, out.asset) == (TOKEN_DEST, str(amount),
                                                    f"ERC20:{world.token.address}")
    ta = quorum(world.a, ta)
    assert ta.state == pb.SIGNED
    digest = safe_tx_hash_onchain(world.safe, tx)
    # B's quorum, then B's owner signature: the threshold is met.
    tb = quorum(world.b, submit(world.b, wb, tx))
    rb = signatures(world.b, tb.id)
    done = combine(world.a, ta.id, world.owner_b, bytes.fromhex(rb.owner_signature[2:]))
    assert done.complete and len(done.signatures) == 2
    # The outside owner's EIP-712 signature (v 27/28) too: three signatures, two packed.
    done = combine(world.a, ta.id, world.outside.address, outside_sign(world, digest))
    assert done.complete and len(done.signatures) == 3
    execute(world, done.exec_to, done.exec_calldata)
    assert world.token.call("balanceOf", TOKEN_DEST) == amount


def test_delegatecall_and_gas_refund_are_refused_without_a_rule(
        world: World, wallets: tuple[pb.Wallet, pb.Wallet]) -> None:
    wa, _ = wallets
    e = rpc_error(submit, world.a, wa, safe_tx(DEST, data="0x12345678", operation=1,
                                               nonce=world.nonce()))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "DELEGATECALL (operation 1), which needs a matching rule with delegatecall = true" \
        in e.details(), e.details()
    e = rpc_error(submit, world.a, wa, safe_tx(DEST, value=1, nonce=world.nonce(),
                                               gas_price=1))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "pays a gas refund from the Safe" in e.details() and "gas_refund = true" in e.details()
    e = rpc_error(submit, world.a, wa, safe_tx(DEST, value=1, nonce=world.nonce(),
                                               refund_receiver=DEST))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and "gas refund" in e.details()
    assert not [t for t in world.a.custody().ListTransfers(pb.ListTransfersRequest(
        wallet_id=wa.id)).transfers if t.state == pb.PENDING_APPROVAL]


def test_a_safe_nonce_is_signed_once(world: World, wallets: tuple[pb.Wallet, pb.Wallet]) -> None:
    """Nonce 0 was signed (and executed) for the first transfer: another SafeTx with the same
    nonce is refused, naming it."""
    wa, _ = wallets
    first = [t for t in world.a.custody().ListTransfers(pb.ListTransfersRequest(
        wallet_id=wa.id)).transfers if t.state == pb.SIGNED and t.movement.nonce == 0]
    assert len(first) == 1
    e = rpc_error(submit, world.a, wa, safe_tx(DEST, value=2 * ETHER, nonce=0))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"safe:{wa.address.lower()}:{CHAIN_ID}:0" in e.details()
    assert first[0].id in e.details(), e.details()
    # A store writer deletes the lock: the second SafeTx for nonce 0 is taken, approved, and
    # still not signed (the sign step reads the signed transfers themselves).
    db = sqlite_writer(world.a)
    key = f"safe:{wa.address.lower()}:{CHAIN_ID}:0"
    db.run(("DELETE FROM transfer_locks WHERE lock_key = ?", (key,)))
    again = submit(world.a, wa, safe_tx(DEST, value=2 * ETHER, nonce=0))
    decide(world.a, again.id, "inv1")
    got = decide(world.a, again.id, "cust1")
    assert got.state == pb.FAILED, got
    assert f"Safe nonce 0 was signed already for another SafeTx by transfer {first[0].id}" \
        in got.failure, got.failure
    assert_no_signature(world.a, db, again.id)


def test_signatures_short_of_the_threshold_build_nothing(
        world: World, wallets: tuple[pb.Wallet, pb.Wallet]) -> None:
    """One owner's signature (ours), a non-owner's signature, a signature claimed for another
    owner: no calldata is built, and the Safe itself refuses one signature."""
    wa, _ = wallets
    tx = safe_tx(DEST, value=ETHER, nonce=world.nonce())
    ta = quorum(world.a, submit(world.a, wa, tx))
    assert ta.state == pb.SIGNED
    r = signatures(world.a, ta.id)
    assert not r.complete and not r.exec_calldata and len(r.signatures) == 1
    digest = safe_tx_hash_onchain(world.safe, tx)
    stranger = Account.create()
    e = rpc_error(combine, world.a, ta.id, stranger.address,
                  bytes(stranger.unsafe_sign_hash(digest).signature))
    assert e.code() == grpc.StatusCode.PERMISSION_DENIED
    assert f"{stranger.address} is not an owner of the Safe" in e.details()
    e = rpc_error(combine, world.a, ta.id, world.owner_b, outside_sign(world, digest))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"it recovers {world.outside.address}, not the owner named" in e.details()
    e = rpc_error(combine, world.a, ta.id, world.outside.address,
                  outside_sign(world, b"\x01" * 32))  # a signature of another hash
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "recovers" in e.details()
    r = signatures(world.a, ta.id)
    assert not r.complete and not r.exec_calldata and len(r.signatures) == 1
    # A store writer inserts the stranger's signature as the outside owner's: it is verified
    # where it is used, refused and named, and completes nothing.
    db = sqlite_writer(world.a)
    forged = bytes(stranger.unsafe_sign_hash(digest).signature).hex()
    db.run(("INSERT INTO safe_signatures (transfer_id, owner, signature, actor, created_at)"
            " VALUES (?, ?, ?, 'platform', 0)", (ta.id, world.outside.address, forged)))
    r = signatures(world.a, ta.id)
    assert not r.complete and not r.exec_calldata and len(r.signatures) == 1
    assert [(x.owner, "not that owner's signature" in x.reason) for x in r.refused] == [
        (world.outside.address, True)]
    db.run(("DELETE FROM safe_signatures WHERE transfer_id = ?", (ta.id,)))
    # Our one signature, packed by hand: the Safe refuses it (GS020), nothing executes.
    before = world.node.balance(DEST)
    calldata = exec_calldata_by_hand(world.safe, tx, bytes.fromhex(r.owner_signature[2:]))
    with pytest.raises(evm.RpcError):
        world.node.call(world.safe.address, calldata, world.sender)
    assert world.node.balance(DEST) == before and world.nonce() == tx["nonce"]
    # The nonce stays held by the signed transfer, even as a replacement.
    for replaces in ("", ta.id):
        e = rpc_error(world.a.custody().SubmitTransfer, pb.SubmitTransferRequest(
            wallet_id=wa.id, safe_tx=dumps(safe_tx(DEST, value=3, nonce=tx["nonce"])),
            replaces=replaces))
        assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert ta.id in e.details() and "never signs two SafeTx" in e.details(), e.details()
    # The outside owner's eth_sign signature (v 31/32) completes it; then it executes (the
    # Safe checks that signature itself).
    done = combine(world.a, ta.id, world.outside.address, outside_sign(world, digest, True))
    assert done.complete
    execute(world, done.exec_to, done.exec_calldata)
    assert world.node.balance(DEST) == before + ETHER


def test_a_changed_payload_after_approval_voids_it(world: World,
                                                    wallets: tuple[pb.Wallet, pb.Wallet]) -> None:
    """A store writer changes the stored SafeTx (the value) after one approval: the row's seal
    no longer verifies, the next approval ends it FAILED, and nothing is signed."""
    wa, _ = wallets
    db = sqlite_writer(world.a)
    tx = safe_tx(DEST, value=ETHER, nonce=world.nonce() + 50)
    t = submit(world.a, wa, tx)
    decide(world.a, t.id, "inv1")
    shown = world.a.approval("cust1").GetStatement(pb.GetStatementRequest(
        transfer_id=t.id, decision=pb.APPROVE)).statement
    changed = dumps(dict(tx, value=5 * ETHER)).encode()
    db.run(("UPDATE transfers SET payload = ? WHERE id = ?", (changed, t.id)))
    # The statement can no longer be had for it...
    e = rpc_error(world.a.approval("cust1").GetStatement, pb.GetStatementRequest(
        transfer_id=t.id, decision=pb.APPROVE))
    assert "seal" in e.details(), e.details()
    # ... and an approval of the statement shown before the change ends it.
    e = rpc_error(decide, world.a, t.id, "cust1", statement=shown)
    assert "seal" in e.details(), e.details()
    got = assert_no_signature(world.a, db, t.id)
    assert got.state == pb.FAILED, got
    assert "authority violation" in got.failure


def test_an_owner_change_needs_the_governance_quorum(world: World,
                                                     wallets: tuple[pb.Wallet, pb.Wallet]
                                                     ) -> None:
    """A SafeTx to the Safe itself (addOwnerWithThreshold) reaches the wallet's quorum and stays
    APPROVED, unsigned; one admin's approval of its safe.owners proposal is not enough; the
    governance quorum's is, on each daemon; then it executes and the Safe has the new owner."""
    wa, wb = wallets
    new_owner = Account.create().address
    data = world.safe.calldata("addOwnerWithThreshold", new_owner, 2)
    tx = safe_tx(world.safe.address, data=data, nonce=world.nonce())
    ta = submit(world.a, wa, tx)
    change = {f.name: f.value for f in ta.movement.safe}["owner_change"]
    assert "addOwnerWithThreshold" in change and new_owner in change
    ta = quorum(world.a, ta)
    assert ta.state == pb.APPROVED  # the wallet's approvers alone
    monitor_ticks()
    db = sqlite_writer(world.a)
    assert_no_signature(world.a, db, ta.id)
    assert not signatures(world.a, ta.id).owner_signature
    p = world.a.admin().ProposeSafeOwners(pb.ProposeSafeOwnersRequest(transfer_id=ta.id))
    assert p.kind == "safe.owners" and p.state == "PENDING_APPROVAL"
    p = decide_proposal(world.a, p.id, "admin1")  # one admin
    assert p.state == "PENDING_APPROVAL"
    monitor_ticks()
    assert_no_signature(world.a, db, ta.id)
    p = decide_proposal(world.a, p.id, "admin2")
    assert p.state == "APPROVED", p.failure
    wait_state(world.a, ta.id, pb.SIGNED)
    tb = quorum(world.b, submit(world.b, wb, tx))
    assert tb.state == pb.APPROVED
    assert govern(world.b, world.b.admin().ProposeSafeOwners(
        pb.ProposeSafeOwnersRequest(transfer_id=tb.id))).state == "APPROVED"
    wait_state(world.b, tb.id, pb.SIGNED)
    rb = signatures(world.b, tb.id)
    done = combine(world.a, ta.id, world.owner_b, bytes.fromhex(rb.owner_signature[2:]))
    assert done.complete
    execute(world, done.exec_to, done.exec_calldata)
    owners = [str(o).lower() for o in world.safe.call("getOwners")]
    assert new_owner.lower() in owners and world.safe.call("getThreshold") == 2


def test_a_store_writer_changing_owners_or_threshold_gets_no_signature(
        world: World, wallets: tuple[pb.Wallet, pb.Wallet]) -> None:
    """A DBA lowers the Safe wallet's threshold and swaps an owner in the store (the copies, then
    the record itself): the wallet no longer verifies, and an approved transfer is not signed."""
    wa, _ = wallets
    db = sqlite_writer(world.a)
    row = db.one("SELECT safe_owners, safe_threshold, record FROM wallets WHERE id = ?",
                 (wa.id,))
    t = submit(world.a, wa, safe_tx(DEST, value=1, nonce=world.nonce() + 60))
    decide(world.a, t.id, "inv1")
    shown = world.a.approval("cust1").GetStatement(pb.GetStatementRequest(
        transfer_id=t.id, decision=pb.APPROVE)).statement
    attacker = Account.create().address
    forged_owners = json.dumps([world.owner_a, attacker, world.outside.address])
    for statements in (
            [("UPDATE wallets SET safe_threshold = 1 WHERE id = ?", (wa.id,))],
            [("UPDATE wallets SET safe_owners = ? WHERE id = ?", (forged_owners, wa.id))],
            [("UPDATE wallets SET record = ? WHERE id = ?",
              (row["record"].replace('"threshold":2', '"threshold":1'), wa.id))]):
        db.run(*statements)
        e = rpc_error(world.a.custody().GetWallet, pb.GetWalletRequest(wallet_id=wa.id))
        assert "wallet" in e.details(), e.details()
        db.run(("UPDATE wallets SET safe_owners = ?, safe_threshold = ?, record = ? WHERE id = ?",
                (row["safe_owners"], row["safe_threshold"], row["record"], wa.id)))
    db.run(("UPDATE wallets SET safe_threshold = 1 WHERE id = ?", (wa.id,)))
    e = rpc_error(decide, world.a, t.id, "cust1", statement=shown)
    assert "Safe owners, threshold or setup in the store differ from its sealed record" \
        in e.details(), e.details()
    got = assert_no_signature(world.a, db, t.id)
    assert got.state == pb.FAILED and "authority violation" in got.failure, got
    db.run(("UPDATE wallets SET safe_threshold = ? WHERE id = ?", (row["safe_threshold"], wa.id)))
