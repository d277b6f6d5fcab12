"""signerd's hand-written Tron decoder against the protobuf library reading tronpy's messages
(java-tron's definitions), on transactions tronpy's builder and those messages made; every
refusal names its problem."""
from __future__ import annotations

import hashlib
import json

import pytest
from tronpy.keys import PrivateKey
from tronpy.proto import tron_pb2

from signerd.core.errors import InvalidArgument, InvalidTransaction
from signerd.core.model import Chain, Token
from signerd.core.tron import address as A
from signerd.core.tron import signing as S
from signerd.core.tron import tx as T
from tests.support import tron as X

OWNER = PrivateKey(b"\x05" * 32).public_key.to_base58check_address()
USDT = Token(X.NILE_CHAIN_ID, X.CONTRACT, "trc20", "USDT", 6)
REGISTRY = {USDT.key: USDT}


def _ours(tx: T.TronTx) -> dict:
    out = {"ref_block_bytes": tx.ref_block_bytes, "ref_block_hash": tx.ref_block_hash,
           "expiration": tx.expiration, "timestamp": tx.timestamp or 0,
           "fee_limit": tx.fee_limit, "data": tx.memo, "type": tx.contract_name,
           "type_url": T.TYPE_URL_PREFIX + tx.contract_name, "owner": A.to_text(tx.owner)}
    if tx.contract_type == T.TRANSFER:
        out.update(to=A.to_text(tx.to), amount=tx.amount)
    else:
        out.update(contract=A.to_text(tx.to), call_data=tx.data, call_value=tx.amount)
    return out


@pytest.mark.parametrize("raw", [
    X.trx_raw(OWNER),
    X.trx_raw(OWNER, amount=2**62, memo="case 4 K 12/26", fee_limit=1_000_000),
    X.trc20_raw(OWNER),
    X.trc20_raw(OWNER, amount=2**255, fee_limit=0),
], ids=["trx", "trx-memo-fee", "trc20", "trc20-huge"])
def test_decoder_agrees_with_protobuf(raw: bytes) -> None:
    tx = T.decode_raw(raw)
    assert _ours(tx) == X.independent_decode(raw)
    assert tx.txid == hashlib.sha256(raw).digest()


def test_txid_of_a_plain_transfer_is_tronpys() -> None:
    """For what tronpy's own txid covers (no memo, no fee_limit), the ids agree."""
    from tronpy import proto

    data = X.builder_raw_data(OWNER, X.RECIPIENT, 1_000)
    raw = X.raw_message(data).SerializeToString()
    assert T.decode_raw(raw).txid.hex() == proto.calculate_txid_from_raw_data(data)


def test_movement_of_trx_and_trc20() -> None:
    m = S.movement(T.decode_raw(X.trx_raw(OWNER, amount=1_500_000)), OWNER, "nile")
    assert m.chain is Chain.TRON and m.chain_id == X.NILE_CHAIN_ID and m.fee_asset == "TRX"
    assert [(o.address, o.amount, o.asset) for o in m.outputs] == [(X.RECIPIENT, 1_500_000,
                                                                     "TRX")]
    raw = X.trc20_raw(OWNER, amount=7, fee_limit=30_000_000)
    m = S.movement(T.decode_raw(raw), OWNER, "nile", REGISTRY)
    assert [(o.address, o.amount, o.asset) for o in m.outputs] == [
        (X.RECIPIENT, 7, f"TRC20:{X.CONTRACT}")]
    assert m.fee == 30_000_000 and m.tokens == (USDT,)
    assert m.digests == (hashlib.sha256(raw).digest(),)
    assert dict(m.extra)["tron_contract"] == "TriggerSmartContract"


def _mutated(mutate) -> bytes:  # type: ignore[no-untyped-def]
    msg = tron_pb2.Transaction.raw.FromString(X.trx_raw(OWNER))
    mutate(msg)
    return msg.SerializeToString()


def _contract(msg: tron_pb2.Transaction.raw, name: str, inner: bytes) -> None:
    c = msg.contract[0]
    c.type = getattr(tron_pb2.Transaction.Contract.ContractType, name)
    c.parameter.type_url = X.TYPE_URL + name
    c.parameter.value = inner


TRANSFER_ASSET = tron_pb2.TransferAssetContract(
    asset_name=b"1002000", owner_address=X.raw_address(OWNER),
    to_address=X.raw_address(X.RECIPIENT), amount=5).SerializeToString()


