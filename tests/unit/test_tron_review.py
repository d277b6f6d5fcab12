"""An adversarial review of the Tron decoder: what signerd approves must be what java-tron
executes, under the id java-tron computes.

java-tron computes a transaction's id, and checks its signature, over its own re-encoding of
``raw_data`` (protobuf-java parses the bytes and ``toByteArray()`` writes them again: fields in
number order, proto3 default values left out). Whatever signerd accepts must therefore already
be that encoding: here the protobuf library with tronpy's messages (java-tron's definitions)
re-encodes what signerd accepted and must give back the very bytes. The other cases pin down
refusals where java-tron would read the bytes differently from a naive decoder (int32
truncation of an enum, Any type URLs of another host, TRC-10 value on a TRC-20 call, dirty ABI
padding, another network's registry entry)."""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from google.protobuf import any_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tronpy.keys import PrivateKey
from tronpy.proto import tron_pb2

from signerd.core.errors import InvalidTransaction
from signerd.core.model import Token
from signerd.core.tron import signing as S
from signerd.core.tron import tx as T
from tests.support import tron as X

OWNER = PrivateKey(b"\x05" * 32).public_key.to_base58check_address()
USDT = Token(X.NILE_CHAIN_ID, X.CONTRACT, "trc20", "USDT", 6)
REGISTRY = {USDT.key: USDT}
MAINNET_USDT = Token(728126428, X.CONTRACT, "trc20", "USDT", 6)


def java_txid(raw: bytes) -> bytes:
    """The id java-tron gives ``raw``: SHA-256 of the message re-encoded by protobuf."""
    return hashlib.sha256(tron_pb2.Transaction.raw.FromString(raw).SerializeToString()).digest()


def key(number: int, wire: int) -> bytes:
    return bytes([number << 3 | wire]) if number < 16 else bytes([(number << 3 | wire) & 0x7F
                                                                  | 0x80, number >> 4])


def ld(number: int, value: bytes) -> bytes:
    assert len(value) < 128
    return key(number, 2) + bytes([len(value)]) + value


def vi(number: int, value: int) -> bytes:
    out = bytearray()
    while True:
        b, value = value & 0x7F, value >> 7
        out.append(b | (0x80 if value else 0))
        if not value:
            return key(number, 0) + bytes(out)


def split(raw: bytes) -> list[tuple[int, bytes]]:
    """The top-level fields of a message as (number, encoded bytes), in order (python
    protobuf's own parse is not used so that the bytes stay exactly as written)."""
    out, pos = [], 0
    while pos < len(raw):
        tag, p = T._varint(raw, pos, "t")
        if tag & 7 == 0:
            _, end = T._varint(raw, p, "t")
        else:
            n, q = T._varint(raw, p, "t")
            end = q + n
        out.append((tag >> 3, raw[pos:end]))
        pos = end
    return out


def rebuilt(raw: bytes, edit: Callable[[list[tuple[int, bytes]]], list[tuple[int, bytes]]]
            ) -> bytes:
    return b"".join(b for _, b in edit(split(raw)))


def with_contract(raw: bytes, contract: bytes) -> bytes:
    return rebuilt(raw, lambda fs: [(n, ld(11, contract) if n == 11 else b) for n, b in fs])


BASE = X.trx_raw(OWNER)
MSG = tron_pb2.Transaction.raw.FromString(BASE)
ANY = MSG.contract[0].parameter
ANY_BYTES = ld(1, ANY.type_url.encode()) + ld(2, ANY.value)


def _insert(fs: list[tuple[int, bytes]], number: int, enc: bytes) -> list[tuple[int, bytes]]:
    """``enc`` placed where field ``number`` belongs in number order."""
    i = next((i for i, (n, _) in enumerate(fs) if n > number), len(fs))
    return fs[:i] + [(number, enc)] + fs[i:]


