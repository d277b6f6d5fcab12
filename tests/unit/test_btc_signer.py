"""The wallet-facing signer: analysis, signatures, combining, finalizing.

Signatures are made here in software with coincurve over the digests signerd computes (tests
only), and every finalized transaction is checked by python-bitcointx's script interpreter.
"""
from __future__ import annotations

import re
import time
from dataclasses import replace

import coincurve
import pytest
from bitcointx.core import CTransaction
from bitcointx.core.script import SIGHASH_ALL as BTX_SIGHASH_ALL
from bitcointx.core.script import (
    SIGVERSION_WITNESS_V0,
    CScript,
    CScriptWitness,
    SignatureHash,
)
from bitcointx.core.scripteval import (
    SCRIPT_VERIFY_CLEANSTACK,
    SCRIPT_VERIFY_DERSIG,
    SCRIPT_VERIFY_LOW_S,
    SCRIPT_VERIFY_NULLDUMMY,
    SCRIPT_VERIFY_NULLFAIL,
    SCRIPT_VERIFY_P2SH,
    SCRIPT_VERIFY_STRICTENC,
    SCRIPT_VERIFY_WITNESS,
    SCRIPT_VERIFY_WITNESS_PUBKEYTYPE,
    VerifyScript,
)

from _vectors import case_id, load
from signerd.core.bitcoin.psbt import KeyOrigin, Psbt, PsbtInput, PsbtOutput, parse_psbt
from signerd.core.bitcoin.script import p2wpkh_script, p2wsh_script, sortedmulti_script
from signerd.core.bitcoin.sighash import SIGHASH_ALL
from signerd.core.bitcoin.signer import (
    SECP256K1_N,
    WalletSpec,
    add_signature,
    add_signatures,
    analyze,
    combine_verified,
    der_decode,
    der_encode,
    estimate_vsize,
    extract,
    finalize,
)
from signerd.core.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
from signerd.core.errors import (
    FailedPrecondition,
    InvalidArgument,
    InvalidKey,
    InvalidPsbt,
    InvalidTransaction,
    PolicyDenied,
)
from signerd.core.model import BitcoinNetwork, Chain, DestinationClass, ScriptType

FLAGS = {SCRIPT_VERIFY_P2SH, SCRIPT_VERIFY_WITNESS, SCRIPT_VERIFY_DERSIG, SCRIPT_VERIFY_LOW_S,
         SCRIPT_VERIFY_NULLDUMMY, SCRIPT_VERIFY_NULLFAIL, SCRIPT_VERIFY_STRICTENC,
         SCRIPT_VERIFY_WITNESS_PUBKEYTYPE, SCRIPT_VERIFY_CLEANSTACK}

PRIVS = [coincurve.PrivateKey(bytes([i]) * 32) for i in range(1, 8)]
PUBS = [p.public_key.format() for p in PRIVS]
BY_PUB = dict(zip(PUBS, PRIVS))
EXTERNAL_SPK = p2wpkh_script(PUBS[6])


def spec_for(script_type: ScriptType, *, network: str = "regtest") -> WalletSpec:
    if script_type is ScriptType.P2WSH_SORTEDMULTI:
        return WalletSpec(script_type, BitcoinNetwork(network), 2, (PUBS[2], PUBS[0], PUBS[1]),
                          (PUBS[0],))
    return WalletSpec(script_type, BitcoinNetwork(network), 1, (PUBS[0],), (PUBS[0],))


OTHER_WALLET = WalletSpec(ScriptType.P2WPKH, BitcoinNetwork.REGTEST, 1, (PUBS[5],), (PUBS[5],))


def funding_tx(spk: bytes, amounts: list[int], salt: int = 0) -> Transaction:
    return Transaction(2, (TxIn(OutPoint(salt.to_bytes(32, "big"), 0), b"\x51"),),
                       tuple(TxOut(a, spk) for a in amounts), 0)


