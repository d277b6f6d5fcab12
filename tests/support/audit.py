"""Audit chains made in memory and export documents edited line by line (for the unit tests of
the audit chain, its checkpoints and ``signerctl audit verify``)."""
from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from signerd.core import audit


def approvals_chain(n: int) -> list[audit.AuditEvent]:
    """``n`` linked ``transfer.approve`` events by inv1, one microsecond apart."""
    events, prev = [], None
    for i in range(1, n + 1):
        prev = audit.new_event(prev, time=1_700_000_000_000_000 + i, actor="inv1",
                               action="transfer.approve", object=f"transfer/t_{i}",
                               details={"n": i})
        events.append(prev)
    return events


def lines_of(doc: bytes) -> list[bytes]:
    return doc.split(b"\n")[:-1]


def join(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def edit_line(doc: bytes, number: int, **changes) -> bytes:
    """Change fields of the JSON object on 1-based line `number`, keeping canonical form."""
    lines = lines_of(doc)
    obj = json.loads(lines[number - 1])
    obj.update(changes)
    lines[number - 1] = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return join(lines)


def one_byte_changed(doc: bytes, data: Any) -> tuple[bytes, int, int]:
    """``doc`` with one byte changed (hypothesis's ``data`` draws where and to what); and that
    position and byte."""
    position = data.draw(st.integers(0, len(doc) - 1), label="position")
    byte = data.draw(st.integers(0, 255).filter(lambda b: b != doc[position]), label="byte")
    return doc[:position] + bytes([byte]) + doc[position + 1:], position, byte


def assert_one_byte_change_detected(doc: bytes, data: Any) -> None:
    """An export with any one byte changed is refused: it does not parse (InvalidArgument) or
    it does not verify."""
    from signerd.core import audit
    from signerd.core.errors import InvalidArgument

    mutated, position, byte = one_byte_changed(doc, data)
    try:
        result = audit.verify_export(mutated)
    except InvalidArgument:
        return
    assert not result.ok, (position, byte)
