"""Legacy and BIP-143 digests against Bitcoin Core's sighash.json and the BIP-143 examples."""
from __future__ import annotations

from decimal import Decimal

import ecdsa
import pytest
from ecdsa.util import sigdecode_der

import signerd.core.bitcoin.sighash as sighash_mod
from _vectors import load
from signerd.core.bitcoin.script import p2pkh_script, witness_program
from signerd.core.bitcoin.sighash import (
    SIGHASH_ALL,
    SegwitV0Cache,
    bip143_preimage,
    bip143_sighash,
    legacy_sighash,
    script_code_after_codeseparator,
    sighash_name,
)
from signerd.core.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut, encode_var_bytes

LEGACY = load("sighash-legacy/sighash.json")[1:]  # first row is the header


@pytest.mark.parametrize("raw_tx, script, index, hash_type, expected",
                         [pytest.param(*c, id=f"{n}-{c[4][:12]}") for n, c in enumerate(LEGACY)])
def test_legacy_sighash_core_vectors(raw_tx: str, script: str, index: int, hash_type: int,
                                     expected: str) -> None:
    tx = Transaction.parse(bytes.fromhex(raw_tx))
    digest = legacy_sighash(tx, index, bytes.fromhex(script), hash_type)
    assert digest[::-1].hex() == expected  # the file prints digests byte-reversed


def test_legacy_vector_count() -> None:
    assert len(LEGACY) == 500


def test_legacy_single_bug_and_out_of_range_input_give_one() -> None:
    tx = Transaction(1, (TxIn(OutPoint(bytes(32), 0)), TxIn(OutPoint(bytes(32), 1))),
                     (TxOut(1, b"\x51"),), 0)
    one = (1).to_bytes(32, "little")
    assert legacy_sighash(tx, 1, b"\x51", 3) == one  # SIGHASH_SINGLE without output 1
    assert legacy_sighash(tx, 2, b"\x51", 1) == one  # no input 2
    assert legacy_sighash(tx, 0, b"\x51", 3) != one


BIP143 = load("bip143/examples.json")["examples"]


def _btc(text: str) -> int:
    return int(Decimal(text) * 100_000_000)


def _signature_cases() -> list:
    cases = []
    for ex in BIP143:
        for n, sig in enumerate(ex["signatures"]):
            cases.append(pytest.param(ex, sig, id=f"{ex['id']}-{n}-{sig['sighash_type_name']}"))
    return cases


def _script_code_and_amount(ex: dict, sig: dict) -> tuple[Transaction, bytes, int]:
    """Rebuild what a signer knows: the unsigned tx, the scriptCode and the spent amount."""
    index = sig["input_index"]
    if "unsigned_tx" in ex:
        tx = Transaction.parse(bytes.fromhex(ex["unsigned_tx"]))
    else:  # the BIP gives only the signed transaction; the digest ignores scriptSigs/witnesses
        tx = Transaction.parse(bytes.fromhex(ex["signed_tx"]))
    described = ex.get("inputs_described")
    if described:
        info = described[index] if len(described) > 1 else described[0]
        amount = _btc(info["value_btc"])
        spk = bytes.fromhex(info["scriptPubKey"])
        if "witnessScript" in info:
            script = bytes.fromhex(info["witnessScript"])
        elif "redeemScript" in info:
            script = bytes.fromhex(info["redeemScript"])
        else:
            script = spk
        wp = witness_program(script)
        if wp is not None and wp[0] == 0 and len(wp[1]) == 20:  # P2WPKH: scriptCode is P2PKH
            script = p2pkh_script(wp[1])
    else:  # witness script is the last witness item; amount as the BIP states it
        script = tx.inputs[index].witness[-1]
        amount = sig["preimage_fields"]["amount_satoshi"]
    # BIP-143 signs from the last executed OP_CODESEPARATOR: find which one gives the
    # vector's scriptCode, then check the rest of the preimage independently.
    expected_code = bytes.fromhex(sig["preimage_fields"]["scriptCode"])
    for executed in range(script.count(b"\xab") + 1):
        try:
            code = script_code_after_codeseparator(script, executed)
        except ValueError:
            break
        if encode_var_bytes(code) == expected_code:
            return tx, code, amount
    raise AssertionError("no scriptCode matches the vector")


@pytest.mark.parametrize("ex, sig", _signature_cases())
def test_bip143_examples(ex: dict, sig: dict) -> None:
    tx, script_code, amount = _script_code_and_amount(ex, sig)
    index, hash_type = sig["input_index"], sig["sighash_type"]
    assert amount == sig["preimage_fields"]["amount_satoshi"]
    cache = SegwitV0Cache(tx)
    preimage = bip143_preimage(tx, index, script_code, amount, hash_type, cache)
    assert preimage.hex() == sig["preimage"]
    digest = bip143_sighash(tx, index, script_code, amount, hash_type, cache)
    assert digest.hex() == sig["sighash"]
    assert sighash_name(hash_type) == sig["sighash_type_name"]
    # the vector's signature verifies against our digest (python-ecdsa, which also accepts the
    # high-S signatures of the no-FindAndDelete examples)
    if "public_key" in sig:
        der = bytes.fromhex(sig["signature"])[:-1]
        key = ecdsa.VerifyingKey.from_string(bytes.fromhex(sig["public_key"]), curve=ecdsa.SECP256k1)
        assert key.verify_digest(der, digest, sigdecode=sigdecode_der)


def test_bip143_signature_count() -> None:
    assert sum(len(ex["signatures"]) for ex in BIP143) == 14
    names = {s["sighash_type_name"] for ex in BIP143 for s in ex["signatures"]}
    assert names == {"SIGHASH_ALL", "SIGHASH_NONE", "SIGHASH_SINGLE", "SIGHASH_ALL|ANYONECANPAY",
                     "SIGHASH_NONE|ANYONECANPAY", "SIGHASH_SINGLE|ANYONECANPAY"}


def test_bip143_cache_is_linear(monkeypatch: pytest.MonkeyPatch) -> None:
    """With one cache, n SIGHASH_ALL digests cost 3 midstate hashes + n preimage hashes."""
    n = 1000
    inputs = tuple(TxIn(OutPoint(i.to_bytes(32, "big"), 0)) for i in range(n))
    tx = Transaction(2, inputs, (TxOut(1, b"\x51"),), 0)
    calls = 0
    real = sighash_mod.sha256d

    def counting(data: bytes) -> bytes:
        nonlocal calls
        calls += 1
        return real(data)

    monkeypatch.setattr(sighash_mod, "sha256d", counting)
    cache = SegwitV0Cache(tx)
    digests = {bip143_sighash(tx, i, b"\x51", 1000, SIGHASH_ALL, cache) for i in range(n)}
    assert len(digests) == n
    assert calls == n + 3


def test_script_code_after_codeseparator() -> None:
    script = bytes.fromhex("51ab52ab53")
    assert script_code_after_codeseparator(script, 0) == script
    assert script_code_after_codeseparator(script, 1) == bytes.fromhex("52ab53")
    assert script_code_after_codeseparator(script, 2) == bytes.fromhex("53")
    with pytest.raises(ValueError):
        script_code_after_codeseparator(script, 3)
    # 0xab inside a push is data, not a separator
    assert script_code_after_codeseparator(bytes.fromhex("01abab51"), 1) == b"\x51"
