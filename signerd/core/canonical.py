"""Canonical JSON: the one spelling of a document that signatures and hashes are taken over; and
strict base64, the one way signerd decodes base64 from outside.

Keys sorted, no whitespace, ASCII only (other characters as ``\\uXXXX``), no NaN or infinity.
Parsing is strict: duplicate keys, floats and non-canonical spellings are refused, so a document
read back from the store or from a person's terminal has exactly the bytes that were signed.
"""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from .errors import InvalidArgument


# Built once: json.dumps and json.loads with options make a new encoder or decoder per call,
# which is most of their cost on the small documents of the audit chain.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                            allow_nan=False)


def dumps(value: Any) -> bytes:
    return _ENCODER.encode(value).encode("ascii")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _no_float(text: str) -> Any:
    raise ValueError(f"non-integer number {text} is not allowed")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def parse_strict(text: str) -> Any:
    """JSON with duplicate keys, non-integer numbers, NaN and Infinity refused (ValueError;
    RecursionError when nested too deeply); any spelling otherwise."""
    return _DECODER.decode(text)


_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_float=_no_float,
                            parse_constant=_no_constant)


def loads(data: bytes | str, what: str) -> Any:
    """Parse canonical JSON; raise InvalidArgument naming ``what`` unless ``data`` is exactly
    the canonical spelling of what it parses to."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    try:
        value = parse_strict(raw.decode("ascii"))
    except UnicodeDecodeError:
        raise InvalidArgument(f"{what}: not ASCII") from None
    except RecursionError:
        raise InvalidArgument(f"{what}: nested too deeply") from None
    except ValueError as e:
        raise InvalidArgument(f"{what}: not valid JSON ({e})") from None
    if dumps(value) != raw:
        raise InvalidArgument(f"{what}: not in canonical form")
    return value


def strict_b64decode(text: str | bytes, field: str, *,
                     error: type[InvalidArgument] = InvalidArgument) -> bytes:
    """Decode standard base64 (RFC 4648 alphabet, padded) in its one canonical spelling.

    Whitespace (anywhere: callers strip what may surround a value), characters outside the
    alphabet, missing or extra padding, and non-zero trailing bits are refused with ``error``
    (InvalidArgument or a subclass) naming ``field``, so that one text decodes to one value."""
    if isinstance(text, str):
        try:
            data = text.encode("ascii")
        except UnicodeEncodeError:
            raise error(f"{field}: base64 contains non-ASCII characters") from None
    else:
        data = bytes(text)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise error(f"{field}: not valid base64 ({exc})") from None
    if base64.b64encode(raw) != data:
        raise error(f"{field}: base64 is not canonical (bad padding or trailing bits)")
    return raw
