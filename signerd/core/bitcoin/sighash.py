"""Signature digests: legacy (pre-segwit) and BIP-143 (segwit v0).

Digests are returned as the 32 bytes that ECDSA signs (SHA256d output, not byte-reversed).
"""
from __future__ import annotations

import struct

from signerd.core.bitcoin.script import OP_CODESEPARATOR, parse_ops_until_failure
from signerd.core.bitcoin.tx import Transaction, encode_compact_size, encode_var_bytes, sha256d

SIGHASH_ALL = 0x01
SIGHASH_NONE = 0x02
SIGHASH_SINGLE = 0x03
SIGHASH_ANYONECANPAY = 0x80

# What Bitcoin Core returns for an out-of-range input or SIGHASH_SINGLE without a matching output.
ONE = (1).to_bytes(32, "little")
ZERO32 = bytes(32)


def sighash_name(hash_type: int) -> str:
    """A readable name such as ``SIGHASH_SINGLE|ANYONECANPAY`` (or the number if non-standard)."""
    base = {SIGHASH_ALL: "SIGHASH_ALL", SIGHASH_NONE: "SIGHASH_NONE",
            SIGHASH_SINGLE: "SIGHASH_SINGLE"}.get(hash_type & ~SIGHASH_ANYONECANPAY & 0xFFFFFFFF)
    if base is None:
        return f"sighash type {hash_type:#x}"
    return base + ("|ANYONECANPAY" if hash_type & SIGHASH_ANYONECANPAY else "")


def sighash_label(hash_type: int) -> str:
    """The name a policy gives a sighash type (``ALL``, ``NONE|ANYONECANPAY``, ...), or
    ``0x...`` when it is not one of the six standard types."""
    standard = hash_type & ~SIGHASH_ANYONECANPAY in (SIGHASH_ALL, SIGHASH_NONE, SIGHASH_SINGLE)
    if not standard:
        return f"{hash_type:#x}"
    return sighash_name(hash_type).removeprefix("SIGHASH_")


def script_code_after_codeseparator(script: bytes, executed: int) -> bytes:
    """The scriptCode after the ``executed``-th OP_CODESEPARATOR (1-based); 0 gives all of it.

    BIP-143 signs the witness script from just after the last executed OP_CODESEPARATOR.
    """
    if executed == 0:
        return script
    seen = 0
    ops, _ = parse_ops_until_failure(script)
    for op in ops:
        if op.opcode == OP_CODESEPARATOR:
            seen += 1
            if seen == executed:
                return script[op.end:]
    raise ValueError(f"script has fewer than {executed} OP_CODESEPARATORs")


# -- legacy -----------------------------------------------------------------------------------

def _legacy_script_code(script: bytes) -> bytes:
    """The scriptCode as Core serialises it for legacy digests: every OP_CODESEPARATOR removed.

    Faithful to Core also for a script ending in a truncated push: the length prefix counts the
    whole script while the bytes stop where parsing stopped.
    """
    ops, failed_at = parse_ops_until_failure(script)
    separators = [op for op in ops if op.opcode == OP_CODESEPARATOR]
    parts = [encode_compact_size(len(script) - len(separators))]
    begin = 0
    for op in separators:
        parts.append(script[begin:op.end - 1])
        begin = op.end
    stop = len(script) if failed_at is None else failed_at
    if begin != len(script):
        parts.append(script[begin:stop])
    return b"".join(parts)


