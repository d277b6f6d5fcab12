"""Script construction and recognition for the script types signerd handles.

Builds the wallet scripts (P2WPKH, P2SH-P2WPKH, P2WSH ``sortedmulti``) and recognises the standard
output templates (P2PKH, P2SH, P2WPKH, P2WSH, P2TR, other witness programs) so outputs can be
shown as addresses.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum
from typing import Iterator, Sequence

import coincurve

from signerd.core.bitcoin.tx import sha256
from signerd.core.errors import InvalidKey

OP_0 = 0x00
OP_PUSHDATA1 = 0x4C
OP_PUSHDATA2 = 0x4D
OP_PUSHDATA4 = 0x4E
OP_1NEGATE = 0x4F
OP_1 = 0x51
OP_16 = 0x60
OP_RETURN = 0x6A
OP_DUP = 0x76
OP_EQUAL = 0x87
OP_EQUALVERIFY = 0x88
OP_HASH160 = 0xA9
OP_CODESEPARATOR = 0xAB
OP_CHECKSIG = 0xAC
OP_CHECKMULTISIG = 0xAE

MAX_MULTISIG_KEYS = 16  # n is encoded as OP_1..OP_16; larger n (up to 20) is not supported


def hash160(data: bytes) -> bytes:
    """RIPEMD-160 of SHA-256 (uses the pure-Python RIPEMD-160 of pycryptodome if OpenSSL lacks it)."""
    inner = hashlib.sha256(data).digest()
    try:
        return hashlib.new("ripemd160", inner).digest()
    except ValueError:  # OpenSSL 3 without the legacy provider
        from Crypto.Hash import RIPEMD160

        return RIPEMD160.new(inner).digest()


def validate_compressed_pubkey(pubkey: bytes, what: str = "public key") -> bytes:
    """Return ``pubkey`` if it is a 33-byte compressed point on secp256k1, else raise InvalidKey."""
    if len(pubkey) != 33 or pubkey[0] not in (2, 3):
        raise InvalidKey(f"{what} must be a 33-byte compressed secp256k1 point")
    try:
        coincurve.PublicKey(pubkey)
    except ValueError:
        raise InvalidKey(f"{what} is not a point on secp256k1") from None
    return pubkey


def is_valid_pubkey(pubkey: bytes) -> bool:
    """True for a valid compressed (33) or uncompressed (65) secp256k1 public key encoding."""
    if not ((len(pubkey) == 33 and pubkey[0] in (2, 3)) or (len(pubkey) == 65 and pubkey[0] == 4)):
        return False
    try:
        coincurve.PublicKey(pubkey)
    except ValueError:
        return False
    return True


def push_data(data: bytes) -> bytes:
    """The minimal push of ``data`` (BIP-62 rules for data; small numbers are not special-cased)."""
    n = len(data)
    if n < OP_PUSHDATA1:
        return bytes((n,)) + data
    if n <= 0xFF:
        return bytes((OP_PUSHDATA1, n)) + data
    if n <= 0xFFFF:
        return bytes((OP_PUSHDATA2,)) + n.to_bytes(2, "little") + data
    return bytes((OP_PUSHDATA4,)) + n.to_bytes(4, "little") + data


def small_int_opcode(n: int) -> int:
    if not 0 <= n <= 16:
        raise ValueError(f"not a small integer: {n}")
    return OP_0 if n == 0 else OP_1 + n - 1


@dataclass(frozen=True)
class ScriptOp:
    """One parsed script element: ``start``..``end`` spans its bytes in the script."""

    opcode: int
    data: bytes | None
    start: int
    end: int


def iter_ops(script: bytes) -> Iterator[ScriptOp]:
    """Parse ``script`` into operations; stops (without raising) at a truncated push.

    The position reached by a failed parse is reported by :func:`parse_ops_until_failure`; this
    mirrors Bitcoin Core's ``GetOp``.
    """
    for op in _ops(script):
        if op is None:
            return
        yield op


def _ops(script: bytes) -> Iterator[ScriptOp | None]:
    pc, end = 0, len(script)
    while pc < end:
        start = pc
        opcode = script[pc]
        pc += 1
        data: bytes | None = None
        if opcode <= OP_PUSHDATA4:
            if opcode < OP_PUSHDATA1:
                size = opcode
            else:
                width = {OP_PUSHDATA1: 1, OP_PUSHDATA2: 2, OP_PUSHDATA4: 4}[opcode]
                if end - pc < width:
                    yield ScriptOp(-1, None, start, pc)
                    yield None
                    return
                size = int.from_bytes(script[pc:pc + width], "little")
                pc += width
            if end - pc < size:
                yield ScriptOp(-1, None, start, pc)
                yield None
                return
            data = script[pc:pc + size]
            pc += size
        yield ScriptOp(opcode, data, start, pc)


def parse_ops_until_failure(script: bytes) -> tuple[list[ScriptOp], int | None]:
    """All well-formed ops, and the offset a truncated push stopped at (None if none)."""
    ops: list[ScriptOp] = []
    for op in _ops(script):
        if op is None:
            break
        if op.opcode == -1:
            return ops, op.end
        ops.append(op)
    return ops, None


# -- construction ---------------------------------------------------------------------------

def p2pkh_script(pubkey_hash: bytes) -> bytes:
    return bytes((OP_DUP, OP_HASH160, 20)) + pubkey_hash + bytes((OP_EQUALVERIFY, OP_CHECKSIG))


def p2wpkh_script(pubkey: bytes) -> bytes:
    """``OP_0 <hash160(pubkey)>`` for a compressed key."""
    validate_compressed_pubkey(pubkey)
    return bytes((OP_0, 20)) + hash160(pubkey)


def p2sh_script_from_hash(script_hash: bytes) -> bytes:
    return bytes((OP_HASH160, 20)) + script_hash + bytes((OP_EQUAL,))


def p2sh_script(redeem_script: bytes) -> bytes:
    return p2sh_script_from_hash(hash160(redeem_script))


def p2wsh_script(witness_script: bytes) -> bytes:
    return bytes((OP_0, 32)) + sha256(witness_script)


def p2sh_p2wpkh_scripts(pubkey: bytes) -> tuple[bytes, bytes]:
    """``(scriptPubKey, redeemScript)`` of a P2SH-wrapped P2WPKH output."""
    redeem = p2wpkh_script(pubkey)
    return p2sh_script(redeem), redeem


def p2wpkh_script_code(pubkey_hash: bytes) -> bytes:
    """The BIP-143 scriptCode of a P2WPKH spend: the P2PKH script of the key hash."""
    return p2pkh_script(pubkey_hash)


def sort_pubkeys(pubkeys: Sequence[bytes]) -> list[bytes]:
    """BIP-67 order: lexicographic on the compressed serialisation."""
    return sorted(pubkeys)


def multisig_script(threshold: int, pubkeys: Sequence[bytes]) -> bytes:
    """``OP_m <k1> ... <kn> OP_n OP_CHECKMULTISIG`` with keys in the order given."""
    n = len(pubkeys)
    if not 1 <= n <= MAX_MULTISIG_KEYS:
        raise InvalidKey(f"multisig needs 1..{MAX_MULTISIG_KEYS} keys, got {n}")
    if not 1 <= threshold <= n:
        raise InvalidKey(f"multisig threshold {threshold} is not in 1..{n}")
    if len(set(pubkeys)) != n:
        raise InvalidKey("multisig keys must be distinct")
    for i, key in enumerate(pubkeys):
        validate_compressed_pubkey(key, f"multisig key {i}")
    body = b"".join(push_data(k) for k in pubkeys)
    return (bytes((small_int_opcode(threshold),)) + body
            + bytes((small_int_opcode(n), OP_CHECKMULTISIG)))


def sortedmulti_script(threshold: int, pubkeys: Sequence[bytes]) -> bytes:
    """The witness script of ``sortedmulti(m, keys)``: a multisig over BIP-67-sorted keys."""
    return multisig_script(threshold, sort_pubkeys(pubkeys))


# -- recognition ----------------------------------------------------------------------------

class ScriptKind(str, Enum):
    P2PKH = "p2pkh"
    P2SH = "p2sh"
    P2WPKH = "p2wpkh"
    P2WSH = "p2wsh"
    P2TR = "p2tr"
    WITNESS_UNKNOWN = "witness_unknown"
    NULL_DATA = "null_data"
    NONSTANDARD = "nonstandard"


def witness_program(script: bytes) -> tuple[int, bytes] | None:
    """``(version, program)`` if ``script`` is a BIP-141 witness program, else None."""
    if not 4 <= len(script) <= 42:
        return None
    first = script[0]
    if first != OP_0 and not OP_1 <= first <= OP_16:
        return None
    if script[1] + 2 != len(script):
        return None
    version = 0 if first == OP_0 else first - OP_1 + 1
    return version, script[2:]


def classify(script: bytes) -> tuple[ScriptKind, bytes]:
    """The template of an output script and its payload (hash or witness program)."""
    if (len(script) == 25 and script[:3] == bytes((OP_DUP, OP_HASH160, 20))
            and script[23:] == bytes((OP_EQUALVERIFY, OP_CHECKSIG))):
        return ScriptKind.P2PKH, script[3:23]
    if len(script) == 23 and script[:2] == bytes((OP_HASH160, 20)) and script[22] == OP_EQUAL:
        return ScriptKind.P2SH, script[2:22]
    wp = witness_program(script)
    if wp is not None:
        version, program = wp
        if version == 0 and len(program) == 20:
            return ScriptKind.P2WPKH, program
        if version == 0 and len(program) == 32:
            return ScriptKind.P2WSH, program
        if version == 1 and len(program) == 32:
            return ScriptKind.P2TR, program
        if version == 0:
            return ScriptKind.NONSTANDARD, b""
        return ScriptKind.WITNESS_UNKNOWN, program
    if script[:1] == bytes((OP_RETURN,)):
        return ScriptKind.NULL_DATA, script[1:]
    return ScriptKind.NONSTANDARD, b""


def parse_multisig(script: bytes) -> tuple[int, tuple[bytes, ...]] | None:
    """``(m, keys)`` if ``script`` is exactly a bare multisig of compressed keys, else None."""
    ops, failed_at = parse_ops_until_failure(script)
    if failed_at is not None or len(ops) < 4 or ops[-1].opcode != OP_CHECKMULTISIG:
        return None
    m_op, n_op = ops[0].opcode, ops[-2].opcode
    if not (OP_1 <= m_op <= OP_16 and OP_1 <= n_op <= OP_16):
        return None
    m, n = m_op - OP_1 + 1, n_op - OP_1 + 1
    keys = ops[1:-2]
    if len(keys) != n or m > n:
        return None
    if any(k.data is None or len(k.data) != 33 or k.opcode != 33 for k in keys):
        return None
    return m, tuple(k.data for k in keys if k.data is not None)
