"""BIP-174 PSBT v0: the BIP's vectors, the full workflow, limits and property tests."""
from __future__ import annotations

import base64
import struct
from decimal import Decimal

import coincurve
import pytest
from bip_utils import Bip32Slip10Secp256k1, Bip32KeyNetVersions, WifDecoder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _vectors import case_id, load
from signerd.core.bitcoin.psbt import (
    HARDENED,
    KeyOrigin,
    Limits,
    Psbt,
    PsbtInput,
    PsbtOutput,
    combine,
    parse_psbt,
    parse_psbt_base64,
)
from signerd.core.bitcoin.script import hash160
from signerd.core.bitcoin.sighash import bip143_sighash, legacy_sighash
from signerd.core.bitcoin.signer import add_signature, extract
from signerd.core.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut, encode_var_bytes
from signerd.core.errors import InvalidPsbt

VALID = load("bip174/valid.json")
INVALID = load("bip174/invalid.json")
FAILS_SIGNER = load("bip174/fails_signer.json")
WORKFLOW = load("bip174/workflow.json")

# What each invalid vector's error message must mention (the field or the problem).
INVALID_MESSAGES = {
    "Network transaction, not PSBT format": "magic",
    "PSBT missing outputs": "output maps",
    "PSBT where one input has a filled scriptSig in the unsigned tx": "non-empty scriptSig",
    "PSBT where inputs and outputs are provided but without an unsigned tx": "UNSIGNED_TX",
    "PSBT with duplicate keys in an input": "duplicate key",
    "PSBT with invalid global transaction typed key": "PSBT_GLOBAL_UNSIGNED_TX key",
    "PSBT with invalid input witness utxo typed key": "PSBT_IN_WITNESS_UTXO key",
    "PSBT with invalid pubkey length for input partial signature typed key":
        "PSBT_IN_PARTIAL_SIG key has a 32-byte public key",
    "PSBT with invalid redeemscript typed key": "PSBT_IN_REDEEM_SCRIPT key",
    "PSBT with invalid witnessscript typed key": "PSBT_IN_WITNESS_SCRIPT key",
    "PSBT with invalid pubkey in input BIP 32 derivation paths typed key":
        "PSBT_IN_BIP32_DERIVATION key has a 32-byte public key",
    "PSBT with invalid non-witness utxo typed key": "PSBT_IN_NON_WITNESS_UTXO key",
    "PSBT with invalid final scriptsig typed key": "PSBT_IN_FINAL_SCRIPTSIG key",
    "PSBT with invalid final script witness typed key": "PSBT_IN_FINAL_SCRIPTWITNESS key",
    "PSBT with invalid pubkey in output BIP 32 derivation paths typed key":
        "PSBT_OUT_BIP32_DERIVATION key has a 32-byte public key",
    "PSBT with invalid input sighash type typed key": "PSBT_IN_SIGHASH_TYPE key",
    "PSBT with invalid output redeemScript typed key": "PSBT_OUT_REDEEM_SCRIPT key",
    "PSBT with invalid output witnessScript typed key": "PSBT_OUT_WITNESS_SCRIPT key",
    "PSBT with unsigned tx serialized with witness serialization format": "witness (BIP-144) format",
    "PSBT with an invalid value data due to its size being not the stated size":
        "PSBT_GLOBAL_UNSIGNED_TX: 22 trailing bytes",
}


def _params(vectors: list[dict]) -> list:
    return [pytest.param(v, id=case_id(v["description"])) for v in vectors]


def test_vector_counts() -> None:
    assert (len(VALID), len(INVALID), len(FAILS_SIGNER)) == (10, 20, 4)
    assert set(INVALID_MESSAGES) == {v["description"] for v in INVALID}


@pytest.mark.parametrize("vector", _params(VALID))
def test_valid_vectors_round_trip(vector: dict) -> None:
    raw = bytes.fromhex(vector["hex"])
    psbt = parse_psbt(raw)
    assert psbt.serialize() == raw
    assert psbt.to_base64() == vector["base64"]
    assert parse_psbt_base64(vector["base64"]) == psbt
    assert base64.b64decode(vector["base64"]) == raw  # the vector's two forms agree


