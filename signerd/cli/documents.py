"""The daemon's answers as plain JSON documents, in one place: what --json prints and what the
text rendering reads."""
from __future__ import annotations

import hashlib
import json
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from signerd.core.model import Movement
from signerd.core.movement_json import movement_dict
from signerd.v1 import signerd_pb2 as pb

_LOWERCASE_ENUMS = frozenset({"Chain", "Category", "ScriptType"})  # spelled as on the CLI


def _enum_name(field: FieldDescriptor, number: int) -> str:
    value = field.enum_type.values_by_number.get(number)
    if value is None:
        return str(number)
    if value.name.endswith("UNSPECIFIED"):
        return ""
    if field.enum_type.name in _LOWERCASE_ENUMS:
        return value.name.lower().replace("_", "-")
    return value.name


def _field_value(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_ENUM:
        return _enum_name(field, value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return bytes(value).hex()
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return to_dict(value)
    return value


def to_dict(msg: Message) -> dict[str, Any]:
    """A proto message as plain JSON values: enums by name (chain, category and script type in
    lower case as typed on the command line, states in capitals), bytes as lower-case hex, 64-bit
    integers as numbers, unset optional fields as null, ``*_unix`` fields without the suffix."""
    out: dict[str, Any] = {}
    for field in msg.DESCRIPTOR.fields:
        name = field.name.removesuffix("_unix")
        value = getattr(msg, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            out[name] = dict(value)  # a map<string, string> (Movement.extra)
        elif field.is_repeated:
            out[name] = [_field_value(field, v) for v in value]
        elif field.has_presence and not msg.HasField(field.name):
            out[name] = None
        else:
            out[name] = _field_value(field, value)
    return out


def wallet_json(w: pb.Wallet) -> dict[str, Any]:
    doc = to_dict(w)
    doc["chain_id"] = doc["chain_ids"][0] if doc["chain_ids"] else None
    return doc


def transfer_json(t: pb.Transfer) -> dict[str, Any]:
    doc = to_dict(t)
    doc.pop("payload")
    doc["payload_sha256"] = hashlib.sha256(t.payload).hexdigest()
    return doc


def operator_json(o: pb.Operator) -> dict[str, Any]:
    doc = to_dict(o)
    doc["public_key_pem"] = o.public_key_pem.decode("ascii", "replace")
    return doc


def movement_json(mv: Movement) -> dict[str, Any]:
    """A decoded movement in the same shape as ``to_dict(pb.Movement)``."""
    return movement_dict(mv)


def proposal_json(p: pb.Proposal) -> dict[str, Any]:
    doc = to_dict(p)
    try:
        doc["change"] = json.loads(p.body_json)["change"]
    except (ValueError, KeyError, TypeError):
        doc["change"] = None
    return doc
