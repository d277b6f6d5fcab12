"""Adversarial checks of the NFT / multi-token decoding: calldata a platform (or one operator)
could craft so that what the operator is shown, what the statement binds or what the policy
judges differs from what the contract will do. Calldata is built with eth_abi (an independent
encoder); each test names the attack it stands for."""
from __future__ import annotations

import json

import pytest
from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector as selector

from signerd.core import approval
from signerd.core.errors import PolicyDenied
from signerd.core.ethereum.address import to_checksum
from signerd.core.ethereum.calls import UNLIMITED, decode_token_call
from signerd.core.ethereum.signing import decode_call
from signerd.core.model import Chain, Decision, Movement
from signerd.core.policy import parse_policy
from signerd.core.tokens import make_token
from tests.support.tokens import CHAIN, COIN, MULTI, NFT, OTHER, TO, WALLET, registry
from tests.support.tokens import abi_call as call

ATTACKER = "0x" + "ee" * 20
REGISTRY = registry(coin_decimals=18)

SAFE4 = "safeTransferFrom(address,address,uint256,bytes)"
SAFE1155 = "safeTransferFrom(address,address,uint256,uint256,bytes)"
BATCH = "safeBatchTransferFrom(address,address,uint256[],uint256[],bytes)"


def cs(a: str) -> str:
    return to_checksum(bytes.fromhex(a[2:]))


def movement_of(contract: str, data: bytes, sender: str | None = WALLET) -> Movement:
    d = decode_call(CHAIN, bytes.fromhex(contract[2:]), 0, data, REGISTRY, sender=sender)
    return Movement(chain=Chain.ETHEREUM, network="ethereum", chain_id=CHAIN, outputs=d.outputs,
                    fee=10**15, fee_asset="ETH", digests=(b"\x01" * 32,), nonce=0,
                    gas_limit=100_000, max_fee_per_gas=10**10, max_priority_fee_per_gas=10**9,
                    contract_call=d.contract_call, tokens=d.tokens,
                    details={"tx_type": "2", **d.details})


def ctx() -> approval.StatementContext:
    return approval.StatementContext(instance_id="i", transfer_id="t_1", wallet_id="w_1",
                                     policy_version=1, expires_at=2_000_000_000,
                                     payload_sha256=b"\x00" * 32)


# --- the bytes argument of safeTransferFrom reaches the recipient's hook ---------------------

# What a receiver that acts on its hook's data reads, e.g. ENS's NameWrapper, whose
# onERC721Received decodes (label, owner, fuses, resolver) from it and mints the wrapped name to
# that owner: the token goes to the allowlisted contract, its value to whoever the data names.
HOOK_DATA = encode(["string", "address", "uint16", "address"],
                   ["seized", ATTACKER, 0, "0x" + "00" * 20])


@pytest.mark.parametrize("contract,data", [
    (NFT, call(SAFE4, WALLET, TO, 7, HOOK_DATA)),
    (MULTI, call(SAFE1155, WALLET, TO, 5, 1, HOOK_DATA)),
    (MULTI, call(BATCH, WALLET, TO, [5, 6], [1, 1], HOOK_DATA)),
], ids=["erc721", "erc1155", "erc1155-batch"])
def test_hook_data_passed_to_the_recipient_is_shown_to_the_operator(contract, data) -> None:
    """The operator who approves a safeTransferFrom must see the bytes the recipient contract's
    onERC721Received / onERC1155Received hook is handed (they may name who really gets the
    token), not only "send token id 7 to <contract>"."""
    m = movement_of(contract, data)
    text = approval.render(ctx(), m, Decision.APPROVE)
    assert HOOK_DATA.hex() in text
    warning = [line for line in text.splitlines() if line.startswith("WARNING:")
               and HOOK_DATA.hex() in line]
    assert warning and "hook" in warning[0] and cs(TO) in warning[0]


def test_no_hook_line_without_data() -> None:
    m = movement_of(NFT, call(SAFE4, WALLET, TO, 7, b""))
    text = approval.render(ctx(), m, Decision.APPROVE)
    assert "hook" not in text and "WARNING" not in text


# --- "unlimited" allowances that are not 2**256-1 ---------------------------------------------

