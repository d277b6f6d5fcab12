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
import struct
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, NamedTuple

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
from signerd.core.canonical import strict_b64decode
from signerd.core.errors import InvalidPsbt
from signerd.core.limits import Limits

MAGIC = b"psbt\xff"
HARDENED = 0x80000000

# Global types (the modelled ones: GLOBAL_KEYS below)
_GLOBAL_V2_ONLY = {0x02: "PSBT_GLOBAL_TX_VERSION", 0x03: "PSBT_GLOBAL_FALLBACK_LOCKTIME",
                   0x04: "PSBT_GLOBAL_INPUT_COUNT", 0x05: "PSBT_GLOBAL_OUTPUT_COUNT",
                   0x06: "PSBT_GLOBAL_TX_MODIFIABLE"}

# Input types (the modelled ones: INPUT_KEYS below)
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

# Output types (the modelled ones: OUTPUT_KEYS below)
_OUT_V2_ONLY = {0x03: "PSBT_OUT_AMOUNT", 0x04: "PSBT_OUT_SCRIPT"}
_OUT_KEPT = {
    0x05: ("PSBT_OUT_TAP_INTERNAL_KEY", 0, (32,)),
    0x07: ("PSBT_OUT_TAP_BIP32_DERIVATION", 32, None),
}


class KeyType(NamedTuple):
    """A key type signerd models: its number, its BIP-174 name, the attribute of the map's class
    that holds it, and its value's encoding (``codec``): bytes (verbatim), u32 (4 bytes little
    endian), version (a u32 that must be 0), witness (a witness stack), unsigned_tx, prev_tx (a
    transaction that must hash to the input's outpoint), txout, origin (a BIP-32 key origin).
    A type with ``key_data`` (pubkey: a valid 33- or 65-byte public key; xpub: a 78-byte
    extended key) may occur once per key and fills a dict; the others have a 1-byte key and
    hold one value or None."""

    type: int
    name: str
    attr: str
    codec: str
    key_data: str = ""


# One table per map: what the parser and the serialiser both go through, in serialisation order.
GLOBAL_KEYS = (
    KeyType(0x00, "PSBT_GLOBAL_UNSIGNED_TX", "tx", "unsigned_tx"),
    KeyType(0x01, "PSBT_GLOBAL_XPUB", "xpubs", "origin", "xpub"),
    KeyType(0xFB, "PSBT_GLOBAL_VERSION", "version", "version"),
)
INPUT_KEYS = (
    KeyType(0x00, "PSBT_IN_NON_WITNESS_UTXO", "non_witness_utxo", "prev_tx"),
    KeyType(0x01, "PSBT_IN_WITNESS_UTXO", "witness_utxo", "txout"),
    KeyType(0x02, "PSBT_IN_PARTIAL_SIG", "partial_sigs", "bytes", "pubkey"),
    KeyType(0x03, "PSBT_IN_SIGHASH_TYPE", "sighash_type", "u32"),
    KeyType(0x04, "PSBT_IN_REDEEM_SCRIPT", "redeem_script", "bytes"),
    KeyType(0x05, "PSBT_IN_WITNESS_SCRIPT", "witness_script", "bytes"),
    KeyType(0x06, "PSBT_IN_BIP32_DERIVATION", "bip32_derivs", "origin", "pubkey"),
    KeyType(0x07, "PSBT_IN_FINAL_SCRIPTSIG", "final_scriptsig", "bytes"),
    KeyType(0x08, "PSBT_IN_FINAL_SCRIPTWITNESS", "final_scriptwitness", "witness"),
)
OUTPUT_KEYS = (
    KeyType(0x00, "PSBT_OUT_REDEEM_SCRIPT", "redeem_script", "bytes"),
    KeyType(0x01, "PSBT_OUT_WITNESS_SCRIPT", "witness_script", "bytes"),
    KeyType(0x02, "PSBT_OUT_BIP32_DERIVATION", "bip32_derivs", "origin", "pubkey"),
)
_GLOBAL_BY_TYPE = {k.type: k for k in GLOBAL_KEYS}
_INPUT_BY_TYPE = {k.type: k for k in INPUT_KEYS}
_OUTPUT_BY_TYPE = {k.type: k for k in OUTPUT_KEYS}


# The bounds applied while parsing, before anything is allocated for a field, are the daemon's
# [limits] (max_psbt_bytes, max_psbt_inputs, max_psbt_outputs); a key or value is at most
# MAX_FIELD_BYTES long.
MAX_FIELD_BYTES = 1_000_000


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
        return _merge_unknown(_known_entries(self, INPUT_KEYS), self.unknown)


@dataclass(frozen=True)
class PsbtOutput:
    redeem_script: bytes | None = None
    witness_script: bytes | None = None
    bip32_derivs: dict[bytes, KeyOrigin] = field(default_factory=dict)
    unknown: dict[bytes, bytes] = field(default_factory=dict)

    def entries(self) -> list[tuple[bytes, bytes]]:
        return _merge_unknown(_known_entries(self, OUTPUT_KEYS), self.unknown)


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
        return _merge_unknown(_known_entries(self, GLOBAL_KEYS), self.unknown)

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
    limits = Limits(max_psbt_bytes=2**62, max_psbt_inputs=2**32, max_psbt_outputs=2**32)
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


