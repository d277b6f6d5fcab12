"""Strict BIP-174 PSBT (version 0) parser and serialiser.

A parsed :class:`Psbt` is valid by construction: every case BIP-174 calls invalid raises
:class:`~signerd.core.errors.InvalidPsbt` with a message naming the map, the field and the problem.
Unknown and not-modelled keys (proprietary, hash preimages, Taproot fields) are kept verbatim and
written back.

Serialisation order: within each map, entries are written in ascending key type; entries of one
type keep the order they were parsed or added in. Every BIP-174 vector (and what Bitcoin Core
writes, short of unknown types below its known ones) is in this order and re-serialises byte for
byte; a PSBT written in another order comes back with the same entries in this order.
"""
from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass, field, replace
from typing import Iterable, NamedTuple

from signerd.core.bitcoin.script import hash160, is_valid_pubkey
from signerd.core.bitcoin.tx import (
    MAX_SIZE,
    ByteReader,
    Transaction,
    TxOut,
    encode_compact_size,
    encode_var_bytes,
    sha256,
    sha256d,
)
from signerd.core.errors import InvalidPsbt

MAGIC = b"psbt\xff"
HARDENED = 0x80000000

# Global types
GLOBAL_UNSIGNED_TX = 0x00
GLOBAL_XPUB = 0x01
GLOBAL_VERSION = 0xFB
GLOBAL_PROPRIETARY = 0xFC
_GLOBAL_V2_ONLY = {0x02: "PSBT_GLOBAL_TX_VERSION", 0x03: "PSBT_GLOBAL_FALLBACK_LOCKTIME",
                   0x04: "PSBT_GLOBAL_INPUT_COUNT", 0x05: "PSBT_GLOBAL_OUTPUT_COUNT",
                   0x06: "PSBT_GLOBAL_TX_MODIFIABLE"}

# Input types
IN_NON_WITNESS_UTXO = 0x00
IN_WITNESS_UTXO = 0x01
IN_PARTIAL_SIG = 0x02
IN_SIGHASH_TYPE = 0x03
IN_REDEEM_SCRIPT = 0x04
IN_WITNESS_SCRIPT = 0x05
IN_BIP32_DERIVATION = 0x06
IN_FINAL_SCRIPTSIG = 0x07
IN_FINAL_SCRIPTWITNESS = 0x08
_IN_V2_ONLY = {0x0E: "PSBT_IN_PREVIOUS_TXID", 0x0F: "PSBT_IN_OUTPUT_INDEX",
               0x10: "PSBT_IN_SEQUENCE", 0x11: "PSBT_IN_REQUIRED_TIME_LOCKTIME",
               0x12: "PSBT_IN_REQUIRED_HEIGHT_LOCKTIME"}
# Hash preimages: type -> (name, digest length, hash function)
_IN_PREIMAGES = {
    0x0A: ("PSBT_IN_RIPEMD160", 20, None),
    0x0B: ("PSBT_IN_SHA256", 32, sha256),
    0x0C: ("PSBT_IN_HASH160", 20, hash160),
    0x0D: ("PSBT_IN_HASH256", 32, sha256d),
}
# Other known input types kept verbatim: type -> (name, key data length or None, value lengths or None)
_IN_KEPT = {
    0x13: ("PSBT_IN_TAP_KEY_SIG", 0, (64, 65)),
    0x14: ("PSBT_IN_TAP_SCRIPT_SIG", 64, (64, 65)),
    0x16: ("PSBT_IN_TAP_BIP32_DERIVATION", 32, None),
    0x17: ("PSBT_IN_TAP_INTERNAL_KEY", 0, (32,)),
    0x18: ("PSBT_IN_TAP_MERKLE_ROOT", 0, (32,)),
}

# Output types
OUT_REDEEM_SCRIPT = 0x00
OUT_WITNESS_SCRIPT = 0x01
OUT_BIP32_DERIVATION = 0x02
_OUT_V2_ONLY = {0x03: "PSBT_OUT_AMOUNT", 0x04: "PSBT_OUT_SCRIPT"}
_OUT_KEPT = {
    0x05: ("PSBT_OUT_TAP_INTERNAL_KEY", 0, (32,)),
    0x07: ("PSBT_OUT_TAP_BIP32_DERIVATION", 32, None),
}


@dataclass(frozen=True)
class Limits:
    """Bounds applied while parsing, before anything is allocated for a field."""

    max_psbt_bytes: int = 4_000_000
    max_inputs: int = 5_000
    max_outputs: int = 5_000
    max_field_bytes: int = 1_000_000


