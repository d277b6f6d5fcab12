"""Wallet-facing PSBT logic: decide what to sign, add signatures, combine, finalize, extract.

Pure: no HSM, no store. The service layer asks :func:`analyze` for the movement and the digests,
has the HSM sign exactly those digests, and feeds the results back through :func:`add_signature`.

What is proven before a digest is produced (each failure raises, naming the input):

* the spent output is known: a non-witness UTXO must hash to the outpoint's txid, and when both
  UTXO forms are present they must agree on amount and script;
* every input signerd signs carries its full previous transaction (non-witness UTXO), segwit v0
  included, else InvalidPsbt. A BIP-143 digest commits to the amount of its own input only, so
  a witness UTXO alone could understate an amount: two transactions signed with each of two
  inputs understated would splice into one whose fee is far above the fee shown
  (CVE-2020-14199). With every amount proven by a txid, the fee shown is the fee paid;
* the input's redeem/witness scripts are consistent with the spent script (BIP-174 signer checks);
* the spent script is exactly the wallet's script (P2WPKH of its key, P2SH-P2WPKH, or P2WSH of
  its ``sortedmulti``), else PolicyDenied;
* the sighash type is in the allowed set (SIGHASH_ALL by default), else PolicyDenied; each
  input's type is part of the movement (``Movement.sighash``), so the approval statement binds
  it and the operator is shown what any type but ALL lets change after signing.

Outputs count as change only when their script is byte-for-byte the wallet's own script; BIP-32
derivation claims in output maps are never trusted on their own, so an output whose script is
not the wallet's is external whatever its map says.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import NamedTuple

import coincurve

from signerd.core.bitcoin.address import script_to_address
from signerd.core.bitcoin.descriptor import Descriptor, make_descriptor, parse_descriptor
from signerd.core.bitcoin.psbt import Psbt, PsbtInput
from signerd.core.bitcoin.script import (
    ScriptKind,
    classify,
    hash160,
    p2sh_p2wpkh_scripts,
    p2wpkh_script,
    p2wpkh_script_code,
    p2wsh_script,
    push_data,
    sort_pubkeys,
    sortedmulti_script,
    validate_compressed_pubkey,
    witness_program,
)
from signerd.core.bitcoin.sighash import (
    SIGHASH_ALL,
    SegwitV0Cache,
    bip143_sighash,
    sighash_label,
    sighash_name,
)
from signerd.core.bitcoin.tx import MAX_MONEY, Transaction, TxIn, TxOut, check_amounts, sha256
from signerd.core.errors import (
    FailedPrecondition,
    InvalidArgument,
    InvalidKey,
    InvalidPsbt,
    InvalidTransaction,
    PolicyDenied,
)
from signerd.core.model import (
    BitcoinNetwork,
    Chain,
    DestinationClass,
    Movement,
    Output,
    ScriptType,
)

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
SECP256K1_HALF_N = SECP256K1_N // 2
# Largest low-S DER signature (71 bytes) plus the sighash byte, for size estimates.
_DUMMY_SIG = b"\x30" + bytes(71)

BITCOIN_SCRIPT_TYPES = (ScriptType.P2WPKH, ScriptType.P2SH_P2WPKH, ScriptType.P2WSH_SORTEDMULTI)


# -- DER signatures ---------------------------------------------------------------------------

def der_encode(r: int, s: int) -> bytes:
    """Strict DER of ``(r, s)`` with s normalised to the low half (BIP-62/BIP-146 low-S)."""
    if not (1 <= r < SECP256K1_N and 1 <= s < SECP256K1_N):
        raise InvalidArgument("ECDSA signature component out of range")
    if s > SECP256K1_HALF_N:
        s = SECP256K1_N - s

    def integer(x: int) -> bytes:
        b = x.to_bytes((x.bit_length() + 7) // 8, "big")
        if b[0] & 0x80:
            b = b"\x00" + b
        return b"\x02" + bytes((len(b),)) + b

    body = integer(r) + integer(s)
    return b"\x30" + bytes((len(body),)) + body


def der_decode(der: bytes) -> tuple[int, int]:
    """``(r, s)`` of a strictly DER-encoded signature (BIP-66 rules), else ValueError."""
    n = len(der)
    if n < 8 or n > 72:
        raise ValueError(f"DER signature is {n} bytes, expected 8..72")
    if der[0] != 0x30 or der[1] != n - 2:
        raise ValueError("DER signature has a bad sequence header")
    len_r = der[3]
    if der[2] != 0x02 or len_r == 0 or 5 + len_r >= n:
        raise ValueError("DER signature has a bad R element")
    len_s = der[5 + len_r]
    if der[4 + len_r] != 0x02 or len_s == 0 or len_r + len_s + 6 != n:
        raise ValueError("DER signature has a bad S element")
    r_bytes = der[4:4 + len_r]
    s_bytes = der[6 + len_r:6 + len_r + len_s]
    for name, b in (("R", r_bytes), ("S", s_bytes)):
        if b[0] & 0x80:
            raise ValueError(f"DER signature {name} is negative")
        if len(b) > 1 and b[0] == 0 and not b[1] & 0x80:
            raise ValueError(f"DER signature {name} has excess padding")
    r, s = int.from_bytes(r_bytes, "big"), int.from_bytes(s_bytes, "big")
    if not (1 <= r < SECP256K1_N and 1 <= s < SECP256K1_N):
        raise ValueError("DER signature component out of range")
    return r, s


def check_signature(pubkey: bytes, sig_with_hashtype: bytes, digest: bytes,
                    sighash_type: int) -> str | None:
    """None if the signature is strict DER, low-S, has the expected sighash byte and verifies;
    otherwise the reason it does not."""
    if len(sig_with_hashtype) < 9:
        return "signature is too short"
    der, hashtype = sig_with_hashtype[:-1], sig_with_hashtype[-1]
    if hashtype != sighash_type & 0xFF:
        return (f"signature has sighash byte {hashtype:#04x}, expected "
                f"{sighash_type & 0xFF:#04x}")
    try:
        _, s = der_decode(der)
    except ValueError as exc:
        return str(exc)
    if s > SECP256K1_HALF_N:
        return "signature is not low-S"
    try:
        ok = coincurve.PublicKey(pubkey).verify(der, digest, hasher=None)
    except ValueError:
        ok = False
    return None if ok else "signature does not verify against the transaction digest"


# -- the wallet -------------------------------------------------------------------------------

@dataclass(frozen=True)
class WalletSpec:
    """What signerd knows about a Bitcoin wallet: its script and keys.

    ``pubkeys`` are all n compressed keys in any order; ``own_pubkeys`` are those held by this
    signerd's HSM. Single-key types take exactly one key and threshold 1.
    """

    script_type: ScriptType
    network: BitcoinNetwork
    threshold: int
    pubkeys: tuple[bytes, ...]
    own_pubkeys: tuple[bytes, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "network", BitcoinNetwork(self.network))
        object.__setattr__(self, "pubkeys", tuple(bytes(k) for k in self.pubkeys))
        object.__setattr__(self, "own_pubkeys", tuple(bytes(k) for k in self.own_pubkeys))
        if self.script_type not in BITCOIN_SCRIPT_TYPES:
            raise InvalidArgument(f"script type {self.script_type} is not a bitcoin wallet type")
        for i, key in enumerate(self.pubkeys):
            validate_compressed_pubkey(key, f"wallet key {i}")
        if len(set(self.pubkeys)) != len(self.pubkeys):
            raise InvalidKey("wallet keys must be distinct")
        if self.script_type is ScriptType.P2WSH_SORTEDMULTI:
            sortedmulti_script(self.threshold, self.pubkeys)  # checks 1 <= m <= n <= 16
        elif len(self.pubkeys) != 1 or self.threshold != 1:
            raise InvalidArgument(f"{self.script_type.value} wallet takes exactly one key and "
                                  "threshold 1")
        missing = [k.hex() for k in self.own_pubkeys if k not in self.pubkeys]
        if missing:
            raise InvalidKey(f"own keys {missing} are not wallet keys")

    @classmethod
    def from_descriptor(cls, descriptor: str | Descriptor, network: BitcoinNetwork | str,
                        own_pubkeys: tuple[bytes, ...] | list[bytes]) -> "WalletSpec":
        desc = parse_descriptor(descriptor) if isinstance(descriptor, str) else descriptor
        desc.check_network(network)
        return cls(desc.script_type, BitcoinNetwork(network), desc.threshold, desc.pubkeys,
                   tuple(own_pubkeys))

    @cached_property
    def sorted_pubkeys(self) -> tuple[bytes, ...]:
        return tuple(sort_pubkeys(self.pubkeys))

    @cached_property
    def script_pubkey(self) -> bytes:
        if self.script_type is ScriptType.P2WPKH:
            return p2wpkh_script(self.pubkeys[0])
        if self.script_type is ScriptType.P2SH_P2WPKH:
            return p2sh_p2wpkh_scripts(self.pubkeys[0])[0]
        assert self.witness_script is not None
        return p2wsh_script(self.witness_script)

    @cached_property
    def redeem_script(self) -> bytes | None:
        """The P2SH redeem script (P2SH-P2WPKH only)."""
        if self.script_type is ScriptType.P2SH_P2WPKH:
            return p2sh_p2wpkh_scripts(self.pubkeys[0])[1]
        return None

    @cached_property
    def witness_script(self) -> bytes | None:
        """The P2WSH witness script (multisig only)."""
        if self.script_type is ScriptType.P2WSH_SORTEDMULTI:
            return sortedmulti_script(self.threshold, self.pubkeys)
        return None

    @cached_property
    def script_code(self) -> bytes:
        """The BIP-143 scriptCode signed for this wallet's inputs."""
        if self.script_type is ScriptType.P2WSH_SORTEDMULTI:
            assert self.witness_script is not None
            return self.witness_script
        return p2wpkh_script_code(hash160(self.pubkeys[0]))

    @cached_property
    def address(self) -> str:
        return script_to_address(self.script_pubkey, self.network)

    def descriptor(self) -> str:
        return make_descriptor(self.script_type, self.threshold, self.pubkeys)


