"""Metrics and logs of committed writes: each fact a transaction recorded
(``signerd.core.events``), reported once the transaction committed.

One place says what every fact counts and logs, so a transfer's state is counted the same way
whichever path moved it (an operator's decision, the sign step, the monitor's expiry, a
tightened policy) and never for a write that rolled back.
"""
from __future__ import annotations

import logging
import time
from typing import Iterable

from signerd.core import authority as AU
from signerd.core.events import (AttestationEntered, AuthorityViolated, Decided, Event,
                                 ProposalEntered, TransferEntered)
from signerd.core.model import TransferState

from .metrics import Metrics

transfers_log = logging.getLogger("signerd.transfers")
proposals_log = logging.getLogger("signerd.proposals")
attestations_log = logging.getLogger("signerd.attest")
# The states an attestation may enter (services/attest.STATES; this layer does not import
# services): a metric label is one of these, else "unknown".
ATTESTATION_STATES = frozenset({"PENDING_APPROVAL", "APPROVED", "AWAITING_COSIGNERS", "SIGNED",
                                "REJECTED", "EXPIRED", "FAILED"})


def kind_label(kind: object) -> str:
    """A proposal kind as a metric label: one of authority.KINDS, else ``unknown`` (a row's
    kind column is not signerd's until its sealed document says so)."""
    return kind if isinstance(kind, str) and kind in AU.KINDS else "unknown"


def attestation_state_label(state: object) -> str:
    """An attestation state as a metric label: one of ATTESTATION_STATES, else ``unknown``."""
    return state if isinstance(state, str) and state in ATTESTATION_STATES else "unknown"


def report(metrics: Metrics, events: Iterable[Event], now: float | None = None) -> None:
    """Count and log each fact of a committed transaction, in the order it was recorded."""
    now = time.time() if now is None else now
    for e in events:
        if isinstance(e, TransferEntered):
            _transfer_entered(metrics, e, now)
        elif isinstance(e, Decided):
            counter = {"transfer": metrics.approvals,
                       "attestation": metrics.attestation_approvals}.get(
                           e.subject, metrics.proposal_approvals)
            counter.labels(e.decision.value).inc()
            _log(e.subject).info(f"{e.subject} decision", extra={
                f"{e.subject}_id": e.subject_id, "operator": e.operator_id,
                "decision": e.decision.value})
        elif isinstance(e, ProposalEntered):
            metrics.proposal_events.labels(kind_label(e.kind), e.state).inc()
            extra = {"proposal_id": e.proposal_id, "kind": kind_label(e.kind),
                     "state": e.state, "actor": e.actor}
            if e.reason:
                extra["reason"] = e.reason
            proposals_log.info("proposal state", extra=extra)
        elif isinstance(e, AttestationEntered):
            state = attestation_state_label(e.state)
            metrics.attestation_events.labels(state).inc()
            extra = {"attestation_id": e.attestation_id, "state": state, "actor": e.actor}
            if e.reason:
                extra["reason"] = e.reason
            attestations_log.info("attestation state", extra=extra)
        elif isinstance(e, AuthorityViolated):
            metrics.authority_violations.labels(e.kind).inc()
            _log(e.subject).error("authority violation", extra={
                f"{e.subject}_id": e.subject_id, "kind": e.kind, "reason": e.reason})


def _log(subject: str) -> logging.Logger:
    return {"transfer": transfers_log, "attestation": attestations_log}.get(subject,
                                                                           proposals_log)


def _transfer_entered(metrics: Metrics, e: TransferEntered, now: float) -> None:
    metrics.transfer_events.labels(e.chain.value, e.state.value).inc()
    extra: dict[str, object] = {"transfer_id": e.transfer_id, "state": e.state.value,
                                "actor": e.actor}
    if e.wallet_id:
        extra["wallet_id"] = e.wallet_id
    if e.reason:
        extra["reason"] = e.reason
    if e.state is TransferState.APPROVED:
        metrics.quorum_seconds.observe(max(0.0, now - e.submitted_at))
    elif e.state is TransferState.SIGNED:
        metrics.signed_seconds.observe(max(0.0, now - e.submitted_at))
        metrics.quorum_to_signed_seconds.observe(max(0.0, now - e.quorum_at))
        extra.update(tx_hash=e.tx_hash, complete=e.complete)
    elif e.state is TransferState.PENDING_APPROVAL and e.reason:
        # An approved transfer whose quorum no longer holds: operators must decide again.
        transfers_log.warning("transfer %s returns to PENDING_APPROVAL: %s", e.transfer_id,
                              e.reason, extra=extra)
        return
    transfers_log.info("transfer state", extra=extra)
