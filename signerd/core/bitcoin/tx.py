"""Bitcoin transactions: strict parse and serialise (legacy and BIP-144 witness), ids and size.

Everything here is pure. A parsed :class:`Transaction` is valid by construction as far as its
encoding goes: every length is checked against the bytes that remain, compact sizes must be
canonical and at most ``MAX_SIZE``, and no byte may follow the lock time. Semantic checks (amount
ranges, standardness) belong to the caller.
"""
from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Callable

from signerd.core.errors import InvalidTransaction, SignerError

MAX_SIZE = 0x02000000  # Bitcoin Core's bound on any compact size used as a length or count
MAX_MONEY = 21_000_000 * 100_000_000
SEQUENCE_FINAL = 0xFFFFFFFF

ErrorFactory = Callable[[str], SignerError]


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sha256d(data: bytes) -> bytes:
    """Double SHA-256, Bitcoin's hash for txids and signature digests."""
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def encode_compact_size(n: int) -> bytes:
    """The canonical (shortest) CompactSize encoding of ``n``."""
    if n < 0 or n > 0xFFFFFFFFFFFFFFFF:
        raise ValueError(f"compact size out of range: {n}")
    if n < 0xFD:
        return bytes((n,))
    if n <= 0xFFFF:
        return b"\xfd" + struct.pack("<H", n)
    if n <= 0xFFFFFFFF:
        return b"\xfe" + struct.pack("<I", n)
    return b"\xff" + struct.pack("<Q", n)


def encode_var_bytes(data: bytes) -> bytes:
    """``data`` prefixed with its CompactSize length."""
    return encode_compact_size(len(data)) + data


class ByteReader:
    """A bounds-checked cursor over a byte string.

    Every failure raises ``error(message)``, naming ``what`` and the field being read, so the same
    reader serves transactions (InvalidTransaction) and PSBTs (InvalidPsbt).
    """

    __slots__ = ("_data", "_pos", "_error", "what")

    def __init__(self, data: bytes, *, error: ErrorFactory = InvalidTransaction,
                 what: str = "transaction") -> None:
        self._data = memoryview(bytes(data))
        self._pos = 0
        self._error = error
        self.what = what

    def fail(self, message: str) -> SignerError:
        return self._error(f"{self.what}: {message}")

    @property
    def pos(self) -> int:
        return self._pos

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def at_end(self) -> bool:
        return self._pos >= len(self._data)

    def peek(self, n: int = 1) -> bytes:
        return bytes(self._data[self._pos:self._pos + n])

    def read(self, n: int, field: str) -> bytes:
        if n < 0 or n > self.remaining:
            raise self.fail(f"{field}: needs {n} bytes, only {self.remaining} left")
        out = bytes(self._data[self._pos:self._pos + n])
        self._pos += n
        return out

    def u8(self, field: str) -> int:
        return self.read(1, field)[0]

    def u32(self, field: str) -> int:
        return int(struct.unpack("<I", self.read(4, field))[0])

    def i64(self, field: str) -> int:
        return int(struct.unpack("<q", self.read(8, field))[0])

    def compact_size(self, field: str, *, max_value: int = MAX_SIZE) -> int:
        """A canonical CompactSize no greater than ``max_value``."""
        first = self.u8(field)
        if first < 0xFD:
            n, minimum = first, 0
        elif first == 0xFD:
            n, minimum = struct.unpack("<H", self.read(2, field))[0], 0xFD
        elif first == 0xFE:
            n, minimum = struct.unpack("<I", self.read(4, field))[0], 0x10000
        else:
            n, minimum = struct.unpack("<Q", self.read(8, field))[0], 0x100000000
        if n < minimum:
            raise self.fail(f"{field}: non-canonical compact size {n}")
        if n > max_value:
            raise self.fail(f"{field}: size {n} exceeds the limit {max_value}")
        return int(n)

    def var_bytes(self, field: str, *, max_len: int = MAX_SIZE) -> bytes:
        n = self.compact_size(f"{field} length", max_value=max_len)
        return self.read(n, field)

    def expect_end(self) -> None:
        if not self.at_end():
            raise self.fail(f"{self.remaining} trailing bytes")


@dataclass(frozen=True)
class OutPoint:
    """A reference to a previous output; ``txid`` is in internal (little-endian) byte order."""

    txid: bytes
    vout: int

    def __post_init__(self) -> None:
        if len(self.txid) != 32:
            raise InvalidTransaction("outpoint txid must be 32 bytes")
        if not 0 <= self.vout <= 0xFFFFFFFF:
            raise InvalidTransaction("outpoint index out of range")

    @property
    def txid_hex(self) -> str:
        """The txid as block explorers and RPCs print it (byte-reversed)."""
        return self.txid[::-1].hex()

    def __str__(self) -> str:
        return f"{self.txid_hex}:{self.vout}"

    def serialize(self) -> bytes:
        return self.txid + struct.pack("<I", self.vout)


@dataclass(frozen=True)
class TxIn:
    prevout: OutPoint
    script_sig: bytes = b""
    sequence: int = SEQUENCE_FINAL
    witness: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class TxOut:
    """An output. ``value`` is Core's signed 64-bit amount; range checks are the caller's."""

    value: int
    script_pubkey: bytes

    def serialize(self) -> bytes:
        return struct.pack("<q", self.value) + encode_var_bytes(self.script_pubkey)

    @classmethod
    def parse(cls, data: bytes, *, error: ErrorFactory = InvalidTransaction,
              what: str = "output") -> "TxOut":
        """Parse exactly one serialised output (as in a PSBT witness UTXO)."""
        r = ByteReader(data, error=error, what=what)
        out = _read_txout(r, "output")
        r.expect_end()
        return out


