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
from typing import Any, Callable, Generic, Protocol, TypeVar

from signerd.core.errors import AuthorityViolation
from signerd.core.model import Chain, Decision, ProposalState, TransferState
from signerd.core.records import (ApprovalRecord, AttestationApprovalRecord, AttestationRecord,
                                  KeyShareRecord, ProposalApprovalRecord, ProposalRecord,
                                  TransferRecord, WalletRecord)


class Columns(Protocol):
    """A row as read: a store ``Row`` or a plain mapping of column to value."""

    def __getitem__(self, key: str) -> Any: ...


R = TypeVar("R")


def _text(value: Any) -> str:
    return "" if value is None else str(value)


class Reader(Generic[R]):
    """Builds the record ``cls`` from a row; a row that makes none is AuthorityViolation
    ``{subject} {row[key]}: {what} ({cause})`` of kind ``kind``."""

    def __init__(self, cls: type[R], subject: str, key: str, what: str, kind: str):
        self.cls, self.subject, self.key, self.what, self.kind = cls, subject, key, what, kind

    def __call__(self, r: Columns) -> R:
        return _record(self.cls, r, self.subject, self.key, self.what, self.kind)


MALFORMED_ROW = "its row is malformed in the store"
MALFORMED_DECISION = "a stored decision is malformed"

transfer_from_row = Reader(TransferRecord, "transfer", "id", MALFORMED_ROW, "transfer")
approval_from_row = Reader(ApprovalRecord, "transfer", "transfer_id", MALFORMED_DECISION,
                           "approval")
proposal_from_row = Reader(ProposalRecord, "proposal", "id", MALFORMED_ROW, "proposal")
proposal_approval_from_row = Reader(ProposalApprovalRecord, "proposal", "proposal_id",
                                    MALFORMED_DECISION, "approval")
wallet_from_row = Reader(WalletRecord, "wallet", "id", MALFORMED_ROW, "wallet")
key_share_from_row = Reader(KeyShareRecord, "key share", "key_id", MALFORMED_ROW, "wallet")
attestation_from_row = Reader(AttestationRecord, "attestation", "id", MALFORMED_ROW,
                              "attestation")
attestation_approval_from_row = Reader(AttestationApprovalRecord, "attestation",
                                       "attestation_id", MALFORMED_DECISION, "approval")


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