class SigningRequest(NamedTuple):
    input_index: int
    pubkey: bytes
    digest: bytes


@dataclass(frozen=True)
class Analysis:
    """The decoded movement and exactly the digests signerd will have the HSM sign."""

    movement: Movement
    to_sign: list[SigningRequest]
    fee: int
    vsize: int
    fee_rate: float  # sat/vB of the estimated signed size
    input_amounts: tuple[int, ...] = field(default=())


@dataclass(frozen=True)
class _InputContext:
    amount: int
    sighash_type: int
    digest: bytes


# -- input checks -----------------------------------------------------------------------------

def _spent_output(psbt: Psbt, i: int) -> TxOut:
    """The output input ``i`` spends, proven as far as the PSBT allows."""
    inp = psbt.inputs[i]
    prevout = psbt.tx.inputs[i].prevout
    nw_out = None
    if inp.non_witness_utxo is not None:
        prev = inp.non_witness_utxo
        if prev.txid() != prevout.txid:
            raise InvalidPsbt(f"input {i}: non-witness UTXO does not hash to the outpoint's txid "
                              f"{prevout.txid_hex}")
        if prevout.vout >= len(prev.outputs):
            raise InvalidPsbt(f"input {i}: outpoint index {prevout.vout} is beyond the "
                              f"{len(prev.outputs)} outputs of the non-witness UTXO")
        nw_out = prev.outputs[prevout.vout]
    w_out = inp.witness_utxo
    if nw_out is not None and w_out is not None and nw_out != w_out:
        raise InvalidPsbt(f"input {i}: witness UTXO (amount {w_out.value}) disagrees with the "
                          f"non-witness UTXO (amount {nw_out.value}) or its script")
    spent = nw_out if nw_out is not None else w_out
    if spent is None:
        raise InvalidPsbt(f"input {i} has no UTXO (neither witness nor non-witness UTXO)")
    if not 0 <= spent.value <= MAX_MONEY:
        raise InvalidTransaction(f"input {i}: spent amount {spent.value} is out of range")
    return spent