def _encode_value(kt: KeyType, value: Any) -> bytes:
    if kt.codec == "bytes":
        return bytes(value)
    if kt.codec in ("u32", "version"):
        return struct.pack("<I", value)
    if kt.codec == "witness":
        return serialize_witness(value)
    if kt.codec == "unsigned_tx":
        return bytes(value.serialize(include_witness=False))
    return bytes(value.serialize())  # prev_tx, txout, origin


def _known_entries(fields: object, table: tuple[KeyType, ...]) -> list[tuple[bytes, bytes]]:
    """The entries of the modelled key types a map holds, in the table's order."""
    out: list[tuple[bytes, bytes]] = []
    for kt in table:
        value = getattr(fields, kt.attr)
        if kt.key_data:
            out.extend((bytes([kt.type]) + k, _encode_value(kt, v)) for k, v in value.items())
        elif value is not None:
            out.append((bytes([kt.type]), _encode_value(kt, value)))
    return out


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
    text = text.strip()
    if len(text) > (limits.max_psbt_bytes + 2) // 3 * 4:
        raise InvalidPsbt(f"PSBT is larger than {limits.max_psbt_bytes} bytes")
    return parse_psbt(strict_b64decode(text, "psbt", error=InvalidPsbt), limits)


def parse_psbt(data: bytes, limits: Limits | None = None, *,
               max_field_bytes: int = MAX_FIELD_BYTES) -> Psbt:
    """Parse a binary PSBT v0, rejecting everything BIP-174 calls invalid."""
    limits = limits or Limits()
    if len(data) > limits.max_psbt_bytes:
        raise InvalidPsbt(f"PSBT is {len(data)} bytes, larger than {limits.max_psbt_bytes} "
                          "(limit max_psbt_bytes)")
    r = ByteReader(data, error=InvalidPsbt, what="PSBT")
    if r.peek(5) != MAGIC:
        raise InvalidPsbt("PSBT does not start with the magic bytes 'psbt\\xff'")
    r.read(5, "magic")

    global_pairs = _read_map(r, "global map", max_field_bytes)
    tx, xpubs, version, g_unknown = _parse_global(global_pairs, limits)

    inputs = []
    for i in range(len(tx.inputs)):
        if r.at_end():
            raise InvalidPsbt(f"PSBT has {i} input maps, the unsigned tx has {len(tx.inputs)} inputs")
        inputs.append(_parse_input(_read_map(r, f"input {i}", max_field_bytes), i, tx))
    outputs = []
    for i in range(len(tx.outputs)):
        if r.at_end():
            raise InvalidPsbt(
                f"PSBT has {i} output maps, the unsigned tx has {len(tx.outputs)} outputs")
        outputs.append(_parse_output(_read_map(r, f"output {i}", max_field_bytes), i))
    if not r.at_end():
        raise InvalidPsbt(f"PSBT has {r.remaining} trailing bytes after the last output map")
    return Psbt(tx, tuple(inputs), tuple(outputs), xpubs, version, g_unknown)


def _read_map(r: ByteReader, where: str, max_field_bytes: int) -> list[tuple[int, bytes, bytes]]:
    """Read key-value pairs up to the 0x00 separator as ``(type, key, value)``; no duplicates."""
    pairs: list[tuple[int, bytes, bytes]] = []
    seen: set[bytes] = set()
    while True:
        if r.at_end():
            raise InvalidPsbt(f"{where}: map is not terminated by a 0x00 separator")
        key_len = r.compact_size(f"{where} key length", max_value=max_field_bytes)
        if key_len == 0:
            return pairs
        key = r.read(key_len, f"{where} key")
        value = r.var_bytes(f"{where} value", max_len=min(max_field_bytes, MAX_SIZE))
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


def _empty_fields(table: tuple[KeyType, ...]) -> dict[str, Any]:
    return {kt.attr: {} if kt.key_data else None for kt in table}