@pytest.mark.parametrize("vector", _params(INVALID))
def test_invalid_vectors_rejected(vector: dict) -> None:
    expected = INVALID_MESSAGES[vector["description"]]
    with pytest.raises(InvalidPsbt, match=None) as hex_err:
        parse_psbt(bytes.fromhex(vector["hex"]))
    assert expected in str(hex_err.value), str(hex_err.value)
    with pytest.raises(InvalidPsbt) as b64_err:
        parse_psbt_base64(vector["base64"])
    assert str(b64_err.value) == str(hex_err.value)
    assert hex_err.value.reason == "INVALID_PSBT"


@pytest.mark.parametrize("vector", _params(FAILS_SIGNER))
def test_fails_signer_vectors_parse(vector: dict) -> None:
    # They are valid PSBTs; the signer (test_btc_signer) must refuse them.
    raw = bytes.fromhex(vector["hex"])
    assert parse_psbt(raw).serialize() == raw


def test_zero_input_vectors_parse() -> None:
    zero = [v for v in VALID if "0 inputs" in v["description"]]
    assert len(zero) == 2
    for v in zero:
        assert parse_psbt(bytes.fromhex(v["hex"])).tx.inputs == ()


def test_unknown_keys_round_trip() -> None:
    v = next(v for v in VALID if "unknown types" in v["description"])
    psbt = parse_psbt(bytes.fromhex(v["hex"]))
    assert psbt.inputs[0].unknown == {bytes.fromhex("f0010203040506070809"):
                                      bytes.fromhex("0102030405060708090a0b0c0d0e0f")}


def test_global_xpub_parsed() -> None:
    v = next(v for v in VALID if "PSBT_GLOBAL_XPUB" in v["description"])
    psbt = parse_psbt(bytes.fromhex(v["hex"]))
    (xpub, origin), = psbt.xpubs.items()
    assert len(xpub) == 78 and xpub[:4] == bytes.fromhex("0488b21e")
    assert origin.path_str().startswith("m/")


# -- the BIP-174 workflow (creator -> ... -> extractor), byte for byte ------------------------

def _wf(step: str) -> bytes:
    return bytes.fromhex(WORKFLOW[step]["expected"]["hex"])


def _master() -> Bip32Slip10Secp256k1:
    tprv = Bip32KeyNetVersions(bytes.fromhex("043587cf"), bytes.fromhex("04358394"))
    return Bip32Slip10Secp256k1.FromExtendedKey(WORKFLOW["master_xprv"], tprv)


def _parse_path(path: str) -> tuple[int, ...]:
    return tuple(int(p[:-1]) + HARDENED if p.endswith("'") else int(p)
                 for p in path.split("/")[1:])


def test_workflow_creator() -> None:
    c = WORKFLOW["creator"]
    inputs = tuple(TxIn(OutPoint(bytes.fromhex(i["txid"])[::-1], i["vout"])) for i in c["inputs"])
    outputs = tuple(TxOut(int(Decimal(o["amount_btc"]) * 100_000_000),
                          bytes.fromhex(o["scriptPubKey"])) for o in c["outputs"])
    tx = Transaction(2, inputs, outputs, 0)
    psbt = Psbt(tx, (PsbtInput(),) * len(inputs), (PsbtOutput(),) * len(outputs))
    assert psbt.serialize() == _wf("creator")