def _check_scripts_consistent(i: int, inp: PsbtInput, spent_script: bytes) -> None:
    """BIP-174 signer checks, independent of any wallet."""
    kind, payload = classify(spent_script)
    effective = spent_script
    if inp.redeem_script is not None:
        if kind is not ScriptKind.P2SH or hash160(inp.redeem_script) != payload:
            raise InvalidPsbt(f"input {i}: redeem script does not match the spent scriptPubKey")
        effective = inp.redeem_script
    if inp.witness_script is not None:
        wp = witness_program(effective)
        if wp is None or wp[0] != 0 or wp[1] != sha256(inp.witness_script):
            raise InvalidPsbt(f"input {i}: witness script does not match the "
                              + ("redeem script" if inp.redeem_script is not None
                                 else "spent scriptPubKey"))
    if inp.witness_utxo is not None and inp.non_witness_utxo is None:
        is_p2sh_unknown = kind is ScriptKind.P2SH and inp.redeem_script is None
        if witness_program(effective) is None and not is_p2sh_unknown:
            raise InvalidPsbt(f"input {i}: a witness UTXO is given for a non-witness input")


def _proven_spent_outputs(psbt: Psbt) -> list[TxOut]:
    """Every input's spent output, each proven and consistent with its map (wallet-independent
    checks first, so a malformed input is reported as such wherever it is)."""
    spent = []
    for i, inp in enumerate(psbt.inputs):
        out = _spent_output(psbt, i)
        _check_scripts_consistent(i, inp, out.script_pubkey)
        spent.append(out)
    return spent


