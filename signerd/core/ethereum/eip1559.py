"""EIP-1559 (type 2) transactions: strict parsing, the unsigned envelope, its digest, signed form.

An ``Eip1559Tx`` is valid by construction: every field is range-checked when the object is made,
whether from the JSON dict form (``from_fields``) or from raw bytes (``decode_unsigned``,
``decode_signed``). Raw bytes are accepted only in canonical RLP, so that decoding and encoding
again gives the same bytes; what an operator's tool rebuilds is exactly what signerd signs.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import rlp

from signerd.core.errors import InvalidTransaction
from signerd.core.ethereum.address import ADDRESS_LEN, parse_address, to_checksum
from signerd.core.ethereum.keccak import keccak256
from signerd.core.limits import Limits

TX_TYPE = 2
UINT64_MAX = 2**64 - 1
UINT256_MAX = 2**256 - 1
NONCE_MAX = 2**64 - 2  # EIP-2681: a nonce of 2^64-1 can never be valid
MIN_GAS = 21000
STORAGE_KEY_LEN = 32
DEFAULT_MAX_DATA_BYTES = Limits.max_calldata_bytes  # the default of [limits] max_calldata_bytes
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

AccessList = tuple[tuple[bytes, tuple[bytes, ...]], ...]

_ACCESS_ENTRY_KEYS = frozenset({"address", "storageKeys"})
_HEX_DIGITS = re.compile(r"[0-9a-fA-F]*")

_BOUND_TEXT = {UINT64_MAX: "2^64-1", NONCE_MAX: "2^64-2", UINT256_MAX: "2^256-1"}


def _range_error(field: str, low: int, high: int) -> InvalidTransaction:
    return InvalidTransaction(
        f"{field}: must be an integer between {low} and {_BOUND_TEXT.get(high, str(high))}"
    )


def _check_int(field: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _range_error(field, low, high)
    return value


def _check_bytes(field: str, value: object, length: int | None = None) -> bytes:
    if not isinstance(value, bytes) or (length is not None and len(value) != length):
        size = "bytes" if length is None else f"{length} bytes"
        raise InvalidTransaction(f"{field}: must be {size}")
    return value


def tx_hash(raw: bytes) -> bytes:
    """The transaction hash a node reports: keccak256 of the signed raw transaction."""
    return keccak256(raw)


@dataclass(frozen=True)
class TxField:
    """One field of the transaction: its JSON (eth-account) name, its ``Eip1559Tx`` attribute,
    its kind and bounds. Its RLP position is its index in ``FIELDS`` (or, for the signature,
    ``len(FIELDS)`` plus its index in ``SIGNATURE_FIELDS``).

    ``kind`` is ``int`` (between ``low`` and ``high``, at most ``rlp_len`` bytes in RLP),
    ``to`` (20 bytes, or none for a contract creation), ``data`` (bytes) or ``access_list``.
    ``json_default`` is the JSON value of an optional field left out (None: the key is
    required)."""

    json: str
    attr: str
    kind: str
    low: int = 0
    high: int = 0
    rlp_len: int = 0
    json_default: object = None

    def check(self, value: object) -> None:
        """Refuse a value the field cannot hold (the access list is checked by the caller)."""
        if self.kind == "int":
            _check_int(self.json, value, self.low, self.high)
        elif self.kind == "to":
            if value is not None:
                _check_bytes(self.json, value, ADDRESS_LEN)
        elif self.kind == "data":
            _check_bytes(self.json, value)

    def from_json(self, fields: Mapping[str, object], max_data_bytes: int) -> Any:
        value = fields.get(self.json, self.json_default)
        if self.kind == "int":
            return _json_int(self.json, value, self.low, self.high)
        if self.kind == "to":
            return None if value is None or value == "" else parse_address(value, field=self.json)
        if self.kind == "data":
            return _json_hex(self.json, value, max_data_bytes)
        return _json_access_list(value, max_data_bytes)

    def to_json(self, value: Any) -> Any:
        if self.kind == "int":
            return hex(value)
        if self.kind == "to":
            return None if value is None else to_checksum(value)
        if self.kind == "data":
            return "0x" + value.hex()
        return [{"address": to_checksum(address), "storageKeys": ["0x" + k.hex() for k in keys]}
                for address, keys in value]

    def to_rlp(self, value: Any) -> Any:
        if self.kind == "to":
            return b"" if value is None else value
        if self.kind == "access_list":
            return [[address, list(keys)] for address, keys in value]
        return value

    def from_rlp(self, item: object, max_data_bytes: int) -> Any:
        if self.kind == "int":
            return _rlp_int(self.json, item, self.rlp_len)
        if self.kind == "to":
            to = _rlp_bytes(self.json, item)
            if len(to) not in (0, ADDRESS_LEN):
                raise InvalidTransaction(f"{self.json}: must be empty or 20 bytes")
            return to or None
        if self.kind == "data":
            data = _rlp_bytes(self.json, item)
            if len(data) > max_data_bytes:
                raise InvalidTransaction(f"{self.json}: larger than {max_data_bytes} bytes")
            return data
        return _rlp_access_list(item, max_data_bytes)


# The one list of the unsigned transaction's fields, in RLP order: what the JSON parser, the
# renderer (to_fields), the RLP encoder and decoder and the constructor's checks go through.
FIELDS = (
    TxField("chainId", "chain_id", "int", 1, UINT64_MAX, 8),
    TxField("nonce", "nonce", "int", 0, NONCE_MAX, 8),
    TxField("maxPriorityFeePerGas", "max_priority_fee_per_gas", "int", 0, UINT256_MAX, 32),
    TxField("maxFeePerGas", "max_fee_per_gas", "int", 0, UINT256_MAX, 32),
    TxField("gas", "gas", "int", MIN_GAS, UINT64_MAX, 8),
    TxField("to", "to", "to"),
    TxField("value", "value", "int", 0, UINT256_MAX, 32),
    TxField("data", "data", "data", json_default="0x"),
    TxField("accessList", "access_list", "access_list", json_default=()),
)
# The signature after them in the signed form (s in the lower half of the curve order, EIP-2).
SIGNATURE_FIELDS = (
    TxField("yParity", "y_parity", "int", 0, 1, 1),
    TxField("r", "r", "int", 1, SECP256K1_N - 1, 32),
    TxField("s", "s", "int", 1, SECP256K1_N // 2, 32),
)
_JSON_KEYS = frozenset({"type"} | {f.json for f in FIELDS})
_REQUIRED = tuple(f.json for f in FIELDS if f.json_default is None)
_UNSIGNED_ITEMS = len(FIELDS)
_SIGNED_ITEMS = len(FIELDS) + len(SIGNATURE_FIELDS)


@dataclass(frozen=True)
class Eip1559Tx:
    """An unsigned EIP-1559 transaction. ``to`` is None for a contract creation."""

    chain_id: int
    nonce: int
    max_priority_fee_per_gas: int
    max_fee_per_gas: int
    gas: int
    to: bytes | None
    value: int
    data: bytes = b""
    access_list: AccessList = ()

    def __post_init__(self) -> None:
        for f in FIELDS:
            f.check(getattr(self, f.attr))
        if self.max_priority_fee_per_gas > self.max_fee_per_gas:
            raise InvalidTransaction("maxPriorityFeePerGas: must not exceed maxFeePerGas")
        if not isinstance(self.access_list, tuple):
            raise InvalidTransaction("accessList: must be a tuple of (address, storage keys)")
        for i, entry in enumerate(self.access_list):
            if not isinstance(entry, tuple) or len(entry) != 2 or not isinstance(entry[1], tuple):
                raise InvalidTransaction(f"accessList[{i}]: must be (address, storage keys)")
            _check_bytes(f"accessList[{i}].address", entry[0], ADDRESS_LEN)
            for j, key in enumerate(entry[1]):
                _check_bytes(f"accessList[{i}].storageKeys[{j}]", key, STORAGE_KEY_LEN)

    # --- the JSON dict form (eth-account's field names) ---

    @classmethod
    def from_fields(
        cls, fields: object, *, max_data_bytes: int = DEFAULT_MAX_DATA_BYTES
    ) -> Eip1559Tx:
        """Parse eth-account's dict form of a type-2 transaction, refusing anything doubtful.

        Integers are JSON numbers or 0x-hex strings. ``to`` is required (null or "" creates a
        contract, so a forgotten recipient is never read as a creation); ``data`` and
        ``accessList`` default to empty. Unknown keys, a ``type`` other than 2, and a ``data``
        or access list larger than ``max_data_bytes`` are refused.
        """
        fields = _json_object(fields, "transaction", _JSON_KEYS, _REQUIRED)
        if "type" in fields and _json_int("type", fields["type"], 0, UINT64_MAX) != TX_TYPE:
            raise InvalidTransaction("type: must be 2 (EIP-1559)")
        return cls(**{f.attr: f.from_json(fields, max_data_bytes) for f in FIELDS})

    def to_fields(self) -> dict[str, Any]:
        """The JSON dict form, integers as 0x-hex; ``from_fields`` of it gives this object back."""
        out: dict[str, Any] = {"type": hex(TX_TYPE)}
        out.update((f.json, f.to_json(getattr(self, f.attr))) for f in FIELDS)
        return out

    # --- encoding, digest, signed form ---

    def _rlp_items(self) -> list[Any]:
        return [f.to_rlp(getattr(self, f.attr)) for f in FIELDS]

    @cached_property
    def _unsigned(self) -> bytes:
        return bytes([TX_TYPE]) + _rlp_encode(self._rlp_items())

    @cached_property
    def _digest(self) -> bytes:
        return keccak256(self._unsigned)

    def unsigned_payload(self) -> bytes:
        """``0x02 || rlp([chain_id, nonce, ..., access_list])``: the bytes whose hash is signed.

        Computed once per (immutable) transaction object."""
        return self._unsigned

    def signing_hash(self) -> bytes:
        """keccak256 of the unsigned payload: the one digest the HSM signs for this transaction."""
        return self._digest

    def signed_raw(self, y_parity: int, r: int, s: int) -> bytes:
        """The network form ``0x02 || rlp([..., y_parity, r, s])``; s must already be low."""
        _check_signature(y_parity, r, s)
        return bytes([TX_TYPE]) + _rlp_encode(self._rlp_items() + [y_parity, r, s])

    tx_hash = staticmethod(tx_hash)  # the module's function, as a method too

    @classmethod
    def decode_unsigned(
        cls, payload: bytes, *, max_data_bytes: int = DEFAULT_MAX_DATA_BYTES
    ) -> Eip1559Tx:
        """Rebuild a transaction from its unsigned payload; only canonical bytes are accepted."""
        items = _decode_envelope(payload, _UNSIGNED_ITEMS, max_data_bytes)
        tx = _tx_from_items(items, max_data_bytes)
        if tx.unsigned_payload() != payload:
            raise InvalidTransaction("payload: not in canonical form")
        return tx

    @classmethod
    def decode_signed(
        cls, raw: bytes, *, max_data_bytes: int = DEFAULT_MAX_DATA_BYTES
    ) -> SignedEip1559Tx:
        """Rebuild a signed transaction from its raw bytes; only canonical bytes are accepted."""
        items = _decode_envelope(raw, _SIGNED_ITEMS, max_data_bytes)
        tx = _tx_from_items(items[:_UNSIGNED_ITEMS], max_data_bytes)
        signature = {f.attr: f.from_rlp(item, max_data_bytes)
                     for f, item in zip(SIGNATURE_FIELDS, items[_UNSIGNED_ITEMS:])}
        signed = SignedEip1559Tx(tx, **signature)
        if signed.raw() != raw:
            raise InvalidTransaction("payload: not in canonical form")
        return signed


@dataclass(frozen=True)
class SignedEip1559Tx:
    """A transaction with its signature (y-parity, r, low s)."""

    tx: Eip1559Tx
    y_parity: int
    r: int
    s: int

    def __post_init__(self) -> None:
        _check_signature(self.y_parity, self.r, self.s)

    def raw(self) -> bytes:
        """The signed raw transaction as broadcast."""
        return self.tx.signed_raw(self.y_parity, self.r, self.s)

    def hash(self) -> bytes:
        """The transaction hash: keccak256 of ``raw()``."""
        return tx_hash(self.raw())


def _check_signature(y_parity: object, r: object, s: object) -> None:
    for f, value in zip(SIGNATURE_FIELDS, (y_parity, r, s)):
        f.check(value)


# --- JSON field parsers ---


def _json_object(doc: object, what: str, allowed: Collection[str],
                 required: Iterable[str]) -> Mapping[str, object]:
    """``doc`` if it is a JSON object of no key but the ``allowed`` ones and every ``required``
    one (``what`` names it when it is no object)."""
    if not isinstance(doc, Mapping):
        raise InvalidTransaction(f"{what}: must be a JSON object")
    for key in doc:
        if not isinstance(key, str) or key not in allowed:
            raise InvalidTransaction(f"{key!s:.64}: unknown field")
    for key in required:
        if key not in doc:
            raise InvalidTransaction(f"{key}: missing")
    return doc


def _json_int(field: str, value: object, low: int, high: int) -> int:
    if isinstance(value, str):
        digits = value[2:]
        if not value.startswith("0x") or not digits or _HEX_DIGITS.fullmatch(digits) is None:
            raise InvalidTransaction(f"{field}: must be a JSON number or a 0x-prefixed hex string")
        if len(digits.lstrip("0")) > 64:
            raise _range_error(field, low, high)
        value = int(digits, 16)
    return _check_int(field, value, low, high)


def _json_hex(field: str, value: object, max_bytes: int, length: int | None = None) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise InvalidTransaction(f"{field}: must be a 0x-prefixed hex string")
    digits = value[2:]
    if len(digits) > 2 * max_bytes:
        raise InvalidTransaction(f"{field}: larger than {max_bytes} bytes")
    if len(digits) % 2 or _HEX_DIGITS.fullmatch(digits) is None:
        raise InvalidTransaction(f"{field}: must be hex digits of even length")
    data = bytes.fromhex(digits)
    if length is not None and len(data) != length:
        raise InvalidTransaction(f"{field}: must be {length} bytes")
    return data


def _json_access_list(value: object, max_bytes: int) -> AccessList:
    if not isinstance(value, (list, tuple)):
        raise InvalidTransaction("accessList: must be a list")
    budget = max_bytes
    entries = []
    for i, entry in enumerate(value):
        field = f"accessList[{i}]"
        if not isinstance(entry, Mapping) or set(entry) != _ACCESS_ENTRY_KEYS:
            raise InvalidTransaction(f"{field}: must be an object with address and storageKeys")
        budget -= ADDRESS_LEN
        if budget < 0:
            raise InvalidTransaction(f"accessList: larger than {max_bytes} bytes")
        address = parse_address(entry["address"], field=f"{field}.address")
        keys_value = entry["storageKeys"]
        if not isinstance(keys_value, (list, tuple)):
            raise InvalidTransaction(f"{field}.storageKeys: must be a list")
        budget -= STORAGE_KEY_LEN * len(keys_value)
        if budget < 0:
            raise InvalidTransaction(f"accessList: larger than {max_bytes} bytes")
        keys = tuple(
            _json_hex(f"{field}.storageKeys[{j}]", k, STORAGE_KEY_LEN, STORAGE_KEY_LEN)
            for j, k in enumerate(keys_value)
        )
        entries.append((address, keys))
    return tuple(entries)


# --- RLP ---


def _rlp_encode(items: list[Any]) -> bytes:
    encoded: bytes = rlp.encode(items)
    return encoded


def _decode_envelope(payload: object, n_items: int, max_data_bytes: int) -> list[Any]:
    if not isinstance(payload, bytes):
        raise InvalidTransaction("payload: must be bytes")
    if not payload or payload[0] != TX_TYPE:
        raise InvalidTransaction("payload: must start with the EIP-1559 type byte 0x02")
    limit = 2 * max_data_bytes + 1024  # data, access list and the fixed fields
    if len(payload) > limit:
        raise InvalidTransaction(f"payload: larger than {limit} bytes")
    try:
        items = rlp.decode(payload[1:], strict=True)
    except (rlp.DecodingError, RecursionError) as exc:
        raise InvalidTransaction("payload: malformed RLP") from exc
    if not isinstance(items, list) or len(items) != n_items:
        raise InvalidTransaction(f"payload: must be an RLP list of {n_items} items")
    return items


def _rlp_int(field: str, item: object, max_len: int) -> int:
    if not isinstance(item, bytes):
        raise InvalidTransaction(f"{field}: must be an RLP string")
    if item[:1] == b"\x00":
        raise InvalidTransaction(f"{field}: integer has leading zero bytes")
    if len(item) > max_len:
        raise InvalidTransaction(f"{field}: integer longer than {max_len} bytes")
    return int.from_bytes(item, "big")


def _rlp_bytes(field: str, item: object) -> bytes:
    if not isinstance(item, bytes):
        raise InvalidTransaction(f"{field}: must be an RLP string")
    return item


def _rlp_access_list(item: object, max_bytes: int) -> AccessList:
    if not isinstance(item, list):
        raise InvalidTransaction("accessList: must be an RLP list")
    entries = []
    size = 0
    for i, entry in enumerate(item):
        if not isinstance(entry, list) or len(entry) != 2 or not isinstance(entry[1], list):
            raise InvalidTransaction(f"accessList[{i}]: must be [address, [storage keys]]")
        address = _rlp_bytes(f"accessList[{i}].address", entry[0])
        keys = tuple(
            _rlp_bytes(f"accessList[{i}].storageKeys[{j}]", k) for j, k in enumerate(entry[1])
        )
        size += ADDRESS_LEN + STORAGE_KEY_LEN * len(keys)
        entries.append((address, keys))
    if size > max_bytes:
        raise InvalidTransaction(f"accessList: larger than {max_bytes} bytes")
    return tuple(entries)


def _tx_from_items(items: list[Any], max_data_bytes: int) -> Eip1559Tx:
    return Eip1559Tx(**{f.attr: f.from_rlp(item, max_data_bytes) for f, item in zip(FIELDS, items)})