def make_psbt(spec: WalletSpec, amounts: list[int], outputs: list[tuple[bytes, int]], *,
              utxo: str = "both", sighash: int | None = None,
              foreign_input: bool = False, one_funding_each: bool = False) -> Psbt:
    """Inputs spending outputs of one funding transaction (or, ``one_funding_each``, one funding
    transaction per input), carrying it in full and its witness UTXO by default (``utxo``)."""
    if one_funding_each:
        prevs = [funding_tx(spec.script_pubkey, [a], salt=100 + n) for n, a in enumerate(amounts)]
        txins = [TxIn(OutPoint(p.txid(), 0), b"", 0xFFFFFFFD) for p in prevs]
    else:
        prev = funding_tx(spec.script_pubkey, amounts)
        txins = [TxIn(OutPoint(prev.txid(), i), b"", 0xFFFFFFFD) for i in range(len(amounts))]
        prevs = [prev] * len(amounts)
    ours = set(prevs)
    if foreign_input:
        other = funding_tx(OTHER_WALLET.script_pubkey, [50_000], salt=1)
        txins.append(TxIn(OutPoint(other.txid(), 0), b"", 0xFFFFFFFD))
        prevs.append(other)
    tx = Transaction(2, tuple(txins), tuple(TxOut(v, s) for s, v in outputs), 0)
    inputs = []
    for txin, p in zip(txins, prevs):
        out = p.outputs[txin.prevout.vout]
        mine = p in ours
        inputs.append(PsbtInput(
            non_witness_utxo=p if utxo in ("non_witness", "both") else None,
            witness_utxo=out if utxo in ("witness", "both") else None,
            sighash_type=sighash,
            redeem_script=spec.redeem_script if mine else None,
            witness_script=spec.witness_script if mine else None,
            bip32_derivs={k: KeyOrigin(b"\x01\x02\x03\x04", (0x80000054, 0, n))
                          for n, k in enumerate(spec.sorted_pubkeys)} if mine else {},
        ))
    return Psbt(tx, tuple(inputs), tuple(PsbtOutput() for _ in outputs))


def sign(psbt: Psbt, spec: WalletSpec, keys: list[bytes]) -> Psbt:
    """Sign every digest signerd asks for, with the private keys of ``keys`` (software)."""
    analysis = analyze(psbt, replace(spec, own_pubkeys=tuple(keys)))
    for req in analysis.to_sign:
        sig = BY_PUB[req.pubkey].sign(req.digest, hasher=None) + bytes([SIGHASH_ALL])
        psbt = add_signature(psbt, req.input_index, req.pubkey, sig, digest=req.digest)
    return psbt


def verify_with_bitcointx(raw: bytes, spent: list[TxOut]) -> None:
    tx = CTransaction.deserialize(raw)
    for i, out in enumerate(spent):
        witness = tx.wit.vtxinwit[i].scriptWitness if tx.wit.vtxinwit else CScriptWitness([])
        VerifyScript(tx.vin[i].scriptSig, CScript(out.script_pubkey), tx, i, FLAGS,
                     amount=out.value, witness=witness)


ALL_TYPES = [ScriptType.P2WPKH, ScriptType.P2SH_P2WPKH, ScriptType.P2WSH_SORTEDMULTI]


# -- wallet spec -----------------------------------------------------------------------------

def test_wallet_spec_validation() -> None:
    with pytest.raises(InvalidArgument, match="exactly one key"):
        WalletSpec(ScriptType.P2WPKH, BitcoinNetwork.MAINNET, 1, tuple(PUBS[:2]), ())
    with pytest.raises(InvalidKey, match="not wallet keys"):
        WalletSpec(ScriptType.P2WPKH, BitcoinNetwork.MAINNET, 1, (PUBS[0],), (PUBS[1],))
    with pytest.raises(InvalidKey, match="threshold"):
        WalletSpec(ScriptType.P2WSH_SORTEDMULTI, BitcoinNetwork.MAINNET, 4, tuple(PUBS[:3]), ())
    with pytest.raises(InvalidKey, match="distinct"):
        WalletSpec(ScriptType.P2WSH_SORTEDMULTI, BitcoinNetwork.MAINNET, 1, (PUBS[0],) * 2, ())
    with pytest.raises(InvalidKey, match="compressed"):
        WalletSpec(ScriptType.P2WPKH, BitcoinNetwork.MAINNET, 1, (b"\x04" + bytes(64),), ())
    with pytest.raises(InvalidArgument, match="not a bitcoin wallet type"):
        WalletSpec(ScriptType.EOA, BitcoinNetwork.MAINNET, 1, (PUBS[0],), ())