@pytest.mark.parametrize("raw,needle", [
    (X.trx_raw(OWNER) + b"\x00", "invalid field number 0"),
    (X.trx_raw(OWNER) + b"\x40", "truncated varint"),
    (X.trx_raw(OWNER) + b"\x40\x01", "expiration: field given more than once"),
    (X.trx_raw(OWNER) + b"\x12\x00", "unknown field 2"),
    (_mutated(lambda m: m.auths.add()), "unknown field 9"),
    (_mutated(lambda m: setattr(m, "scripts", b"x")), "unknown field 12"),
    (_mutated(lambda m: m.contract.add().CopyFrom(m.contract[0])), "exactly one contract"),
    (_mutated(lambda m: setattr(m.contract[0], "Permission_id", 2)), "Permission_id"),
    (_mutated(lambda m: setattr(m.contract[0], "provider", b"p")), "unknown field 3"),
    (_mutated(lambda m: setattr(m.contract[0].parameter, "type_url",
                                X.TYPE_URL + "TriggerSmartContract")), "type_url"),
    (_mutated(lambda m: _contract(m, "TransferAssetContract", TRANSFER_ASSET)),
     "contract type 2"),
    (_mutated(lambda m: setattr(m, "ref_block_hash", b"\x01" * 7)), "ref_block_hash"),
    (_mutated(lambda m: setattr(m, "expiration", 0)), "expiration: missing"),
    (_mutated(lambda m: setattr(m, "fee_limit", -1)), "fee_limit: negative"),
    (_mutated(lambda m: setattr(m.contract[0].parameter, "value", tron_pb2.TransferContract(
        owner_address=X.raw_address(OWNER), to_address=b"\x42" + b"\x00" * 20,
        amount=1).SerializeToString())), "to_address: not a Tron address"),
    (_mutated(lambda m: setattr(m.contract[0].parameter, "value", tron_pb2.TransferContract(
        owner_address=X.raw_address(OWNER), to_address=X.raw_address(X.RECIPIENT),
        amount=-5).SerializeToString())), "amount: negative"),
    (X.trc20_raw(OWNER, call_value=1), "call_value: must be 0"),
])
def test_malformed_raw_data_is_refused_naming_the_problem(raw: bytes, needle: str) -> None:
    with pytest.raises(InvalidTransaction) as e:
        T.decode_raw(raw)
    assert needle in e.value.message


def test_non_minimal_varint_and_wrong_wire_type() -> None:
    raw = X.trx_raw(OWNER)
    # field 18 (fee_limit) as a two-byte varint 0x81 0x00: value 1, not the shortest form
    with pytest.raises(InvalidTransaction, match="shortest form"):
        T.decode_raw(raw + b"\x90\x01\x81\x00")
    with pytest.raises(InvalidTransaction, match="wire type"):
        T.decode_raw(raw + b"\x92\x01\x00")  # fee_limit as length-delimited


def test_trc20_needs_a_registered_contract_and_exact_transfer_calldata() -> None:
    raw = X.trc20_raw(OWNER)
    with pytest.raises(InvalidTransaction, match="not a TRC-20 token registered"):
        S.movement(T.decode_raw(raw), OWNER, "nile", {})
    with pytest.raises(InvalidTransaction, match="not a TRC-20 token registered"):
        S.movement(T.decode_raw(raw), OWNER, "mainnet", REGISTRY)  # another network's entry
    approve = bytes.fromhex("095ea7b3") + X.trc20_transfer_data(X.RECIPIENT, 1)[4:]
    for data in (approve, X.trc20_transfer_data(X.RECIPIENT, 1) + b"\x00", b""):
        with pytest.raises(InvalidTransaction, match="transfer\\(address,uint256\\)"):
            S.movement(T.decode_raw(X.trc20_raw(OWNER, data=data)), OWNER, "nile", REGISTRY)


def test_owner_must_be_the_wallet() -> None:
    with pytest.raises(InvalidTransaction, match="owner_address: .* is not this wallet"):
        S.movement(T.decode_raw(X.trx_raw(X.RECIPIENT)), OWNER, "nile")


def test_payload_json() -> None:
    raw = X.trx_raw(OWNER)
    assert T.parse_payload(X.payload(raw)).raw == raw
    assert T.parse_payload(X.payload(raw, with_txid=False, visible=False,
                                      raw_data={"ignored": 1})).raw == raw
    for body, needle in [
        (X.payload(raw, with_txid=False, txID="00" * 32), "txID"),
        (X.payload(raw, extra=1), "unknown key"),
        (X.payload(raw, signature=["00" * 65]), "already signed"),
        (b'{"raw_data_hex": "zz"}', "not hexadecimal"),
        (b"[]", "JSON object"),
        (b"{", "not valid JSON"),
        (b'{"raw_data_hex": "' + raw.hex().encode() + b'", "raw_data_hex": "00"}',
         "given more than once"),
    ]:
        with pytest.raises(InvalidTransaction) as e:
            T.parse_payload(body)
        assert needle in e.value.message


def test_expiration_window() -> None:
    assert S.expiration_problem(10_000, 5.0, 20.0) == ""
    assert "expired" in S.expiration_problem(5_000, 5.0, 20.0)
    assert "after the transfer's own expiry" in S.expiration_problem(20_001, 5.0, 20.0)


