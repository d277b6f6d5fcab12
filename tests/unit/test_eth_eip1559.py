"""EIP-1559 parsing, encoding and digests against eth-account's vectors and eth-account itself."""

from __future__ import annotations

import json
from typing import Any

import pytest
import rlp
from _vectors import VECTORS
from eth_account.typed_transactions import TypedTransaction
from hexbytes import HexBytes

from signerd.core.errors import InvalidTransaction
from signerd.core.ethereum.eip1559 import Eip1559Tx, SignedEip1559Tx, tx_hash

ETH_VECTORS = json.loads((VECTORS / "ethereum" / "eth-account-vectors.json").read_text())
TYPE2_CASES = [
    c
    for c in ETH_VECTORS["typed_transaction_cases"]["cases"]
    if c["expected_type"].startswith("DynamicFeeTransaction")
]
SIGNATURE_KEYS = ("v", "r", "s")

BASE: dict[str, Any] = {
    "chainId": 1,
    "nonce": 7,
    "maxPriorityFeePerGas": "0x3b9aca00",
    "maxFeePerGas": "0x77359400",
    "gas": 21000,
    "to": "0x96216849c49358B10257cb55b28eA603c874b05E",
    "value": "0x5af3107a4000",
    "data": "0x",
    "accessList": [],
}


def unsigned_fields(case: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in case["transaction"].items() if k not in SIGNATURE_KEYS}


def with_(**changes: Any) -> dict[str, Any]:
    fields = dict(BASE)
    fields.update(changes)
    return fields


@pytest.mark.parametrize("case", TYPE2_CASES, ids=[c["id"] for c in TYPE2_CASES])
def test_vector_signing_hash_and_raw(case: dict[str, Any]) -> None:
    tx = Eip1559Tx.from_fields(unsigned_fields(case))
    assert tx.signing_hash().hex() == case["expected_hash"][2:]
    sig = case["transaction"]
    raw = tx.signed_raw(int(sig["v"], 16), int(sig["r"], 16), int(sig["s"], 16))
    assert raw.hex() == case["expected_raw_transaction"][2:]
    signed = Eip1559Tx.decode_signed(raw)
    assert signed == SignedEip1559Tx(tx, int(sig["v"], 16), int(sig["r"], 16), int(sig["s"], 16))
    assert signed.hash() == tx_hash(raw) == Eip1559Tx.tx_hash(raw)
    assert Eip1559Tx.decode_unsigned(tx.unsigned_payload()) == tx


@pytest.mark.parametrize("case", TYPE2_CASES, ids=[c["id"] for c in TYPE2_CASES])
def test_vector_agrees_with_eth_account(case: dict[str, Any]) -> None:
    tx = Eip1559Tx.from_fields(unsigned_fields(case))
    theirs = TypedTransaction.from_dict(tx.to_fields())
    assert theirs.hash() == tx.signing_hash()
    decoded = TypedTransaction.from_bytes(HexBytes(case["expected_raw_transaction"]))
    assert decoded.hash() == tx.signing_hash()


def test_to_fields_round_trip_and_shape() -> None:
    tx = Eip1559Tx.from_fields(unsigned_fields(TYPE2_CASES[1]))
    fields = tx.to_fields()
    assert fields == {
        "type": "0x2",
        "chainId": "0x539",
        "nonce": "0x2",
        "maxPriorityFeePerGas": "0x77359400",
        "maxFeePerGas": "0x77359400",
        "gas": "0x186a0",
        "to": "0x96216849c49358B10257cb55b28eA603c874b05E",
        "value": "0x5af3107a4000",
        "data": "0x5544",
        "accessList": [
            {
                "address": "0x0000000000000000000000000000000000000001",
                "storageKeys": [
                    "0x0100000000000000000000000000000000000000000000000000000000000000"
                ],
            }
        ],
    }
    assert Eip1559Tx.from_fields(json.loads(json.dumps(fields))) == tx