@pytest.mark.parametrize("script_type", ALL_TYPES, ids=lambda t: t.value)
def test_descriptor_round_trip(script_type: ScriptType) -> None:
    spec = spec_for(script_type)
    again = WalletSpec.from_descriptor(spec.descriptor(), spec.network, spec.own_pubkeys)
    assert again.script_pubkey == spec.script_pubkey
    assert set(again.pubkeys) == set(spec.pubkeys)
    assert spec.address.startswith("bcrt1" if script_type is not ScriptType.P2SH_P2WPKH else "2")


# -- end to end --------------------------------------------------------------------------------

@pytest.mark.parametrize("script_type", ALL_TYPES, ids=lambda t: t.value)
@pytest.mark.parametrize("utxo", ["non_witness", "both"])
def test_end_to_end_verified_by_bitcointx(script_type: ScriptType, utxo: str) -> None:
    spec = spec_for(script_type)
    psbt = make_psbt(spec, [60_000, 40_000],
                     [(EXTERNAL_SPK, 70_000), (spec.script_pubkey, 28_000)], utxo=utxo)
    analysis = analyze(psbt, spec)
    mv = analysis.movement
    assert mv.chain is Chain.BITCOIN and mv.network == "regtest" and mv.chain_id == 0
    assert analysis.fee == mv.fee == 2_000
    assert [(o.amount, o.is_change, o.asset) for o in mv.outputs] == [
        (70_000, False, "BTC"), (28_000, True, "BTC")]
    assert mv.outputs[0].destination_class is DestinationClass.EXTERNAL
    assert mv.outputs[1].destination_class is DestinationClass.OWN_WALLET
    assert mv.outputs[1].address == spec.address
    assert mv.external_outputs() == (mv.outputs[0],)
    assert mv.outpoints == tuple(str(i.prevout) for i in psbt.tx.inputs)
    assert mv.sighash == ("ALL", "ALL")  # no PSBT_IN_SIGHASH_TYPE: ALL, as signed
    assert [(r.input_index, r.pubkey) for r in analysis.to_sign] == [(0, PUBS[0]), (1, PUBS[0])]
    assert mv.digests == tuple(r.digest for r in analysis.to_sign)

    # digests agree with python-bitcointx's independent BIP-143 implementation
    ctx = CTransaction.deserialize(psbt.tx.serialize())
    for req in analysis.to_sign:
        expected = SignatureHash(CScript(spec.script_code), ctx, req.input_index, BTX_SIGHASH_ALL,
                                 amount=analysis.input_amounts[req.input_index],
                                 sigversion=SIGVERSION_WITNESS_V0)
        assert expected == req.digest

    ours = sign(psbt, spec, [PUBS[0]])
    if script_type is ScriptType.P2WSH_SORTEDMULTI:
        assert finalize(ours, spec) == (ours, None)  # 1 of 2 signatures
        theirs = sign(psbt, spec, [PUBS[2]])  # a cosigner signs its own copy
        ours = combine_verified(ours, theirs, spec)
        assert set(ours.inputs[0].partial_sigs) == {PUBS[0], PUBS[2]}
    final, raw = finalize(ours, spec)
    assert raw is not None
    assert extract(final).serialize() == raw
    verify_with_bitcointx(raw, [TxOut(v, spec.script_pubkey) for v in (60_000, 40_000)])

    # the finalizer keeps only UTXOs, final scripts and unknown fields
    for inp in final.inputs:
        assert inp.is_finalized and not inp.partial_sigs and not inp.bip32_derivs
        assert inp.redeem_script is None and inp.witness_script is None
    # the size estimate is an upper bound, tight to a few bytes per input
    actual = Transaction.parse(raw).vsize()
    assert actual <= analysis.vsize <= actual + 2 * len(psbt.inputs)
    assert analysis.fee_rate == pytest.approx(2_000 / analysis.vsize)
    # the finalized PSBT round-trips
    assert parse_psbt(final.serialize()) == final


