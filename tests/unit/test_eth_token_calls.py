"""Token calls of registered ERC-20, ERC-721 and ERC-1155 contracts: strict ABI decoding checked
against eth_abi's encoder (an independent implementation), non-canonical spellings refused,
the outputs policies judge, and what the statement binds and shows."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signerd.core import approval
from signerd.core.errors import PolicyDenied
from signerd.core.ethereum.address import to_checksum
from signerd.core.ethereum.calls import MAX_BATCH, UNLIMITED, Method, decode_token_call
from signerd.core.ethereum.signing import decode_call
from signerd.core.model import Chain, Decision, DestinationClass, Movement
from signerd.core.movement_json import movement_from_json, movement_to_json
from signerd.core.policy import parse_policy
from tests.support.tokens import CHAIN, COIN, MULTI, NFT, OTHER, TO, WALLET, abi_call, registry

REGISTRY = registry(coin_decimals=6)

SIGS = {
    "transferFrom": "transferFrom(address,address,uint256)",
    "safe3": "safeTransferFrom(address,address,uint256)",
    "safe4": "safeTransferFrom(address,address,uint256,bytes)",
    "safe1155": "safeTransferFrom(address,address,uint256,uint256,bytes)",
    "batch": "safeBatchTransferFrom(address,address,uint256[],uint256[],bytes)",
    "increase": "increaseAllowance(address,uint256)",
    "approve": "approve(address,uint256)",
    "all": "setApprovalForAll(address,bool)",
}


def call(name: str, *args: object) -> bytes:
    return abi_call(SIGS[name], *args)


def outputs(contract: str, data: bytes, sender: str | None = WALLET):
    return decode_call(CHAIN, bytes.fromhex(contract[2:]), 0, data, REGISTRY, sender=sender)


def cs(a: str) -> str:
    return to_checksum(bytes.fromhex(a[2:]))


# --- each decoder against eth_abi's encoding ------------------------------------------------

def test_erc721_transfers_each_decode_to_one_token() -> None:
    for data in (call("transferFrom", WALLET, TO, 7), call("safe3", WALLET, TO, 7),
                 call("safe4", WALLET, TO, 7, b"")):
        d = outputs(NFT, data)
        (out,) = d.outputs
        assert (out.address, out.amount, out.asset, out.token_id, out.source, out.grant) == (
            cs(TO), 1, f"ERC721:{cs(NFT)}", 7, "", False)
        assert d.contract_call == "" and [t.symbol for t in d.tokens] == ["ART"]
    big = 2**256 - 1  # token ids are uint256
    d = outputs(NFT, call("safe4", WALLET, TO, big, b"\x01\x02hook data"))
    assert d.outputs[0].token_id == big and d.details["token_call_data"] == "0x0102" + \
        b"hook data".hex()


def test_erc1155_single_and_batch() -> None:
    (out,) = outputs(MULTI, call("safe1155", WALLET, TO, 5, 40, b"")).outputs
    assert (out.asset, out.token_id, out.amount, out.address) == (f"ERC1155:{cs(MULTI)}", 5, 40,
                                                                   cs(TO))
    d = outputs(MULTI, call("batch", WALLET, TO, [1, 2, 1], [10, 20, 30], b"xyz"))
    assert [(o.token_id, o.amount) for o in d.outputs] == [(1, 10), (2, 20), (1, 30)]
    assert {o.asset for o in d.outputs} == {f"ERC1155:{cs(MULTI)}"}
    assert d.details["token_method"] == "safeBatchTransferFrom"


def test_erc20_transfer_from_and_increase_allowance() -> None:
    (out,) = outputs(COIN, call("transferFrom", WALLET, TO, 123)).outputs
    assert (out.asset, out.amount, out.source, out.token_id) == (f"ERC20:{cs(COIN)}", 123, "",
                                                                  None)
    (out,) = outputs(COIN, call("increase", TO, 500)).outputs
    assert (out.asset, out.amount, out.grant) == (f"ERC20-INCREASE:{cs(COIN)}", 500, False)


def test_someone_elses_tokens_are_named() -> None:
    """transferFrom with a from that is not the wallet: the output's source is that address;
    the sender compared case-insensitively; an unknown sender makes every from a source."""
    for contract, data in ((NFT, call("transferFrom", OTHER, TO, 9)),
                           (COIN, call("transferFrom", OTHER, TO, 9)),
                           (MULTI, call("safe1155", OTHER, TO, 9, 1, b""))):
        assert [o.source for o in outputs(contract, data).outputs] == [cs(OTHER)]
    assert outputs(NFT, call("transferFrom", WALLET, TO, 9),
                   sender=cs(WALLET)).outputs[0].source == ""
    assert outputs(NFT, call("transferFrom", WALLET, TO, 9),
                   sender=None).outputs[0].source == cs(WALLET)


def test_grants_of_everything() -> None:
    for contract, kind in ((NFT, "ERC721"), (MULTI, "ERC1155")):
        (out,) = outputs(contract, call("all", OTHER, True)).outputs
        assert (out.asset, out.amount, out.grant, out.address) == (
            f"{kind}-APPROVE-ALL:{cs(contract)}", 1, True, cs(OTHER))
        (out,) = outputs(contract, call("all", OTHER, False)).outputs  # a revocation
        assert (out.amount, out.grant) == (0, False)
    for name in ("approve", "increase"):
        assert outputs(COIN, call(name, OTHER, 2**256 - 1)).outputs[0].grant
        assert outputs(COIN, call(name, OTHER, UNLIMITED)).outputs[0].grant
        assert not outputs(COIN, call(name, OTHER, UNLIMITED - 1)).outputs[0].grant
    (out,) = outputs(NFT, call("approve", OTHER, 4)).outputs  # one token: no grant
    assert (out.asset, out.token_id, out.amount, out.grant) == (
        f"ERC721-APPROVE:{cs(NFT)}", 4, 1, False)


def test_only_a_registered_contract_of_that_standard_on_that_chain_decodes() -> None:
    data = call("transferFrom", WALLET, TO, 7)
    for chain, contract in ((CHAIN, "0x" + "44" * 20), (1, NFT)):
        d = decode_call(chain, bytes.fromhex(contract[2:]), 0, data, REGISTRY, sender=WALLET)
        assert d.contract_call == "0x" + data.hex() and [o.asset for o in d.outputs] == ["ETH"]
    # The methods of one standard are not read on a contract of another.
    for contract, data in ((COIN, call("safe1155", WALLET, TO, 1, 1, b"")),
                           (COIN, call("all", OTHER, True)),
                           (NFT, call("batch", WALLET, TO, [1], [1], b"")),
                           (NFT, call("increase", OTHER, 5)),
                           (MULTI, call("transferFrom", WALLET, TO, 1)),
                           (MULTI, call("approve", OTHER, 1))):
        d = outputs(contract, data)
        assert d.contract_call and not d.tokens, (contract, data.hex())


# --- non-canonical encodings are contract calls ---------------------------------------------

def _not_decoded(standard: str, data: bytes) -> None:
    assert decode_token_call(standard, data) is None, data.hex()
    contract = {"erc721": NFT, "erc1155": MULTI, "erc20": COIN}[standard]
    d = outputs(contract, data)
    assert d.contract_call == "0x" + data.hex() and not d.tokens


def test_trailing_bytes_short_data_and_dirty_words() -> None:
    good = call("transferFrom", WALLET, TO, 7)
    for bad in (good + b"\x00", good + b"\x00" * 32, good[:-1], good[:4],
                good[:4 + 12 - 1] + b"\x01" + good[4 + 12:],  # address padding not zero
                good[:4 + 32 + 3] + b"\xff" + good[4 + 32 + 4:]):
        _not_decoded("erc721", bad)
    flag = call("all", OTHER, True)
    _not_decoded("erc721", flag[:-1] + b"\x02")  # a bool is 0 or 1
    _not_decoded("erc1155", flag[:-32] + (2**255).to_bytes(32, "big"))


def test_dynamic_arguments_only_where_the_canonical_encoder_puts_them() -> None:
    good = call("safe4", WALLET, TO, 7, b"abc")
    assert decode_token_call("erc721", good) is not None
    words = [good[4 + i:4 + i + 32] for i in range(0, len(good) - 4, 32)]
    assert int.from_bytes(words[3], "big") == 128
    # The same bytes argument one word further, with a gap: a decoder that follows offsets
    # reads it; signerd does not.
    gapped = good[:4] + b"".join(words[:3]) + (160).to_bytes(32, "big") + b"\x00" * 32 + \
        b"".join(words[4:])
    _not_decoded("erc721", gapped)
    _not_decoded("erc721", good[:-1] + b"\x01")  # padding of bytes not zero
    long = good[:4] + b"".join(words[:4]) + (2**200).to_bytes(32, "big") + b"".join(words[5:])
    _not_decoded("erc721", long)  # a length beyond the data

    batch = call("batch", WALLET, TO, [1, 2], [3, 4], b"")
    _not_decoded("erc1155", batch + b"\x00" * 32)
    _not_decoded("erc1155", call("batch", WALLET, TO, [1, 2], [3], b""))  # counts differ
    _not_decoded("erc1155", call("batch", WALLET, TO, [], [], b""))  # nothing moves
    # Offsets swapped (amounts' tail first): well-formed for a lenient decoder, not canonical.
    w = [batch[4 + i:4 + i + 32] for i in range(0, len(batch) - 4, 32)]
    ids_tail, amounts_tail = b"".join(w[5:8]), b"".join(w[8:11])
    swapped = batch[:4] + b"".join(w[:2]) + (256).to_bytes(32, "big") + \
        (160).to_bytes(32, "big") + w[4] + amounts_tail + ids_tail + w[11]
    _not_decoded("erc1155", swapped)


def test_batch_count_is_bounded() -> None:
    ok = call("batch", WALLET, TO, list(range(MAX_BATCH)), [1] * MAX_BATCH, b"")
    assert len(outputs(MULTI, ok).outputs) == MAX_BATCH
    _not_decoded("erc1155", call("batch", WALLET, TO, list(range(MAX_BATCH + 1)),
                                 [1] * (MAX_BATCH + 1), b""))


ARGS = {
    "erc721": [("transferFrom", ("address", "address", "uint256")),
               ("safe4", ("address", "address", "uint256", "bytes")),
               ("all", ("address", "bool"))],
    "erc1155": [("safe1155", ("address", "address", "uint256", "uint256", "bytes")),
                ("batch", ("address", "address", "uint256[]", "uint256[]", "bytes"))],
    "erc20": [("transferFrom", ("address", "address", "uint256")),
              ("increase", ("address", "uint256")), ("approve", ("address", "uint256"))],
}


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([(s, n, t) for s, calls in ARGS.items() for n, t in calls]),
       st.data())
def test_whatever_decodes_is_what_eth_abi_encodes_byte_for_byte(case, data) -> None:
    """For canonical encodings and random corruptions of them: a decoded call re-encodes with
    eth_abi to exactly the input; anything else is not decoded."""
    standard, name, types = case
    addr = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
    uint = st.integers(0, 2**256 - 1)
    values = {"address": addr, "uint256": uint, "bool": st.booleans(),
              "bytes": st.binary(max_size=70), "uint256[]": st.lists(uint, min_size=1,
                                                                     max_size=4)}
    args = [data.draw(values[t]) for t in types]
    if name == "batch":
        args[3] = args[3][:len(args[2])] + [0] * (len(args[2]) - len(args[3]))
    raw = bytearray(call(name, *args))
    if data.draw(st.booleans()):  # corrupt: flip a byte, cut or extend
        how = data.draw(st.sampled_from(["flip", "cut", "extend"]))
        if how == "flip":
            i = data.draw(st.integers(4, len(raw) - 1))
            raw[i] ^= data.draw(st.integers(1, 255))
        elif how == "cut":
            del raw[data.draw(st.integers(4, len(raw) - 1)):]
        else:
            raw += data.draw(st.binary(min_size=1, max_size=64))
    got = decode_token_call(standard, bytes(raw))
    if got is None:
        return
    sig = SIGS[name]
    if got.method is Method.SET_APPROVAL_FOR_ALL:
        again = [to_checksum(got.counterparty), got.approved]
    elif got.method is Method.SAFE_BATCH_TRANSFER_FROM:
        again = ["0x" + (got.source or b"").hex(), to_checksum(got.counterparty),
                 [i.token_id for i in got.items], [i.amount for i in got.items], got.data]
    elif got.source is None:  # approve, increaseAllowance
        (item,) = got.items
        again = [to_checksum(got.counterparty), item.amount]
    elif standard == "erc20":
        (item,) = got.items
        again = ["0x" + got.source.hex(), to_checksum(got.counterparty), item.amount]
    else:
        (item,) = got.items
        again = ["0x" + (got.source or b"").hex(), to_checksum(got.counterparty), item.token_id]
        if standard == "erc1155":
            again.append(item.amount)
        if "bytes" in sig:
            again.append(got.data)
    assert call(name, *again) == bytes(raw)


# --- policy ---------------------------------------------------------------------------------

def movement_of(data: bytes, contract: str, *, sender: str | None = WALLET) -> Movement:
    d = outputs(contract, data, sender)
    return Movement(chain=Chain.ETHEREUM,
                    network="ethereum", chain_id=CHAIN, outputs=d.outputs, fee=10**15,
                    fee_asset="ETH", digests=(b"\x01" * 32,), nonce=0, gas_limit=100_000,
                    max_fee_per_gas=10**10, max_priority_fee_per_gas=10**9,
                    contract_call=d.contract_call, tokens=d.tokens)


BASE = f"""
name = "nft"
[[rule]]
name = "anything"
asset = "*"
approvers = 2
roles = {{ investigator = 1, custody_officer = 1 }}
"""
ART = f"""
[[rule]]
name = "art"
asset = "ERC721:{NFT}"
max_amount = 1
approvers = 3
roles = {{ investigator = 1, custody_officer = 1, judge = 1 }}
"""
GRANT = f"""
[[rule]]
name = "grant"
asset = "ERC721-APPROVE-ALL:{NFT}"
grant = true
approvers = 4
roles = {{ investigator = 1, custody_officer = 1, judge = 1, prosecutor = 1 }}
"""


def test_star_never_covers_a_collection() -> None:
    m = movement_of(call("safe3", WALLET, TO, 7), NFT)
    with pytest.raises(PolicyDenied, match=f"no policy rule covers 1 base units of "
                                           f"ERC721:{NFT}"):
        parse_policy(BASE).requirement_for(m)
    req = parse_policy(BASE + ART).requirement_for(m)
    assert req.rules == ("art",) and req.approvers == 3
    two = movement_of(call("batch", WALLET, TO, [1, 2], [1, 1], b""), MULTI)
    with pytest.raises(PolicyDenied, match="ERC1155"):
        parse_policy(BASE + ART).requirement_for(two)


def test_a_grant_needs_a_grant_rule() -> None:
    m = movement_of(call("all", OTHER, True), NFT)
    named = ART.replace("ERC721:", "ERC721-APPROVE-ALL:").replace('"art"', '"named"')
    for text in (BASE, BASE + ART, BASE + named):
        with pytest.raises(PolicyDenied, match="no policy rule with grant = true covers a grant"):
            parse_policy(text).requirement_for(m)
    req = parse_policy(BASE + GRANT).requirement_for(m)
    assert req.rules == ("grant",) and req.approvers == 4
    # An unlimited ERC-20 allowance: "*" covered it before it was a grant; no longer.
    unlimited = movement_of(call("approve", OTHER, 2**256 - 1), COIN)
    with pytest.raises(PolicyDenied, match="grant = true"):
        parse_policy(BASE).requirement_for(unlimited)
    limited = movement_of(call("approve", OTHER, 10**6), COIN)
    assert parse_policy(BASE).requirement_for(limited).rules == ("anything",)
    star_grant = BASE + '\n[[rule]]\nname = "g"\nasset = "*"\ngrant = true\napprovers = 5\n'
    assert parse_policy(star_grant).requirement_for(unlimited).approvers == 5
    # A revocation is no grant: a rule naming the asset covers it.
    revoke = movement_of(call("all", OTHER, False), NFT)
    with pytest.raises(PolicyDenied):
        parse_policy(BASE).requirement_for(revoke)
    assert parse_policy(BASE + named.replace("max_amount = 1", "max_amount = 0")
                        ).requirement_for(revoke).rules == ("named",)


def test_someone_elses_tokens_need_spend_allowance() -> None:
    m = movement_of(call("transferFrom", OTHER, WALLET, 7), NFT)
    with pytest.raises(PolicyDenied, match="spend_allowance = true"):
        parse_policy(BASE + ART).requirement_for(m)
    ok = ART.replace("max_amount = 1", "max_amount = 1\nspend_allowance = true")
    assert parse_policy(BASE + ok).requirement_for(m).rules == ("art",)
    own = movement_of(call("transferFrom", WALLET, TO, 7), NFT)
    assert parse_policy(BASE + ART).requirement_for(own).rules == ("art",)


def test_policy_keys_are_checked() -> None:
    from signerd.core.errors import InvalidPolicy

    with pytest.raises(InvalidPolicy, match="key 'grant' must be true or false"):
        parse_policy(BASE.replace("approvers = 2", 'approvers = 2\ngrant = "yes"'))
    with pytest.raises(InvalidPolicy, match="is not"):
        parse_policy(BASE.replace('asset = "*"', 'asset = "ERC777:0x' + "a1" * 20 + '"'))
    for kind in ("ERC721", "erc1155", "ERC721-APPROVE-ALL", "ERC20-INCREASE", "ERC721-APPROVE"):
        parse_policy(BASE.replace('asset = "*"', f'asset = "{kind}:{NFT}"'))


# --- the statement ---------------------------------------------------------------------------

def _ctx() -> approval.StatementContext:
    return approval.StatementContext(instance_id="i", transfer_id="t_1", wallet_id="w_1",
                                     policy_version=1, expires_at=2_000_000_000,
                                     payload_sha256=b"\x00" * 32)


def test_statement_binds_and_shows_token_ids() -> None:
    m = movement_of(call("batch", WALLET, TO, [11, 12], [1, 2], b""), MULTI)
    st = approval.build_statement(_ctx(), m, Decision.APPROVE)
    doc = json.loads(st.split(b"\n", 1)[1])
    assert [(o["token_id"], o["amount"]) for o in doc["outputs"]] == [("11", "1"), ("12", "2")]
    other = replace(m, outputs=(replace(m.outputs[0], token_id=13), m.outputs[1]))
    assert approval.build_statement(_ctx(), other, Decision.APPROVE) != st
    text = approval.render(_ctx(), m, Decision.APPROVE)
    assert f"send 1 of ERC-1155 ITEMS token id 11 to {cs(TO)}" in text
    assert "token id 12" in text
    assert movement_from_json(movement_to_json(m)) == m


def test_statement_shows_grants_and_other_peoples_tokens() -> None:
    m = movement_of(call("all", OTHER, True), NFT)
    text = approval.render(_ctx(), m, Decision.APPROVE)
    assert f"GRANT {cs(OTHER)} control of ALL ART held by the wallet (setApprovalForAll)" in text
    assert "WARNING: output 1 grants" in text
    doc = json.loads(approval.build_statement(_ctx(), m, Decision.APPROVE).split(b"\n", 1)[1])
    assert doc["outputs"][0]["grant"] is True
    assert movement_from_json(movement_to_json(m)) == m
    taken = movement_of(call("transferFrom", OTHER, TO, 3), NFT)
    text = approval.render(_ctx(), taken, Decision.APPROVE)
    assert f"take ERC-721 ART token id 3 from {cs(OTHER)} (NOT the wallet's)" in text
    doc = json.loads(approval.build_statement(_ctx(), taken, Decision.APPROVE).split(b"\n")[1])
    assert doc["outputs"][0]["source"] == cs(OTHER)
    revoke = movement_of(call("all", OTHER, False), NFT)
    assert "REVOKE" in approval.render(_ctx(), revoke, Decision.APPROVE)


def test_statements_of_other_outputs_are_unchanged() -> None:
    """No new key in an output that has no token id, source or grant."""
    m = movement_of(call("approve", OTHER, 5), COIN)
    doc = json.loads(approval.build_statement(_ctx(), m, Decision.APPROVE).split(b"\n", 1)[1])
    assert set(doc["outputs"][0]) == {"address", "amount", "asset", "change",
                                      "destination_class", "wallet_id", "category"}
    assert m.outputs[0].destination_class is DestinationClass.EXTERNAL
