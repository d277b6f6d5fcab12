"""Transaction parse/serialise, ids and sizes, checked against vectors and python-bitcointx."""
from __future__ import annotations

import pytest
from bitcointx.core import CTransaction

from _vectors import load
from signerd.core.bitcoin.tx import (
    MAX_SIZE,
    ByteReader,
    OutPoint,
    Transaction,
    TxIn,
    TxOut,
    check_amounts,
    encode_compact_size,
)
from signerd.core.errors import InvalidTransaction

SIGHASH_CASES = load("sighash-legacy/sighash.json")[1:]
BIP143 = load("bip143/examples.json")["examples"]

RAW_TXS = (
    [pytest.param(c[0], id=f"sighash-{n}") for n, c in enumerate(SIGHASH_CASES)]
    + [pytest.param(e["signed_tx"], id=f"bip143-{e['id']}-signed") for e in BIP143]
    + [pytest.param(e["unsigned_tx"], id=f"bip143-{e['id']}-unsigned")
       for e in BIP143 if "unsigned_tx" in e]
)


@pytest.mark.parametrize("raw_hex", RAW_TXS)
def test_round_trip_and_ids_match_bitcointx(raw_hex: str) -> None:
    raw = bytes.fromhex(raw_hex)
    tx = Transaction.parse(raw)
    assert tx.serialize() == raw
    oracle = CTransaction.deserialize(raw)
    assert tx.txid() == oracle.GetTxid()
    assert tx.vsize() == oracle.get_virtual_size()
    assert tx.has_witness == oracle.has_witness()
    assert Transaction.parse(tx.serialize(include_witness=False)).txid() == tx.txid()


def test_witness_tx_ids() -> None:
    # both inputs are native P2WSH: signing adds witnesses only, so the txid cannot change
    signed = next(e for e in BIP143
                  if e["id"] == "native_p2wsh_unexecuted_codeseparator_single_anyonecanpay")
    tx = Transaction.parse(bytes.fromhex(signed["signed_tx"]))
    unsigned = Transaction.parse(bytes.fromhex(signed["unsigned_tx"]))
    assert tx.has_witness and not unsigned.has_witness
    assert tx.txid() == unsigned.txid()  # the witness is not part of the txid
    assert tx.wtxid() != tx.txid()
    assert tx.weight() == 3 * len(tx.serialize(include_witness=False)) + len(tx.serialize())


def test_txid_of_workflow_previous_tx_matches_outpoint() -> None:
    wf = load("bip174/workflow.json")
    prev = Transaction.parse(bytes.fromhex(wf["updater"]["previous_txs"][1]))
    assert prev.txid_hex == wf["creator"]["inputs"][0]["txid"]
    prev_segwit = Transaction.parse(bytes.fromhex(wf["updater"]["previous_txs"][0]))
    assert prev_segwit.txid_hex == wf["creator"]["inputs"][1]["txid"]


@pytest.mark.parametrize("n, size", [(0, 1), (1, 1), (0xFC, 1), (0xFD, 3), (0xFFFF, 3),
                                     (0x10000, 5), (0xFFFFFFFF, 5), (0x100000000, 9)])
def test_compact_size_round_trip(n: int, size: int) -> None:
    enc = encode_compact_size(n)
    assert len(enc) == size
    assert ByteReader(enc).compact_size("n", max_value=2**64 - 1) == n


@pytest.mark.parametrize("enc", ["fdfc00", "fe ffff0000", "ff ffffffff00000000"], ids=[
    "fd-for-small", "fe-for-16bit", "ff-for-32bit"])
def test_non_canonical_compact_size_rejected(enc: str) -> None:
    with pytest.raises(InvalidTransaction, match="non-canonical"):
        ByteReader(bytes.fromhex(enc.replace(" ", ""))).compact_size("count", max_value=2**64 - 1)


def test_compact_size_above_max_size_rejected() -> None:
    with pytest.raises(InvalidTransaction, match="exceeds"):
        ByteReader(encode_compact_size(MAX_SIZE + 1)).compact_size("count")


def _simple_tx(witness: tuple[bytes, ...] = ()) -> Transaction:
    txin = TxIn(OutPoint(bytes(range(32)), 1), b"", 0xFFFFFFFD, witness)
    return Transaction(2, (txin,), (TxOut(1000, bytes.fromhex("0014" + "11" * 20)),), 0)


def test_trailing_bytes_rejected() -> None:
    raw = _simple_tx().serialize()
    Transaction.parse(raw)
    with pytest.raises(InvalidTransaction, match="trailing"):
        Transaction.parse(raw + b"\x00")


def test_truncated_rejected_at_every_length() -> None:
    raw = _simple_tx((b"\x01" * 72, b"\x02" * 33)).serialize()
    for n in range(len(raw)):
        with pytest.raises(InvalidTransaction):
            Transaction.parse(raw[:n])


def test_superfluous_witness_rejected() -> None:
    legacy = _simple_tx().serialize()
    # marker+flag followed by an empty witness for the only input
    bogus = legacy[:4] + b"\x00\x01" + legacy[4:-4] + b"\x00" + legacy[-4:]
    with pytest.raises(InvalidTransaction, match="superfluous witness"):
        Transaction.parse(bogus)


def test_unknown_segwit_flag_rejected() -> None:
    raw = bytearray(_simple_tx((b"\x01",)).serialize())
    assert raw[4:6] == b"\x00\x01"
    raw[5] = 0x03
    with pytest.raises(InvalidTransaction, match="unknown optional data"):
        Transaction.parse(bytes(raw))


def test_legacy_only_parse_does_not_read_witness() -> None:
    raw = _simple_tx((b"\x01",)).serialize()
    with pytest.raises(InvalidTransaction):
        Transaction.parse(raw, allow_witness=False)


def test_huge_count_with_few_bytes_fails_fast() -> None:
    raw = b"\x02\x00\x00\x00" + encode_compact_size(MAX_SIZE) + b"\x00" * 10
    with pytest.raises(InvalidTransaction, match="input 0"):
        Transaction.parse(raw)


def test_amount_checks() -> None:
    ok = _simple_tx()
    check_amounts(ok)
    for value in (-1, 21_000_000 * 10**8 + 1):
        bad = Transaction(2, ok.inputs, (TxOut(value, b"\x51"),), 0)
        with pytest.raises(InvalidTransaction, match="output 0 amount"):
            check_amounts(bad)
    two = Transaction(2, ok.inputs, (TxOut(15_000_000 * 10**8, b"\x51"),) * 2, 0)
    with pytest.raises(InvalidTransaction, match="sum of output"):
        check_amounts(two)


def test_outpoint_display() -> None:
    op = OutPoint(bytes.fromhex("ab" + "00" * 31), 7)
    assert str(op) == "00" * 31 + "ab:7"