def test_multisig_witness_has_signatures_in_key_order() -> None:
    spec = replace(spec_for(ScriptType.P2WSH_SORTEDMULTI), own_pubkeys=(PUBS[2], PUBS[1]))
    psbt = make_psbt(spec, [10_000], [(EXTERNAL_SPK, 9_000)])
    analysis = analyze(psbt, spec)
    # digests: one per (input, own key), own keys in BIP-67 order
    assert [r.pubkey for r in analysis.to_sign] == sorted([PUBS[1], PUBS[2]])
    signed = sign(psbt, spec, [PUBS[2], PUBS[1]])
    final, raw = finalize(signed, spec)
    assert raw is not None
    witness = final.inputs[0].final_scriptwitness
    assert witness is not None and witness[0] == b"" and witness[-1] == spec.witness_script
    order = sorted([PUBS[1], PUBS[2]])
    assert list(witness[1:3]) == [signed.inputs[0].partial_sigs[k] for k in order]
    verify_with_bitcointx(raw, [TxOut(10_000, spec.script_pubkey)])


def test_finalize_ignores_invalid_signatures() -> None:
    spec = spec_for(ScriptType.P2WPKH)
    psbt = make_psbt(spec, [10_000], [(EXTERNAL_SPK, 9_000)])
    wrong = PRIVS[0].sign(b"\x00" * 32, hasher=None) + b"\x01"
    bogus = psbt.with_input(0, replace(psbt.inputs[0], partial_sigs={PUBS[0]: wrong}))
    assert finalize(bogus, spec) == (bogus, None)


def test_thousand_input_sweep() -> None:
    spec = spec_for(ScriptType.P2WPKH)
    n = 1000
    psbt = make_psbt(spec, [1_000 + i for i in range(n)], [(EXTERNAL_SPK, 1_000 * n)],
                     one_funding_each=True)
    raw = psbt.serialize()
    start = time.perf_counter()
    analysis = analyze(parse_psbt(raw), spec)
    elapsed = time.perf_counter() - start
    assert len(analysis.to_sign) == n and len(set(analysis.movement.digests)) == n
    assert analysis.fee == sum(range(n))
    ctx = CTransaction.deserialize(psbt.tx.serialize())
    for i in (0, 1, 499, 998, 999):
        req = analysis.to_sign[i]
        assert req.input_index == i
        assert req.digest == SignatureHash(CScript(spec.script_code), ctx, i, BTX_SIGHASH_ALL,
                                           amount=1_000 + i, sigversion=SIGVERSION_WITNESS_V0)
    assert elapsed < 20  # generous; linear work is well under a second on a laptop
    assert analysis.vsize == estimate_vsize(psbt, spec)


# -- adversarial -----------------------------------------------------------------------------

def test_lowered_witness_amount_against_non_witness_utxo() -> None:
    spec = spec_for(ScriptType.P2WPKH)
    psbt = make_psbt(spec, [60_000, 40_000], [(EXTERNAL_SPK, 99_000)], utxo="both")
    lowered = replace(psbt.inputs[1], witness_utxo=TxOut(4_000, spec.script_pubkey))
    attacked = psbt.with_input(1, lowered)
    with pytest.raises(InvalidPsbt, match="input 1: witness UTXO .amount 4000. disagrees"):
        analyze(attacked, spec)
    # the attack must not survive serialisation either
    with pytest.raises(InvalidPsbt, match="input 1"):
        analyze(parse_psbt(attacked.serialize()), spec)


@pytest.mark.parametrize("script_type", ALL_TYPES, ids=lambda t: t.value)
def test_witness_utxo_alone_refused(script_type: ScriptType) -> None:
    """The full previous transaction proves every amount a segwit v0 digest commits to; a
    witness UTXO alone could understate one (CVE-2020-14199), so signerd signs no input
    without it, and names the first input that lacks it."""
    spec = spec_for(script_type)
    both = make_psbt(spec, [60_000, 40_000], [(EXTERNAL_SPK, 99_000)])
    only_witness = make_psbt(spec, [60_000, 40_000], [(EXTERNAL_SPK, 99_000)], utxo="witness")
    message = ("the full previous transaction (non_witness_utxo) is required for every input "
               "signerd signs, so the fee shown is the fee paid")
    with pytest.raises(InvalidPsbt, match=rf"^input 0: {re.escape(message)}$"):
        analyze(only_witness, spec)
    second = both.with_input(1, only_witness.inputs[1])
    with pytest.raises(InvalidPsbt, match=r"^input 1: the full previous transaction"):
        analyze(second, spec)
    # the same for the finalizer and for a cosigner's returned PSBT
    signed = sign(both, spec, list(spec.pubkeys[:spec.threshold]))
    stripped = signed.with_input(1, replace(signed.inputs[1], non_witness_utxo=None))
    with pytest.raises(InvalidPsbt, match=r"^input 1: the full previous transaction"):
        finalize(stripped, spec)
    with pytest.raises(InvalidPsbt, match=r"^input 1: the full previous transaction"):
        combine_verified(second, signed, spec)


