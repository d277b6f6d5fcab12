"""The chain registry (signerd.core.chain_registry): its entries, the genesis and chain.set
proposals that make them, the refusal of unregistered chain ids, native coins by name in
policies, and the approval statement that binds the entry."""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from importlib import resources
from typing import Any

import pytest
from eth_account import Account

from signerd.core import approval as A
from signerd.core import authority as AU
from signerd.core import chain_registry as CR
from signerd.core.chains import EthereumAdapter
from signerd.core.errors import FailedPrecondition, InvalidArgument, PolicyDenied
from signerd.core.limits import Limits
from signerd.core.model import (Chain, Decision, DestinationClass, EvmChain, KeyRef, Movement,
                                Output, ScriptType, Wallet, Category, WalletStatus)
from signerd.core.movement_json import movement_from_json, movement_to_json
from signerd.core.policy import parse_policy
from tests.support.authority import STATE, applied, genesis_doc, proposal
from tests.support.chains import ETHER_RULES, TIERS

BNB = EvmChain(56, "BNB Smart Chain", "BNB", 18)
ETHEREUM = EvmChain(1, "Ethereum", "ETH", 18)
POLYGON = EvmChain(137, "Polygon PoS", "POL", 18)
ENTRY = {"chain_id": 56, "name": "BNB Smart Chain", "symbol": "BNB", "decimals": 18}


# ---------------------------------------------------------------------------- entries


