"""NFTs and multi-token contracts end to end: OpenZeppelin 5.1 ERC-721 and ERC-1155 contracts
deployed on a local anvil node, mint to a signerd wallet, registered through governance; each
transfer submitted to a real daemon, decoded (collection, token id, amount, recipient),
judged by the policy's rules for that collection, approved by signed statements, signed in the
HSM, broadcast to anvil, and ownership checked on chain afterwards (ownerOf, balanceOf). A grant
of everything (setApprovalForAll, an unlimited ERC-20 allowance) is refused by a policy without a
grant rule and signed under one, its effect checked on chain (isApprovedForAll, allowance); a
holder's token taken under its approval needs spend_allowance; an approval over one token id
does not count for another."""
from __future__ import annotations

import json
from typing import Any, Iterator

import grpc
import pytest
from eth_abi import encode
from eth_account import Account
from eth_utils import to_checksum_address

from signerd.adapters.config import Limits
from signerd.adapters.key_files import load_private
from signerd.core.approval import sign_statement
from signerd.cli.verify import rebuild_statement
from signerd.core.model import Decision
from tests.support import evm
from tests.support.cli import ctl
from tests.support.daemon import Daemon
from tests.support.ethereum import GWEI, eth_wallet, submit, tx_fields
from tests.support.fixtures import DaemonFactory
from tests.support.governance import decide, govern, set_policy
from tests.support.rpc import pb, rpc_error
from tests.support.tokens import abi_call

pytestmark = evm.needs_evm()

CHAIN = 31337
ELSEWHERE = "0x" + "35" * 20  # an external recipient
OPERATOR = "0x" + "36" * 20  # an outside operator to be granted everything

SOURCE = """
// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;
import "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import "@openzeppelin/contracts/token/ERC1155/ERC1155.sol";
import "@openzeppelin/contracts/token/ERC20/ERC20.sol";

contract SeizedCoin is ERC20 {
    constructor(address holder) ERC20("Seized Coin", "COIN") {
        _mint(holder, 1000 * 10**6);
    }
    function decimals() public pure override returns (uint8) { return 6; }
}

contract SeizedArt is ERC721 {
    constructor(address holder, address other) ERC721("Seized Art", "ART") {
        for (uint256 id = 1; id <= 4; id++) _mint(holder, id);
        _mint(other, 5);
    }
}

contract SeizedItems is ERC1155 {
    constructor(address holder, address other) ERC1155("") {
        _mint(holder, 10, 100, "");
        _mint(holder, 11, 5, "");
        _mint(holder, 12, 7, "");
        _mint(other, 13, 9, "");
    }
}
"""


def calldata(signature: str, *args: Any) -> str:
    return "0x" + abi_call(signature, *args).hex()


def owner_of(node: evm.Anvil, nft: str, token_id: int) -> str:
    out = node.call(nft, calldata("ownerOf(uint256)", token_id))
    return "0x" + out[-40:]


def balance_of(node: evm.Anvil, multi: str, who: str, token_id: int) -> int:
    return int(node.call(multi, calldata("balanceOf(address,uint256)", who, token_id)), 16)


def approved_for_all(node: evm.Anvil, contract: str, owner: str, operator: str) -> bool:
    return int(node.call(contract, calldata("isApprovedForAll(address,address)", owner,
                                            operator)), 16) == 1


@pytest.fixture(scope="module")
def daemon(daemon_factory: DaemonFactory) -> Iterator[Daemon]:
    yield from daemon_factory.run("nft")


@pytest.fixture(scope="module")
def node() -> Iterator[evm.Anvil]:
    with evm.Anvil.start(CHAIN) as n:
        yield n


@pytest.fixture(scope="module")
def compiled() -> dict[str, dict[str, Any]]:
    return evm.compile_solidity({"Seized.sol": SOURCE})


POLICY = """
name = "collections"
max_fee = {{ ETH = 50000000000000000 }}
allow_contract_calls = false

[[rule]]
name = "ether"
asset = "ETH"
approvers = 2
roles = {{ investigator = 1, custody_officer = 1 }}

[[rule]]
name = "art"
asset = "ERC721:{nft}"
max_amount = 1
approvers = 3
roles = {{ investigator = 1, custody_officer = 1, judge = 1 }}

[[rule]]
name = "items"
asset = "ERC1155:{multi}"
max_amount = 50
approvers = 2
roles = {{ investigator = 1, custody_officer = 1 }}
{extra}
"""
GRANT_RULE = """
[[rule]]
name = "grant"
asset = "ERC721-APPROVE-ALL:{nft}"
min_amount = 1  # a grant is amount 1; a revocation (0) is the "operators" rule's
grant = true
approvers = 4
roles = {{ investigator = 1, custody_officer = 1, judge = 1, prosecutor = 1 }}
"""
NAMED_NO_GRANT = """
[[rule]]
name = "operators"
asset = "ERC721-APPROVE-ALL:{nft}"
approvers = 2
roles = {{ investigator = 1, custody_officer = 1 }}
"""


