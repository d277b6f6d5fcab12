"""The bytes a safeTransferFrom hands the recipient's hook, on a real EVM: an OpenZeppelin 5.1
ERC-721 on anvil, sent with safeTransferFrom(wallet, receiver, 7, data) to a receiver contract
that delivers what it receives to the address its data names (as ENS's NameWrapper mints a
wrapped name to the owner its data names). The transaction signerd decodes and renders is the
one eth-account signs (same digest) and anvil executes; the token ends with the address in the
data, not with the recipient the output line names, so the statement must show those bytes."""
from __future__ import annotations

from typing import Iterator

import grpc
import pytest
from eth_abi import encode
from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from eth_utils import to_checksum_address

from signerd.adapters.config import Limits
from signerd.cli.verify import rebuild_statement
from signerd.core import approval
from signerd.core.ethereum.eip1559 import Eip1559Tx
from signerd.core.ethereum.signing import movement
from signerd.core.model import Decision
from signerd.core.tokens import make_token
from tests.support import evm
from tests.support.daemon import Daemon
from tests.support.ethereum import GWEI, eth_wallet, submit, tx_fields
from tests.support.fixtures import DaemonFactory
from tests.support.governance import decide, govern
from tests.support.rpc import pb, rpc_error
from tests.support.tokens import abi_call as calldata

pytestmark = evm.needs_evm()

CHAIN = 31337
ATTACKER = "0x" + "ee" * 20

SOURCE = """
// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;
import "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import "@openzeppelin/contracts/token/ERC721/IERC721Receiver.sol";

contract HookArt is ERC721 {
    constructor(address holder) ERC721("Hook Art", "HART") { _mint(holder, 7); }
}

contract Forwarder is IERC721Receiver {
    function onERC721Received(address, address, uint256 id, bytes calldata data)
        external returns (bytes4) {
        IERC721(msg.sender).transferFrom(address(this), abi.decode(data, (address)), id);
        return IERC721Receiver.onERC721Received.selector;
    }
}
"""


@pytest.fixture(scope="module")
def node() -> Iterator[evm.Anvil]:
    with evm.Anvil.start(CHAIN) as n:
        yield n


@pytest.fixture(scope="module")
def daemon(daemon_factory: DaemonFactory) -> Iterator[Daemon]:
    yield from daemon_factory.run("nft-hook")


def test_hook_data_that_redirects_the_token_is_shown(node: evm.Anvil) -> None:
    built = evm.compile_solidity({"Hook.sol": SOURCE})
    wallet = Account.create()
    node.fund(wallet.address, 10**18)
    art = node.deploy(built["HookArt"]["bytecode"] + encode(["address"], [wallet.address]).hex())
    receiver = node.deploy(built["Forwarder"]["bytecode"])
    hook = encode(["address"], [ATTACKER])
    fields = {"chainId": CHAIN, "nonce": 0, "maxPriorityFeePerGas": 10**9,
              "maxFeePerGas": 10**10, "gas": 300_000, "to": to_checksum_address(art),
              "value": 0, "data": "0x" + calldata(
                  "safeTransferFrom(address,address,uint256,bytes)", wallet.address, receiver,
                  7, hook).hex(), "accessList": [], "type": 2}
    tx = Eip1559Tx.from_fields(fields)
    token = make_token(chain_id=CHAIN, address=to_checksum_address(art), standard="erc721",
                       symbol="HART", decimals=0)
    m = movement(tx, {token.key: token}, sender=wallet.address)
    ctx = approval.StatementContext(instance_id="i", transfer_id="t_1", wallet_id="w_1",
                                    policy_version=1, expires_at=2_000_000_000,
                                    payload_sha256=b"\x00" * 32)
    shown = approval.render(ctx, m, Decision.APPROVE)
    assert f"send ERC-721 HART token id 7 to {to_checksum_address(receiver)}" in shown

    # eth-account (independent) signs the same transaction: the digest signerd decoded
    assert TypedTransaction.from_dict(fields).hash() == tx.signing_hash()
    signed = Account.sign_transaction(fields, wallet.key)
    rec = node.send_raw(signed.raw_transaction.hex())
    assert int(rec["status"], 16) == 1
    owner = "0x" + node.call(art, "0x" + calldata("ownerOf(uint256)", 7).hex())[-40:]
    assert owner.lower() == ATTACKER  # not the receiver the output line names

    warning = [line for line in shown.splitlines()
               if line.startswith("WARNING:") and hook.hex() in line]
    assert warning and to_checksum_address(receiver) in warning[0]
    assert ATTACKER[2:] in warning[0]  # the address the token really ends with is on screen