NON_CANONICAL = [
    ("fee_limit=0 written", rebuilt(BASE, lambda fs: _insert(fs, 18, vi(18, 0))),
     "raw_data.fee_limit: written with its default value"),
    ("ref_block_num=0 written", rebuilt(BASE, lambda fs: _insert(fs, 3, vi(3, 0))),
     "raw_data.ref_block_num: written with its default value"),
    ("empty memo written", rebuilt(BASE, lambda fs: _insert(fs, 10, ld(10, b""))),
     "raw_data.data: written with its default value"),
    ("expiration before ref_block_hash",
     rebuilt(BASE, lambda fs: [fs[0], fs[2], fs[1]] + fs[3:]),
     "raw_data.ref_block_hash: field 4 after field 8"),
    ("timestamp before contract",
     rebuilt(BASE, lambda fs: [f for f in fs if f[0] != 11] + [f for f in fs if f[0] == 11]),
     "raw_data.contract: field 11 after field 14"),
    ("Permission_id=0 written",
     with_contract(BASE, vi(1, 1) + ld(2, ANY_BYTES) + vi(5, 0)),
     "raw_data.contract.Permission_id: written with its default value"),
    ("parameter before type",
     with_contract(BASE, ld(2, ANY_BYTES) + vi(1, 1)),
     "raw_data.contract.type: field 1 after field 2"),
    ("Any value before type_url",
     with_contract(BASE, vi(1, 1) + ld(2, ld(2, ANY.value) + ld(1, ANY.type_url.encode()))),
     "raw_data.contract.parameter.type_url: field 1 after field 2"),
]


@pytest.mark.parametrize("raw,needle", [c[1:] for c in NON_CANONICAL],
                         ids=[c[0] for c in NON_CANONICAL])
def test_a_non_canonical_raw_data_is_refused(raw: bytes, needle: str) -> None:
    """Each of these parses in protobuf to the very transaction of BASE, yet java-tron's id
    of it is not SHA-256 of the bytes: a signature over them would never verify on chain.
    signerd used to sign them; now it refuses them, naming the field."""
    assert tron_pb2.Transaction.raw.FromString(raw) == MSG
    assert java_txid(raw) == hashlib.sha256(BASE).digest() != hashlib.sha256(raw).digest()
    with pytest.raises(InvalidTransaction) as e:
        T.decode_raw(raw)
    assert needle in e.value.message


def test_canonical_transactions_still_decode() -> None:
    for raw in (BASE, X.trx_raw(OWNER, memo="m", fee_limit=7), X.trc20_raw(OWNER)):
        tx = T.decode_raw(raw)
        assert tx.txid == java_txid(raw) == hashlib.sha256(raw).digest()


# Structured fuzzing: the fields of BASE shuffled, defaults written out, fields repeated.
_PIECES = {1: ld(1, MSG.ref_block_bytes), 3: vi(3, 0), 4: ld(4, MSG.ref_block_hash),
           8: vi(8, MSG.expiration), 10: ld(10, b""), 11: ld(11, MSG.contract[0]
                                                             .SerializeToString()),
           14: vi(14, MSG.timestamp), 18: vi(18, 0)}