def test_defaults_and_accepted_forms() -> None:
    minimal = {k: v for k, v in BASE.items() if k not in ("data", "accessList")}
    tx = Eip1559Tx.from_fields(minimal)
    assert tx.data == b"" and tx.access_list == ()
    assert Eip1559Tx.from_fields(with_(type=2)) == tx
    assert Eip1559Tx.from_fields(with_(type="0x2")) == tx
    assert Eip1559Tx.from_fields(with_(nonce="0x0007", chainId="0X1".lower())) == tx
    assert Eip1559Tx.from_fields(with_(to=BASE["to"].lower())) == tx
    assert Eip1559Tx.from_fields(with_(to="0x" + BASE["to"][2:].upper())) == tx
    assert Eip1559Tx.from_fields(with_(to=BASE["to"][2:])) == tx
    assert (
        Eip1559Tx.from_fields(with_(maxPriorityFeePerGas="0x77359400")).max_priority_fee_per_gas
        == 2 * 10**9
    )
    top = 2**256 - 1
    big = Eip1559Tx.from_fields(with_(value=hex(top), maxFeePerGas=top, nonce=2**64 - 2))
    assert big.value == top and big.max_fee_per_gas == top


@pytest.mark.parametrize("to", [None, ""])
def test_contract_creation(to: str | None) -> None:
    tx = Eip1559Tx.from_fields(with_(to=to, data="0x6000", gas=60000))
    assert tx.to is None
    assert tx.to_fields()["to"] is None
    payload = tx.unsigned_payload()
    assert rlp.decode(payload[1:])[5] == b""
    assert Eip1559Tx.decode_unsigned(payload) == tx
    assert TypedTransaction.from_dict(tx.to_fields()).hash() == tx.signing_hash()


