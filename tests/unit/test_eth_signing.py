"""Signing flow (low s, y-parity, signed raw) with eth-account and py-evm as independent oracles.

The HSM is stood in for by a software key through coincurve (RFC 6979, as libsecp256k1 signs);
everything signerd computes is checked by eth-account (recovery, its own signing) or executed
on py-evm.
"""

from __future__ import annotations

import json
from typing import Any

import coincurve
import pytest
from _vectors import VECTORS
from eth_account import Account
from eth_oracle import CHAIN_ID, GWEI, mine_raw_tx
from eth_utils import keccak as eth_utils_keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from signerd.core.ethereum.address import address_from_pubkey, to_checksum
from signerd.core.ethereum.eip1559 import SECP256K1_N, Eip1559Tx, tx_hash
from signerd.core.ethereum.erc20 import APPROVE_SELECTOR, TRANSFER_SELECTOR
from signerd.core.ethereum.signing import (
    SignatureMismatch,
    assemble_signed,
    low_s,
    movement,
    recover_y_parity,
)
from signerd.core.model import Chain, Output, Token

ETH_VECTORS = json.loads((VECTORS / "ethereum" / "eth-account-vectors.json").read_text())
SIGN_CASES = [c for c in ETH_VECTORS["eth_test_transactions"]["cases"] if c.get("type") == "0x2"]
NOT_FIELDS = ("id", "key", "signed")


def hsm_sign(key: bytes, digest: bytes) -> tuple[int, int, int]:
    """A software stand-in for the HSM: (r, s, recovery id) over a prehashed digest."""
    sig = coincurve.PrivateKey(key).sign_recoverable(digest, hasher=None)
    return int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64]


def sign(tx: Eip1559Tx, key: bytes) -> bytes:
    r, s, _ = hsm_sign(key, tx.signing_hash())
    pubkey = coincurve.PrivateKey(key).public_key.format()
    return assemble_signed(tx, r, s, pubkey)[0]


@pytest.mark.parametrize("case", SIGN_CASES, ids=[c["id"] for c in SIGN_CASES])
def test_signed_vectors_and_eth_account(case: dict[str, Any]) -> None:
    key = bytes.fromhex(case["key"])
    tx = Eip1559Tx.from_fields({k: v for k, v in case.items() if k not in NOT_FIELDS})
    r, s, recid = hsm_sign(key, tx.signing_hash())
    pubkey = coincurve.PrivateKey(key).public_key.format()
    assert recover_y_parity(tx.signing_hash(), r, s, pubkey) == recid
    raw = tx.signed_raw(recid, r, s)
    assert raw.hex() == case["signed"][2:]
    theirs = Account.sign_transaction(tx.to_fields(), key)
    assert bytes(theirs.raw_transaction) == raw
    assert bytes(theirs.hash) == tx_hash(raw) == eth_utils_keccak(raw)
    assert (
        Account.recover_transaction(raw)
        == Account.from_key(key).address
        == address_from_pubkey(pubkey)
    )
    # an HSM may return the high-s twin; assembly must normalise it to the same bytes
    assert assemble_signed(tx, r, SECP256K1_N - s, pubkey) == (raw, tx_hash(raw))
    assert Eip1559Tx.decode_signed(raw).tx == tx


def test_low_s() -> None:
    half = SECP256K1_N // 2
    assert low_s(1) == 1
    assert low_s(half) == half
    assert low_s(half + 1) == SECP256K1_N - half - 1
    assert low_s(SECP256K1_N - 1) == 1
    for bad in (0, SECP256K1_N):
        with pytest.raises(ValueError):
            low_s(bad)


def test_recover_y_parity_refuses_a_foreign_signature() -> None:
    digest = eth_utils_keccak(b"transfer")
    r, s, _ = hsm_sign(b"\x01" * 32, digest)
    other = coincurve.PrivateKey(b"\x02" * 32).public_key.format(compressed=False)
    with pytest.raises(SignatureMismatch):
        recover_y_parity(digest, r, s, other)
    with pytest.raises(SignatureMismatch):
        recover_y_parity(
            eth_utils_keccak(b"other"), r, s, coincurve.PrivateKey(b"\x01" * 32).public_key.format()
        )


# --- random transactions: our bytes are eth-account's bytes ---

addresses = st.binary(min_size=20, max_size=20)
uint256 = st.integers(0, 2**256 - 1)