def test_a_uint96_max_allowance_is_a_grant() -> None:
    """Compound-style governance tokens (COMP, UNI and their forks) keep allowances in 96 bits:
    approve(spender, 2**96-1) is their infinite allowance, never decreased by transferFrom, the
    same on chain as approve(spender, 2**256-1). It must be a grant too, not an allowance a
    rule for ordinary amounts (asset = "*" without max_amount) covers."""
    for method in ("approve(address,uint256)", "increaseAllowance(address,uint256)"):
        m = movement_of(COIN, call(method, OTHER, 2**96 - 1))
        assert m.outputs[0].grant, method
        star = 'name = "p"\n[[rule]]\nname = "any"\nasset = "*"\napprovers = 2\n'
        with pytest.raises(PolicyDenied, match="grant = true"):
            parse_policy(star).requirement_for(m)
    assert "WARNING: output 1 grants" in approval.render(
        ctx(), movement_of(COIN, call("approve(address,uint256)", OTHER, 2**96 - 1)),
        Decision.APPROVE)
    # Real amounts stay allowances: a billion tokens of 18 decimals is far below.
    assert not movement_of(COIN, call("approve(address,uint256)", OTHER,
                                      10**9 * 10**18)).outputs[0].grant
    assert UNLIMITED <= 2**96 - 1


# --- policy denials name the problem --------------------------------------------------------

def test_a_star_rule_denial_says_star_does_not_cover_collections() -> None:
    """A policy whose only rule is asset = "*" refuses an NFT; the refusal must say why (the
    collection must be named), not only that 1 base unit is uncovered."""
    m = movement_of(NFT, call("transferFrom(address,address,uint256)", WALLET, TO, 7))
    star = 'name = "p"\n[[rule]]\nname = "any"\nasset = "*"\napprovers = 2\n'
    with pytest.raises(PolicyDenied) as e:
        parse_policy(star).requirement_for(m)
    assert 'asset = "*"' in str(e.value) and f"ERC721:{NFT}" in str(e.value)
    assert "collection" in str(e.value)
    # With a rule naming the collection the hint would mislead: the problem is elsewhere.
    named = star + f'[[rule]]\nname = "art"\nasset = "ERC721:{NFT}"\napprovers = 2\n'
    taken = movement_of(NFT, call("transferFrom(address,address,uint256)", OTHER, TO, 7))
    with pytest.raises(PolicyDenied, match="spend_allowance = true") as e:
        parse_policy(named).requirement_for(taken)
    assert 'asset = "*"' not in str(e.value)


# --- what was checked and holds ---------------------------------------------------------------

def test_batch_duplicate_ids_are_summed_as_the_contract_moves_them() -> None:
    """The same id twice in a batch moves the sum (OpenZeppelin's _update loops over the pairs);
    one output per pair, and the policy bounds the sum, so a bound cannot be dodged by repeating
    an id."""
    m = movement_of(MULTI, call(BATCH, WALLET, TO, [5, 5], [6, 6], b""))
    assert [(o.token_id, o.amount) for o in m.outputs] == [(5, 6), (5, 6)]
    rule = (f'name = "p"\n[[rule]]\nname = "ten"\nasset = "ERC1155:{MULTI}"\nmax_amount = 10\n'
            "approvers = 2\n")
    with pytest.raises(PolicyDenied, match=f"12 base units of ERC1155:{MULTI}"):
        parse_policy(rule).requirement_for(m)
    assert parse_policy(rule).requirement_for(
        movement_of(MULTI, call(BATCH, WALLET, TO, [5, 5], [5, 5], b""))).rules == ("ten",)


def _words(*words: int) -> bytes:
    return b"".join(w.to_bytes(32, "big") for w in words)


def test_batch_arrays_that_share_or_mismatch_are_not_decoded() -> None:
    """ids and amounts read from one tail (offsets pointing into each other), counts that
    differ, an empty batch: never a token movement (the contract would revert, or read
    something else), so a contract call."""
    sel = selector(BATCH)
    w, t = int(WALLET, 16), int(TO, 16)
    # ids and amounts at the same offset (0xa0): a lenient decoder reads [7] for both.
    shared = sel + _words(w, t, 0xa0, 0xa0, 0xe0, 1, 7, 0)
    assert decode_token_call("erc1155", shared) is None
    # amounts offset pointing into the ids' tail
    inner = sel + _words(w, t, 0xa0, 0xc0, 0x120, 2, 1, 1, 0)
    assert decode_token_call("erc1155", inner) is None
    for ids, amounts in (([1, 2], [1]), ([1], [1, 2]), ([], [])):
        data = call(BATCH, WALLET, TO, ids, amounts, b"")
        assert decode_token_call("erc1155", data) is None
        assert movement_of(MULTI, data).contract_call == "0x" + data.hex()


def test_from_is_compared_as_an_address_not_as_text() -> None:
    """The wallet's own address in any letter case is the wallet: no source, no spend_allowance;
    any other address is a source."""
    data = call("transferFrom(address,address,uint256)", WALLET, TO, 1)
    for sender in (WALLET, WALLET.upper().replace("0X", "0x"), cs(WALLET),
                   bytes.fromhex(WALLET[2:])):
        assert movement_of(NFT, data, sender=sender).outputs[0].source == ""
    assert movement_of(NFT, data, sender=OTHER).outputs[0].source == cs(WALLET)


