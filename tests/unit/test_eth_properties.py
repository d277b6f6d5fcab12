"""Hostile input never escapes as anything but InvalidTransaction, and what parses round-trips."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signerd.core.errors import InvalidTransaction
from signerd.core.ethereum.eip1559 import Eip1559Tx

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

KEYS = [
    "chainId",
    "nonce",
    "maxPriorityFeePerGas",
    "maxFeePerGas",
    "gas",
    "to",
    "value",
    "data",
    "accessList",
    "type",
]
BASE: dict[str, Any] = {
    "chainId": "0x539",
    "nonce": 2,
    "maxPriorityFeePerGas": "0x77359400",
    "maxFeePerGas": 2000000000,
    "gas": "0x186a0",
    "to": "0x96216849c49358B10257cb55b28eA603c874b05E",
    "value": "0x5af3107a4000",
    "data": "0x5544",
    "accessList": [
        {
            "address": "0x0000000000000000000000000000000000000001",
            "storageKeys": ["0x0100000000000000000000000000000000000000000000000000000000000000"],
        }
    ],
    "type": "0x2",
}

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**300), 2**300)
    | st.floats(allow_nan=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
hex_like = st.text(alphabet="0123456789abcdefABCDEFxX_ -\u0663", max_size=70).map(
    lambda t: "0x" + t
)
address_like = st.text(alphabet="0123456789abcdefABCDEF", min_size=38, max_size=42).map(
    lambda t: "0x" + t
)
plausible: st.SearchStrategy[Any] = (
    hex_like
    | address_like
    | st.integers(-5, 2**257)
    | st.sampled_from(
        [0, 1, 2, 21000, 2**64 - 1, 2**64, 2**256 - 1, 2**256, "", "0x", None, True, []]
    )
    | st.lists(
        st.fixed_dictionaries(
            {"address": address_like | json_values, "storageKeys": st.lists(hex_like, max_size=3)}
        ),
        max_size=3,
    )
)
values = plausible | json_values


def check_fields(fields: Any) -> None:
    try:
        tx = Eip1559Tx.from_fields(fields)
    except InvalidTransaction:
        return
    assert Eip1559Tx.from_fields(tx.to_fields()) == tx
    assert Eip1559Tx.decode_unsigned(tx.unsigned_payload()) == tx


@given(st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=10), values, max_size=12))
@SETTINGS
def test_random_dicts(fields: dict[str, Any]) -> None:
    check_fields(fields)


@given(
    st.dictionaries(st.sampled_from(KEYS), values, max_size=3),
    st.sets(st.sampled_from(KEYS), max_size=2),
)
@SETTINGS
def test_mutated_valid_dict(changes: dict[str, Any], removed: set[str]) -> None:
    fields = {k: v for k, v in BASE.items() if k not in removed}
    fields.update(changes)
    check_fields(fields)


def test_base_is_the_vector() -> None:
    """BASE is eth-account's dynamic_fee_int_values_access_list case; SIGNED its raw form."""
    assert BASE_TX.signing_hash().hex() == (
        "090b19818d9d087a49c3d2ecee4829ee4acea46089c1381ac5e588188627466d"
    )
    assert SIGNED.hex().startswith("02f8ae8205390284773594008477359400830186a0")
    assert SIGNED.hex().endswith(
        "a022cfe8424b2fbd78b16c9911da1be2349027b0a3c40adf4b6459222323773f74"
    )


BASE_TX = Eip1559Tx.from_fields(BASE)
UNSIGNED = BASE_TX.unsigned_payload()
SIGNED = BASE_TX.signed_raw(
    1,
    0xC3000CD391F991169EBFD5D3B9E93C89D31A61C998A21B07A11DC6B9D66F8A8E,
    0x22CFE8424B2FBD78B16C9911DA1BE2349027B0A3C40ADF4B6459222323773F74,
)

mutation = st.tuples(
    st.sampled_from(["flip", "set", "insert", "delete", "truncate"]),
    st.integers(0, 10**6),
    st.integers(0, 255),
)


def mutate(payload: bytes, steps: list[tuple[str, int, int]]) -> bytes:
    data = bytearray(payload)
    for kind, where, byte in steps:
        i = where % (len(data) + 1)
        if kind == "insert":
            data.insert(i, byte)
        elif data and kind == "truncate":
            del data[i % len(data) :]
        elif data and kind == "delete":
            del data[i % len(data)]
        elif data and kind == "flip":
            data[i % len(data)] ^= 1 << (byte % 8)
        elif data and kind == "set":
            data[i % len(data)] = byte
    return bytes(data)


def check_unsigned(payload: bytes) -> None:
    try:
        tx = Eip1559Tx.decode_unsigned(payload)
    except InvalidTransaction:
        return
    assert tx.unsigned_payload() == payload


def check_signed(raw: bytes) -> None:
    try:
        signed = Eip1559Tx.decode_signed(raw)
    except InvalidTransaction:
        return
    assert signed.raw() == raw


@given(st.lists(mutation, min_size=1, max_size=4))
@SETTINGS
def test_mutated_payloads(steps: list[tuple[str, int, int]]) -> None:
    check_unsigned(mutate(UNSIGNED, steps))
    check_signed(mutate(SIGNED, steps))
    check_unsigned(mutate(SIGNED, steps))
    check_signed(mutate(UNSIGNED, steps))


@given(st.binary(max_size=300))
@SETTINGS
def test_random_bytes(tail: bytes) -> None:
    for payload in (b"\x02" + tail, tail):
        check_unsigned(payload)
        check_signed(payload)
