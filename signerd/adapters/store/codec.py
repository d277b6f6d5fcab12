"""The store's codec: one function per record, from a row as read to the typed record of
``signerd.core.records`` (and back to columns, for an insert). Every store method that reads a
transfer or an approval builds its record here, once; nothing above the store indexes a row.

A row whose columns do not have their types makes no record: AuthorityViolation, naming the
row (signerd writes none such; a store writer's row is refused like any other forgery).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from signerd.core.errors import AuthorityViolation
from signerd.core.model import Chain, Decision, ProposalState, TransferState
from signerd.core.records import (ApprovalRecord, ProposalApprovalRecord, ProposalRecord,
                                  TransferRecord)


class Columns(Protocol):
    """A row as read: a store ``Row`` or a plain mapping of column to value."""

    def __getitem__(self, key: str) -> Any: ...


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def transfer_from_row(r: Columns) -> TransferRecord:
    try:
        return TransferRecord(
            id=_text(r["id"]), wallet_id=_text(r["wallet_id"]), chain=Chain(r["chain"]),
            state=TransferState(r["state"]), payload=bytes(r["payload"]),
            movement=_text(r["movement"]), submitter=_text(r["submitter"]),
            policy_version=int(r["policy_version"]), requirement=_text(r["requirement"]),
            expires_at=float(r["expires_at"]), created_at=float(r["created_at"]),
            updated_at=float(r["updated_at"]), replaces=_text(r["replaces"]),
            legal_basis=_text(r["legal_basis"]), category_change=_text(r["category_change"]),
            raw_tx=_text(r["raw_tx"]), psbt=_text(r["psbt"]), tx_hash=_text(r["tx_hash"]),
            failure=_text(r["failure"]), idempotency_key=_text(r["idempotency_key"]),
            replaces_state=_text(r["replaces_state"]),
            replaces_fee_delta=_text(r["replaces_fee_delta"]), vetoed=_text(r["vetoed"]),
            seal=_text(r["seal"]))
    except (KeyError, TypeError, ValueError) as e:
        raise AuthorityViolation(f"transfer {_where(r)}: its row is malformed in the store "
                                 f"({e})", kind="transfer") from None


def approval_from_row(r: Columns) -> ApprovalRecord:
    try:
        return ApprovalRecord(
            transfer_id=_text(r["transfer_id"]), operator_id=_text(r["operator_id"]),
            decision=Decision(r["decision"]), signature=_text(r["signature"]),
            statement_sha256=_text(r["statement_sha256"]), reason=_text(r["reason"]),
            created_at=float(r["created_at"]))
    except (KeyError, TypeError, ValueError) as e:
        raise AuthorityViolation(f"transfer {_where(r, 'transfer_id')}: a stored decision is "
                                 f"malformed ({e})", kind="approval") from None


def proposal_from_row(r: Columns) -> ProposalRecord:
    try:
        return ProposalRecord(
            id=_text(r["id"]), kind=_text(r["kind"]), body=_text(r["body"]),
            state=ProposalState(r["state"]), submitter=_text(r["submitter"]),
            subject=_text(r["subject"]), expires_at=float(r["expires_at"]),
            created_at=float(r["created_at"]), updated_at=float(r["updated_at"]),
            applied_seq=int(r["applied_seq"]), failure=_text(r["failure"]),
            seal=_text(r["seal"]))
    except (KeyError, TypeError, ValueError) as e:
        raise AuthorityViolation(f"proposal {_where(r)}: its row is malformed in the store "
                                 f"({e})", kind="proposal") from None


def proposal_approval_from_row(r: Columns) -> ProposalApprovalRecord:
    try:
        return ProposalApprovalRecord(
            proposal_id=_text(r["proposal_id"]), operator_id=_text(r["operator_id"]),
            decision=Decision(r["decision"]), signature=_text(r["signature"]),
            statement_sha256=_text(r["statement_sha256"]), reason=_text(r["reason"]),
            created_at=float(r["created_at"]))
    except (KeyError, TypeError, ValueError) as e:
        raise AuthorityViolation(f"proposal {_where(r, 'proposal_id')}: a stored decision is "
                                 f"malformed ({e})", kind="approval") from None


def transfer_columns(t: TransferRecord) -> dict[str, Any]:
    """The columns of a record, as written (enum members by value)."""
    out = dataclasses.asdict(t)
    out["chain"], out["state"] = t.chain.value, t.state.value
    return out


def approval_columns(a: ApprovalRecord) -> dict[str, Any]:
    out = dataclasses.asdict(a)
    out["decision"] = a.decision.value
    return out


def proposal_columns(p: ProposalRecord) -> dict[str, Any]:
    out = dataclasses.asdict(p)
    out["state"] = p.state.value
    return out


def proposal_approval_columns(a: ProposalApprovalRecord) -> dict[str, Any]:
    out = dataclasses.asdict(a)
    out["decision"] = a.decision.value
    return out


def _where(r: Columns, key: str = "id") -> str:
    try:
        return str(r[key])
    except (KeyError, TypeError, IndexError):
        return "?"