def test_workflow_updater() -> None:
    u = WORKFLOW["updater"]
    psbt = parse_psbt(_wf("creator"))
    fingerprint = _master().FingerPrint().ToBytes()
    origins = {bytes.fromhex(p["pubkey"]): KeyOrigin(fingerprint, _parse_path(p["path"]))
               for p in u["pubkeys"]}

    def derivs_in(script: bytes) -> dict[bytes, KeyOrigin]:
        # Core keeps derivations sorted by public key
        return {k: origins[k] for k in sorted(origins) if k in script}

    prevs = [Transaction.parse(bytes.fromhex(t)) for t in u["previous_txs"]]
    by_txid = {p.txid(): p for p in prevs}
    redeem = [bytes.fromhex(s) for s in u["redeem_scripts"]]
    witness = bytes.fromhex(u["witness_scripts"][0])
    new_inputs = []
    for i, txin in enumerate(psbt.tx.inputs):
        prev = by_txid[txin.prevout.txid]
        if i == 0:  # P2SH multisig: the full previous transaction
            new_inputs.append(PsbtInput(non_witness_utxo=prev, redeem_script=redeem[0],
                                        bip32_derivs=derivs_in(redeem[0])))
        else:  # P2SH-P2WSH: the witness UTXO
            new_inputs.append(PsbtInput(witness_utxo=prev.outputs[txin.prevout.vout],
                                        redeem_script=redeem[1], witness_script=witness,
                                        bip32_derivs=derivs_in(witness)))
    new_outputs = []
    for out in psbt.tx.outputs:
        key = next(k for k in origins if hash160(k) == out.script_pubkey[2:])
        new_outputs.append(PsbtOutput(bip32_derivs={key: origins[key]}))
    updated = Psbt(psbt.tx, tuple(new_inputs), tuple(new_outputs))
    assert updated.serialize() == _wf("updater")

    with_sighash = Psbt(psbt.tx, tuple(PsbtInput(**{**i.__dict__, "sighash_type": 1})
                                       for i in new_inputs), tuple(new_outputs))
    assert with_sighash.serialize() == _wf("updater_sighash_all")


def _workflow_digest(psbt: Psbt, i: int) -> bytes:
    inp = psbt.inputs[i]
    assert inp.sighash_type is not None
    if inp.witness_script is not None:
        assert inp.witness_utxo is not None
        return bip143_sighash(psbt.tx, i, inp.witness_script, inp.witness_utxo.value,
                              inp.sighash_type)
    assert inp.redeem_script is not None
    return legacy_sighash(psbt.tx, i, inp.redeem_script, inp.sighash_type)


def _workflow_sign(psbt: Psbt, keys: list[dict]) -> Psbt:
    """Sign in software (coincurve, RFC 6979) over our digests, then add via add_signature."""
    for k in keys:
        secret, _ = WifDecoder.Decode(k["wif"], b"\xef")
        priv = coincurve.PrivateKey(secret)
        pub = priv.public_key.format()
        assert _master().DerivePath(k["path"]).PublicKey().RawCompressed().ToBytes() == pub
        for i, inp in enumerate(psbt.inputs):
            if pub in inp.bip32_derivs:
                digest = _workflow_digest(psbt, i)
                psbt = add_signature(psbt, i, pub, priv.sign(digest, hasher=None) + b"\x01",
                                     digest=digest)
    return psbt


@pytest.mark.parametrize("step", ["signer_1", "signer_2"])
def test_workflow_signers(step: str) -> None:
    signed = _workflow_sign(parse_psbt(_wf("updater_sighash_all")), WORKFLOW[step]["keys"])
    assert signed.serialize() == _wf(step)


def test_workflow_combiner() -> None:
    combined = combine(parse_psbt(_wf("signer_1")), parse_psbt(_wf("signer_2")))
    assert combined.serialize() == _wf("combiner")


def test_workflow_combiner_unknown_keys() -> None:
    c = WORKFLOW["combiner_unknown"]
    parts = [parse_psbt(bytes.fromhex(p["hex"])) for p in c["inputs"]]
    assert combine(*parts).serialize().hex() == c["expected"]["hex"]


def test_workflow_extractor() -> None:
    # Our finalizer supports the wallet types only (P2WPKH, P2SH-P2WPKH, P2WSH sortedmulti);
    # the workflow's P2SH and P2SH-P2WSH multisig inputs are finalized by the vector itself.
    final = parse_psbt(_wf("finalizer"))
    assert final.serialize() == _wf("finalizer")
    assert extract(final).serialize().hex() == WORKFLOW["extractor"]["expected_tx_hex"]


def test_combine_refuses_different_transactions() -> None:
    a = parse_psbt(_wf("creator"))
    b = parse_psbt(bytes.fromhex(VALID[0]["hex"]))
    with pytest.raises(InvalidPsbt, match="different unsigned transaction"):
        combine(a, b)