TOO_BIG = 2**256
BAD_FIELDS = [
    (
        "malformed_hex_int",
        with_(value="0xzz"),
        "value: must be a JSON number or a 0x-prefixed hex string",
    ),
    ("empty_hex_int", with_(value="0x"), "value:"),
    ("decimal_string", with_(value="100"), "value:"),
    ("upper_prefix", with_(nonce="0X7"), "nonce:"),
    ("underscore_hex", with_(value="0x1_0"), "value:"),
    ("whitespace_hex", with_(value=" 0x10"), "value:"),
    ("unicode_digit_hex", with_(value="0x\u0663"), "value:"),
    ("value_above_2_256", with_(value=TOO_BIG), "value: must be an integer between 0 and 2^256-1"),
    (
        "value_hex_above_2_256",
        with_(value=hex(TOO_BIG)),
        "value: must be an integer between 0 and 2^256-1",
    ),
    (
        "fee_above_2_256",
        with_(maxFeePerGas=TOO_BIG),
        "maxFeePerGas: must be an integer between 0 and 2^256-1",
    ),
    ("negative_value", with_(value=-1), "value: must be an integer"),
    ("negative_hex", with_(value="-0x1"), "value:"),
    ("bool_value", with_(value=True), "value: must be an integer"),
    ("bool_nonce", with_(nonce=False), "nonce: must be an integer"),
    ("float_value", with_(value=1.0), "value: must be an integer"),
    ("float_gas", with_(gas=21000.0), "gas: must be an integer"),
    ("null_value", with_(value=None), "value:"),
    ("chain_id_zero", with_(chainId=0), "chainId: must be an integer between 1 and 2^64-1"),
    ("chain_id_too_big", with_(chainId=2**64), "chainId: must be an integer between 1 and 2^64-1"),
    ("nonce_too_big", with_(nonce=2**64 - 1), "nonce: must be an integer between 0 and 2^64-2"),
    ("gas_too_small", with_(gas=20999), "gas: must be an integer between 21000 and 2^64-1"),
    ("gas_too_big", with_(gas=2**64), "gas: must be an integer between 21000 and 2^64-1"),
    (
        "swapped_fees",
        with_(maxPriorityFeePerGas="0x77359400", maxFeePerGas="0x3b9aca00"),
        "maxPriorityFeePerGas: must not exceed maxFeePerGas",
    ),
    (
        "bad_checksum",
        with_(to="0x96216849c49358B10257cb55b28eA603c874b05e"),
        "to: bad EIP-55 checksum",
    ),
    ("short_address", with_(to="0x96216849c49358B10257cb55b28eA603c874b0"), "to: must be 20 bytes"),
    (
        "long_address",
        with_(to="0x96216849c49358B10257cb55b28eA603c874b05E00"),
        "to: must be 20 bytes",
    ),
    (
        "nonhex_address",
        with_(to="0x96216849c49358B10257cb55b28eA603c874b05G"),
        "to: must be 20 bytes",
    ),
    ("empty_hex_address", with_(to="0x"), "to: must be 20 bytes"),
    ("address_as_number", with_(to=1), "to: must be a hex address string"),
    ("odd_data", with_(data="0x123"), "data: must be hex digits of even length"),
    ("nonhex_data", with_(data="0xgg"), "data: must be hex digits of even length"),
    ("unprefixed_data", with_(data="5544"), "data: must be a 0x-prefixed hex string"),
    ("spaced_data", with_(data="0x55 44"), "data: must be hex digits"),
    ("data_as_list", with_(data=[1]), "data:"),
    ("ten_mb_data", with_(data="0x" + "00" * 10_000_000), "data: larger than 131072 bytes"),
    ("unknown_key", with_(gasPrice=1), "gasPrice: unknown field"),
    ("from_key", with_(**{"from": BASE["to"]}), "from: unknown field"),
    ("signature_key", with_(v="0x1"), "v: unknown field"),
    ("type_1", with_(type="0x1"), "type: must be 2"),
    ("type_0", with_(type=0), "type: must be 2"),
    ("type_bool", with_(type=True), "type:"),
    ("access_list_not_list", with_(accessList={}), "accessList: must be a list"),
    (
        "access_entry_extra_key",
        with_(accessList=[{"address": "0x" + "00" * 20, "storageKeys": [], "x": 1}]),
        "accessList[0]:",
    ),
    (
        "access_entry_missing_key",
        with_(accessList=[{"address": "0x" + "00" * 20}]),
        "accessList[0]:",
    ),
    (
        "access_bad_address",
        with_(accessList=[{"address": "0x00", "storageKeys": []}]),
        "accessList[0].address:",
    ),
    (
        "access_short_key",
        with_(accessList=[{"address": "0x" + "00" * 20, "storageKeys": ["0x" + "00" * 31]}]),
        "accessList[0].storageKeys[0]: must be 32 bytes",
    ),
    (
        "access_keys_not_list",
        with_(accessList=[{"address": "0x" + "00" * 20, "storageKeys": "0x00"}]),
        "accessList[0].storageKeys: must be a list",
    ),
    (
        "access_list_oversize",
        with_(accessList=[{"address": "0x" + "00" * 20, "storageKeys": ["0x" + "00" * 32] * 5000}]),
        "accessList: larger than 131072 bytes",
    ),
]


@pytest.mark.parametrize(
    "fields,message", [b[1:] for b in BAD_FIELDS], ids=[b[0] for b in BAD_FIELDS]
)
def test_bad_fields_refused_naming_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidTransaction) as info:
        Eip1559Tx.from_fields(fields)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    "key", ["chainId", "nonce", "maxPriorityFeePerGas", "maxFeePerGas", "gas", "to", "value"]
)
def test_missing_required_key_named(key: str) -> None:
    fields = dict(BASE)
    del fields[key]
    with pytest.raises(InvalidTransaction, match=f"^{key}: missing$"):
        Eip1559Tx.from_fields(fields)


@pytest.mark.parametrize("value", [None, [], "{}", 5])
def test_non_object_refused(value: Any) -> None:
    with pytest.raises(InvalidTransaction, match="^transaction: must be a JSON object$"):
        Eip1559Tx.from_fields(value)