def test_non_witness_utxo_hash_mismatch() -> None:
    spec = spec_for(ScriptType.P2WPKH)
    psbt = make_psbt(spec, [60_000], [(EXTERNAL_SPK, 59_000)], utxo="non_witness")
    forged = funding_tx(spec.script_pubkey, [6_000_000])  # claims more value, other txid
    attacked = psbt.with_input(0, replace(psbt.inputs[0], non_witness_utxo=forged))
    with pytest.raises(InvalidPsbt, match="input 0: non-witness UTXO does not hash"):
        analyze(attacked, spec)
    with pytest.raises(InvalidPsbt, match="input 0: non-witness UTXO does not hash"):
        parse_psbt(attacked.serialize())


def test_outpoint_index_beyond_non_witness_utxo() -> None:
    spec = spec_for(ScriptType.P2WPKH)
    psbt = make_psbt(spec, [60_000], [(EXTERNAL_SPK, 59_000)], utxo="non_witness")
    txin = replace(psbt.tx.inputs[0], prevout=OutPoint(psbt.tx.inputs[0].prevout.txid, 5))
    attacked = replace(psbt, tx=replace(psbt.tx, inputs=(txin,)))
    with pytest.raises(InvalidPsbt, match="input 0: outpoint index 5 is beyond"):
        analyze(attacked, spec)


def test_change_output_not_the_wallets_is_external() -> None:
    spec = spec_for(ScriptType.P2WSH_SORTEDMULTI)
    # same keys, different threshold: not the wallet's script
    lookalike = sortedmulti_script(1, spec.pubkeys)
    lookalike_spk = p2wsh_script(lookalike)
    psbt = make_psbt(spec, [100_000], [(EXTERNAL_SPK, 50_000), (lookalike_spk, 49_000)])
    # the output map claims wallet keys and the lookalike script; that proves nothing
    claimed = PsbtOutput(witness_script=lookalike,
                         bip32_derivs={k: KeyOrigin(b"\x01\x02\x03\x04", (1,)) for k in spec.pubkeys})
    psbt = replace(psbt, outputs=(psbt.outputs[0], claimed))
    mv = analyze(psbt, spec).movement
    assert [o.is_change for o in mv.outputs] == [False, False]
    assert len(mv.external_outputs()) == 2
    assert all(o.destination_class is DestinationClass.EXTERNAL for o in mv.outputs)


def test_single_key_change_must_be_same_key() -> None:
    spec = spec_for(ScriptType.P2WPKH)
    psbt = make_psbt(spec, [100_000], [(p2wpkh_script(PUBS[1]), 99_000)])
    assert not analyze(psbt, spec).movement.outputs[0].is_change


@pytest.mark.parametrize("sighash, name", [
    (0x02, "SIGHASH_NONE"), (0x03, "SIGHASH_SINGLE"), (0x81, "SIGHASH_ALL|ANYONECANPAY"),
    (0x82, "SIGHASH_NONE|ANYONECANPAY"), (0x83, "SIGHASH_SINGLE|ANYONECANPAY"),
    (0x00, "sighash type 0x0"), (0x101, "sighash type 0x101")])
def test_disallowed_sighash_refused(sighash: int, name: str) -> None:
    spec = spec_for(ScriptType.P2WPKH)
    psbt = make_psbt(spec, [100_000], [(EXTERNAL_SPK, 99_000)], sighash=sighash)
    with pytest.raises(PolicyDenied, match=f"input 0 requests {name.replace('|', '.')}"):
        analyze(psbt, spec)