@st.composite
def _orders(draw: Any) -> list[int]:
    """The required fields (1, 4, 8, 11) and any of the others, in any order, sometimes one
    of them twice."""
    chosen = [1, 4, 8, 11] + [n for n in (3, 10, 14, 18) if draw(st.booleans())]
    if draw(st.integers(0, 4)) == 0:
        chosen.append(draw(st.sampled_from(chosen)))
    return list(draw(st.permutations(chosen)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_orders())
def test_whatever_signerd_accepts_java_tron_gives_the_same_id(order: list[int]) -> None:
    raw = b"".join(_PIECES[n] for n in order)
    try:
        tx = T.decode_raw(raw)
    except InvalidTransaction:
        return
    assert tron_pb2.Transaction.raw.FromString(raw).SerializeToString() == raw
    assert tx.txid == java_txid(raw)


# ------------------------------------------------ where java-tron reads bytes differently

def test_a_contract_type_beyond_int32_is_refused() -> None:
    """protobuf-java reads the enum ``type`` as an int32 (the low 32 bits): 2**32 + 1 is
    TransferContract to java-tron. signerd refuses it rather than reading 4294967297."""
    raw = with_contract(BASE, vi(1, 2**32 + 1) + ld(2, ANY_BYTES))
    with pytest.raises(InvalidTransaction, match="contract type 4294967297"):
        T.decode_raw(raw)


def test_a_permission_id_that_truncates_to_zero_is_refused() -> None:
    """Permission_id is an int32: 2**32 is 0 (the owner permission) to protobuf-java."""
    raw = with_contract(BASE, vi(1, 1) + ld(2, ANY_BYTES) + vi(5, 2**32))
    with pytest.raises(InvalidTransaction, match="Permission_id"):
        T.decode_raw(raw)


@pytest.mark.parametrize("url", [
    "evil.example/protocol.TransferContract",  # Any.unpack in java checks only the last part
    "type.googleapis.com/protocol.TransferContract ",
    "protocol.TransferContract",
    "",
])
def test_another_type_url_is_refused(url: str) -> None:
    any_bytes = (ld(1, url.encode()) if url else b"") + ld(2, ANY.value)
    with pytest.raises(InvalidTransaction, match="type_url"):
        T.decode_raw(with_contract(BASE, vi(1, 1) + ld(2, any_bytes)))


def _transfer_value(**fields: Any) -> bytes:
    return tron_pb2.TransferContract(**fields).SerializeToString()


@pytest.mark.parametrize("value,needle", [
    # to_address twice: protobuf-java keeps the last; signerd refuses both
    (_transfer_value(owner_address=X.raw_address(OWNER), to_address=X.raw_address(X.RECIPIENT),
                     amount=5) + ld(2, X.raw_address(X.CONTRACT)), "more than once"),
    # a 21-byte recipient with another prefix (0xa0: the old testnet's)
    (_transfer_value(owner_address=X.raw_address(OWNER),
                     to_address=b"\xa0" + X.raw_address(X.RECIPIENT)[1:], amount=5),
     "to_address: not a Tron address"),
    # a 20-byte recipient
    (_transfer_value(owner_address=X.raw_address(OWNER),
                     to_address=X.raw_address(X.RECIPIENT)[1:], amount=5),
     "to_address: not a Tron address"),
    # a TransferAssetContract's asset_name (field 1) is no TransferContract field... but
    # TransferContract has no field 4: an unknown field inside the value
    (_transfer_value(owner_address=X.raw_address(OWNER), to_address=X.raw_address(X.RECIPIENT),
                     amount=5) + ld(4, b"1000001"), "unknown field 4"),
])
def test_transfer_contract_values_java_would_read_otherwise(value: bytes, needle: str) -> None:
    any_bytes = ld(1, ANY.type_url.encode()) + key(2, 2) + bytes([len(value)]) + value
    with pytest.raises(InvalidTransaction) as e:
        T.decode_raw(with_contract(BASE, vi(1, 1) + ld(2, any_bytes)))
    assert needle in e.value.message


def _trigger(**over: Any) -> bytes:
    """A TRC-20 transfer's raw_data with TriggerSmartContract fields ``over`` set."""
    raw = X.trc20_raw(OWNER)
    msg = tron_pb2.Transaction.raw.FromString(raw)
    inner = tron_pb2.TriggerSmartContract.FromString(msg.contract[0].parameter.value)
    for k, v in over.items():
        setattr(inner, k, v)
    msg.contract[0].parameter.CopyFrom(any_pb2.Any(
        type_url=X.TYPE_URL + "TriggerSmartContract", value=inner.SerializeToString()))
    return msg.SerializeToString()


@pytest.mark.parametrize("over,needle", [
    ({"call_token_value": 1_000_000, "token_id": 1002000}, "call_token_value: must be 0"),
    ({"token_id": 1002000}, "token_id: must be 0"),
    ({"call_value": 1}, "call_value: must be 0"),
])
def test_trc20_calls_carry_no_trx_and_no_trc10(over: dict[str, int], needle: str) -> None:
    with pytest.raises(InvalidTransaction, match=needle):
        T.decode_raw(_trigger(**over))


@pytest.mark.parametrize("data", [
    # the word of the recipient carrying the 0x41 prefix (21 bytes in the word)
    X.TRANSFER_SELECTOR + b"\x00" * 11 + X.raw_address(X.RECIPIENT)
    + (5).to_bytes(32, "big"),
    # dirty high bytes an old Solidity ABI decoder would mask away
    X.TRANSFER_SELECTOR + b"\xff" * 12 + X.raw_address(X.RECIPIENT)[1:]
    + (5).to_bytes(32, "big"),
    # a trailing byte, a trailing word, a short amount
    X.trc20_transfer_data(X.RECIPIENT, 5) + b"\x00",
    X.trc20_transfer_data(X.RECIPIENT, 5) + b"\x00" * 32,
    X.trc20_transfer_data(X.RECIPIENT, 5)[:-1],
    # transferFrom (23b872dd), approve (095ea7b3)
    bytes.fromhex("23b872dd") + X.trc20_transfer_data(X.RECIPIENT, 5)[4:],
    bytes.fromhex("095ea7b3") + X.trc20_transfer_data(X.RECIPIENT, 5)[4:],
], ids=["0x41-in-word", "dirty-padding", "trailing-byte", "trailing-word", "short",
        "transferFrom", "approve"])
def test_trc20_calldata_is_exactly_a_clean_transfer(data: bytes) -> None:
    tx = T.decode_raw(X.trc20_raw(OWNER, data=data))
    with pytest.raises(InvalidTransaction, match="transfer\\(address,uint256\\)"):
        S.movement(tx, OWNER, "nile", REGISTRY)


def test_the_trc20_recipient_is_the_one_the_contract_pays() -> None:
    m = S.movement(T.decode_raw(X.trc20_raw(OWNER, amount=7)), OWNER, "nile", REGISTRY)
    assert [(o.address, o.amount, o.asset) for o in m.outputs] == [
        (X.RECIPIENT, 7, f"TRC20:{X.CONTRACT}")]


def test_a_mainnet_registry_entry_does_not_serve_a_nile_wallet() -> None:
    tx = T.decode_raw(X.trc20_raw(OWNER))
    with pytest.raises(InvalidTransaction, match="not a TRC-20 token registered"):
        S.movement(tx, OWNER, "nile", {MAINNET_USDT.key: MAINNET_USDT})
    m = S.movement(tx, OWNER, "mainnet", {MAINNET_USDT.key: MAINNET_USDT})
    assert m.chain_id == 728126428 and m.tokens == (MAINNET_USDT,)


def test_the_statement_fields_show_fee_limit_memo_and_expiration() -> None:
    raw = X.trx_raw(OWNER, memo="sweep", fee_limit=9)
    m = S.movement(T.decode_raw(raw), OWNER, "nile")
    extra = dict(m.extra)
    assert m.fee == 9 and m.fee_asset == "TRX"
    assert extra["tron_memo"] == b"sweep".hex()
    assert extra["tron_expiration"] == str(tron_pb2.Transaction.raw.FromString(raw).expiration)
    assert m.digests == (hashlib.sha256(raw).digest(),)


def test_a_fee_table_without_trx_bounds_no_fee_limit_it_refuses_it() -> None:
    """A max_fee table written for BTC and ETH does not leave fee_limit unbounded."""
    from signerd.core.errors import PolicyDenied
    from signerd.core.policy import parse_policy

    p = parse_policy('name = "t"\nmax_fee = { BTC = 1000 }\n[[rule]]\nname = "a"\n'
                     'approvers = 1\n')
    m = S.movement(T.decode_raw(X.trc20_raw(OWNER, fee_limit=30_000_000)), OWNER, "nile",
                   REGISTRY)
    with pytest.raises(PolicyDenied, match="names no bound for fee asset TRX"):
        p._check_fee(m)
    p._check_fee(S.movement(T.decode_raw(X.trx_raw(OWNER)), OWNER, "nile"))  # fee_limit 0
    bounded = parse_policy('name = "t"\nmax_fee = { TRX = 1000 }\n[[rule]]\nname = "a"\n'
                           'approvers = 1\n')
    with pytest.raises(PolicyDenied, match="exceeds max_fee.TRX"):
        bounded._check_fee(m)