# -- strictness beyond the BIP's vectors ----------------------------------------------------

def _map(*pairs: tuple[bytes, bytes]) -> bytes:
    return b"".join(encode_var_bytes(k) + encode_var_bytes(v) for k, v in pairs) + b"\x00"


def _one_in_one_out_tx() -> Transaction:
    return Transaction(2, (TxIn(OutPoint(b"\x11" * 32, 0)),), (TxOut(5000, b"\x51"),), 0)


def _psbt_bytes(global_extra=(), input_pairs=(), output_pairs=(), tx=None) -> bytes:
    tx = tx or _one_in_one_out_tx()
    glob = _map((b"\x00", tx.serialize()), *global_extra)
    return b"psbt\xff" + glob + _map(*input_pairs) + _map(*output_pairs)


@pytest.mark.parametrize("extra, match", [
    (((b"\xfb", struct.pack("<I", 2)),), "unsupported PSBT version 2"),
    (((b"\xfb", b"\x00"),), "PSBT_GLOBAL_VERSION value is 1 bytes"),
    (((b"\x02", struct.pack("<I", 2)),), "PSBT_GLOBAL_TX_VERSION is not allowed"),
    (((b"\x01" + b"\x00" * 77, b"\x00" * 4),), "78-byte extended public key"),
    (((b"\x01" + b"\x00" * 78, b"\x00" * 5),), "key origin is 5 bytes"),
], ids=["version-2", "version-short", "v2-field", "xpub-length", "xpub-origin-length"])
def test_global_field_errors(extra: tuple, match: str) -> None:
    with pytest.raises(InvalidPsbt, match=match):
        parse_psbt(_psbt_bytes(global_extra=extra))


def test_explicit_version_zero_round_trips() -> None:
    raw = _psbt_bytes(global_extra=((b"\xfb", struct.pack("<I", 0)),))
    psbt = parse_psbt(raw)
    assert psbt.version == 0 and psbt.serialize() == raw


PUB = coincurve.PrivateKey(b"\x01" * 32).public_key.format()


@pytest.mark.parametrize("pairs, match", [
    (((b"\x02" + b"\x02" + b"\x00" * 32, b"\x30"),), "invalid public key"),
    (((b"\x03", b"\x01\x00"),), "PSBT_IN_SIGHASH_TYPE value is 2 bytes"),
    (((b"\x06" + PUB, b"\x00\x00\x00"),), "key origin is 3 bytes"),
    (((b"\x01", TxOut(1, b"\x51").serialize() + b"\x00"),), "PSBT_IN_WITNESS_UTXO: 1 trailing"),
    (((b"\x08", b"\x02\x01\x00"),), "PSBT_IN_FINAL_SCRIPTWITNESS"),
    (((b"\x0b" + b"\x00" * 32, b"preimage"),), "PSBT_IN_SHA256 preimage does not match"),
    (((b"\x0a" + b"\x00" * 19, b"x"),), "PSBT_IN_RIPEMD160 key holds 19 bytes"),
    (((b"\x0e", b"\x00" * 32),), "PSBT_IN_PREVIOUS_TXID is not allowed"),
    (((b"\x13", b"\x00" * 63),), "PSBT_IN_TAP_KEY_SIG value is 63 bytes"),
    (((b"\x00", _one_in_one_out_tx().serialize()),), "does not hash to the outpoint"),
], ids=["bad-point", "sighash-length", "origin-length", "witness-utxo-trailing",
        "final-witness-truncated", "preimage-mismatch", "preimage-key-length", "v2-input-field",
        "taproot-sig-length", "non-witness-utxo-hash"])
def test_input_field_errors(pairs: tuple, match: str) -> None:
    with pytest.raises(InvalidPsbt, match=match):
        parse_psbt(_psbt_bytes(input_pairs=pairs))


def test_sha256_preimage_kept() -> None:
    import hashlib

    key = b"\x0b" + hashlib.sha256(b"secret").digest()
    raw = _psbt_bytes(input_pairs=((key, b"secret"),))
    assert parse_psbt(raw).serialize() == raw