@pytest.mark.parametrize(("change", "field"), [
    ({"chain_id": 0}, "chain.chain_id"),
    ({"chain_id": 2**64}, "chain.chain_id"),
    ({"chain_id": True}, "chain.chain_id"),
    ({"chain_id": "56"}, "chain.chain_id"),
    ({"name": ""}, "chain.name"),
    ({"name": " BNB"}, "chain.name"),
    ({"name": "BNB\nSmart Chain"}, "chain.name"),
    ({"name": "B\u0405B Chain"}, "chain.name"),
    ({"name": "x" * 65}, "chain.name"),
    ({"symbol": "bnb"}, "chain.symbol"),
    ({"symbol": "BNB@56"}, "chain.symbol"),
    ({"symbol": "ERC20:0x"}, "chain.symbol"),
    ({"symbol": "1INCH"}, "chain.symbol"),
    ({"symbol": "BTC"}, "chain.symbol"),
    ({"symbol": ""}, "chain.symbol"),
    ({"decimals": 37}, "chain.decimals"),
    ({"decimals": -1}, "chain.decimals"),
    ({"decimals": 18.0}, "chain.decimals"),
])
def test_a_bad_field_is_refused_naming_it(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        CR.chain_from_json(dict(ENTRY, **change))
    assert e.value.message.startswith(field + ":"), e.value.message


def test_an_entry_has_exactly_its_fields() -> None:
    assert CR.chain_from_json(dict(ENTRY)) == BNB
    assert CR.chain_json(BNB) == ENTRY
    for doc in ({k: v for k, v in ENTRY.items() if k != "name"}, dict(ENTRY, rpc="http://x")):
        with pytest.raises(InvalidArgument, match="exactly the fields chain_id, decimals, name"):
            CR.chain_from_json(doc)


def test_one_name_names_one_chain_and_one_id_has_one_entry() -> None:
    with pytest.raises(InvalidArgument, match="name 'bnb smart chain' is already the name of "
                                              "chain 56"):
        CR.registry([BNB, EvmChain(204, "bnb smart chain", "BNB", 18)])
    with pytest.raises(InvalidArgument, match="chain 56 is listed twice"):
        CR.registry([BNB, replace(BNB, name="BSC")])
    # One symbol may serve several chains (Ether on mainnet and on testnets).
    assert len(CR.registry([ETHEREUM, EvmChain(11155111, "Sepolia", "ETH", 18)])) == 2


def test_require_names_the_unregistered_chain_id() -> None:
    assert CR.require({56: BNB}, 56) is BNB
    with pytest.raises(CR.UnregisteredChain) as e:
        CR.require({56: BNB}, 97)
    assert isinstance(e.value, InvalidArgument)
    assert e.value.message.startswith("chainId: chain id 97 is not in the chain registry")
    with pytest.raises(InvalidArgument, match="chain_ids: chain id 5 is not"):
        CR.require_all({56: BNB}, [56, 5])


def test_the_shipped_registries_parse_and_name_what_the_tests_use() -> None:
    def shipped(name: str) -> list[EvmChain]:
        text = (resources.files("signerd") / "templates" / name).read_text(encoding="utf-8")
        return CR.parse_chains_toml(text, name)

    prod = {c.chain_id: c for c in shipped("chains.toml")}
    assert prod[1] == ETHEREUM and prod[56] == BNB and prod[137] == POLYGON
    assert prod[11155111].symbol == prod[17000].symbol == "ETH"
    dev = {c.chain_id: c for c in shipped("chains-dev.toml")}
    from tests.unit.eth_oracle import CHAIN_ID
    assert {1337, 31337, CHAIN_ID} <= set(dev) and not set(dev) & set(prod)
    with pytest.raises(InvalidArgument, match="list of \\[\\[chain\\]\\] tables"):
        CR.parse_chains_toml("chain = 1")
    with pytest.raises(InvalidArgument, match="chain #2.symbol"):
        CR.parse_chains_toml('[[chain]]\nchain_id = 1\nname = "A"\nsymbol = "ETH"\n'
                             'decimals = 18\n[[chain]]\nchain_id = 2\nname = "B"\n'
                             'symbol = "eth"\ndecimals = 18\n')


# ---------------------------------------------------------------------------- genesis, chain.set


def chain_set(chain: dict[str, Any], old: dict[str, Any] | None = None) -> dict[str, Any]:
    return proposal("chain.set", {"chain": chain, "old_chain": old or {}})


def test_a_genesis_without_chains_has_an_empty_registry() -> None:
    assert "chains" not in genesis_doc() and STATE.chains == {}


def test_the_genesis_registers_its_chains_and_binds_them_in_its_digest() -> None:
    doc = genesis_doc(chains=[ENTRY, CR.chain_json(ETHEREUM)])
    assert [c["chain_id"] for c in doc["chains"]] == [1, 56]
    assert AU._genesis_state(doc, AU.ZERO).chains == {1: ETHEREUM, 56: BNB}
    assert AU.genesis_digest(doc) != AU.genesis_digest(genesis_doc(chains=[ENTRY]))
    with pytest.raises(InvalidArgument, match="genesis: chains.symbol"):
        genesis_doc(chains=[dict(ENTRY, symbol="bnb")])
    bad = dict(genesis_doc(), chains=[])
    with pytest.raises(InvalidArgument, match="chains, when present, must list"):
        AU._genesis_state(bad, AU.ZERO)


def test_chain_set_adds_and_changes_an_entry_through_the_governance_quorum() -> None:
    doc = chain_set(ENTRY)
    assert AU.summary(doc) == ("register chain 56 as BNB Smart Chain, native coin BNB "
                               "(18 decimals)")
    shown = AU.render_proposal(doc, Decision.APPROVE)
    assert "name:            BNB Smart Chain (new entry)" in shown
    assert "native coin:     BNB\n" in shown and "decimals:        18\n" in shown
    assert AU.requirement(STATE, doc).approvers == 2  # the governance quorum, as token.set
    state = applied(STATE, doc, "admin1", "admin2")
    assert state.chains == {56: BNB}
    renamed = dict(ENTRY, name="BNB Chain")
    with pytest.raises(FailedPrecondition, match="chain 56 changed since this proposal"):
        AU.check_proposal(state, chain_set(renamed))  # old_chain must be the entry in force
    state = applied(state, chain_set(renamed, ENTRY), "admin1", "admin3")
    assert state.chains[56].name == "BNB Chain"
    with pytest.raises(InvalidArgument, match="with these fields already"):
        AU.check_proposal(state, chain_set(renamed, renamed))
    with pytest.raises(InvalidArgument, match="already the name of chain 56"):
        AU.check_proposal(state, chain_set(dict(ENTRY, chain_id=97, name="bnb chain")))


def test_chain_set_is_a_later_kind_an_old_governance_policy_still_approves() -> None:
    gov = AU.parse_governance('name = "g"\nroles = ["admin", "judge"]\n[[rule]]\nname = "a"\n'
                              'kinds = ["operator.register", "operator.revoke", '
                              '"operator.roles", "operator.reinstate", "wallet.policy", '
                              '"template.set", "governance.set", "wallet.unfreeze", '
                              '"wallet.import", "wallet.create"]\napprovers = 2\n'
                              'roles = { admin = 2 }\n[[rule]]\nname = "j"\n'
                              'kinds = ["wallet.unfreeze"]\napprovers = 1\nroles = { judge = 1 }\n')
    assert not gov.names("chain.set")
    req = gov.requirement_for("chain.set")  # every rule's demands at once
    assert dict(req.roles) == {"admin": 2, "judge": 1} and req.approvers == 3


def test_a_policy_naming_an_unregistered_native_coin_is_refused() -> None:
    text = 'name = "p"\n[[rule]]\nname = "doge"\nasset = "DOGE"\napprovers = 2\n'
    parse_policy(text)  # the text alone parses: the registry decides
    with pytest.raises(InvalidArgument, match="names asset DOGE, which is not the native coin"):
        AU.check_policy_text(STATE, text, "policy", template=False)
    state = applied(STATE, chain_set(ENTRY), "admin1", "admin2")
    AU.check_policy_text(state, text.replace("DOGE", "BNB@56"), "policy", template=False)
    with pytest.raises(InvalidArgument, match="names asset BNB@1,"):
        AU.check_policy_text(state, text.replace("DOGE", "BNB@1"), "policy", template=False)


# ---------------------------------------------------------------------------- decoding


KEY = Account.create("chain registry test")
WALLET = Wallet(id="w_" + "ab" * 8, chain=Chain.ETHEREUM, network="ethereum",
                script_type=ScriptType.EOA, category=Category.SEIZED, case_ref="C", legal_basis="",
                address=KEY.address, keys=(KeyRef("k", "k", b"\x02" + b"\x11" * 32),),
                chain_ids=(1, 56, 97), status=WalletStatus.ACTIVE)
TO = "0x" + "35" * 20


def payload(chain_id: int, value: int = 10**18) -> bytes:
    return json.dumps({"chainId": chain_id, "nonce": 0, "maxPriorityFeePerGas": 10**9,
                       "maxFeePerGas": 5 * 10**9, "gas": 21000, "to": TO, "value": value,
                       "data": "0x", "accessList": []}).encode()


def test_a_transaction_on_an_unregistered_chain_is_refused_naming_it() -> None:
    with pytest.raises(InvalidArgument) as e:
        EthereumAdapter().decode(WALLET, payload(97), Limits(), chains={56: BNB, 1: ETHEREUM})
    assert "chainId: chain id 97 is not in the chain registry" in e.value.message
    with pytest.raises(InvalidArgument, match="chain id 56 is not"):
        EthereumAdapter().decode(WALLET, payload(56), Limits(), chains={})  # empty registry


def test_the_native_coin_and_the_fee_are_named_by_the_registry_symbol() -> None:
    mv = EthereumAdapter().decode(WALLET, payload(56), Limits(),
                                  chains={56: BNB, 1: ETHEREUM}).movement
    assert [(o.asset, o.amount) for o in mv.outputs] == [("BNB", 10**18)]
    assert mv.fee_asset == "BNB" and mv.native == BNB and mv.chain_id == 56
    eth = EthereumAdapter().decode(WALLET, payload(1), Limits(),
                                   chains={56: BNB, 1: ETHEREUM}).movement
    assert [o.asset for o in eth.outputs] == ["ETH"] and eth.fee_asset == "ETH"
    # The digest is the transaction's whatever the registry says: eth-account agrees.
    fields = json.loads(payload(56))
    fields["type"] = 2
    from eth_account.typed_transactions import TypedTransaction
    assert mv.digests == (TypedTransaction.from_dict(fields).hash(),)
    # Stored and read back with the entry.
    assert movement_from_json(movement_to_json(mv)) == mv
    assert "native" not in json.loads(movement_to_json(replace(mv, native=None)))


# ---------------------------------------------------------------------------- policies


def movement(chain: EvmChain, amount: int = 10**18, fee: int = 21000 * 5 * 10**9) -> Movement:
    return Movement(chain=Chain.ETHEREUM, network="ethereum", chain_id=chain.chain_id,
                    outputs=(Output(TO, amount, chain.symbol),), fee=fee,
                    fee_asset=chain.symbol, digests=(b"\x01" * 32,), nonce=0, native=chain)


def test_a_bnb_transfer_is_judged_by_the_bnb_rule_never_the_ether_one() -> None:
    p = parse_policy(TIERS)
    assert p.requirement_for(movement(BNB)).rules == ("bnb",)
    assert p.requirement_for(movement(ETHEREUM)).rules == ("ether",)
    # BNB@56 is chain 56's coin only: BNB on another chain matches neither rule.
    with pytest.raises(PolicyDenied, match="no policy rule covers .* BNB"):
        p.requirement_for(movement(EvmChain(204, "opBNB", "BNB", 18)))
    bare = parse_policy(TIERS.replace('"BNB@56"', '"bnb"'))
    assert bare.requirement_for(movement(EvmChain(204, "opBNB", "BNB", 18))).rules == ("bnb",)


def test_a_policy_with_only_ether_rules_denies_bnb_and_pol() -> None:
    p = parse_policy(ETHER_RULES)
    assert p.requirement_for(movement(ETHEREUM)).rules == ("ether",)
    for coin in (BNB, POLYGON):
        with pytest.raises(PolicyDenied):
            p.requirement_for(movement(coin))


def test_the_max_fee_table_bounds_each_native_coin_by_its_own_number() -> None:
    p = parse_policy(TIERS)
    assert p.fee_bound("BNB", 56) == 10**16 and p.fee_bound("ETH", 1) == 5 * 10**16
    with pytest.raises(PolicyDenied, match="exceeds max_fee.BNB"):
        p.requirement_for(movement(BNB, fee=10**16 + 1))
    p.requirement_for(movement(BNB, fee=10**16))
    exact = parse_policy(TIERS.replace("BNB = 10000000000000000",
                                       'BNB = 1, "BNB@56" = 10000000000000000'))
    assert exact.fee_bound("BNB", 56) == 10**16 and exact.fee_bound("BNB", 204) == 1
    # A table that names no bound for a coin other than BTC and ETH refuses it (never
    # unbounded); BTC and ETH keep their meaning: unnamed, no bound.
    star = TIERS.replace('asset = "BNB@56"', 'asset = "*"')
    pol = parse_policy(star)
    with pytest.raises(PolicyDenied, match="names no bound for fee asset POL"):
        pol.requirement_for(movement(POLYGON))
    assert pol.requirement_for(movement(POLYGON, fee=0))  # nothing paid, nothing to bound
    only_btc = parse_policy(star.replace("max_fee = { ETH = 50000000000000000, BNB = "
                                         "10000000000000000 }", "max_fee = { BTC = 1 }"))
    assert only_btc.requirement_for(movement(ETHEREUM, fee=10**20))
    one_number = parse_policy(star.replace("max_fee = { ETH = 50000000000000000, BNB = "
                                           "10000000000000000 }", "max_fee = 1000"))
    with pytest.raises(PolicyDenied, match="exceeds max_fee "):
        one_number.requirement_for(movement(POLYGON, fee=1001))


# ---------------------------------------------------------------------------- statement


CTX = A.StatementContext(instance_id="signerd-1", transfer_id="t-1", wallet_id="w-1",
                         policy_version=1, expires_at=1_700_000_000,
                         payload_sha256=hashlib.sha256(b"p").digest())


def test_the_statement_binds_the_chain_entry() -> None:
    mv = movement(BNB, amount=15 * 10**17)
    st = A.build_statement(CTX, mv, Decision.APPROVE)
    doc = json.loads(st.split(b"\n", 1)[1])
    assert doc["native"] == {"chain_id": "56", "name": "BNB Smart Chain", "symbol": "BNB",
                             "decimals": "18"}
    for lie in ({"name": "Ethereum"}, {"symbol": "ETH"}, {"decimals": 8}, {"chain_id": 1}):
        assert A.build_statement(CTX, replace(mv, native=replace(BNB, **lie)),
                                 Decision.APPROVE) != st, lie
    # A movement without an entry (decoded before the registry): the statement is as it was.
    legacy = A.build_statement(CTX, replace(mv, native=None), Decision.APPROVE)
    assert b'"native"' not in legacy


def test_the_rendered_statement_names_the_chain_and_its_coin() -> None:
    text = A.render(CTX, movement(BNB, amount=15 * 10**17), Decision.APPROVE)
    assert ("chain:           ethereum (BNB Smart Chain, chain id 56, native coin BNB, 18 "
            "decimals (governance chain registry))") in text
    assert f"send 1.500000000000000000 BNB (1500000000000000000 base units) to {TO}" in text
    assert "max fee:         0.000105000000000000 BNB (105000000000000 base units)" in text
    eth = A.render(CTX, movement(ETHEREUM), Decision.APPROVE)
    assert "1.000000000000000000 ETH (1000000000000000000 wei)" in eth