class KeyOrigin(NamedTuple):
    """A BIP-32 key origin: master key fingerprint and derivation path."""

    fingerprint: bytes
    path: tuple[int, ...]

    def serialize(self) -> bytes:
        return self.fingerprint + b"".join(struct.pack("<I", i) for i in self.path)

    @classmethod
    def parse(cls, value: bytes, where: str) -> "KeyOrigin":
        if len(value) < 4 or len(value) % 4:
            raise InvalidPsbt(f"{where}: key origin is {len(value)} bytes, expected 4 + 4*n")
        path = tuple(struct.unpack(f"<{(len(value) - 4) // 4}I", value[4:]))
        return cls(value[:4], path)

    def path_str(self) -> str:
        return "m" + "".join(
            f"/{i - HARDENED}'" if i >= HARDENED else f"/{i}" for i in self.path)


@dataclass(frozen=True)
class PsbtInput:
    non_witness_utxo: Transaction | None = None
    witness_utxo: TxOut | None = None
    partial_sigs: dict[bytes, bytes] = field(default_factory=dict)
    sighash_type: int | None = None
    redeem_script: bytes | None = None
    witness_script: bytes | None = None
    bip32_derivs: dict[bytes, KeyOrigin] = field(default_factory=dict)
    final_scriptsig: bytes | None = None
    final_scriptwitness: tuple[bytes, ...] | None = None
    unknown: dict[bytes, bytes] = field(default_factory=dict)

    @property
    def is_finalized(self) -> bool:
        return self.final_scriptsig is not None or self.final_scriptwitness is not None

    def entries(self) -> list[tuple[bytes, bytes]]:
        """The map's key-value pairs in serialisation order."""
        out: list[tuple[bytes, bytes]] = []
        if self.non_witness_utxo is not None:
            out.append((b"\x00", self.non_witness_utxo.serialize()))
        if self.witness_utxo is not None:
            out.append((b"\x01", self.witness_utxo.serialize()))
        out.extend((b"\x02" + pk, sig) for pk, sig in self.partial_sigs.items())
        if self.sighash_type is not None:
            out.append((b"\x03", struct.pack("<I", self.sighash_type)))
        if self.redeem_script is not None:
            out.append((b"\x04", self.redeem_script))
        if self.witness_script is not None:
            out.append((b"\x05", self.witness_script))
        out.extend((b"\x06" + pk, o.serialize()) for pk, o in self.bip32_derivs.items())
        if self.final_scriptsig is not None:
            out.append((b"\x07", self.final_scriptsig))
        if self.final_scriptwitness is not None:
            out.append((b"\x08", serialize_witness(self.final_scriptwitness)))
        return _merge_unknown(out, self.unknown)


@dataclass(frozen=True)
class PsbtOutput:
    redeem_script: bytes | None = None
    witness_script: bytes | None = None
    bip32_derivs: dict[bytes, KeyOrigin] = field(default_factory=dict)
    unknown: dict[bytes, bytes] = field(default_factory=dict)

    def entries(self) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        if self.redeem_script is not None:
            out.append((b"\x00", self.redeem_script))
        if self.witness_script is not None:
            out.append((b"\x01", self.witness_script))
        out.extend((b"\x02" + pk, o.serialize()) for pk, o in self.bip32_derivs.items())
        return _merge_unknown(out, self.unknown)