def _parse_known(kt: KeyType, key: bytes, value: bytes, where: str, fields: dict[str, Any], *,
                 limits: Limits | None = None, tx: Transaction | None = None,
                 index: int = 0) -> None:
    """Check an entry of a modelled key type and put its value into ``fields``."""
    data = b""
    if kt.key_data == "pubkey":
        data = _pubkey_key(key, where, kt.name)
    elif kt.key_data == "xpub":
        data = _key_data(key)
        if len(data) != 78:
            raise InvalidPsbt(f"{where}: {kt.name} key holds {len(data)} bytes, "
                              "expected a 78-byte extended public key")
    else:
        _expect_no_key_data(key, where, kt.name)
    decoded: Any
    if kt.codec == "bytes":
        decoded = value
    elif kt.codec in ("u32", "version"):
        if len(value) != 4:
            raise InvalidPsbt(f"{where}: {kt.name} value is {len(value)} bytes, expected 4")
        decoded = struct.unpack("<I", value)[0]
        if kt.codec == "version" and decoded != 0:
            raise InvalidPsbt(f"{where}: unsupported PSBT version {decoded} (only 0)")
    elif kt.codec == "witness":
        decoded = _parse_witness(value, where)
    elif kt.codec == "unsigned_tx":
        assert limits is not None
        decoded = _parse_unsigned_tx(value, limits)
    elif kt.codec == "prev_tx":
        assert tx is not None
        decoded = Transaction.parse(value, allow_witness=True, error=InvalidPsbt,
                                    what=f"{where} {kt.name}")
        if decoded.txid() != tx.inputs[index].prevout.txid:
            raise InvalidPsbt(f"{where}: non-witness UTXO does not hash to the outpoint's txid")
    elif kt.codec == "txout":
        decoded = TxOut.parse(value, error=InvalidPsbt, what=f"{where} {kt.name}")
    else:  # origin
        decoded = KeyOrigin.parse(value, f"{where} {kt.name}")
    if kt.key_data:
        fields[kt.attr][data] = decoded
    else:
        fields[kt.attr] = decoded


def _parse_map(pairs: list[tuple[int, bytes, bytes]], where: str,
               by_type: dict[int, KeyType], v2_only: dict[int, str], *,
               preimages: Mapping[int, tuple[str, int, Any]] | None = None,
               kept: Mapping[int, tuple[str, int, tuple[int, ...] | None]] | None = None,
               limits: Limits | None = None, tx: Transaction | None = None,
               index: int = 0) -> tuple[dict[str, Any], dict[bytes, bytes]]:
    """One map's entries: the modelled key types into their fields (through the map's table),
    version 2 types refused, hash preimages and other known types checked and kept verbatim
    with the unknown ones."""
    f = _empty_fields(tuple(by_type.values()))
    unknown: dict[bytes, bytes] = {}
    for key_type, key, value in pairs:
        kt = by_type.get(key_type)
        if kt is not None:
            _parse_known(kt, key, value, where, f, limits=limits, tx=tx, index=index)
            continue
        if key_type in v2_only:
            raise InvalidPsbt(f"{where}: {v2_only[key_type]} is not allowed in a version 0 PSBT")
        if preimages is not None and key_type in preimages:
            name, size, fn = preimages[key_type]
            digest = _key_data(key)
            if len(digest) != size:
                raise InvalidPsbt(f"{where}: {name} key holds {len(digest)} bytes, expected {size}")
            if fn is not None and fn(value) != digest:
                raise InvalidPsbt(f"{where}: {name} preimage does not match its hash")
        elif kept is not None and key_type in kept:
            _check_kept(kept[key_type], key, value, where)
        unknown[key] = value
    return f, unknown


def _parse_global(pairs: list[tuple[int, bytes, bytes]], limits: Limits
                  ) -> tuple[Transaction, dict[bytes, KeyOrigin], int | None, dict[bytes, bytes]]:
    where = "global map"
    f, unknown = _parse_map(pairs, where, _GLOBAL_BY_TYPE, _GLOBAL_V2_ONLY, limits=limits)
    if f["tx"] is None:
        raise InvalidPsbt(f"{where}: no PSBT_GLOBAL_UNSIGNED_TX (unsigned transaction missing)")
    return f["tx"], f["xpubs"], f["version"], unknown


def _parse_unsigned_tx(value: bytes, limits: Limits) -> Transaction:
    what = "PSBT_GLOBAL_UNSIGNED_TX"
    try:
        tx = Transaction.parse(value, allow_witness=False, error=InvalidPsbt, what=what)
    except InvalidPsbt:
        if not _is_witness_serialised(value):
            raise
        raise InvalidPsbt(f"{what} is serialised in the witness (BIP-144) format; it must "
                          "use the legacy format") from None
    if len(tx.inputs) > limits.max_psbt_inputs:
        raise InvalidPsbt(f"{what} has {len(tx.inputs)} inputs, more than "
                          f"{limits.max_psbt_inputs} (limit max_psbt_inputs)")
    if len(tx.outputs) > limits.max_psbt_outputs:
        raise InvalidPsbt(f"{what} has {len(tx.outputs)} outputs, more than "
                          f"{limits.max_psbt_outputs} (limit max_psbt_outputs)")
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
    f, unknown = _parse_map(pairs, f"input {index}", _INPUT_BY_TYPE, _IN_V2_ONLY,
                            preimages=_IN_PREIMAGES, kept=_IN_KEPT, tx=tx, index=index)
    return PsbtInput(unknown=unknown, **f)


def _parse_output(pairs: list[tuple[int, bytes, bytes]], index: int) -> PsbtOutput:
    f, unknown = _parse_map(pairs, f"output {index}", _OUTPUT_BY_TYPE, _OUT_V2_ONLY,
                            kept=_OUT_KEPT)
    return PsbtOutput(unknown=unknown, **f)


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