@pytest.mark.parametrize("pairs, match", [
    (((b"\x03", b"\x00" * 8),), "PSBT_OUT_AMOUNT is not allowed"),
    (((b"\x02" + PUB[:-1], b"\x00" * 4),), "PSBT_OUT_BIP32_DERIVATION key has a 32-byte"),
], ids=["v2-output-field", "deriv-key-length"])
def test_output_field_errors(pairs: tuple, match: str) -> None:
    with pytest.raises(InvalidPsbt, match=match):
        parse_psbt(_psbt_bytes(output_pairs=pairs))


def test_unterminated_map_missing_map_and_trailing_bytes() -> None:
    raw = _psbt_bytes(output_pairs=((b"\x00", b"\x51"),))
    parse_psbt(raw)
    with pytest.raises(InvalidPsbt, match="trailing bytes"):
        parse_psbt(raw + b"\x00")
    with pytest.raises(InvalidPsbt, match="output 0: map is not terminated"):
        parse_psbt(raw[:-1])
    with pytest.raises(InvalidPsbt, match="0 output maps"):
        parse_psbt(raw[:-5])


def test_non_canonical_key_length_rejected() -> None:
    tx = _one_in_one_out_tx().serialize()
    raw = b"psbt\xff" + b"\xfd\x01\x00" + b"\x00" + encode_var_bytes(tx) + b"\x00" + b"\x00\x00"
    with pytest.raises(InvalidPsbt, match="non-canonical"):
        parse_psbt(raw)


def test_base64_strict() -> None:
    good = VALID[0]["base64"]
    parse_psbt_base64("  " + good + "\n")
    for bad in (good[:-1], good.replace("A", "*", 1), good + "=", "cHNidP8\u00e9"):
        with pytest.raises(InvalidPsbt):
            parse_psbt_base64(bad)


def test_limits() -> None:
    raw = bytes.fromhex(VALID[3]["hex"])  # 2 inputs, 2 outputs
    parse_psbt(raw, Limits())
    with pytest.raises(InvalidPsbt, match="larger than 100"):
        parse_psbt(raw, Limits(max_psbt_bytes=100))
    with pytest.raises(InvalidPsbt, match="larger than 100"):
        parse_psbt_base64(VALID[3]["base64"], Limits(max_psbt_bytes=100))
    with pytest.raises(InvalidPsbt, match="2 inputs, more than 1"):
        parse_psbt(raw, Limits(max_psbt_inputs=1))
    with pytest.raises(InvalidPsbt, match="2 outputs, more than 1"):
        parse_psbt(raw, Limits(max_psbt_outputs=1))
    with pytest.raises(InvalidPsbt, match="exceeds the limit 100"):
        parse_psbt(raw, max_field_bytes=100)


# -- properties -----------------------------------------------------------------------------

PRIVKEYS = st.integers(min_value=1, max_value=2**200)
pubkeys = PRIVKEYS.map(lambda n: coincurve.PrivateKey(n.to_bytes(32, "big")).public_key.format())
small_bytes = st.binary(max_size=40)
origins = st.builds(KeyOrigin, st.binary(min_size=4, max_size=4),
                    st.lists(st.integers(0, 2**32 - 1), max_size=4).map(tuple))
# types that nothing modelled or validated uses, incl. proprietary and a multi-byte type
unknown_keys = st.tuples(st.sampled_from([b"\x20", b"\x99", b"\xf0", b"\xfc", b"\xfd\x34\x12"]),
                         small_bytes).map(lambda t: t[0] + t[1])
txouts = st.builds(TxOut, st.integers(0, 21_000_000 * 10**8), small_bytes)