@dataclass(frozen=True)
class Transaction:
    version: int  # uint32 as serialised
    inputs: tuple[TxIn, ...]
    outputs: tuple[TxOut, ...]
    locktime: int

    # -- parsing ---------------------------------------------------------------------------

    @classmethod
    def parse(cls, data: bytes, *, allow_witness: bool = True,
              error: ErrorFactory = InvalidTransaction, what: str = "transaction",
              allow_empty_witness: bool = False) -> "Transaction":
        """Parse one complete transaction; trailing bytes are an error.

        With ``allow_witness`` the BIP-144 extended format is recognised exactly as Bitcoin Core
        does (an empty input vector followed by a non-zero flag byte); a witness flag with only
        empty witnesses (unless ``allow_empty_witness``, for diagnostics) and unknown flag bits
        are rejected.
        """
        r = ByteReader(data, error=error, what=what)
        tx = cls.read(r, allow_witness=allow_witness, allow_empty_witness=allow_empty_witness)
        r.expect_end()
        return tx

    @classmethod
    def read(cls, r: ByteReader, *, allow_witness: bool = True,
             allow_empty_witness: bool = False) -> "Transaction":
        version = r.u32("version")
        flags = 0
        inputs = _read_inputs(r)
        if not inputs and allow_witness:
            flags = r.u8("segwit flag")
            if flags != 0:
                inputs = _read_inputs(r)
                outputs = _read_outputs(r)
            else:
                outputs = []
        else:
            outputs = _read_outputs(r)
        if flags & 1:
            flags ^= 1
            witnessed = []
            for i, txin in enumerate(inputs):
                n = r.compact_size(f"input {i} witness item count")
                stack = tuple(r.var_bytes(f"input {i} witness item {j}") for j in range(n))
                witnessed.append(TxIn(txin.prevout, txin.script_sig, txin.sequence, stack))
            inputs = witnessed
            if not allow_empty_witness and not any(txin.witness for txin in inputs):
                raise r.fail("superfluous witness record (all witnesses empty)")
        if flags:
            raise r.fail(f"unknown optional data flag {flags:#04x}")
        locktime = r.u32("locktime")
        return cls(version, tuple(inputs), tuple(outputs), locktime)

    # -- serialisation ---------------------------------------------------------------------

    @property
    def has_witness(self) -> bool:
        return any(txin.witness for txin in self.inputs)

    def serialize(self, *, include_witness: bool = True) -> bytes:
        """BIP-144 serialisation when ``include_witness`` and any witness exists, else legacy."""
        witness = include_witness and self.has_witness
        parts = [struct.pack("<I", self.version)]
        if witness:
            parts.append(b"\x00\x01")
        parts.append(encode_compact_size(len(self.inputs)))
        for txin in self.inputs:
            parts.append(txin.prevout.serialize())
            parts.append(encode_var_bytes(txin.script_sig))
            parts.append(struct.pack("<I", txin.sequence))
        parts.append(encode_compact_size(len(self.outputs)))
        parts.extend(out.serialize() for out in self.outputs)
        if witness:
            for txin in self.inputs:
                parts.append(encode_compact_size(len(txin.witness)))
                parts.extend(encode_var_bytes(item) for item in txin.witness)
        parts.append(struct.pack("<I", self.locktime))
        return b"".join(parts)

    # -- identity and size -----------------------------------------------------------------

    def txid(self) -> bytes:
        """The txid in internal byte order (hash of the serialisation without witness).

        Computed once per object: a PSBT may carry the same previous transaction for many inputs.
        """
        cached = self.__dict__.get("_txid")
        if cached is None:
            cached = sha256d(self.serialize(include_witness=False))
            object.__setattr__(self, "_txid", cached)
        return bytes(cached)

    def wtxid(self) -> bytes:
        return sha256d(self.serialize(include_witness=True))

    @property
    def txid_hex(self) -> str:
        return self.txid()[::-1].hex()

    def weight(self) -> int:
        """BIP-141 weight: base size * 3 + total size."""
        return len(self.serialize(include_witness=False)) * 3 + len(self.serialize())

    def vsize(self) -> int:
        return (self.weight() + 3) // 4


def _read_inputs(r: ByteReader) -> list[TxIn]:
    n = r.compact_size("input count")
    inputs = []
    for i in range(n):
        txid = r.read(32, f"input {i} prevout txid")
        vout = r.u32(f"input {i} prevout index")
        script_sig = r.var_bytes(f"input {i} scriptSig")
        sequence = r.u32(f"input {i} sequence")
        inputs.append(TxIn(OutPoint(txid, vout), script_sig, sequence))
    return inputs


def _read_txout(r: ByteReader, name: str) -> TxOut:
    value = r.i64(f"{name} amount")
    script = r.var_bytes(f"{name} scriptPubKey")
    return TxOut(value, script)


def _read_outputs(r: ByteReader) -> list[TxOut]:
    n = r.compact_size("output count")
    return [_read_txout(r, f"output {i}") for i in range(n)]


def check_amounts(tx: Transaction) -> None:
    """Consensus range checks on output values (Core's CheckTransaction money rules)."""
    total = 0
    for i, out in enumerate(tx.outputs):
        if not 0 <= out.value <= MAX_MONEY:
            raise InvalidTransaction(f"output {i} amount {out.value} is out of range")
        total += out.value
        if total > MAX_MONEY:
            raise InvalidTransaction("sum of output amounts is out of range")