def test_explicit_sighash_all_and_wider_allowed_set() -> None:
    spec = spec_for(ScriptType.P2WPKH)
    psbt = make_psbt(spec, [100_000], [(EXTERNAL_SPK, 99_000)], sighash=SIGHASH_ALL)
    assert len(analyze(psbt, spec).to_sign) == 1
    anyone = make_psbt(spec, [100_000], [(EXTERNAL_SPK, 99_000)], sighash=0x81)
    analysis = analyze(anyone, spec, allowed_sighash=frozenset({SIGHASH_ALL, 0x81}))
    assert analysis.movement.sighash == ("ALL|ANYONECANPAY",)
    sig = PRIVS[0].sign(analysis.to_sign[0].digest, hasher=None) + b"\x81"
    signed = add_signature(anyone, 0, PUBS[0], sig, digest=analysis.to_sign[0].digest)
    _, raw = finalize(signed, spec)
    assert raw is not None
    verify_with_bitcointx(raw, [TxOut(100_000, spec.script_pubkey)])


def test_input_of_another_wallet_refused() -> None:
    spec = spec_for(ScriptType.P2SH_P2WPKH)
    psbt = make_psbt(spec, [100_000], [(EXTERNAL_SPK, 140_000)], foreign_input=True)
    with pytest.raises(PolicyDenied, match="input 1 does not belong to wallet"):
        analyze(psbt, spec)


def test_input_without_utxo_refused() -> None:
    spec = spec_for(ScriptType.P2WPKH)
    psbt = make_psbt(spec, [100_000], [(EXTERNAL_SPK, 99_000)], utxo="none")
    with pytest.raises(InvalidPsbt, match="input 0 has no UTXO"):
        analyze(psbt, spec)


def test_negative_fee_refused() -> None:
    spec = spec_for(ScriptType.P2WPKH)
    psbt = make_psbt(spec, [100_000], [(EXTERNAL_SPK, 100_001)])
    with pytest.raises(InvalidTransaction, match="negative fee"):
        analyze(psbt, spec)


def test_wrong_scripts_in_input_map_refused() -> None:
    spec = spec_for(ScriptType.P2SH_P2WPKH)
    psbt = make_psbt(spec, [100_000], [(EXTERNAL_SPK, 99_000)])
    other_redeem = p2wpkh_script(PUBS[1])
    bad = psbt.with_input(0, replace(psbt.inputs[0], redeem_script=other_redeem))
    with pytest.raises(InvalidPsbt, match="input 0: redeem script does not match"):
        analyze(bad, spec)
    ms = spec_for(ScriptType.P2WSH_SORTEDMULTI)
    psbt = make_psbt(ms, [100_000], [(EXTERNAL_SPK, 99_000)])
    bad = psbt.with_input(0, replace(psbt.inputs[0], witness_script=sortedmulti_script(1, ms.pubkeys)))
    with pytest.raises(InvalidPsbt, match="input 0: witness script does not match"):
        analyze(bad, ms)


def test_finalized_input_refused_for_signing() -> None:
    spec = spec_for(ScriptType.P2WPKH)
    psbt = make_psbt(spec, [100_000], [(EXTERNAL_SPK, 99_000)])
    final, raw = finalize(sign(psbt, spec, [PUBS[0]]), spec)
    assert raw is not None
    with pytest.raises(FailedPrecondition, match="input 0 is already finalized"):
        analyze(final, spec)
    assert finalize(final, spec) == (final, raw)  # finalizing again is idempotent


def test_transaction_shape_refused() -> None:
    spec = spec_for(ScriptType.P2WPKH)
    psbt = make_psbt(spec, [100_000], [(EXTERNAL_SPK, 99_000)])
    no_outputs = replace(psbt, tx=replace(psbt.tx, outputs=()), outputs=())
    with pytest.raises(InvalidTransaction, match="no outputs"):
        analyze(no_outputs, spec)
    dup = replace(psbt, tx=replace(psbt.tx, inputs=psbt.tx.inputs * 2),
                  inputs=psbt.inputs * 2)
    with pytest.raises(InvalidTransaction, match="twice"):
        analyze(dup, spec)


