"""Canonical JSON: the one spelling of a document that signatures and hashes are taken over.

Keys sorted, no whitespace, ASCII only (other characters as ``\\uXXXX``), no NaN or infinity.
Parsing is strict: duplicate keys, floats and non-canonical spellings are refused, so a document
read back from the store or from a person's terminal has exactly the bytes that were signed.
"""
from __future__ import annotations

import json
from typing import Any

from .errors import InvalidArgument


def dumps(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode("ascii")


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
    return json.loads(text, object_pairs_hook=_no_duplicates, parse_float=_no_float,
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
