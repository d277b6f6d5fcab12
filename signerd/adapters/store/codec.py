"""The store's codec: one function per record, from a row as read to the typed record of
``signerd.core.records`` (and back to columns, for an insert). Every store method that reads a
transfer, an approval, a proposal, a wallet or a key share builds its record here, once;
nothing above the store indexes a row.
The field's type in the record decides how its column is read (``_DECODERS``).

A row whose columns do not have their types makes no record: AuthorityViolation, naming the
row (signerd writes none such; a store writer's row is refused like any other forgery).
"""
from __future__ import annotations

import dataclasses
import typing
from enum import Enum
from typing import Any, Callable, Protocol, TypeVar

from signerd.core.errors import AuthorityViolation
from signerd.core.model import Chain, Decision, ProposalState, TransferState
from signerd.core.records import (ApprovalRecord, KeyShareRecord, ProposalApprovalRecord,
                                  ProposalRecord, TransferRecord, WalletRecord)


class Columns(Protocol):
    """A row as read: a store ``Row`` or a plain mapping of column to value."""

    def __getitem__(self, key: str) -> Any: ...


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def transfer_from_row(r: Columns) -> TransferRecord:
    return _record(TransferRecord, r, "transfer", "id", "its row is malformed in the store",
                   "transfer")


def approval_from_row(r: Columns) -> ApprovalRecord:
    return _record(ApprovalRecord, r, "transfer", "transfer_id",
                   "a stored decision is malformed", "approval")


def proposal_from_row(r: Columns) -> ProposalRecord:
    return _record(ProposalRecord, r, "proposal", "id", "its row is malformed in the store",
                   "proposal")


def proposal_approval_from_row(r: Columns) -> ProposalApprovalRecord:
    return _record(ProposalApprovalRecord, r, "proposal", "proposal_id",
                   "a stored decision is malformed", "approval")


def wallet_from_row(r: Columns) -> WalletRecord:
    return _record(WalletRecord, r, "wallet", "id", "its row is malformed in the store",
                   "wallet")


def key_share_from_row(r: Columns) -> KeyShareRecord:
    return _record(KeyShareRecord, r, "key share", "key_id", "its row is malformed in the store",
                   "wallet")


def transfer_columns(t: TransferRecord) -> dict[str, Any]:
    """The columns of a record, as written (enum members by value)."""
    return _columns(t)


def approval_columns(a: ApprovalRecord) -> dict[str, Any]:
    return _columns(a)


def proposal_columns(p: ProposalRecord) -> dict[str, Any]:
    return _columns(p)


def proposal_approval_columns(a: ProposalApprovalRecord) -> dict[str, Any]:
    return _columns(a)


# How a column's value becomes a field's, by the field's type (field names are column names).
_DECODERS: dict[Any, Callable[[Any], Any]] = {
    str: _text, int: int, float: float, bytes: bytes,
    Chain: Chain, TransferState: TransferState, ProposalState: ProposalState, Decision: Decision,
}

R = TypeVar("R")


_FIELD_DECODERS: dict[type, tuple[tuple[str, Callable[[Any], Any]], ...]] = {}


def _field_decoders(cls: type) -> tuple[tuple[str, Callable[[Any], Any]], ...]:
    """Each field of the record class ``cls`` with the decoder of its type."""
    out = _FIELD_DECODERS.get(cls)
    if out is None:
        hints = typing.get_type_hints(cls)
        out = _FIELD_DECODERS[cls] = tuple(
            (f.name, _DECODERS[hints[f.name]]) for f in dataclasses.fields(cls))
    return out


def _record(cls: type[R], r: Columns, subject: str, key: str, what: str, kind: str) -> R:
    """The record ``cls`` of row ``r``, every field from its column; AuthorityViolation
    (``{subject} {id}: {what}``) when a column is missing or is not of its type."""
    try:
        return cls(**{name: decode(r[name]) for name, decode in _field_decoders(cls)})
    except (KeyError, TypeError, ValueError) as e:
        raise AuthorityViolation(f"{subject} {_where(r, key)}: {what} ({e})",
                                 kind=kind) from None


def _columns(record: Any) -> dict[str, Any]:
    """A record's columns, as written (enum members by value)."""
    return {f.name: (v.value if isinstance(v := getattr(record, f.name), Enum) else v)
            for f in dataclasses.fields(record)}


def _where(r: Columns, key: str = "id") -> str:
    try:
        return str(r[key])
    except (KeyError, TypeError, IndexError):
        return "?"