def test_addresses_and_token_entries() -> None:
    key = PrivateKey(b"\x05" * 32)
    assert A.from_pubkey(bytes.fromhex("04") + key.public_key.to_bytes()) == OWNER
    assert A.to_text(A.parse(OWNER)) == OWNER
    with pytest.raises(InvalidArgument):
        A.parse(OWNER.lower())
    from signerd.core.tokens import lookup, make_token, token_from_json, token_json

    t = make_token(chain_id=X.NILE_CHAIN_ID, address=X.CONTRACT, standard="trc20",
                   symbol="USDT", decimals=6)
    assert t.key == (X.NILE_CHAIN_ID, X.CONTRACT)  # base58 kept as is
    assert token_from_json(json.loads(json.dumps(token_json(t)))) == t
    assert lookup([t], f"TRC20:{X.CONTRACT}", X.NILE_CHAIN_ID) == t
    with pytest.raises(InvalidArgument, match="not a Tron chain id"):
        make_token(chain_id=1, address=X.CONTRACT, standard="trc20", symbol="U", decimals=6)
    with pytest.raises(InvalidArgument):
        make_token(chain_id=X.NILE_CHAIN_ID, address="0x" + "11" * 20, standard="trc20",
                   symbol="U", decimals=6)
    with pytest.raises(InvalidArgument):
        make_token(chain_id=1, address=X.CONTRACT, standard="erc20", symbol="U", decimals=6)


def test_policy_names_trx_and_trc20_assets_case_sensitively() -> None:
    from signerd.core.errors import InvalidPolicy
    from signerd.core.policy import parse_policy

    p = parse_policy(f'name = "t"\nmax_fee = {{ TRX = 5 }}\n[[rule]]\nname = "a"\n'
                     f'asset = "trc20:{X.CONTRACT}"\napprovers = 2\n')
    assert p.rules[0].asset == f"TRC20:{X.CONTRACT}" and p.fee_bound("TRX") == 5
    with pytest.raises(InvalidPolicy, match="Tron address"):
        parse_policy(f'name = "t"\n[[rule]]\nname = "a"\nasset = "TRC20:{X.CONTRACT[:-1]}'
                     f'{"A" if X.CONTRACT[-1] != "A" else "B"}"\napprovers = 2\n')


def test_the_sign_step_sees_the_expiration_of_any_payload_the_adapter_accepts() -> None:
    """Padding the JSON does not hide an expired transaction from the check before the HSM:
    it parses the payload under the same limits as the adapter."""
    from dataclasses import replace

    from signerd.core.limits import Limits
    from signerd.core.records import TransferRecord
    from signerd.services.sign_step import tron_expired

    raw = X.trx_raw(OWNER, expiration_ms=60_000)
    body = X.payload(raw)
    padded = b" " * 400_000 + body
    assert len(padded) > 4 * T.MAX_RAW_BYTES + 65536  # beyond the decoder's own default bound
    expiration = T.decode_raw(raw).expiration / 1000
    fields = {f: None for f in TransferRecord.__dataclass_fields__}
    row = TransferRecord(**{**fields, "id": "t_x", "chain": Chain.TRON, "payload": padded})
    for payload in (body, padded):
        row = replace(row, payload=payload)
        assert not tron_expired(row, Chain.TRON, expiration - 1, Limits())
        assert tron_expired(row, Chain.TRON, expiration + 1, Limits())
        assert not tron_expired(row, Chain.ETHEREUM, expiration + 1, Limits())


@pytest.mark.parametrize("over,needle", [
    ({"network": "testnet"}, "unknown Tron network"),
    ({"network": ""}, "unknown Tron network"),
    ({"chain_ids": (1,)}, "names its network"),
    ({"script_type": "p2wpkh"}, "single-key accounts (eoa)"),
    ({"script_type": "bogus"}, "single-key accounts (eoa)"),
    ({"threshold": 2}, "multisig"),
    ({"cosigners": ("02" + "11" * 32,)}, "multisig"),
])
def test_tron_wallet_requests_are_checked(over: dict, needle: str) -> None:
    from signerd.services.wallets import WalletRequest, check_request

    base = dict(chain="tron", network="nile", category="seized", case_ref="C", legal_basis="",
                chain_ids=(), script_type="", threshold=0, hsm_keys=0, cosigners=(), label="",
                policy_toml="", hsm_key_ids=(), template="")
    checked = check_request(WalletRequest(**base))  # type: ignore[arg-type]
    assert (checked.chain, checked.network) == (Chain.TRON, "nile")
    with pytest.raises(InvalidArgument) as e:
        check_request(WalletRequest(**{**base, **over}))  # type: ignore[arg-type]
    assert needle in e.value.message