@st.composite
def psbts(draw: st.DrawFn) -> Psbt:
    n_in = draw(st.integers(0, 3))
    prev_txs: list[Transaction | None] = []
    txins = []
    for _ in range(n_in):
        if draw(st.booleans()):
            prev = Transaction(draw(st.integers(0, 2**32 - 1)),
                               (TxIn(OutPoint(draw(st.binary(min_size=32, max_size=32)), 0)),),
                               tuple(draw(st.lists(txouts, min_size=1, max_size=2))), 0)
            prev_txs.append(prev)
            txins.append(TxIn(OutPoint(prev.txid(), 0), b"", draw(st.integers(0, 2**32 - 1))))
        else:
            prev_txs.append(None)
            txins.append(TxIn(OutPoint(draw(st.binary(min_size=32, max_size=32)),
                                       draw(st.integers(0, 2**32 - 1)))))
    outs = tuple(draw(st.lists(txouts, max_size=3)))
    tx = Transaction(draw(st.integers(0, 2**32 - 1)), tuple(txins), outs,
                     draw(st.integers(0, 2**32 - 1)))
    opt = lambda s: draw(st.one_of(st.none(), s))  # noqa: E731
    inputs = tuple(PsbtInput(
        non_witness_utxo=prev,
        witness_utxo=opt(txouts),
        partial_sigs=draw(st.dictionaries(pubkeys, small_bytes, max_size=2)),
        sighash_type=opt(st.integers(0, 2**32 - 1)),
        redeem_script=opt(small_bytes),
        witness_script=opt(small_bytes),
        bip32_derivs=draw(st.dictionaries(pubkeys, origins, max_size=2)),
        final_scriptsig=opt(small_bytes),
        final_scriptwitness=opt(st.lists(small_bytes, max_size=3).map(tuple)),
        unknown=draw(st.dictionaries(unknown_keys, small_bytes, max_size=2)),
    ) for prev in prev_txs)
    outputs = tuple(PsbtOutput(
        redeem_script=opt(small_bytes),
        witness_script=opt(small_bytes),
        bip32_derivs=draw(st.dictionaries(pubkeys, origins, max_size=2)),
        unknown=draw(st.dictionaries(unknown_keys, small_bytes, max_size=2)),
    ) for _ in outs)
    return Psbt(tx, inputs, outputs,
                xpubs=draw(st.dictionaries(st.binary(min_size=78, max_size=78), origins,
                                           max_size=2)),
                version=opt(st.just(0)),
                unknown=draw(st.dictionaries(unknown_keys, small_bytes, max_size=2)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(psbts())
def test_parse_serialise_identity(psbt: Psbt) -> None:
    raw = psbt.serialize()
    parsed = parse_psbt(raw)
    assert parsed == psbt
    assert parsed.serialize() == raw
    assert parse_psbt_base64(psbt.to_base64()) == psbt


SEEDS = [bytes.fromhex(v["hex"]) for v in VALID] + [_wf(s) for s in (
    "updater", "signer_1", "combiner", "finalizer")]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.sampled_from([0x00, 0xFD, 0xFE, 0xFF, 0x01, 0x21, 0x41]))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=3))
        elif op == "delete" and data:
            del data[pos]
        elif op == "truncate":
            del data[pos:]
    return bytes(data)


@settings(max_examples=300, deadline=None)
@given(mutated())
def test_mutations_only_raise_invalid_psbt(data: bytes) -> None:
    try:
        psbt = parse_psbt(data)
    except InvalidPsbt as exc:
        assert str(exc)
        return
    again = parse_psbt(psbt.serialize())
    assert again == psbt
    assert again.serialize() == psbt.serialize()


def test_one_key_table_per_map() -> None:
    """GLOBAL_KEYS, INPUT_KEYS and OUTPUT_KEYS are the one list of each map's modelled key
    types: every attribute of the map's class but ``unknown`` (and the global map's input and
    output maps) is in its table, once, in ascending key type (the serialisation order)."""
    import dataclasses

    from signerd.core.bitcoin.psbt import GLOBAL_KEYS, INPUT_KEYS, OUTPUT_KEYS

    for cls, table, skip in ((Psbt, GLOBAL_KEYS, {"inputs", "outputs", "unknown"}),
                             (PsbtInput, INPUT_KEYS, {"unknown"}),
                             (PsbtOutput, OUTPUT_KEYS, {"unknown"})):
        assert sorted(k.attr for k in table) == sorted(
            f.name for f in dataclasses.fields(cls) if f.name not in skip), cls
        assert [k.type for k in table] == sorted({k.type for k in table}), cls
        assert all(k.name.startswith("PSBT_") for k in table), cls