@st.composite
def transactions(draw: st.DrawFn) -> Eip1559Tx:
    max_fee = draw(uint256)
    return Eip1559Tx(
        chain_id=draw(st.integers(1, 2**64 - 1)),
        nonce=draw(st.integers(0, 2**64 - 2)),
        max_priority_fee_per_gas=draw(st.integers(0, max_fee)),
        max_fee_per_gas=max_fee,
        gas=draw(st.integers(21000, 2**64 - 1)),
        to=draw(st.none() | addresses),
        value=draw(uint256),
        data=draw(st.binary(max_size=200)),
        access_list=tuple(
            draw(
                st.lists(
                    st.tuples(
                        addresses,
                        st.lists(st.binary(min_size=32, max_size=32), max_size=3).map(tuple),
                    ),
                    max_size=3,
                )
            )
        ),
    )


@given(transactions(), st.binary(min_size=32, max_size=32))
@settings(max_examples=100, deadline=None)
def test_random_transactions_sign_like_eth_account(tx: Eip1559Tx, key: bytes) -> None:
    k = int.from_bytes(key, "big")
    if not 0 < k < SECP256K1_N:
        return
    raw = sign(tx, key)
    assert bytes(Account.sign_transaction(tx.to_fields(), key).raw_transaction) == raw
    assert Account.recover_transaction(raw) == Account.from_key(key).address
    assert Eip1559Tx.decode_signed(raw).raw() == raw
    assert Eip1559Tx.decode_unsigned(tx.unsigned_payload()) == tx
    assert Eip1559Tx.from_fields(tx.to_fields()) == tx


# --- execution on py-evm ---

KEY = bytes.fromhex("4646464646464646464646464646464646464646464646464646464646464646")
SENDER = address_from_pubkey(coincurve.PrivateKey(KEY).public_key.format())
RECIPIENT = bytes.fromhex("3535353535353535353535353535353535353535")


def evm_tx(**changes: Any) -> Eip1559Tx:
    fields: dict[str, Any] = {
        "chainId": CHAIN_ID,
        "nonce": 0,
        "maxPriorityFeePerGas": GWEI,
        "maxFeePerGas": 2 * GWEI,
        "gas": 21000,
        "to": to_checksum(RECIPIENT),
        "value": 10**18,
    }
    fields.update(changes)
    return Eip1559Tx.from_fields(fields)


def test_eth_transfer_mines_on_py_evm() -> None:
    tx = evm_tx()
    raw = sign(tx, KEY)
    receipt = mine_raw_tx(raw, SENDER, 2 * 10**18)
    assert receipt["status"] == 1
    assert receipt["from"] == SENDER
    assert receipt["to"] == to_checksum(RECIPIENT)
    assert receipt["transaction_hash"] == "0x" + tx_hash(raw).hex()


def test_contract_creation_mines_on_py_evm() -> None:
    # init code returning a one-byte runtime (STOP): PUSH1 1 PUSH1 0 RETURN
    tx = evm_tx(to=None, value=0, gas=100000, data="0x60016000f3")
    raw = sign(tx, KEY)
    receipt = mine_raw_tx(raw, SENDER, 10**18)
    assert receipt["status"] == 1
    sender = bytes.fromhex(SENDER[2:])
    expected = eth_utils_keccak(b"\xd6\x94" + sender + b"\x80")[12:]  # rlp([sender, 0])
    assert receipt["contract_address"] == to_checksum(expected)


def test_access_list_and_calldata_mine_on_py_evm() -> None:
    data = TRANSFER_SELECTOR + b"\x00" * 12 + RECIPIENT + (5).to_bytes(32, "big")
    tx = evm_tx(
        value=0,
        gas=60000,
        data="0x" + data.hex(),
        accessList=[{"address": to_checksum(RECIPIENT), "storageKeys": ["0x" + "00" * 31 + "01"]}],
    )
    receipt = mine_raw_tx(sign(tx, KEY), SENDER, 10**18)
    assert receipt["status"] == 1


# --- the decoded movement ---

TOKEN = bytes.fromhex("a0b86991c6218b36c1d19d4a2e9eb0ce3606eb48")
USDC = Token(CHAIN_ID, to_checksum(TOKEN), "erc20", "USDC", 6)
REGISTRY = {USDC.key: USDC}  # the governance's token registry


def erc20_data(selector: bytes, who: bytes, amount: int) -> str:
    return "0x" + (selector + b"\x00" * 12 + who + amount.to_bytes(32, "big")).hex()