@dataclass(frozen=True)
class Psbt:
    """A PSBT v0: the global map's fields, then one map per input and per output."""

    tx: Transaction
    inputs: tuple[PsbtInput, ...]
    outputs: tuple[PsbtOutput, ...]
    xpubs: dict[bytes, KeyOrigin] = field(default_factory=dict)
    version: int | None = None  # None: no PSBT_GLOBAL_VERSION key (version 0)
    unknown: dict[bytes, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.inputs) != len(self.tx.inputs):
            raise InvalidPsbt(f"{len(self.inputs)} input maps for {len(self.tx.inputs)} inputs")
        if len(self.outputs) != len(self.tx.outputs):
            raise InvalidPsbt(f"{len(self.outputs)} output maps for {len(self.tx.outputs)} outputs")

    @classmethod
    def parse(cls, data: bytes, limits: Limits | None = None) -> "Psbt":
        return parse_psbt(data, limits)

    @classmethod
    def from_base64(cls, text: str, limits: Limits | None = None) -> "Psbt":
        return parse_psbt_base64(text, limits)

    def global_entries(self) -> list[tuple[bytes, bytes]]:
        out = [(b"\x00", self.tx.serialize(include_witness=False))]
        out.extend((b"\x01" + xpub, o.serialize()) for xpub, o in self.xpubs.items())
        if self.version is not None:
            out.append((b"\xfb", struct.pack("<I", self.version)))
        return _merge_unknown(out, self.unknown)

    def serialize(self) -> bytes:
        parts = [MAGIC, _serialize_map(self.global_entries())]
        parts.extend(_serialize_map(i.entries()) for i in self.inputs)
        parts.extend(_serialize_map(o.entries()) for o in self.outputs)
        return b"".join(parts)

    def to_base64(self) -> str:
        return base64.b64encode(self.serialize()).decode("ascii")

    def with_input(self, index: int, new: PsbtInput) -> "Psbt":
        """A copy with input map ``index`` replaced."""
        inputs = list(self.inputs)
        inputs[index] = new
        return replace(self, inputs=tuple(inputs))


def combine(first: Psbt, *others: Psbt) -> Psbt:
    """BIP-174 combiner: the union of every map's entries.

    All PSBTs must have the same unsigned transaction. When two carry the same key with
    different values, the earlier PSBT's value is kept. New keys follow the existing ones of
    their type.
    """
    tx_bytes = first.tx.serialize()
    for n, other in enumerate(others, 1):
        if other.tx.serialize() != tx_bytes:
            raise InvalidPsbt(f"cannot combine: PSBT {n} has a different unsigned transaction")

    def union(maps: list[list[tuple[bytes, bytes]]]) -> list[tuple[int, bytes, bytes]]:
        merged: dict[bytes, bytes] = {}
        for entries in maps:
            for key, value in entries:
                merged.setdefault(key, value)
        return [(_key_type(k), k, v) for k, v in merged.items()]

    psbts = (first, *others)
    limits = Limits(max_psbt_bytes=2**62, max_inputs=2**32, max_outputs=2**32,
                    max_field_bytes=MAX_SIZE)
    tx, xpubs, version, unknown = _parse_global(union([p.global_entries() for p in psbts]), limits)
    inputs = tuple(_parse_input(union([p.inputs[i].entries() for p in psbts]), i, tx)
                   for i in range(len(tx.inputs)))
    outputs = tuple(_parse_output(union([p.outputs[i].entries() for p in psbts]), i)
                    for i in range(len(tx.outputs)))
    return Psbt(tx, inputs, outputs, xpubs, version, unknown)


# -- serialisation helpers -----------------------------------------------------------------

def serialize_witness(stack: Iterable[bytes]) -> bytes:
    items = list(stack)
    return encode_compact_size(len(items)) + b"".join(encode_var_bytes(i) for i in items)


def _key_type(key: bytes) -> int:
    r = ByteReader(key, error=InvalidPsbt, what="key")
    return r.compact_size("key type", max_value=0xFFFFFFFFFFFFFFFF)


