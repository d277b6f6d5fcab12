"""A strict decoder of Tron's ``Transaction.raw`` (protobuf), the transaction id, and the
signed transaction (pure).

Only what signerd signs is decoded, field by field, by hand (java-tron's ``Tron.proto``,
``balance_contract.proto`` and ``smart_contract.proto``)::

    Transaction.raw:       ref_block_bytes 1 (2 bytes), ref_block_num 3, ref_block_hash 4
                           (8 bytes), expiration 8 (ms, required), data 10 (memo), contract 11
                           (exactly one), timestamp 14 (ms), fee_limit 18 (sun)
    Transaction.Contract:  type 1 (TransferContract = 1, TriggerSmartContract = 31),
                           parameter 2 (google.protobuf.Any: type_url 1, value 2),
                           Permission_id 5 (0 only: the owner permission)
    TransferContract:      owner_address 1, to_address 2, amount 3
    TriggerSmartContract:  owner_address 1, contract_address 2, call_value 3, data 4,
                           call_token_value 5, token_id 6

Everything else is refused with ``InvalidTransaction`` naming it: an unknown field (``auths``,
``scripts``, a contract's ``provider`` or ``ContractName`` included), a wire type that is not the
field's, a field given twice, a varint that is not in its shortest form or beyond 64 bits, a
negative int64, a length past the end, trailing bytes, a contract type or ``type_url`` other than
the two above, and ``raw_data``, its contract or the contract's ``Any`` in any encoding but the
canonical one (fields in number order, no default value written out). The transaction id is
SHA-256 of the ``raw_data`` bytes exactly as submitted; that is the digest the HSM signs, and,
the encoding being canonical, the id java-tron computes over its own re-encoding of them.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from signerd.core.errors import InvalidTransaction, echo

from . import address as A

TRANSFER = 1
TRIGGER = 31
CONTRACT_NAMES = {TRANSFER: "TransferContract", TRIGGER: "TriggerSmartContract"}
TYPE_URL_PREFIX = "type.googleapis.com/protocol."
MAX_RAW_BYTES = 64 * 1024
MAX_MEMO_BYTES = 512
INT64_MAX = 2**63 - 1

VARINT, LEN = 0, 2
_WIRE_NAMES = {0: "varint", 1: "64-bit", 2: "length-delimited", 3: "start group",
               4: "end group", 5: "32-bit"}

Spec = dict[int, tuple[str, int]]
_RAW: Spec = {1: ("ref_block_bytes", LEN), 3: ("ref_block_num", VARINT),
              4: ("ref_block_hash", LEN), 8: ("expiration", VARINT), 10: ("data", LEN),
              11: ("contract", LEN), 14: ("timestamp", VARINT), 18: ("fee_limit", VARINT)}
_CONTRACT: Spec = {1: ("type", VARINT), 2: ("parameter", LEN), 5: ("Permission_id", VARINT)}
_ANY: Spec = {1: ("type_url", LEN), 2: ("value", LEN)}
_TRANSFER: Spec = {1: ("owner_address", LEN), 2: ("to_address", LEN), 3: ("amount", VARINT)}
_TRIGGER: Spec = {1: ("owner_address", LEN), 2: ("contract_address", LEN),
                  3: ("call_value", VARINT), 4: ("data", LEN), 5: ("call_token_value", VARINT),
                  6: ("token_id", VARINT)}


def _varint(buf: bytes, pos: int, where: str) -> tuple[int, int]:
    """A base-128 varint at ``pos``: (value, next position); shortest form, at most 64 bits."""
    value = shift = 0
    start = pos
    while True:
        if pos >= len(buf):
            raise InvalidTransaction(f"{where}: truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
        if shift >= 70:
            raise InvalidTransaction(f"{where}: varint longer than 10 bytes")
    if pos - start > 1 and buf[pos - 1] == 0:
        raise InvalidTransaction(f"{where}: varint not in its shortest form")
    if value >= 2**64:
        raise InvalidTransaction(f"{where}: varint beyond 64 bits")
    return value, pos


def fields(buf: bytes, spec: Spec, where: str, *, repeated: frozenset[int] = frozenset(),
           canonical: bool = False, messages: frozenset[int] = frozenset()) -> dict[str, Any]:
    """The fields of one protobuf message, by name: ints for varints, bytes for the
    length-delimited, a list for ``repeated`` field numbers. Raises InvalidTransaction for an
    unknown field, a wrong wire type, a duplicate, a bad varint or a length past the end.

    ``canonical``: the bytes must also be the message's one protobuf encoding (proto3), as
    java-tron re-encodes it: fields in increasing number order, and no singular scalar field
    written with its default value (0, empty); ``messages`` are the singular message fields,
    which proto3 writes even when empty. java-tron computes the transaction id over its own
    re-encoding of ``raw_data``, not over the bytes it was given: a signature over any other
    encoding never verifies there."""
    out: dict[str, Any] = {}
    pos = 0
    last = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos, f"{where}: field tag")
        number, wire = tag >> 3, tag & 7
        if number == 0 or number > 2**29 - 1:
            raise InvalidTransaction(f"{where}: invalid field number {number}")
        if number not in spec:
            raise InvalidTransaction(f"{where}: unknown field {number} "
                                     f"({_WIRE_NAMES.get(wire, f'wire type {wire}')}); signerd "
                                     "decodes only the fields it signs")
        name, expected = spec[number]
        if wire != expected:
            raise InvalidTransaction(f"{where}.{name}: wire type "
                                     f"{_WIRE_NAMES.get(wire, str(wire))}, expected "
                                     f"{_WIRE_NAMES[expected]}")
        value: Any
        if wire == VARINT:
            value, pos = _varint(buf, pos, f"{where}.{name}")
        else:
            length, pos = _varint(buf, pos, f"{where}.{name}: length")
            if length > len(buf) - pos:
                raise InvalidTransaction(f"{where}.{name}: length {length} runs past the end "
                                         f"of the message ({len(buf) - pos} bytes left)")
            value, pos = bytes(buf[pos:pos + length]), pos + length
        if number not in repeated and name in out:
            raise InvalidTransaction(f"{where}.{name}: field given more than once")
        if canonical and number < last:
            raise InvalidTransaction(
                f"{where}.{name}: field {number} after field {last}; java-tron re-encodes "
                f"{where} in field-number order to compute the transaction id, so a signature "
                "over this order would not verify (submit the canonical encoding)")
        last = number
        if (canonical and number not in repeated and number not in messages
                and value in (0, b"")):
            raise InvalidTransaction(
                f"{where}.{name}: written with its default value "
                f"({'empty' if value == b'' else value}); java-tron "
                f"re-encodes {where} without it to compute the transaction id, so a signature "
                "over these bytes would not verify (leave the field out)")
        if number in repeated:
            out.setdefault(name, []).append(value)
        else:
            out[name] = value
    return out


def _int64(d: dict[str, Any], name: str, where: str) -> int:
    value = int(d.get(name, 0))
    if value > INT64_MAX:
        raise InvalidTransaction(f"{where}.{name}: negative ({value - 2**64}); must be 0 or more")
    return value


def _addr(d: dict[str, Any], name: str, where: str) -> bytes:
    raw = d.get(name)
    if raw is None:
        raise InvalidTransaction(f"{where}.{name}: missing")
    if len(raw) != A.RAW_LEN or raw[0] != A.PREFIX:
        raise InvalidTransaction(f"{where}.{name}: not a Tron address (21 bytes starting with "
                                 f"0x41; got {len(raw)} bytes{' 0x' + raw[:1].hex() if raw else ''})")
    return bytes(raw)


@dataclass(frozen=True)
class TronTx:
    """A decoded ``Transaction.raw`` with one TransferContract or TriggerSmartContract."""

    raw: bytes  # raw_data as submitted: what the id hashes
    ref_block_bytes: bytes
    ref_block_num: int | None
    ref_block_hash: bytes
    expiration: int  # ms since the epoch
    timestamp: int | None  # ms
    fee_limit: int  # sun
    memo: bytes
    contract_type: int  # TRANSFER or TRIGGER
    owner: bytes  # 21 bytes
    to: bytes  # TransferContract: the recipient; TriggerSmartContract: the contract
    amount: int  # TransferContract: sun; TriggerSmartContract: call_value (0)
    data: bytes = b""  # TriggerSmartContract calldata

    @property
    def txid(self) -> bytes:
        return hashlib.sha256(self.raw).digest()

    @property
    def contract_name(self) -> str:
        return CONTRACT_NAMES[self.contract_type]


def decode_raw(raw: bytes) -> TronTx:
    """``Transaction.raw`` decoded strictly (see the module's docstring)."""
    if len(raw) > MAX_RAW_BYTES:
        raise InvalidTransaction(f"raw_data: {len(raw)} bytes, more than {MAX_RAW_BYTES}")
    top = fields(raw, _RAW, "raw_data", repeated=frozenset({11}), canonical=True)
    contracts = top.get("contract", [])
    if len(contracts) != 1:
        raise InvalidTransaction(f"raw_data.contract: exactly one contract is required, got "
                                 f"{len(contracts)}")
    rbb, rbh = top.get("ref_block_bytes", b""), top.get("ref_block_hash", b"")
    if len(rbb) != 2:
        raise InvalidTransaction(f"raw_data.ref_block_bytes: must be 2 bytes, got {len(rbb)}")
    if len(rbh) != 8:
        raise InvalidTransaction(f"raw_data.ref_block_hash: must be 8 bytes, got {len(rbh)}")
    expiration = _int64(top, "expiration", "raw_data")
    if expiration == 0:
        raise InvalidTransaction("raw_data.expiration: missing (a Tron transaction must expire)")
    memo = top.get("data", b"")
    if len(memo) > MAX_MEMO_BYTES:
        raise InvalidTransaction(f"raw_data.data: memo of {len(memo)} bytes, more than "
                                 f"{MAX_MEMO_BYTES}")
    contract = fields(contracts[0], _CONTRACT, "raw_data.contract", canonical=True,
                      messages=frozenset({2}))
    ctype = int(contract.get("type", 0))
    if ctype not in CONTRACT_NAMES:
        raise InvalidTransaction(f"raw_data.contract.type: contract type {ctype} is not one "
                                 "signerd signs on Tron (TransferContract = 1, "
                                 "TriggerSmartContract = 31)")
    if int(contract.get("Permission_id", 0)) != 0:
        raise InvalidTransaction(f"raw_data.contract.Permission_id: "
                                 f"{contract['Permission_id']}; signerd signs with the owner "
                                 "permission only (0)")
    if "parameter" not in contract:
        raise InvalidTransaction("raw_data.contract.parameter: missing")
    anyv = fields(contract["parameter"], _ANY, "raw_data.contract.parameter", canonical=True)
    name = CONTRACT_NAMES[ctype]
    url = anyv.get("type_url", b"")
    if url != (TYPE_URL_PREFIX + name).encode():
        raise InvalidTransaction(f"raw_data.contract.parameter.type_url: "
                                 f"{echo(url.decode('utf-8', 'replace'))} is not "
                                 f"{TYPE_URL_PREFIX + name} (the contract type is {name})")
    value = anyv.get("value", b"")
    where = f"raw_data.contract.parameter.value ({name})"
    common = dict(raw=bytes(raw), ref_block_bytes=rbb,
                  ref_block_num=(_int64(top, "ref_block_num", "raw_data")
                                 if "ref_block_num" in top else None),
                  ref_block_hash=rbh, expiration=expiration,
                  timestamp=_int64(top, "timestamp", "raw_data") if "timestamp" in top else None,
                  fee_limit=_int64(top, "fee_limit", "raw_data"), memo=memo,
                  contract_type=ctype)
    if ctype == TRANSFER:
        t = fields(value, _TRANSFER, where)
        amount = _int64(t, "amount", where)
        if amount == 0:
            raise InvalidTransaction(f"{where}.amount: must be more than 0 sun")
        return TronTx(owner=_addr(t, "owner_address", where), to=_addr(t, "to_address", where),
                      amount=amount, **common)  # type: ignore[arg-type]
    t = fields(value, _TRIGGER, where)
    for name in ("call_value", "call_token_value", "token_id"):
        if _int64(t, name, where) != 0:
            raise InvalidTransaction(f"{where}.{name}: must be 0 (signerd signs only TRC-20 "
                                     "transfers, which send no TRX and no TRC-10 token)")
    return TronTx(owner=_addr(t, "owner_address", where), to=_addr(t, "contract_address", where),
                  amount=0, data=t.get("data", b""), **common)  # type: ignore[arg-type]


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all different (a repeated key would let two readers see
    two transactions)."""
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


_PAYLOAD_KEYS = frozenset({"raw_data_hex", "txID", "raw_data", "visible", "signature"})


def parse_payload(payload: bytes, max_bytes: int = MAX_RAW_BYTES) -> TronTx:
    """A submitted transaction, JSON as TronWeb and tronpy write it: ``raw_data_hex`` (required),
    ``txID`` (optional; must be SHA-256 of raw_data), ``raw_data`` (optional, TronWeb's decoded
    form: ignored, signerd decodes the hex itself), ``visible`` (optional boolean, ignored),
    ``signature`` (optional, empty: signerd signs unsigned transactions only)."""
    if len(payload) > 4 * max_bytes + 65536:
        raise InvalidTransaction(f"tron transaction: larger than the limit of {max_bytes} bytes")
    try:
        doc = json.loads(payload.decode("utf-8"), object_pairs_hook=_unique_keys)
    except _DuplicateKey as e:
        raise InvalidTransaction(f"tron transaction: key {echo(str(e))} given more than once"
                                 ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidTransaction(f"tron transaction: not valid JSON ({e})") from None
    except (ValueError, RecursionError):
        raise InvalidTransaction("tron transaction: not valid JSON") from None
    if not isinstance(doc, dict):
        raise InvalidTransaction("tron transaction: must be a JSON object")
    unknown = sorted(set(doc) - _PAYLOAD_KEYS)
    if unknown:
        raise InvalidTransaction(f"tron transaction: unknown key {echo(unknown[0])} (known: "
                                 f"{', '.join(sorted(_PAYLOAD_KEYS))})")
    text = doc.get("raw_data_hex")
    if not isinstance(text, str) or not text:
        raise InvalidTransaction("tron transaction: raw_data_hex is required (hex of "
                                 "Transaction.raw)")
    if len(text) > 2 * max_bytes:
        raise InvalidTransaction(f"raw_data_hex: more than {max_bytes} bytes")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise InvalidTransaction("raw_data_hex: not hexadecimal") from None
    if len(text) != 2 * len(raw):
        raise InvalidTransaction("raw_data_hex: whitespace is not allowed")
    if "visible" in doc and not isinstance(doc["visible"], bool):
        raise InvalidTransaction("tron transaction: visible must be true or false")
    if "raw_data" in doc and not isinstance(doc["raw_data"], dict):
        raise InvalidTransaction("tron transaction: raw_data must be an object")
    if doc.get("signature") not in (None, []):
        raise InvalidTransaction("tron transaction: already signed (signature must be absent "
                                 "or empty)")
    tx = decode_raw(raw)
    if "txID" in doc:
        given = doc["txID"]
        if not isinstance(given, str) or given.lower() != tx.txid.hex():
            raise InvalidTransaction(f"txID: {echo(str(given))} is not SHA-256 of raw_data "
                                     f"({tx.txid.hex()})")
    return tx


# ---------------------------------------------------------------- signed output

def _key(number: int, wire: int) -> bytes:
    return _enc_varint(number << 3 | wire)


def _enc_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def signature_bytes(r: int, s: int, recovery_id: int) -> bytes:
    """r || s || v, 65 bytes, v the recovery id (0 or 1), as tronpy writes it (java-tron adds
    27 to a v below 27 before it recovers, so it takes both)."""
    if recovery_id not in (0, 1):
        raise ValueError("recovery id must be 0 or 1")
    return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([recovery_id])


def signed_transaction(tx: TronTx, signature: bytes) -> bytes:
    """The ``Transaction`` message: raw_data (1) and one signature (2), what
    ``/wallet/broadcasthex`` takes."""
    return (_key(1, LEN) + _enc_varint(len(tx.raw)) + tx.raw
            + _key(2, LEN) + _enc_varint(len(signature)) + signature)


_SIGNED: Spec = {1: ("raw_data", LEN), 2: ("signature", LEN)}


def parse_signed(data: bytes) -> tuple[TronTx, list[bytes]]:
    """A signed ``Transaction`` (as ``signed_transaction`` writes it) back into its parts."""
    d = fields(data, _SIGNED, "transaction", repeated=frozenset({2}))
    if "raw_data" not in d:
        raise InvalidTransaction("transaction.raw_data: missing")
    return decode_raw(d["raw_data"]), list(d.get("signature", []))


def raw_data_json(tx: TronTx) -> dict[str, Any]:
    """``raw_data`` in java-tron's JSON form with hex addresses (``visible: false``)."""
    if tx.contract_type == TRANSFER:
        value: dict[str, Any] = {"owner_address": tx.owner.hex(), "to_address": tx.to.hex(),
                                 "amount": tx.amount}
    else:
        value = {"owner_address": tx.owner.hex(), "contract_address": tx.to.hex(),
                 "data": tx.data.hex()}
    doc: dict[str, Any] = {
        "contract": [{"parameter": {"value": value,
                                    "type_url": TYPE_URL_PREFIX + tx.contract_name},
                      "type": tx.contract_name}],
        "ref_block_bytes": tx.ref_block_bytes.hex(),
        "ref_block_hash": tx.ref_block_hash.hex(),
        "expiration": tx.expiration,
    }
    if tx.ref_block_num is not None:
        doc["ref_block_num"] = tx.ref_block_num
    if tx.memo:
        doc["data"] = tx.memo.hex()
    if tx.timestamp is not None:
        doc["timestamp"] = tx.timestamp
    if tx.fee_limit:
        doc["fee_limit"] = tx.fee_limit
    return doc


def signed_json(signed_hex: str) -> dict[str, Any]:
    """The signed transaction as ``/wallet/broadcasttransaction`` takes it, from the hex
    ``signed_transaction`` made: txID, raw_data (decoded), raw_data_hex, signature[]."""
    tx, sigs = parse_signed(bytes.fromhex(signed_hex))
    return {"visible": False, "txID": tx.txid.hex(), "raw_data": raw_data_json(tx),
            "raw_data_hex": tx.raw.hex(), "signature": [s.hex() for s in sigs]}