def legacy_sighash(tx: Transaction, input_index: int, script_code: bytes, hash_type: int) -> bytes:
    """The pre-segwit signature digest (Bitcoin Core ``SignatureHash`` with SigVersion BASE).

    ``hash_type`` is the full 32-bit value; it is serialised as such into the preimage. Includes
    the SIGHASH_SINGLE bug (digest ONE when no output matches). The caller passes the script from
    the last executed OP_CODESEPARATOR; remaining separators are removed here as Core does.
    FindAndDelete of the signature is not performed: signerd never has signatures in scripts.
    """
    hash_type &= 0xFFFFFFFF
    if input_index >= len(tx.inputs):
        return ONE
    base = hash_type & 0x1F
    single = base == SIGHASH_SINGLE
    none = base == SIGHASH_NONE
    anyone = bool(hash_type & SIGHASH_ANYONECANPAY)
    if single and input_index >= len(tx.outputs):
        return ONE

    parts = [struct.pack("<I", tx.version)]
    indices = [input_index] if anyone else range(len(tx.inputs))
    parts.append(encode_compact_size(len(indices)))
    for i in indices:
        txin = tx.inputs[i]
        parts.append(txin.prevout.serialize())
        if i == input_index:
            parts.append(_legacy_script_code(script_code))
            parts.append(struct.pack("<I", txin.sequence))
        else:
            parts.append(b"\x00")
            parts.append(struct.pack("<I", 0 if (single or none) else txin.sequence))
    n_out = 0 if none else (input_index + 1 if single else len(tx.outputs))
    parts.append(encode_compact_size(n_out))
    for i in range(n_out):
        if single and i != input_index:
            parts.append(b"\xff" * 8 + b"\x00")  # CTxOut(): value -1, empty script
        else:
            parts.append(tx.outputs[i].serialize())
    parts.append(struct.pack("<I", tx.locktime))
    parts.append(struct.pack("<I", hash_type))
    return sha256d(b"".join(parts))


# -- BIP-143 ----------------------------------------------------------------------------------

class SegwitV0Cache:
    """The three per-transaction BIP-143 midstates, each computed once on first use.

    With one cache per transaction, digesting every input costs time linear in the number of
    inputs rather than quadratic.
    """

    __slots__ = ("tx", "_prevouts", "_sequence", "_outputs")

    def __init__(self, tx: Transaction) -> None:
        self.tx = tx
        self._prevouts: bytes | None = None
        self._sequence: bytes | None = None
        self._outputs: bytes | None = None

    @property
    def hash_prevouts(self) -> bytes:
        if self._prevouts is None:
            self._prevouts = sha256d(b"".join(i.prevout.serialize() for i in self.tx.inputs))
        return self._prevouts

    @property
    def hash_sequence(self) -> bytes:
        if self._sequence is None:
            self._sequence = sha256d(b"".join(struct.pack("<I", i.sequence) for i in self.tx.inputs))
        return self._sequence

    @property
    def hash_outputs(self) -> bytes:
        if self._outputs is None:
            self._outputs = sha256d(b"".join(o.serialize() for o in self.tx.outputs))
        return self._outputs


def bip143_preimage(tx: Transaction, input_index: int, script_code: bytes, amount: int,
                    hash_type: int, cache: SegwitV0Cache | None = None) -> bytes:
    """The BIP-143 preimage for ``input_index`` spending ``amount`` sats under ``script_code``."""
    if not 0 <= input_index < len(tx.inputs):
        raise IndexError(f"input index {input_index} out of range")
    if cache is None or cache.tx is not tx:
        cache = SegwitV0Cache(tx)
    hash_type &= 0xFFFFFFFF
    base = hash_type & 0x1F
    anyone = bool(hash_type & SIGHASH_ANYONECANPAY)
    single_or_none = base in (SIGHASH_SINGLE, SIGHASH_NONE)

    hash_prevouts = ZERO32 if anyone else cache.hash_prevouts
    hash_sequence = ZERO32 if (anyone or single_or_none) else cache.hash_sequence
    if not single_or_none:
        hash_outputs = cache.hash_outputs
    elif base == SIGHASH_SINGLE and input_index < len(tx.outputs):
        hash_outputs = sha256d(tx.outputs[input_index].serialize())
    else:
        hash_outputs = ZERO32

    txin = tx.inputs[input_index]
    return b"".join((
        struct.pack("<I", tx.version),
        hash_prevouts,
        hash_sequence,
        txin.prevout.serialize(),
        encode_var_bytes(script_code),
        struct.pack("<q", amount),
        struct.pack("<I", txin.sequence),
        hash_outputs,
        struct.pack("<I", tx.locktime),
        struct.pack("<I", hash_type),
    ))


def bip143_sighash(tx: Transaction, input_index: int, script_code: bytes, amount: int,
                   hash_type: int, cache: SegwitV0Cache | None = None) -> bytes:
    """The BIP-143 (segwit v0) signature digest."""
    return sha256d(bip143_preimage(tx, input_index, script_code, amount, hash_type, cache))