@pytest.mark.parametrize("vector", load("bip174/fails_signer.json"),
                         ids=lambda v: case_id(v["description"]))
def test_bip174_fails_signer_vectors_refused(vector: dict) -> None:
    psbt = parse_psbt(bytes.fromhex(vector["hex"]))
    for script_type in ALL_TYPES:
        with pytest.raises(InvalidPsbt, match="input [01]: (a witness UTXO|redeem script|witness script)"):
            analyze(psbt, spec_for(script_type))


# -- returned signatures ---------------------------------------------------------------------

@pytest.fixture()
def multisig_pair() -> tuple[WalletSpec, Psbt, Psbt]:
    spec = spec_for(ScriptType.P2WSH_SORTEDMULTI)
    psbt = make_psbt(spec, [60_000, 40_000], [(EXTERNAL_SPK, 99_000)])
    return spec, sign(psbt, spec, [PUBS[0]]), psbt


def _with_sig(psbt: Psbt, i: int, pub: bytes, sig: bytes) -> Psbt:
    sigs = dict(psbt.inputs[i].partial_sigs)
    sigs[pub] = sig
    return psbt.with_input(i, replace(psbt.inputs[i], partial_sigs=sigs))


def test_bogus_returned_signature_refused(multisig_pair: tuple) -> None:
    spec, ours, blank = multisig_pair
    digest = analyze(blank, spec).to_sign[1].digest  # input 1
    good = PRIVS[2].sign(digest, hasher=None)
    r, s = der_decode(good)
    cases = {
        "does not verify": PRIVS[2].sign(b"\x07" * 32, hasher=None) + b"\x01",
        "not low-S": _high_s(r, s) + b"\x01",
        "sighash byte": good + b"\x02",
        "DER signature": b"\x30\x05" + good[2:] + b"\x01",
    }
    for problem, sig in cases.items():
        theirs = _with_sig(blank, 1, PUBS[2], sig)
        with pytest.raises(InvalidPsbt, match=f"input 1, key {PUBS[2].hex()}: .*{problem}"):
            combine_verified(ours, theirs, spec)
    stranger = _with_sig(blank, 1, PUBS[4], PRIVS[4].sign(digest, hasher=None) + b"\x01")
    with pytest.raises(InvalidPsbt, match="input 1: signature from key .* not a key of this wallet"):
        combine_verified(ours, stranger, spec)


