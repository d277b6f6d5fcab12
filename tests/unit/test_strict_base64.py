"""One strict base64 entry point (signerd.core.canonical.strict_b64decode), and the call sites that
decode base64 from outside through it: the Bitcoin adapter's PSBT payload and parse_psbt_base64."""
from __future__ import annotations

import base64

import pytest

from _vectors import load
from signerd.core.bitcoin.psbt import parse_psbt_base64
from signerd.core.canonical import strict_b64decode
from signerd.core.chains import decode_psbt_bytes
from signerd.core.limits import Limits
from signerd.core.errors import InvalidArgument, InvalidPsbt

PSBT = next(raw for raw in (bytes.fromhex(v["hex"]) for v in load("bip174/valid.json"))
            if len(raw) % 3)  # its base64 ends in padding
GOOD = base64.b64encode(PSBT).decode()


def test_canonical_text_decodes() -> None:
    assert strict_b64decode("aGk=", "f") == b"hi"
    assert strict_b64decode(b"aGVsbG8h", "f") == b"hello!"
    assert strict_b64decode("", "f") == b""


@pytest.mark.parametrize("text, problem", [
    ("aGl=", "not canonical"),  # non-zero trailing bits: also "hi" to a lenient decoder
    ("aGk", "not valid base64"),  # padding missing
    ("aGk==", "not valid base64"),  # padding extra
    ("aGk=aGk=", "not valid base64"),  # data after the padding
    ("aG k=", "not valid base64"),  # whitespace inside
    ("aGk=\n", "not valid base64"),  # whitespace around (callers strip it first)
    ("aG-_", "not valid base64"),  # the URL-safe alphabet
    ("aG*=", "not valid base64"),
    ("aGé=", "non-ASCII"),
])
def test_non_canonical_or_foreign_text_is_refused_naming_the_field(text: str, problem: str) -> None:
    with pytest.raises(InvalidArgument, match=f"^wallet.blob: .*{problem}") as e:
        strict_b64decode(text, "wallet.blob")
    assert type(e.value) is InvalidArgument and e.value.reason == "INVALID_ARGUMENT"
    with pytest.raises(InvalidPsbt, match="^psbt: "):
        strict_b64decode(text, "psbt", error=InvalidPsbt)


def _non_canonical_padding(text: str) -> str:
    """The same bytes with non-zero trailing bits in the last character before the padding."""
    assert text.endswith("=")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    body = text.rstrip("=")
    last = alphabet[alphabet.index(body[-1]) | 1]
    bad = body[:-1] + last + text[len(body):]
    assert base64.b64decode(bad) == base64.b64decode(text)  # what a lenient decoder accepts
    return bad


def test_the_bitcoin_adapter_refuses_non_canonical_base64_naming_psbt() -> None:
    assert decode_psbt_bytes(GOOD.encode()) == PSBT
    assert decode_psbt_bytes(b"  " + GOOD.encode() + b"\n") == PSBT
    assert decode_psbt_bytes(PSBT) == PSBT
    with pytest.raises(InvalidPsbt, match=r"^psbt: base64 is not canonical"):
        decode_psbt_bytes(_non_canonical_padding(GOOD).encode())
    with pytest.raises(InvalidPsbt, match=r"^psbt: not valid base64"):
        decode_psbt_bytes(GOOD[:40].encode() + b" " + GOOD[40:].encode())


def test_parse_psbt_base64_refuses_non_canonical_base64_naming_psbt() -> None:
    assert parse_psbt_base64(GOOD).serialize() == PSBT
    with pytest.raises(InvalidPsbt, match=r"^psbt: base64 is not canonical"):
        parse_psbt_base64(_non_canonical_padding(GOOD))
    with pytest.raises(InvalidPsbt, match=r"^psbt: not valid base64"):
        parse_psbt_base64(GOOD + "=")
    with pytest.raises(InvalidPsbt, match=r"^psbt: base64 contains non-ASCII"):
        parse_psbt_base64(GOOD[:-4] + "\u00e9AAA")


def test_the_adapter_and_the_parser_agree() -> None:
    """Both call sites accept and refuse the same texts (the adapter's parse is what runs)."""
    from signerd.core.chains import BitcoinAdapter

    for text in (GOOD, _non_canonical_padding(GOOD), GOOD + "=", GOOD[:-1]):
        results = []
        for parse in (lambda t: parse_psbt_base64(t, Limits()),
                      lambda t: BitcoinAdapter.parse(t.encode(), Limits())):
            try:
                results.append(parse(text).serialize())
            except InvalidPsbt as e:
                results.append(str(e))
        assert results[0] == results[1], text
