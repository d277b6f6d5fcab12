"""Safe wallets' pure parts: the setup check, the SafeAdapter's movement (its Safe fields, lock
key and digest), the rule keys delegatecall and gas_refund, and the statement binding the Safe
fields. The SafeTx hash is checked against eth-account's own EIP-712 encoder."""
from __future__ import annotations

import json
from dataclasses import replace

import coincurve
import pytest
from eth_utils import keccak, to_checksum_address

from signerd.core import approval as A
from signerd.core import safe_wallet as SW
from signerd.core.chains import SafeAdapter, adapter_for_wallet
from signerd.core.errors import InvalidArgument, PolicyDenied
from signerd.core.ethereum import safe as S
from signerd.core.limits import Limits
from signerd.core.model import Decision, Wallet
from signerd.core.movement_json import movement_from_json, movement_to_json
from signerd.core.policy import parse_policy
from tests.support.safe import safe_tx_hash_eip712
from tests.support.safe_wallet import address_of, safe_wallet

KEY = coincurve.PrivateKey(b"\x42" * 32)
OWNER = to_checksum_address(keccak(KEY.public_key.format(compressed=False)[1:])[12:])
OUTSIDE = to_checksum_address("0x" + "ab" * 20)
DEST = to_checksum_address("0x" + "cd" * 20)
ZERO = "0x" + "00" * 20


def setup_doc(**over: object) -> dict:
    doc = {"owners": [OWNER, OUTSIDE], "threshold": 2,
           "fallbackHandler": "0xfd0732Dc9E303f09fCEf3a7388Ad10A83459Ec99",  # canonical v1.4.1
           "singleton": "0x41675C099F32341bf84BFc5382aF534df5C7461a",
           "factory": "0x4e1DCf7AD4e460CfD30791CCC4F9c8a4f820ec67", "saltNonce": 5}
    doc.update(over)
    return doc


def wallet() -> Wallet:
    return safe_wallet("w_" + "1" * 16, setup_doc(), KEY.public_key.format())


def tx_doc(**over: object) -> dict:
    doc = {"to": DEST, "value": 10, "data": "0x", "operation": 0, "safeTxGas": 0, "baseGas": 0,
           "gasPrice": 0, "gasToken": ZERO, "refundReceiver": ZERO, "nonce": 3}
    doc.update(over)
    return doc


def decode(**over: object):
    return SafeAdapter().decode(wallet(), json.dumps(tx_doc(**over)).encode(), Limits())


def test_check_safe_accepts_the_setup_and_names_each_mismatch() -> None:
    doc = setup_doc()
    checked = SW.check_safe(address_of(doc), json.dumps(doc), KEY.public_key.format())
    assert checked.owner == OWNER and checked.outside_owners == (OUTSIDE,)
    assert checked.threshold == 2 and checked.record(31337)["owners"] == [OWNER, OUTSIDE]
    other = address_of(setup_doc(saltNonce=6))
    with pytest.raises(InvalidArgument, match=f"safe_address: {other} is not the address of "
                                              "this setup"):
        SW.check_safe(other, json.dumps(doc), KEY.public_key.format())
    stranger = setup_doc(owners=[OUTSIDE, DEST])
    with pytest.raises(InvalidArgument, match=f"owner key {OWNER} is not among the Safe's"):
        SW.check_safe(address_of(stranger), json.dumps(stranger), KEY.public_key.format())
    with pytest.raises(InvalidArgument, match="safe_setup: not valid JSON"):
        SW.check_safe(address_of(doc), "{", KEY.public_key.format())


def test_the_safe_adapter_decodes_a_safe_tx_with_its_hash_and_lock() -> None:
    w = wallet()
    assert isinstance(adapter_for_wallet(w), SafeAdapter)
    d = decode()
    expected = safe_tx_hash_eip712(31337, w.address, tx_doc())
    assert d.movement.digests == (expected,)
    assert d.lock_keys == (f"safe:{w.address.lower()}:31337:3",)
    fields = dict(d.movement.safe)
    assert fields["safe"] == w.address and fields["safe_tx_hash"] == "0x" + expected.hex()
    assert fields["operation"] == "0 (CALL)" and fields["gas_refund"] == "none"
    assert "owner_change" not in fields
    assert movement_from_json(movement_to_json(d.movement)) == d.movement
    assert SafeAdapter().digests_to_sign(w, d) == [("k1", expected)]


def test_a_change_to_the_safe_itself_is_named() -> None:
    w = wallet()
    data = "0x" + (S.selector("changeThreshold(uint256)") + (1).to_bytes(32, "big")).hex()
    d = decode(to=w.address, value=0, data=data)
    assert "changeThreshold" in SW.owner_change_of(d.movement)


POLICY = """name = "p"
allow_contract_calls = true
[[rule]]
name = "r"
asset = "*"
contract_call = true
approvers = 2
roles = { investigator = 1, custody_officer = 1 }
"""


def test_delegatecall_and_refunds_need_a_rule_that_names_them() -> None:
    plain = parse_policy(POLICY)
    plain.requirement_for(decode().movement)
    with pytest.raises(PolicyDenied, match="delegatecall = true"):
        plain.requirement_for(decode(operation=1, data="0x1234").movement)
    for over in ({"gasPrice": 1}, {"gasToken": DEST}, {"refundReceiver": DEST}):
        with pytest.raises(PolicyDenied, match="gas_refund = true"):
            plain.requirement_for(decode(**over).movement)
    loose = parse_policy(POLICY + "delegatecall = true\ngas_refund = true\n")
    loose.requirement_for(decode(operation=1, data="0x1234", gasPrice=1).movement)


def test_the_statement_binds_and_shows_the_safe_fields() -> None:
    ctx = A.StatementContext(instance_id="i", transfer_id="t_1", wallet_id="w", policy_version=1,
                             expires_at=1, payload_sha256=b"\x00" * 32)
    m = decode(gasPrice=2).movement
    st = A.build_statement(ctx, m, Decision.APPROVE)
    assert b'"safe":[["safe","' in st
    changed = replace(m, safe=tuple((k, "9" if k == "safe_nonce" else v) for k, v in m.safe))
    assert A.build_statement(ctx, changed, Decision.APPROVE) != st
    shown = A.render(ctx, decode(operation=1, data="0x12", gasPrice=2).movement,
                     Decision.APPROVE)
    assert "WARNING: DELEGATECALL" in shown and "WARNING: gas refund" in shown
    assert "safe_tx_hash:" in shown