def _input_context(psbt: Psbt, i: int, spec: WalletSpec, cache: SegwitV0Cache,
                   spent: TxOut | None = None) -> _InputContext:
    """Prove input ``i`` is the wallet's, with its amount proven by its full previous
    transaction, and compute its BIP-143 digest."""
    inp = psbt.inputs[i]
    if spent is None:
        spent = _spent_output(psbt, i)
        _check_scripts_consistent(i, inp, spent.script_pubkey)
    if spent.script_pubkey != spec.script_pubkey:
        raise PolicyDenied(f"input {i} does not belong to wallet: it spends script "
                           f"{spent.script_pubkey.hex()}, the wallet's is "
                           f"{spec.script_pubkey.hex()}")
    if inp.redeem_script is not None and inp.redeem_script != spec.redeem_script:
        raise InvalidPsbt(f"input {i}: redeem script is not the wallet's")
    if inp.witness_script is not None and inp.witness_script != spec.witness_script:
        raise InvalidPsbt(f"input {i}: witness script is not the wallet's")
    if inp.non_witness_utxo is None:
        raise InvalidPsbt(f"input {i}: the full previous transaction (non_witness_utxo) is "
                          "required for every input signerd signs, so the fee shown is the fee "
                          "paid")
    sighash_type = SIGHASH_ALL if inp.sighash_type is None else inp.sighash_type
    digest = bip143_sighash(psbt.tx, i, spec.script_code, spent.value, sighash_type, cache)
    return _InputContext(spent.value, sighash_type, digest)


def _check_transaction(tx: Transaction) -> None:
    if not tx.inputs:
        raise InvalidTransaction("transaction has no inputs")
    if not tx.outputs:
        raise InvalidTransaction("transaction has no outputs")
    check_amounts(tx)
    seen = set()
    for i, txin in enumerate(tx.inputs):
        key = (txin.prevout.txid, txin.prevout.vout)
        if key in seen:
            raise InvalidTransaction(f"input {i} spends outpoint {txin.prevout} twice")
        seen.add(key)


# -- analysis ---------------------------------------------------------------------------------

def _final_fields(spec: WalletSpec, sigs: list[bytes], pubkey: bytes | None
                  ) -> tuple[bytes | None, tuple[bytes, ...]]:
    """``(final scriptSig or None, final witness)`` for the wallet's script type."""
    if spec.script_type is ScriptType.P2WPKH:
        assert pubkey is not None
        return None, (sigs[0], pubkey)
    if spec.script_type is ScriptType.P2SH_P2WPKH:
        assert pubkey is not None and spec.redeem_script is not None
        return push_data(spec.redeem_script), (sigs[0], pubkey)
    assert spec.witness_script is not None
    return None, (b"", *sigs, spec.witness_script)


def estimate_vsize(psbt: Psbt, spec: WalletSpec) -> int:
    """Virtual size of the transaction once signed (72-byte signatures assumed; already
    finalized inputs counted as they are)."""
    dummy = [_DUMMY_SIG] * spec.threshold
    script_sig, witness = _final_fields(spec, dummy, spec.pubkeys[0])
    inputs = []
    for txin, inp in zip(psbt.tx.inputs, psbt.inputs):
        if inp.is_finalized:
            inputs.append(TxIn(txin.prevout, inp.final_scriptsig or b"", txin.sequence,
                               inp.final_scriptwitness or ()))
        else:
            inputs.append(TxIn(txin.prevout, script_sig or b"", txin.sequence, witness))
    return replace(psbt.tx, inputs=tuple(inputs)).vsize()