class World:
    """A wallet holding tokens of both contracts, both registered."""

    count = 0

    def __init__(self, daemon: Daemon, node: evm.Anvil, compiled: dict[str, Any],
                 extra: str = "") -> None:
        self.wallet = eth_wallet(daemon, chain_ids=(CHAIN,))
        self.address = self.wallet.address
        self.other = node.accounts[1]  # holds token 5 and 9 of id 13, not the wallet
        holder = encode(["address", "address"], [self.address, self.other]).hex()
        self.nft = to_checksum_address(node.deploy(compiled["SeizedArt"]["bytecode"] + holder))
        self.multi = to_checksum_address(node.deploy(compiled["SeizedItems"]["bytecode"]
                                                     + holder))
        node.fund(self.address, 10**18)
        World.count += 1  # one contract per symbol and chain
        self.art, self.items = f"ART{World.count}", f"ITEMS{World.count}"
        for contract, symbol, standard in ((self.nft, self.art, "erc721"),
                                           (self.multi, self.items, "erc1155")):
            p = govern(daemon, daemon.admin().SetToken(pb.SetTokenRequest(
                chain_id=CHAIN, address=contract, symbol=symbol, decimals=0,
                standard=standard)))
            assert p.state == "APPROVED", p.failure
        self.policy(daemon, extra)
        self.nonce = 0

    def policy(self, daemon: Daemon, extra: str) -> None:
        set_policy(daemon, self.wallet.id, POLICY.format(
            nft=self.nft, multi=self.multi, extra=extra.format(nft=self.nft)))

    def tx(self, to: str, data: str, gas: int = 300_000) -> dict[str, Any]:
        f = tx_fields(nonce=self.nonce, chainId=CHAIN, to=to, value=0, gas=gas, data=data,
                      maxFeePerGas=5 * GWEI)
        self.nonce += 1
        return f


def approve_all(daemon: Daemon, t: pb.Transfer, operators: tuple[str, ...]) -> pb.Transfer:
    for op in operators:
        t = decide(daemon, t.id, op)
    return t


def broadcast(node: evm.Anvil, t: pb.Transfer, wallet: str) -> dict[str, Any]:
    assert t.state == pb.SIGNED, t.failure
    raw = bytes.fromhex(t.raw_tx)
    assert Account.recover_transaction(raw) == wallet  # eth-account, not signerd
    receipt = node.send_raw(t.raw_tx)
    assert int(receipt["status"], 16) == 1, receipt
    assert receipt["transactionHash"] == t.tx_hash
    return receipt


def test_erc721_safe_transfer_executes_and_moves_the_token(daemon: Daemon, node: evm.Anvil,
                                                           compiled: dict[str, Any]) -> None:
    w = World(daemon, node, compiled)
    assert owner_of(node, w.nft, 2).lower() == w.address.lower()
    t = submit(daemon, w.wallet.id, w.tx(w.nft, calldata(
        "safeTransferFrom(address,address,uint256)", w.address, ELSEWHERE, 2)))
    assert t.state == pb.PENDING_APPROVAL
    (out,) = t.movement.outputs
    assert (out.asset, out.amount, out.token_id, out.address.lower(), out.source, out.grant) == (
        f"ERC721:{w.nft}", "1", "2", ELSEWHERE, "", False)
    assert not t.movement.contract_call
    assert "judge x1" in t.requirement  # the collection's rule, not "ether"

    st = daemon.approval("inv1").GetStatement(pb.GetStatementRequest(transfer_id=t.id,
                                                                     decision=pb.APPROVE))
    assert f"send ERC-721 {w.art} token id 2 to" in st.rendered
    assert b'"token_id":"2"' in st.statement
    assert rebuild_statement(st, t.id, Decision.APPROVE, limits=Limits()).statement == \
        st.statement  # signerctl's own rebuild agrees
    t = approve_all(daemon, t, ("inv1", "cust1", "judge1"))
    broadcast(node, t, w.address)
    assert owner_of(node, w.nft, 2).lower() == ELSEWHERE
    assert owner_of(node, w.nft, 1).lower() == w.address.lower()  # only token 2 moved

    # transferFrom (no receiver check) of token 3, with data-less safeTransferFrom's sibling.
    t = submit(daemon, w.wallet.id, w.tx(w.nft, calldata(
        "transferFrom(address,address,uint256)", w.address, ELSEWHERE, 3)))
    assert [o.token_id for o in t.movement.outputs] == ["3"]
    broadcast(node, approve_all(daemon, t, ("inv1", "cust1", "judge1")), w.address)
    assert owner_of(node, w.nft, 3).lower() == ELSEWHERE