def _merge_unknown(known: list[tuple[bytes, bytes]],
                   unknown: dict[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    """Known entries plus unknown ones, stably ordered by key type."""
    if not unknown:
        return known
    tagged = [(_key_type(k), n, k, v) for n, (k, v) in enumerate(known)]
    tagged += [(_key_type(k), len(known) + n, k, v) for n, (k, v) in enumerate(unknown.items())]
    tagged.sort(key=lambda t: (t[0], t[1]))
    return [(k, v) for _, _, k, v in tagged]


def _serialize_map(entries: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(encode_var_bytes(k) + encode_var_bytes(v) for k, v in entries) + b"\x00"


# -- parsing -------------------------------------------------------------------------------

def parse_psbt_base64(text: str | bytes, limits: Limits | None = None) -> Psbt:
    """Parse a base64 PSBT (strict alphabet and padding, surrounding whitespace ignored)."""
    limits = limits or Limits()
    if isinstance(text, str):
        try:
            text = text.strip().encode("ascii")
        except UnicodeEncodeError:
            raise InvalidPsbt("base64 PSBT contains non-ASCII characters") from None
    else:
        text = text.strip()
    if len(text) > (limits.max_psbt_bytes + 2) // 3 * 4:
        raise InvalidPsbt(f"PSBT is larger than {limits.max_psbt_bytes} bytes")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidPsbt(f"PSBT is not valid base64: {exc}") from None
    if base64.b64encode(raw) != text:
        raise InvalidPsbt("PSBT base64 is not canonical (bad padding or trailing bits)")
    return parse_psbt(raw, limits)


def parse_psbt(data: bytes, limits: Limits | None = None) -> Psbt:
    """Parse a binary PSBT v0, rejecting everything BIP-174 calls invalid."""
    limits = limits or Limits()
    if len(data) > limits.max_psbt_bytes:
        raise InvalidPsbt(f"PSBT is {len(data)} bytes, larger than {limits.max_psbt_bytes} "
                          "(limit max_psbt_bytes)")
    r = ByteReader(data, error=InvalidPsbt, what="PSBT")
    if r.peek(5) != MAGIC:
        raise InvalidPsbt("PSBT does not start with the magic bytes 'psbt\\xff'")
    r.read(5, "magic")

    global_pairs = _read_map(r, "global map", limits)
    tx, xpubs, version, g_unknown = _parse_global(global_pairs, limits)

    inputs = []
    for i in range(len(tx.inputs)):
        if r.at_end():
            raise InvalidPsbt(f"PSBT has {i} input maps, the unsigned tx has {len(tx.inputs)} inputs")
        inputs.append(_parse_input(_read_map(r, f"input {i}", limits), i, tx))
    outputs = []
    for i in range(len(tx.outputs)):
        if r.at_end():
            raise InvalidPsbt(
                f"PSBT has {i} output maps, the unsigned tx has {len(tx.outputs)} outputs")
        outputs.append(_parse_output(_read_map(r, f"output {i}", limits), i))
    if not r.at_end():
        raise InvalidPsbt(f"PSBT has {r.remaining} trailing bytes after the last output map")
    return Psbt(tx, tuple(inputs), tuple(outputs), xpubs, version, g_unknown)


def _read_map(r: ByteReader, where: str, limits: Limits) -> list[tuple[int, bytes, bytes]]:
    """Read key-value pairs up to the 0x00 separator as ``(type, key, value)``; no duplicates."""
    pairs: list[tuple[int, bytes, bytes]] = []
    seen: set[bytes] = set()
    while True:
        if r.at_end():
            raise InvalidPsbt(f"{where}: map is not terminated by a 0x00 separator")
        key_len = r.compact_size(f"{where} key length", max_value=limits.max_field_bytes)
        if key_len == 0:
            return pairs
        key = r.read(key_len, f"{where} key")
        value = r.var_bytes(f"{where} value", max_len=min(limits.max_field_bytes, MAX_SIZE))
        if key in seen:
            raise InvalidPsbt(f"{where}: duplicate key {key.hex()}")
        seen.add(key)
        kr = ByteReader(key, error=InvalidPsbt, what=f"{where} key {key[:8].hex()}")
        pairs.append((kr.compact_size("type", max_value=0xFFFFFFFFFFFFFFFF), key, value))


def _key_data(key: bytes) -> bytes:
    r = ByteReader(key, error=InvalidPsbt, what="key")
    r.compact_size("type", max_value=0xFFFFFFFFFFFFFFFF)
    return key[r.pos:]


def _expect_no_key_data(key: bytes, where: str, name: str) -> None:
    if _key_data(key):
        raise InvalidPsbt(f"{where}: {name} key must be exactly 1 byte, got {len(key)}")


def _pubkey_key(key: bytes, where: str, name: str) -> bytes:
    pubkey = _key_data(key)
    if len(pubkey) not in (33, 65):
        raise InvalidPsbt(f"{where}: {name} key has a {len(pubkey)}-byte public key, "
                          "expected 33 or 65")
    if not is_valid_pubkey(pubkey):
        raise InvalidPsbt(f"{where}: {name} key holds an invalid public key {pubkey.hex()}")
    return pubkey


def _parse_global(pairs: list[tuple[int, bytes, bytes]], limits: Limits
                  ) -> tuple[Transaction, dict[bytes, KeyOrigin], int | None, dict[bytes, bytes]]:
    where = "global map"
    tx: Transaction | None = None
    xpubs: dict[bytes, KeyOrigin] = {}
    version: int | None = None
    unknown: dict[bytes, bytes] = {}
    for key_type, key, value in pairs:
        if key_type == GLOBAL_UNSIGNED_TX:
            _expect_no_key_data(key, where, "PSBT_GLOBAL_UNSIGNED_TX")
            tx = _parse_unsigned_tx(value, limits)
        elif key_type == GLOBAL_XPUB:
            xpub = _key_data(key)
            if len(xpub) != 78:
                raise InvalidPsbt(f"{where}: PSBT_GLOBAL_XPUB key holds {len(xpub)} bytes, "
                                  "expected a 78-byte extended public key")
            xpubs[xpub] = KeyOrigin.parse(value, f"{where} PSBT_GLOBAL_XPUB")
        elif key_type == GLOBAL_VERSION:
            _expect_no_key_data(key, where, "PSBT_GLOBAL_VERSION")
            if len(value) != 4:
                raise InvalidPsbt(f"{where}: PSBT_GLOBAL_VERSION value is {len(value)} bytes, "
                                  "expected 4")
            version = struct.unpack("<I", value)[0]
            if version != 0:
                raise InvalidPsbt(f"{where}: unsupported PSBT version {version} (only 0)")
        elif key_type in _GLOBAL_V2_ONLY:
            raise InvalidPsbt(f"{where}: {_GLOBAL_V2_ONLY[key_type]} is not allowed in a "
                              "version 0 PSBT")
        else:
            unknown[key] = value
    if tx is None:
        raise InvalidPsbt(f"{where}: no PSBT_GLOBAL_UNSIGNED_TX (unsigned transaction missing)")
    return tx, xpubs, version, unknown


def _parse_unsigned_tx(value: bytes, limits: Limits) -> Transaction:
    what = "PSBT_GLOBAL_UNSIGNED_TX"
    try:
        tx = Transaction.parse(value, allow_witness=False, error=InvalidPsbt, what=what)
    except InvalidPsbt:
        if not _is_witness_serialised(value):
            raise
        raise InvalidPsbt(f"{what} is serialised in the witness (BIP-144) format; it must "
                          "use the legacy format") from None
    if len(tx.inputs) > limits.max_inputs:
        raise InvalidPsbt(f"{what} has {len(tx.inputs)} inputs, more than {limits.max_inputs} "
                          "(limit max_psbt_inputs)")
    if len(tx.outputs) > limits.max_outputs:
        raise InvalidPsbt(f"{what} has {len(tx.outputs)} outputs, more than {limits.max_outputs} "
                          "(limit max_psbt_outputs)")
    for i, txin in enumerate(tx.inputs):
        if txin.script_sig:
            raise InvalidPsbt(f"{what}: input {i} has a non-empty scriptSig")
    return tx


def _is_witness_serialised(value: bytes) -> bool:
    """True if ``value`` is a complete transaction in the BIP-144 format (for the error message)."""
    try:
        Transaction.parse(value, allow_witness=True, allow_empty_witness=True, error=InvalidPsbt)
    except InvalidPsbt:
        return False
    return value[4:6] == b"\x00\x01"


def _parse_input(pairs: list[tuple[int, bytes, bytes]], index: int, tx: Transaction) -> PsbtInput:
    where = f"input {index}"
    f: dict[str, object] = {}
    partial_sigs: dict[bytes, bytes] = {}
    derivs: dict[bytes, KeyOrigin] = {}
    unknown: dict[bytes, bytes] = {}
    for key_type, key, value in pairs:
        if key_type == IN_NON_WITNESS_UTXO:
            _expect_no_key_data(key, where, "PSBT_IN_NON_WITNESS_UTXO")
            prev = Transaction.parse(value, allow_witness=True, error=InvalidPsbt,
                                     what=f"{where} PSBT_IN_NON_WITNESS_UTXO")
            if prev.txid() != tx.inputs[index].prevout.txid:
                raise InvalidPsbt(f"{where}: non-witness UTXO does not hash to the outpoint's txid")
            f["non_witness_utxo"] = prev
        elif key_type == IN_WITNESS_UTXO:
            _expect_no_key_data(key, where, "PSBT_IN_WITNESS_UTXO")
            f["witness_utxo"] = TxOut.parse(value, error=InvalidPsbt,
                                            what=f"{where} PSBT_IN_WITNESS_UTXO")
        elif key_type == IN_PARTIAL_SIG:
            pubkey = _pubkey_key(key, where, "PSBT_IN_PARTIAL_SIG")
            partial_sigs[pubkey] = value
        elif key_type == IN_SIGHASH_TYPE:
            _expect_no_key_data(key, where, "PSBT_IN_SIGHASH_TYPE")
            if len(value) != 4:
                raise InvalidPsbt(f"{where}: PSBT_IN_SIGHASH_TYPE value is {len(value)} bytes, "
                                  "expected 4")
            f["sighash_type"] = struct.unpack("<I", value)[0]
        elif key_type == IN_REDEEM_SCRIPT:
            _expect_no_key_data(key, where, "PSBT_IN_REDEEM_SCRIPT")
            f["redeem_script"] = value
        elif key_type == IN_WITNESS_SCRIPT:
            _expect_no_key_data(key, where, "PSBT_IN_WITNESS_SCRIPT")
            f["witness_script"] = value
        elif key_type == IN_BIP32_DERIVATION:
            pubkey = _pubkey_key(key, where, "PSBT_IN_BIP32_DERIVATION")
            derivs[pubkey] = KeyOrigin.parse(value, f"{where} PSBT_IN_BIP32_DERIVATION")
        elif key_type == IN_FINAL_SCRIPTSIG:
            _expect_no_key_data(key, where, "PSBT_IN_FINAL_SCRIPTSIG")
            f["final_scriptsig"] = value
        elif key_type == IN_FINAL_SCRIPTWITNESS:
            _expect_no_key_data(key, where, "PSBT_IN_FINAL_SCRIPTWITNESS")
            f["final_scriptwitness"] = _parse_witness(value, where)
        elif key_type in _IN_V2_ONLY:
            raise InvalidPsbt(f"{where}: {_IN_V2_ONLY[key_type]} is not allowed in a version 0 PSBT")
        elif key_type in _IN_PREIMAGES:
            name, size, fn = _IN_PREIMAGES[key_type]
            digest = _key_data(key)
            if len(digest) != size:
                raise InvalidPsbt(f"{where}: {name} key holds {len(digest)} bytes, expected {size}")
            if fn is not None and fn(value) != digest:
                raise InvalidPsbt(f"{where}: {name} preimage does not match its hash")
            unknown[key] = value
        elif key_type in _IN_KEPT:
            _check_kept(_IN_KEPT[key_type], key, value, where)
            unknown[key] = value
        else:
            unknown[key] = value
    return PsbtInput(partial_sigs=partial_sigs, bip32_derivs=derivs, unknown=unknown,
                     **f)  # type: ignore[arg-type]


def _parse_output(pairs: list[tuple[int, bytes, bytes]], index: int) -> PsbtOutput:
    where = f"output {index}"
    f: dict[str, bytes] = {}
    derivs: dict[bytes, KeyOrigin] = {}
    unknown: dict[bytes, bytes] = {}
    for key_type, key, value in pairs:
        if key_type == OUT_REDEEM_SCRIPT:
            _expect_no_key_data(key, where, "PSBT_OUT_REDEEM_SCRIPT")
            f["redeem_script"] = value
        elif key_type == OUT_WITNESS_SCRIPT:
            _expect_no_key_data(key, where, "PSBT_OUT_WITNESS_SCRIPT")
            f["witness_script"] = value
        elif key_type == OUT_BIP32_DERIVATION:
            pubkey = _pubkey_key(key, where, "PSBT_OUT_BIP32_DERIVATION")
            derivs[pubkey] = KeyOrigin.parse(value, f"{where} PSBT_OUT_BIP32_DERIVATION")
        elif key_type in _OUT_V2_ONLY:
            raise InvalidPsbt(f"{where}: {_OUT_V2_ONLY[key_type]} is not allowed in a version 0 PSBT")
        elif key_type in _OUT_KEPT:
            _check_kept(_OUT_KEPT[key_type], key, value, where)
            unknown[key] = value
        else:
            unknown[key] = value
    return PsbtOutput(bip32_derivs=derivs, unknown=unknown, **f)


def _check_kept(spec: tuple[str, int, tuple[int, ...] | None], key: bytes, value: bytes,
                where: str) -> None:
    name, key_len, value_lens = spec
    data = _key_data(key)
    if len(data) != key_len:
        raise InvalidPsbt(f"{where}: {name} key data is {len(data)} bytes, expected {key_len}")
    if value_lens is not None and len(value) not in value_lens:
        raise InvalidPsbt(f"{where}: {name} value is {len(value)} bytes, expected "
                          + " or ".join(map(str, value_lens)))


def _parse_witness(value: bytes, where: str) -> tuple[bytes, ...]:
    r = ByteReader(value, error=InvalidPsbt, what=f"{where} PSBT_IN_FINAL_SCRIPTWITNESS")
    n = r.compact_size("item count")
    items = tuple(r.var_bytes(f"item {i}") for i in range(n))
    r.expect_end()
    return items