@pytest.mark.parametrize("token_id", [0, 2**256 - 1])
def test_extreme_token_ids_are_bound_and_shown_exactly(token_id) -> None:
    m = movement_of(NFT, call("transferFrom(address,address,uint256)", WALLET, TO, token_id))
    doc = json.loads(approval.build_statement(ctx(), m, Decision.APPROVE).split(b"\n", 1)[1])
    assert doc["outputs"][0]["token_id"] == str(token_id)
    assert f"token id {token_id} to" in approval.render(ctx(), m, Decision.APPROVE)


def test_amount_zero_transfers_still_need_a_rule_naming_the_collection() -> None:
    m = movement_of(MULTI, call(SAFE1155, WALLET, TO, 5, 0, b""))
    assert m.outputs[0].amount == 0
    star = 'name = "p"\n[[rule]]\nname = "any"\nasset = "*"\napprovers = 2\n'
    with pytest.raises(PolicyDenied, match=f"ERC1155:{MULTI}"):
        parse_policy(star).requirement_for(m)


def test_a_non_canonical_bool_is_a_contract_call() -> None:
    """setApprovalForAll(op, 2): Solidity >= 0.8 reverts on it, older decoders read true; never a
    revocation."""
    raw = selector("setApprovalForAll(address,bool)") + _words(int(OTHER, 16), 2)
    m = movement_of(NFT, raw)
    assert m.contract_call == "0x" + raw.hex() and all(o.asset == "ETH" for o in m.outputs)
    with pytest.raises(PolicyDenied, match="undecoded contract calls"):
        parse_policy('name = "p"\n[[rule]]\nname = "r"\nasset = "*"\napprovers = 2\n'
                     ).requirement_for(m)


def test_the_registered_standard_decides_a_shared_selector() -> None:
    """transferFrom(address,address,uint256) is the same selector in ERC-20 and ERC-721: read as
    an amount for an erc20 entry, as a token id for an erc721 one, never both."""
    data = call("transferFrom(address,address,uint256)", WALLET, TO, 5 * 10**18)
    (coin,) = movement_of(COIN, data).outputs
    (art,) = movement_of(NFT, data).outputs
    assert (coin.asset, coin.amount, coin.token_id) == (f"ERC20:{cs(COIN)}", 5 * 10**18, None)
    assert (art.asset, art.amount, art.token_id) == (f"ERC721:{cs(NFT)}", 1, 5 * 10**18)


def test_erc1155_amounts_are_shown_with_the_registered_decimals() -> None:
    """An ERC-1155 entry's decimals apply to every id (tokens.py): 150 base units of a 2-decimal
    entry read 1.50, not "150 of", beside a "token: ... 2 decimals" line."""
    gold = "0x" + "d4" * 20
    entry = make_token(chain_id=CHAIN, address=gold, standard="erc1155", symbol="GOLD",
                       decimals=2)
    d = decode_call(CHAIN, bytes.fromhex(gold[2:]), 0, call(SAFE1155, WALLET, TO, 1, 150, b""),
                    {entry.key: entry}, sender=WALLET)
    m = Movement(chain=Chain.ETHEREUM, network="ethereum", chain_id=CHAIN, outputs=d.outputs,
                 fee=0, fee_asset="ETH", digests=(b"\x01" * 32,), nonce=0, gas_limit=1,
                 max_fee_per_gas=1, max_priority_fee_per_gas=1, tokens=d.tokens)
    text = approval.render(ctx(), m, Decision.APPROVE)
    assert f"send 1.50 (150 base units) of ERC-1155 GOLD token id 1 to {cs(TO)}" in text
    # decimals 0, the usual case, reads as a count
    assert "send 40 of ERC-1155 ITEMS token id 5" in approval.render(
        ctx(), movement_of(MULTI, call(SAFE1155, WALLET, TO, 5, 40, b"")), Decision.APPROVE)


def test_the_daemons_rendering_from_the_stored_movement_shows_the_hook_data_too() -> None:
    """The daemon renders the statement from the movement its row stores: the hook data must
    survive the stored form, or the daemon's rendering omits what signerctl's shows."""
    from signerd.core.movement_json import movement_from_json, movement_to_json

    m = movement_of(NFT, call(SAFE4, WALLET, TO, 7, HOOK_DATA))
    again = movement_from_json(movement_to_json(m))
    assert HOOK_DATA.hex() in approval.render(ctx(), again, Decision.APPROVE)
    plain = movement_of(NFT, call(SAFE4, WALLET, TO, 7, b""))
    assert "token_call_data" not in movement_to_json(plain)  # rows without data unchanged