def test_erc1155_single_and_batch_transfers_execute(daemon: Daemon, node: evm.Anvil,
                                                    compiled: dict[str, Any]) -> None:
    w = World(daemon, node, compiled)
    t = submit(daemon, w.wallet.id, w.tx(w.multi, calldata(
        "safeTransferFrom(address,address,uint256,uint256,bytes)", w.address, ELSEWHERE, 10,
        30, b"")))
    (out,) = t.movement.outputs
    assert (out.asset, out.token_id, out.amount) == (f"ERC1155:{w.multi}", "10", "30")
    broadcast(node, approve_all(daemon, t, ("inv1", "cust1")), w.address)
    assert balance_of(node, w.multi, ELSEWHERE, 10) == 30
    assert balance_of(node, w.multi, w.address, 10) == 70

    batch = calldata("safeBatchTransferFrom(address,address,uint256[],uint256[],bytes)",
                     w.address, ELSEWHERE, [11, 12], [5, 2], b"")
    t = submit(daemon, w.wallet.id, w.tx(w.multi, batch))
    assert [(o.token_id, o.amount) for o in t.movement.outputs] == [("11", "5"), ("12", "2")]
    shown = ctl(daemon, "--as", "inv1", "transfer", "show", t.id).stdout
    assert f"send 5 of ERC-1155 {w.items} token id 11 to" in shown
    assert f"send 2 of ERC-1155 {w.items} token id 12 to" in shown
    st = daemon.approval("inv1").GetStatement(pb.GetStatementRequest(transfer_id=t.id,
                                                                     decision=pb.APPROVE))
    assert f"send 5 of ERC-1155 {w.items} token id 11 to" in st.rendered
    assert f"send 2 of ERC-1155 {w.items} token id 12 to" in st.rendered
    broadcast(node, approve_all(daemon, t, ("inv1", "cust1")), w.address)
    assert [balance_of(node, w.multi, ELSEWHERE, i) for i in (11, 12)] == [5, 2]
    assert [balance_of(node, w.multi, w.address, i) for i in (11, 12)] == [0, 5]

    # The rule bounds the count of tokens of the collection (summed over ids): 51 > 50.
    e = rpc_error(submit, daemon, w.wallet.id, w.tx(w.multi, calldata(
        "safeTransferFrom(address,address,uint256,uint256,bytes)", w.address, ELSEWHERE, 10,
        51, b"")))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"no policy rule covers 51 base units of ERC1155:{w.multi.lower()}" in e.details()


def test_an_approval_over_one_token_id_does_not_count_for_another(
        daemon: Daemon, node: evm.Anvil, compiled: dict[str, Any]) -> None:
    """The statement binds the token id: an operator's signature over the statement of token 1
    does not verify for the transfer of token 4 (same everything else)."""
    w = World(daemon, node, compiled)
    one = submit(daemon, w.wallet.id, w.tx(w.nft, calldata(
        "transferFrom(address,address,uint256)", w.address, ELSEWHERE, 1)))
    st_one = daemon.approval("inv1").GetStatement(pb.GetStatementRequest(
        transfer_id=one.id, decision=pb.APPROVE)).statement
    daemon.custody().CancelTransfer(pb.CancelTransferRequest(transfer_id=one.id,
                                                             reason="wrong token"))
    w.nonce -= 1  # the same nonce, the other token
    four = submit(daemon, w.wallet.id, w.tx(w.nft, calldata(
        "transferFrom(address,address,uint256)", w.address, ELSEWHERE, 4)))
    st_four = daemon.approval("inv1").GetStatement(pb.GetStatementRequest(
        transfer_id=four.id, decision=pb.APPROVE)).statement
    # Rewrite the first statement for the second transfer but keep token id 1: refused.
    forged = st_one.replace(one.id.encode(), four.id.encode())
    doc_one, doc_four = json.loads(forged.split(b"\n", 1)[1]), json.loads(
        st_four.split(b"\n", 1)[1])
    assert doc_one["outputs"][0]["token_id"] == "1" and doc_four["outputs"][0]["token_id"] == "4"
    signature = sign_statement(load_private(daemon.state / "operators" / "inv1.key"), forged)
    e = rpc_error(daemon.approval("inv1").SubmitApproval, pb.SubmitApprovalRequest(
        transfer_id=four.id, operator_id="inv1", decision=pb.APPROVE, signature=signature))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "does not verify" in e.details()
    # inv1's signature over the true statement (token 4) counts (the first of three below).
    # Nor does the registry entry change under it (read as ERC-1155, the same bytes would be
    # another call: here not one signerd decodes).
    e = rpc_error(daemon.admin().SetToken, pb.SetTokenRequest(
        chain_id=CHAIN, address=w.nft, symbol=w.art, decimals=0, standard="erc1155"))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION and four.id in e.details()
    t = approve_all(daemon, four, ("inv1", "cust1", "judge1"))
    broadcast(node, t, w.address)
    assert owner_of(node, w.nft, 4).lower() == ELSEWHERE
    assert owner_of(node, w.nft, 1).lower() == w.address.lower()