def analyze(psbt: Psbt, spec: WalletSpec, *,
            allowed_sighash: frozenset[int] = frozenset({SIGHASH_ALL})) -> Analysis:
    """Decode what ``psbt`` moves and list every (input, own key, digest) to sign.

    Every input must be the wallet's, carry its full previous transaction (whose txid proves the
    amount) and an allowed sighash type, and not be finalized yet; anything else is refused.
    Digests are ordered by input index, then by own key in BIP-67 order.
    """
    tx = psbt.tx
    _check_transaction(tx)
    cache = SegwitV0Cache(tx)
    own_keys = sort_pubkeys(spec.own_pubkeys)
    to_sign: list[SigningRequest] = []
    amounts: list[int] = []
    sighash_types: list[int] = []
    spent = _proven_spent_outputs(psbt)
    for i, inp in enumerate(psbt.inputs):
        if inp.is_finalized:
            raise FailedPrecondition(f"input {i} is already finalized")
        requested = SIGHASH_ALL if inp.sighash_type is None else inp.sighash_type
        if requested not in allowed_sighash:
            raise PolicyDenied(f"input {i} requests {sighash_name(requested)}, which is not allowed")
        ctx = _input_context(psbt, i, spec, cache, spent[i])
        amounts.append(ctx.amount)
        sighash_types.append(ctx.sighash_type)
        to_sign.extend(SigningRequest(i, key, ctx.digest) for key in own_keys)

    total_in = sum(amounts)
    if total_in > MAX_MONEY:
        raise InvalidTransaction("sum of input amounts is out of range")
    total_out = sum(o.value for o in tx.outputs)
    fee = total_in - total_out
    if fee < 0:
        raise InvalidTransaction(f"outputs ({total_out} sat) exceed inputs ({total_in} sat): "
                                 "negative fee")
    vsize = estimate_vsize(psbt, spec)
    fee_rate = fee / vsize

    outputs = []
    for out in tx.outputs:
        change = out.script_pubkey == spec.script_pubkey
        outputs.append(Output(
            address=script_to_address(out.script_pubkey, spec.network),
            amount=out.value,
            asset="BTC",
            is_change=change,
            destination_class=DestinationClass.OWN_WALLET if change else DestinationClass.EXTERNAL,
        ))
    movement = Movement(
        chain=Chain.BITCOIN,
        network=spec.network.value,
        chain_id=0,
        outputs=tuple(outputs),
        fee=fee,
        fee_asset="BTC",
        digests=tuple(r.digest for r in to_sign),
        vsize=vsize,
        outpoints=tuple(str(txin.prevout) for txin in tx.inputs),
        sighash=tuple(sighash_label(t) for t in sighash_types),
        details={"txid": tx.txid_hex, "fee_rate_sat_vb": f"{fee_rate:.3f}"},
    )
    return Analysis(movement, to_sign, fee, vsize, fee_rate, tuple(amounts))


# -- signatures -------------------------------------------------------------------------------

def _signature_problem(inp: PsbtInput, pubkey: bytes, sig: bytes,
                       digest: bytes | None) -> str | None:
    sighash_type = SIGHASH_ALL if inp.sighash_type is None else inp.sighash_type
    if digest is not None:
        return check_signature(pubkey, sig, digest, sighash_type)
    if len(sig) < 9 or sig[-1] != sighash_type & 0xFF:
        return "signature lacks the input's sighash byte"
    try:
        _, s = der_decode(sig[:-1])
    except ValueError as exc:
        return str(exc)
    return "signature is not low-S" if s > SECP256K1_HALF_N else None


def add_signature(psbt: Psbt, input_index: int, pubkey: bytes, der_sig_with_hashtype: bytes,
                  *, digest: bytes | None = None) -> Psbt:
    """A copy of ``psbt`` with the partial signature of ``pubkey`` on input ``input_index``.

    The signature must be strict DER, low-S, and carry the input's sighash byte; when ``digest``
    is given it must also verify against it.
    """
    return add_signatures(psbt, [(input_index, pubkey, der_sig_with_hashtype, digest)])


def add_signatures(psbt: Psbt,
                   items: Iterable[tuple[int, bytes, bytes, bytes | None]]) -> Psbt:
    """A copy of ``psbt`` with every ``(input_index, pubkey, der_sig_with_hashtype, digest)``
    added as a partial signature, each checked as :func:`add_signature` checks one; the inputs
    are copied once, so adding n signatures costs O(n)."""
    inputs = list(psbt.inputs)
    sigs_by_input: dict[int, dict[bytes, bytes]] = {}
    for input_index, pubkey, sig, digest in items:
        if not 0 <= input_index < len(inputs):
            raise InvalidArgument(f"input index {input_index} is out of range")
        validate_compressed_pubkey(pubkey)
        problem = _signature_problem(inputs[input_index], pubkey, sig, digest)
        if problem is not None:
            raise InvalidArgument(f"input {input_index}, key {pubkey.hex()}: {problem}")
        sigs = sigs_by_input.get(input_index)
        if sigs is None:
            sigs = sigs_by_input[input_index] = dict(inputs[input_index].partial_sigs)
        sigs[pubkey] = sig
    if not sigs_by_input:
        return psbt
    for i, sigs in sigs_by_input.items():
        inputs[i] = replace(inputs[i], partial_sigs=sigs)
    return replace(psbt, inputs=tuple(inputs))