def test_data_size_limit_is_configurable() -> None:
    fields = with_(data="0x" + "ab" * 100, gas=100000)
    assert len(Eip1559Tx.from_fields(fields).data) == 100
    with pytest.raises(InvalidTransaction, match="^data: larger than 99 bytes$"):
        Eip1559Tx.from_fields(fields, max_data_bytes=99)
    payload = Eip1559Tx.from_fields(fields).unsigned_payload()
    with pytest.raises(InvalidTransaction, match="^data: larger than 99 bytes$"):
        Eip1559Tx.decode_unsigned(payload, max_data_bytes=99)


def test_constructor_validates() -> None:
    good = Eip1559Tx.from_fields(BASE)
    with pytest.raises(InvalidTransaction, match="^to: must be 20 bytes$"):
        Eip1559Tx(1, 0, 0, 0, 21000, b"\x00" * 19, 0)
    with pytest.raises(InvalidTransaction, match="^accessList"):
        Eip1559Tx(1, 0, 0, 0, 21000, None, 0, b"", ((b"\x00" * 20, (b"\x00",)),))
    with pytest.raises(InvalidTransaction, match="^yParity"):
        good.signed_raw(2, 1, 1)
    with pytest.raises(InvalidTransaction, match="^r:"):
        good.signed_raw(0, 0, 1)
    with pytest.raises(InvalidTransaction, match="^s:"):
        good.signed_raw(0, 1, 2**255)  # high s


# --- raw bytes: canonical form only ---

SIGNED_CASE = TYPE2_CASES[1]
SIGNED_RAW = bytes.fromhex(SIGNED_CASE["expected_raw_transaction"][2:])
GOOD_TX = Eip1559Tx.from_fields(unsigned_fields(SIGNED_CASE))
ITEMS: list[Any] = rlp.decode(SIGNED_RAW[1:])


def envelope(items: list[Any]) -> bytes:
    return b"\x02" + rlp.encode(items)


def test_decode_round_trip() -> None:
    signed = Eip1559Tx.decode_signed(SIGNED_RAW)
    assert signed.tx == GOOD_TX and signed.raw() == SIGNED_RAW
    assert Eip1559Tx.decode_unsigned(envelope(ITEMS[:9])) == GOOD_TX


def raw_envelope(encoded_items: list[bytes]) -> bytes:
    """A type-2 envelope around items given already encoded (to build non-canonical forms)."""
    body = b"".join(encoded_items)
    if len(body) < 56:
        return b"\x02" + bytes([0xC0 + len(body)]) + body
    size = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
    return b"\x02" + bytes([0xF7 + len(size)]) + size + body


def _encoded(index: int, encoding: bytes) -> list[bytes]:
    items = [rlp.encode(item) for item in ITEMS]
    items[index] = encoding
    return items


def test_raw_envelope_helper_matches_rlp() -> None:
    assert raw_envelope([rlp.encode(item) for item in ITEMS]) == SIGNED_RAW


def _replace(index: int, value: Any) -> list[Any]:
    items = list(ITEMS)
    items[index] = value
    return items


