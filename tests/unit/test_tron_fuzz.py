"""Bounded fuzzing of the Tron decoder (``signerd.core.tron.tx``), in the style of
``test_fuzz.py``: random bytes, and valid transactions (made with tronpy's protobuf messages)
mutated byte by byte, reach ``decode_raw`` and the adapter's JSON path. The only allowed
outcomes are a decoded transaction or ``InvalidTransaction``; a hang or any other exception
fails. Differential: whatever signerd accepts, the protobuf library parses with java-tron's
messages to the same fields."""
from __future__ import annotations

import hashlib
import json
import signal
from typing import Any

import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tronpy.keys import PrivateKey

from signerd.core.chains import TronAdapter
from signerd.core.errors import InvalidTransaction
from signerd.core.limits import Limits
from signerd.core.model import Category, Chain, KeyRef, ScriptType, Token, Wallet, WalletStatus
from signerd.core.tron import address as A
from signerd.core.tron import tx as T
from tests.support import tron as X

FUZZ = settings(max_examples=500, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
CALL_SECONDS = 5.0
OWNER_KEY = PrivateKey(b"\x05" * 32)
OWNER = OWNER_KEY.public_key.to_base58check_address()
VALID = [X.trx_raw(OWNER), X.trx_raw(OWNER, memo="m", fee_limit=7),
         X.trc20_raw(OWNER), X.trc20_raw(OWNER, amount=0, fee_limit=0)]
WALLET = Wallet(id="w_fuzz", chain=Chain.TRON, network="nile", script_type=ScriptType.EOA,
                category=Category.SEIZED, case_ref="C", legal_basis="",
                status=WalletStatus.ACTIVE, address=OWNER,
                keys=(KeyRef("00", "k", bytes.fromhex("04") + OWNER_KEY.public_key.to_bytes()),))
TOKENS = {(X.NILE_CHAIN_ID, X.CONTRACT): Token(X.NILE_CHAIN_ID, X.CONTRACT, "trc20", "USDT", 6)}


def _alarm(signum: int, frame: Any) -> None:
    raise TimeoutError("decoder still running (a hang)")


def decoded(fn: Any, *args: Any) -> Any:
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, CALL_SECONDS)
    try:
        return fn(*args)
    except InvalidTransaction as e:
        assert e.message and e.status.name == "INVALID_ARGUMENT"
        return None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def agrees(raw: bytes, tx: T.TronTx) -> None:
    """What signerd accepted, the protobuf library reads to the same fields."""
    try:
        theirs = X.independent_decode(raw)
    except DecodeError:
        pytest.fail(f"signerd accepted bytes protobuf cannot parse: {raw.hex()}")
    assert theirs["owner"] == A.to_text(tx.owner)
    assert theirs["expiration"] == tx.expiration and theirs["fee_limit"] == tx.fee_limit
    assert theirs["ref_block_hash"] == tx.ref_block_hash and theirs["data"] == tx.memo
    if tx.contract_type == T.TRANSFER:
        assert (theirs["to"], theirs["amount"]) == (A.to_text(tx.to), tx.amount)
    else:
        assert (theirs["contract"], theirs["call_data"]) == (A.to_text(tx.to), tx.data)


@st.composite
def mutated(draw: Any) -> bytes:
    raw = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "append"]))
        pos = draw(st.integers(0, max(len(raw) - 1, 0)))
        if kind == "flip" and raw:
            raw[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            raw[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "delete" and raw:
            del raw[pos]
        elif kind == "truncate":
            del raw[pos:]
        else:
            raw += draw(st.binary(min_size=1, max_size=8))
    return bytes(raw)


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes(raw: bytes) -> None:
    tx = decoded(T.decode_raw, raw)
    if tx is not None:
        agrees(raw, tx)


@FUZZ
@given(mutated())
def test_mutated_valid_transactions(raw: bytes) -> None:
    tx = decoded(T.decode_raw, raw)
    if tx is not None:
        agrees(raw, tx)
        assert tx.txid == hashlib.sha256(raw).digest()


@FUZZ
@given(st.one_of(
    mutated().map(lambda raw: json.dumps({"raw_data_hex": raw.hex()}).encode()),
    st.dictionaries(st.sampled_from(["raw_data_hex", "txID", "raw_data", "visible",
                                     "signature", "x"]),
                    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=40),
                              st.lists(st.text(max_size=4), max_size=2)),
                    max_size=5).map(lambda d: json.dumps(d).encode()),
    st.binary(max_size=200)))
def test_adapter_payloads(payload: bytes) -> None:
    """The adapter's whole decode (JSON, decoder, movement) as the daemon runs it."""
    decoded(lambda: TronAdapter().decode(WALLET, payload, Limits(), tokens=TOKENS))