def _high_s(r: int, s: int) -> bytes:
    """DER of (r, n - s): the same signature in its high-S form."""
    high = SECP256K1_N - s

    def integer(x: int) -> bytes:
        b = x.to_bytes((x.bit_length() + 7) // 8, "big")
        b = b"\x00" + b if b[0] & 0x80 else b
        return b"\x02" + bytes([len(b)]) + b
    body = integer(r) + integer(high)
    return b"\x30" + bytes([len(body)]) + body


def test_combine_refuses_changed_transaction(multisig_pair: tuple) -> None:
    spec, ours, blank = multisig_pair
    changed = replace(blank, tx=replace(blank.tx, locktime=1))
    with pytest.raises(InvalidPsbt, match="unsigned transaction differs"):
        combine_verified(ours, changed, spec)


def test_combine_refuses_changed_sighash(multisig_pair: tuple) -> None:
    spec, ours, blank = multisig_pair
    theirs = sign(blank, spec, [PUBS[2]])
    theirs = theirs.with_input(0, replace(theirs.inputs[0], sighash_type=0x83))
    with pytest.raises(InvalidPsbt, match="input 0: the returned PSBT changes the sighash type"):
        combine_verified(ours, theirs, spec)


def test_combine_takes_only_signatures(multisig_pair: tuple) -> None:
    spec, ours, blank = multisig_pair
    theirs = sign(blank, spec, [PUBS[2]])
    theirs = theirs.with_input(0, replace(theirs.inputs[0], unknown={b"\xf0": b"x"}))
    merged = combine_verified(ours, theirs, spec)
    assert merged.inputs[0].unknown == {}
    assert combine_verified(merged, theirs, spec) == merged  # nothing new the second time


# -- signatures --------------------------------------------------------------------------------

def test_der_encode_matches_coincurve_and_enforces_low_s() -> None:
    for i in range(50):
        digest = bytes([i]) * 32
        der = PRIVS[i % 5].sign(digest, hasher=None)
        r, s = der_decode(der)
        assert der_encode(r, s) == der
        assert der_encode(r, SECP256K1_N - s) == der  # high-S is normalised
    with pytest.raises(InvalidArgument):
        der_encode(0, 1)
    with pytest.raises(ValueError):
        der_decode(b"\x30\x06\x02\x01\x00\x02\x01\x01")  # R = 0


def test_add_signature_checks() -> None:
    spec = spec_for(ScriptType.P2WPKH)
    psbt = make_psbt(spec, [100_000], [(EXTERNAL_SPK, 99_000)])
    digest = analyze(psbt, spec).to_sign[0].digest
    good = PRIVS[0].sign(digest, hasher=None)
    r, s = der_decode(good)
    with pytest.raises(InvalidArgument, match="sighash byte"):
        add_signature(psbt, 0, PUBS[0], good + b"\x03")
    with pytest.raises(InvalidArgument, match="low-S"):
        add_signature(psbt, 0, PUBS[0], _high_s(r, s) + b"\x01")
    with pytest.raises(InvalidArgument, match="does not verify"):
        add_signature(psbt, 0, PUBS[1], PRIVS[1].sign(b"\x00" * 32, hasher=None) + b"\x01",
                      digest=digest)
    with pytest.raises(InvalidArgument, match="out of range"):
        add_signature(psbt, 1, PUBS[0], good + b"\x01")
    signed = add_signature(psbt, 0, PUBS[0], good + b"\x01", digest=digest)
    assert signed.inputs[0].partial_sigs == {PUBS[0]: good + b"\x01"}
    assert psbt.inputs[0].partial_sigs == {}  # the original is untouched


def test_add_signatures_equals_one_by_one_and_checks_each() -> None:
    spec = spec_for(ScriptType.P2WSH_SORTEDMULTI)
    psbt = make_psbt(spec, [100_000, 50_000, 30_000], [(EXTERNAL_SPK, 170_000)])
    analysis = analyze(psbt, replace(spec, own_pubkeys=tuple(PUBS[:2])))
    items = [(r.input_index, r.pubkey, BY_PUB[r.pubkey].sign(r.digest, hasher=None) + b"\x01",
              r.digest) for r in analysis.to_sign]
    assert len(items) == 6
    one_by_one = psbt
    for i, pub, sig, digest in items:
        one_by_one = add_signature(one_by_one, i, pub, sig, digest=digest)
    assert add_signatures(psbt, items) == one_by_one
    assert add_signatures(psbt, [(i, p, s_, None) for i, p, s_, _ in items]) == one_by_one
    assert add_signatures(psbt, []) is psbt
    bad = list(items)
    bad[4] = (bad[4][0], bad[4][1], bad[4][2], analysis.to_sign[0].digest)  # another input's
    with pytest.raises(InvalidArgument, match="does not verify"):
        add_signatures(psbt, bad)
    assert psbt.inputs[0].partial_sigs == {}  # the original is untouched


def test_add_signatures_copies_the_inputs_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """n signatures, one tuple of inputs built: O(n), not the O(n^2) of n with_input calls."""
    import signerd.core.bitcoin.signer as S

    spec = spec_for(ScriptType.P2WPKH)
    psbt = make_psbt(spec, [10_000 + i for i in range(40)], [(EXTERNAL_SPK, 390_000)])
    analysis = analyze(psbt, spec)
    items = [(r.input_index, r.pubkey, BY_PUB[r.pubkey].sign(r.digest, hasher=None) + b"\x01",
              None) for r in analysis.to_sign]
    psbt_copies = []
    real_replace = S.replace

    def counting_replace(obj, **changes):  # type: ignore[no-untyped-def]
        if isinstance(obj, Psbt):
            psbt_copies.append(len(changes.get("inputs", ())))
        return real_replace(obj, **changes)

    monkeypatch.setattr(S, "replace", counting_replace)
    signed = add_signatures(psbt, items)
    assert psbt_copies == [40]
    assert all(inp.partial_sigs for inp in signed.inputs)