BAD_RAW = [
    ("empty", b"", "payload: must start with"),
    ("legacy_type", b"\x01" + SIGNED_RAW[1:], "payload: must start with"),
    ("no_type_byte", SIGNED_RAW[1:], "payload: must start with"),
    ("trailing_byte", SIGNED_RAW + b"\x00", "payload: malformed RLP"),
    ("truncated", SIGNED_RAW[:-1], "payload: malformed RLP"),
    ("unsigned_as_signed", envelope(ITEMS[:9]), "payload: must be an RLP list of 12 items"),
    ("extra_item", envelope(ITEMS + [b""]), "payload: must be an RLP list of 12 items"),
    ("not_a_list", b"\x02" + rlp.encode(b"abc"), "payload: must be an RLP list"),
    (
        "leading_zero_nonce",
        envelope(_replace(1, b"\x00\x02")),
        "nonce: integer has leading zero bytes",
    ),
    ("zero_as_00", envelope(_replace(1, b"\x00")), "nonce: integer has leading zero bytes"),
    ("chain_id_zero", envelope(_replace(0, b"")), "chainId: must be an integer between 1"),
    ("nine_byte_nonce", envelope(_replace(1, b"\x01" * 9)), "nonce: integer longer than 8 bytes"),
    ("value_33_bytes", envelope(_replace(6, b"\x01" * 33)), "value: integer longer than 32 bytes"),
    ("to_19_bytes", envelope(_replace(5, b"\x01" * 19)), "to: must be empty or 20 bytes"),
    ("to_as_list", envelope(_replace(5, [])), "to: must be an RLP string"),
    ("data_as_list", envelope(_replace(7, [])), "data: must be an RLP string"),
    ("access_list_as_string", envelope(_replace(8, b"")), "accessList: must be an RLP list"),
    ("access_entry_short", envelope(_replace(8, [[b"\x00" * 20]])), "accessList[0]:"),
    (
        "access_key_31",
        envelope(_replace(8, [[b"\x00" * 20, [b"\x01" * 31]]])),
        "accessList[0].storageKeys[0]",
    ),
    ("y_parity_2", envelope(_replace(9, 2)), "yParity: must be an integer between 0 and 1"),
    ("high_s", envelope(_replace(11, 2**256 - 1 - 2**200)), "s:"),
    ("r_zero", envelope(_replace(10, 0)), "r:"),
    (
        "swapped_fees",
        envelope(_replace(2, 2**40)),
        "maxPriorityFeePerGas: must not exceed maxFeePerGas",
    ),
    # a one-byte string below 0x80 must be encoded as itself, not as 0x81 xx
    ("non_canonical_single_byte", raw_envelope(_encoded(1, b"\x81\x02")), "payload: malformed RLP"),
    (
        "long_form_short_string",
        raw_envelope(_encoded(7, b"\xb8\x02\x55\x44")),
        "payload: malformed RLP",
    ),
    ("long_form_short_list", raw_envelope(_encoded(8, b"\xf8\x00")), "payload: malformed RLP"),
    ("deep_nesting", b"\x02" + b"\xc1" * 50_000 + b"\xc0", "payload:"),
]


@pytest.mark.parametrize("raw,message", [b[1:] for b in BAD_RAW], ids=[b[0] for b in BAD_RAW])
def test_bad_raw_refused(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidTransaction) as info:
        Eip1559Tx.decode_signed(raw)
    assert str(info.value).startswith(message)


def test_oversize_payload_refused_before_decoding() -> None:
    with pytest.raises(InvalidTransaction, match="^payload: larger than"):
        Eip1559Tx.decode_unsigned(b"\x02" + b"\x00" * 10_000_000)


def test_decode_requires_bytes() -> None:
    with pytest.raises(InvalidTransaction, match="^payload: must be bytes$"):
        Eip1559Tx.decode_unsigned("02c0")  # type: ignore[arg-type]


def test_one_field_table_covers_the_transaction() -> None:
    """FIELDS (JSON name, attribute, RLP position) is the transaction's one list of fields: its
    attributes are the dataclass's in RLP order, its JSON names what to_fields writes."""
    import dataclasses

    from signerd.core.ethereum.eip1559 import FIELDS, SIGNATURE_FIELDS

    assert [f.attr for f in FIELDS] == [f.name for f in dataclasses.fields(Eip1559Tx)]
    assert [f.attr for f in SIGNATURE_FIELDS] == [
        f.name for f in dataclasses.fields(SignedEip1559Tx)][1:]
    tx = Eip1559Tx.from_fields(with_())
    assert list(tx.to_fields()) == ["type"] + [f.json for f in FIELDS]
    assert len(rlp.decode(tx.unsigned_payload()[1:])) == len(FIELDS)