def test_set_approval_for_all_needs_a_grant_rule(daemon: Daemon, node: evm.Anvil,
                                                 compiled: dict[str, Any]) -> None:
    """Without a rule with grant = true, even one naming the asset: PolicyDenied through the
    daemon. With one: decoded as a grant of everything, shown so, signed, and on chain the
    operator is approved for all; the revocation is a plain rule's."""
    grant_call = calldata("setApprovalForAll(address,bool)", OPERATOR, True)
    w = World(daemon, node, compiled, extra=NAMED_NO_GRANT)
    e = rpc_error(submit, daemon, w.wallet.id, w.tx(w.nft, grant_call))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no policy rule with grant = true covers a grant of everything" in e.details()
    assert ("signerd-reason", "POLICY_DENIED") in (e.trailing_metadata() or ())

    w = World(daemon, node, compiled, extra=GRANT_RULE + NAMED_NO_GRANT)
    t = submit(daemon, w.wallet.id, w.tx(w.nft, grant_call))
    (out,) = t.movement.outputs
    assert out.grant and out.asset == f"ERC721-APPROVE-ALL:{w.nft}"
    assert out.address.lower() == OPERATOR
    assert "prosecutor x1" in t.requirement and "judge x1" in t.requirement
    st = daemon.approval("inv1").GetStatement(pb.GetStatementRequest(transfer_id=t.id,
                                                                     decision=pb.APPROVE))
    assert f"GRANT {out.address} control of ALL {w.art} held by the wallet" in st.rendered
    assert "WARNING: output 1 grants" in st.rendered
    assert rebuild_statement(st, t.id, Decision.APPROVE, limits=Limits()).statement == \
        st.statement
    assert not approved_for_all(node, w.nft, w.address, OPERATOR)
    # signerctl rebuilds the statement on the operator's side and shows the grant before signing.
    r = ctl(daemon, "--as", "inv1", "transfer", "approve", t.id, "--key",
            str(daemon.state / "operators" / "inv1.key"), "--yes")
    assert f"GRANT {out.address} control of ALL {w.art} held by the wallet" in r.stdout
    assert "WARNING: output 1 grants" in r.stdout
    broadcast(node, approve_all(daemon, t, ("cust1", "judge1", "pros1")), w.address)
    assert approved_for_all(node, w.nft, w.address, OPERATOR)

    # The revocation: no grant, the plain rule naming the asset (two approvers).
    t = submit(daemon, w.wallet.id, w.tx(w.nft, calldata("setApprovalForAll(address,bool)",
                                                         OPERATOR, False)))
    (out,) = t.movement.outputs
    assert (out.grant, out.amount) == (False, "0")
    assert t.requirement.startswith("2 approvers"), t.requirement
    broadcast(node, approve_all(daemon, t, ("inv1", "cust1")), w.address)
    assert not approved_for_all(node, w.nft, w.address, OPERATOR)


RECOVER = """
[[rule]]
name = "recover"
asset = "ERC721:{nft}"
max_amount = 1
spend_allowance = true
approvers = 3
roles = {{ investigator = 1, custody_officer = 1, prosecutor = 1 }}
"""