def combine_verified(ours: Psbt, theirs: Psbt, spec: WalletSpec) -> Psbt:
    """Take the new partial signatures from a PSBT that came back from a cosigner.

    The unsigned transaction must be identical; each new signature must come from a wallet key,
    be strict DER and low-S with the input's sighash byte, and verify against the digest that
    signerd recomputes from its own copy. Only partial signatures are taken from ``theirs``.
    """
    if theirs.tx.serialize() != ours.tx.serialize():
        raise InvalidPsbt("the returned PSBT's unsigned transaction differs from ours")
    cache = SegwitV0Cache(ours.tx)
    result = ours
    for i, (mine, other) in enumerate(zip(ours.inputs, theirs.inputs)):
        if mine.is_finalized:
            continue
        if other.is_finalized:
            raise InvalidPsbt(f"input {i} is finalized in the returned PSBT; partial signatures "
                              "are expected")
        new = {pk: sig for pk, sig in other.partial_sigs.items() if pk not in mine.partial_sigs}
        if not new:
            continue
        if other.sighash_type != mine.sighash_type:
            raise InvalidPsbt(f"input {i}: the returned PSBT changes the sighash type")
        ctx = _input_context(ours, i, spec, cache)
        for pk, sig in new.items():
            if pk not in spec.pubkeys:
                raise InvalidPsbt(f"input {i}: signature from key {pk.hex()}, which is not a key "
                                  "of this wallet")
            problem = check_signature(pk, sig, ctx.digest, ctx.sighash_type)
            if problem is not None:
                raise InvalidPsbt(f"input {i}, key {pk.hex()}: {problem}")
        merged = dict(mine.partial_sigs)
        merged.update(new)
        result = result.with_input(i, replace(mine, partial_sigs=merged))
    return result


# -- finalize and extract ---------------------------------------------------------------------

def finalize(psbt: Psbt, spec: WalletSpec) -> tuple[Psbt, bytes | None]:
    """Finalize every input once it holds at least m valid signatures, and extract the network
    transaction. Returns ``(psbt, None)`` unchanged while any input lacks its quorum.

    Signatures are verified here again; invalid ones are not counted. As the BIP-174 finalizer,
    it keeps only the UTXO, the final scriptSig/witness and unknown fields of each input.
    """
    _check_transaction(psbt.tx)
    cache = SegwitV0Cache(psbt.tx)
    finalized = []
    for i, inp in enumerate(psbt.inputs):
        if inp.is_finalized:
            spent = _spent_output(psbt, i)
            if spent.script_pubkey != spec.script_pubkey:
                raise PolicyDenied(f"input {i} does not belong to wallet: it spends script "
                                   f"{spent.script_pubkey.hex()}, the wallet's is "
                                   f"{spec.script_pubkey.hex()}")
            finalized.append(inp)
            continue
        ctx = _input_context(psbt, i, spec, cache)
        valid = []
        for pk in spec.sorted_pubkeys:
            sig = inp.partial_sigs.get(pk)
            if sig is not None and check_signature(pk, sig, ctx.digest, ctx.sighash_type) is None:
                valid.append(sig)
        if len(valid) < spec.threshold:
            return psbt, None
        script_sig, witness = _final_fields(spec, valid[:spec.threshold], spec.pubkeys[0])
        finalized.append(PsbtInput(non_witness_utxo=inp.non_witness_utxo,
                                   witness_utxo=inp.witness_utxo,
                                   final_scriptsig=script_sig,
                                   final_scriptwitness=witness,
                                   unknown=dict(inp.unknown)))
    done = replace(psbt, inputs=tuple(finalized))
    return done, extract(done).serialize()


def extract(psbt: Psbt) -> Transaction:
    """The network transaction of a fully finalized PSBT (BIP-174 transaction extractor)."""
    inputs = []
    for i, (txin, inp) in enumerate(zip(psbt.tx.inputs, psbt.inputs)):
        if not inp.is_finalized:
            raise FailedPrecondition(f"input {i} is not finalized")
        inputs.append(TxIn(txin.prevout, inp.final_scriptsig or b"", txin.sequence,
                           inp.final_scriptwitness or ()))
    return replace(psbt.tx, inputs=tuple(inputs))