def test_movement_of_plain_transfer() -> None:
    tx = evm_tx(gas=30000)
    m = movement(tx)
    assert m.chain is Chain.ETHEREUM and m.network == "ethereum" and m.chain_id == CHAIN_ID
    assert m.outputs == (Output(address=to_checksum(RECIPIENT), amount=10**18, asset="ETH"),)
    assert m.fee == 30000 * 2 * GWEI and m.fee_asset == "ETH"
    assert m.digests == (tx.signing_hash(),)
    assert (m.nonce, m.gas_limit, m.max_fee_per_gas, m.max_priority_fee_per_gas) == (
        0,
        30000,
        2 * GWEI,
        GWEI,
    )
    assert m.contract_call == ""


def test_movement_of_zero_value_transfer_still_names_destination() -> None:
    m = movement(evm_tx(value=0))
    assert m.outputs == (Output(address=to_checksum(RECIPIENT), amount=0, asset="ETH"),)


def test_movement_of_erc20_transfer() -> None:
    tx = evm_tx(
        to=to_checksum(TOKEN),
        value=0,
        gas=60000,
        data=erc20_data(TRANSFER_SELECTOR, RECIPIENT, 123),
    )
    m = movement(tx, REGISTRY)
    assert m.outputs == (
        Output(address=to_checksum(RECIPIENT), amount=123, asset="ERC20:" + to_checksum(TOKEN)),
    )
    assert m.contract_call == "" and m.tokens == (USDC,)
    assert m.details["erc20_method"] == "transfer"


@pytest.mark.parametrize("registry", [None, {}, {(1, USDC.address.lower()): USDC}],
                         ids=["no-registry", "empty", "other-chain"])
def test_erc20_shaped_call_to_an_unregistered_contract_is_a_contract_call(registry) -> None:
    """Tokens are known, not guessed: the same calldata to a contract the registry does not
    name for this chain id is an undecoded contract call to that contract."""
    data = erc20_data(TRANSFER_SELECTOR, RECIPIENT, 123)
    m = movement(evm_tx(to=to_checksum(TOKEN), value=0, gas=60000, data=data), registry)
    assert m.outputs == (Output(address=to_checksum(TOKEN), amount=0, asset="ETH"),)
    assert m.contract_call == data and m.tokens == ()
    assert "erc20_method" not in m.details


def test_movement_of_erc20_transfer_with_eth_value_shows_both() -> None:
    tx = evm_tx(
        to=to_checksum(TOKEN),
        value=7,
        gas=60000,
        data=erc20_data(TRANSFER_SELECTOR, RECIPIENT, 123),
    )
    assert movement(tx, REGISTRY).outputs == (
        Output(address=to_checksum(TOKEN), amount=7, asset="ETH"),
        Output(address=to_checksum(RECIPIENT), amount=123, asset="ERC20:" + to_checksum(TOKEN)),
    )


def test_movement_of_erc20_approve() -> None:
    tx = evm_tx(
        to=to_checksum(TOKEN),
        value=0,
        gas=60000,
        data=erc20_data(APPROVE_SELECTOR, RECIPIENT, 2**256 - 1),
    )
    m = movement(tx, REGISTRY)
    assert m.outputs == (
        Output(
            address=to_checksum(RECIPIENT),
            amount=2**256 - 1,
            asset="ERC20-APPROVE:" + to_checksum(TOKEN),
            grant=True,  # the unlimited allowance: a grant of the whole balance
        ),
    )
    assert m.details["erc20_method"] == "approve"


def test_movement_of_other_contract_call() -> None:
    data = erc20_data(TRANSFER_SELECTOR, RECIPIENT, 1) + "00"  # one byte too long: not decoded
    tx = evm_tx(to=to_checksum(TOKEN), value=0, gas=60000, data=data)
    m = movement(tx, REGISTRY)
    assert m.outputs == (Output(address=to_checksum(TOKEN), amount=0, asset="ETH"),)
    assert m.contract_call == data


def test_movement_of_contract_creation() -> None:
    tx = evm_tx(to=None, value=5, gas=100000, data="0x60016000f3")
    m = movement(tx)
    assert m.outputs == (Output(address="", amount=5, asset="ETH"),)
    assert m.contract_call == "0x60016000f3"


def test_erc20_shaped_creation_code_is_not_a_token_movement() -> None:
    tx = evm_tx(to=None, value=0, gas=100000, data=erc20_data(TRANSFER_SELECTOR, RECIPIENT, 1))
    m = movement(tx, REGISTRY)
    assert m.outputs == (Output(address="", amount=0, asset="ETH"),)
    assert m.contract_call != ""