def test_taking_someone_elses_token_needs_spend_allowance(
        daemon: Daemon, node: evm.Anvil, compiled: dict[str, Any]) -> None:
    """A holder approved the wallet as operator of its tokens (e.g. under a court order); the
    wallet's transferFrom of the holder's token 5 into the wallet names the holder and needs a
    rule with spend_allowance = true; then it executes and the wallet owns token 5."""
    w = World(daemon, node, compiled)
    rec = node.send(w.other, w.nft, calldata("setApprovalForAll(address,bool)", w.address, True))
    assert int(rec["status"], 16) == 1
    take = calldata("transferFrom(address,address,uint256)", w.other, w.address, 5)
    e = rpc_error(submit, daemon, w.wallet.id, w.tx(w.nft, take))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "taken from another address than the wallet" in e.details()
    assert "spend_allowance = true" in e.details()
    assert ("signerd-reason", "POLICY_DENIED") in (e.trailing_metadata() or ())
    w.nonce -= 1  # refused: the nonce is still free

    w.policy(daemon, RECOVER)
    t = submit(daemon, w.wallet.id, w.tx(w.nft, take))
    (out,) = t.movement.outputs
    assert (out.source.lower(), out.address, out.token_id) == (w.other.lower(), w.address, "5")
    assert "prosecutor x1" in t.requirement  # the recover rule, not "art"
    st = daemon.approval("inv1").GetStatement(pb.GetStatementRequest(transfer_id=t.id,
                                                                     decision=pb.APPROVE))
    assert f"take ERC-721 {w.art} token id 5 from {out.source} (NOT the wallet's)" in st.rendered
    assert "WARNING: output 1 takes tokens held by" in st.rendered
    assert rebuild_statement(st, t.id, Decision.APPROVE, limits=Limits()).statement == \
        st.statement
    broadcast(node, approve_all(daemon, t, ("inv1", "cust1", "pros1")), w.address)
    assert owner_of(node, w.nft, 5).lower() == w.address.lower()


def test_an_unlimited_erc20_allowance_is_a_grant(daemon: Daemon, node: evm.Anvil,
                                                 compiled: dict[str, Any]) -> None:
    """approve(spender, 2**256-1) on a registered ERC-20: the two-key rule for the coin does not
    cover it (PolicyDenied); a rule with grant = true does, and on chain the allowance is set. A
    bounded approve stays under the coin's ordinary rule."""
    w = World(daemon, node, compiled)
    coin = to_checksum_address(node.deploy(compiled["SeizedCoin"]["bytecode"]
                                           + encode(["address"], [w.address]).hex()))
    p = govern(daemon, daemon.admin().SetToken(pb.SetTokenRequest(
        chain_id=CHAIN, address=coin, symbol=f"COIN{World.count}", decimals=6)))
    assert p.state == "APPROVED", p.failure
    ordinary = f"""
[[rule]]
name = "coin"
asset = "ERC20-APPROVE:{coin}"
approvers = 2
roles = {{{{ investigator = 1, custody_officer = 1 }}}}
"""
    w.policy(daemon, ordinary)
    unlimited = calldata("approve(address,uint256)", OPERATOR, 2**256 - 1)
    e = rpc_error(submit, daemon, w.wallet.id, w.tx(coin, unlimited))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no policy rule with grant = true covers a grant of everything" in e.details()
    w.nonce -= 1

    w.policy(daemon, ordinary + f"""
[[rule]]
name = "coin-grant"
asset = "ERC20-APPROVE:{coin}"
min_amount = "{2**255}"  # a grant rule also covers smaller allowances unless bounded so
grant = true
approvers = 3
roles = {{{{ investigator = 1, custody_officer = 1, prosecutor = 1 }}}}
""")
    t = submit(daemon, w.wallet.id, w.tx(coin, unlimited))
    (out,) = t.movement.outputs
    assert out.grant and out.amount == str(2**256 - 1) and "prosecutor x1" in t.requirement
    st = daemon.approval("inv1").GetStatement(pb.GetStatementRequest(transfer_id=t.id,
                                                                     decision=pb.APPROVE))
    assert f"GRANT {out.address} control of ALL COIN{World.count} held by the wallet" in \
        st.rendered
    broadcast(node, approve_all(daemon, t, ("inv1", "cust1", "pros1")), w.address)
    allowance = int(node.call(coin, calldata("allowance(address,address)", w.address,
                                             OPERATOR)), 16)
    assert allowance == 2**256 - 1

    bounded = submit(daemon, w.wallet.id, w.tx(coin, calldata("approve(address,uint256)",
                                                              OPERATOR, 0)))
    assert not bounded.movement.outputs[0].grant and bounded.requirement.startswith("2 ")
    broadcast(node, approve_all(daemon, bounded, ("inv1", "cust1")), w.address)
    assert int(node.call(coin, calldata("allowance(address,address)", w.address,
                                        OPERATOR)), 16) == 0