POLICY = """
name = "art"
max_fee = {{ ETH = 50000000000000000 }}

[[rule]]
name = "art"
asset = "ERC721:{nft}"
max_amount = 1
approvers = 2
roles = {{ investigator = 1, custody_officer = 1 }}
"""
# The same, letting the hook data through as what it is: code input to the recipient.
POLICY_CALLS = POLICY.replace('max_fee = {{', 'allow_contract_calls = true\nmax_fee = {{') + \
    "contract_call = true\n"


def test_the_daemon_and_signerctl_both_show_the_hook_data(daemon: Daemon,
                                                          node: evm.Anvil) -> None:
    """Through a real daemon: submitted, the daemon's rendering (from the stored movement) and
    signerctl's (rebuilt from the raw transaction) both show the bytes; approved, signed in the
    HSM, checked by eth-account, executed: the token ends with the address in the data."""
    from tests.support.governance import set_policy

    built = evm.compile_solidity({"Hook.sol": SOURCE})
    w = eth_wallet(daemon, chain_ids=(CHAIN,))
    node.fund(w.address, 10**18)
    art = to_checksum_address(node.deploy(built["HookArt"]["bytecode"]
                                          + encode(["address"], [w.address]).hex()))
    receiver = to_checksum_address(node.deploy(built["Forwarder"]["bytecode"]))
    p = govern(daemon, daemon.admin().SetToken(pb.SetTokenRequest(
        chain_id=CHAIN, address=art, symbol="HART", decimals=0, standard="erc721")))
    assert p.state == "APPROVED", p.failure
    set_policy(daemon, w.id, POLICY.format(nft=art))
    hook = encode(["address"], [ATTACKER])
    fields = tx_fields(nonce=0, chainId=CHAIN, to=art, value=0, gas=300_000,
                       maxFeePerGas=5 * GWEI, data="0x" + calldata(
        "safeTransferFrom(address,address,uint256,bytes)", w.address, receiver, 7,
        hook).hex())
    # A rule that covers the collection does not cover bytes handed to the recipient's code.
    refused = rpc_error(submit, daemon, w.id, fields)
    assert refused.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "allow_contract_calls = false" in refused.details()
    assert hook.hex()[:64] in refused.details()
    set_policy(daemon, w.id, POLICY_CALLS.format(nft=art))
    t = submit(daemon, w.id, fields)
    assert t.state == pb.PENDING_APPROVAL, t.failure
    st = daemon.approval("inv1").GetStatement(pb.GetStatementRequest(transfer_id=t.id,
                                                                     decision=pb.APPROVE))
    mine = rebuild_statement(st, t.id, Decision.APPROVE, limits=Limits())
    for shown in (st.rendered, approval.render(mine.context, mine.movement, Decision.APPROVE)):
        assert f"send ERC-721 HART token id 7 to {receiver}" in shown
        assert any(line.startswith("WARNING:") and hook.hex() in line
                   for line in shown.splitlines()), shown
    for op in ("inv1", "cust1"):
        t = decide(daemon, t.id, op)
    assert t.state == pb.SIGNED, t.failure
    assert Account.recover_transaction(bytes.fromhex(t.raw_tx)) == w.address
    assert int(node.send_raw(t.raw_tx)["status"], 16) == 1
    owner = "0x" + node.call(art, "0x" + calldata("ownerOf(uint256)", 7).hex())[-40:]
    assert owner.lower() == ATTACKER
