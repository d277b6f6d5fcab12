"""What a write did, as facts for metrics and logs.

A service records each fact in the store transaction that makes it true (``Tx.emit``), next
to the row it changes and the audit event it appends; the daemon reports the facts of a
transaction only after it committed (``signerd.adapters.observe``, from ``App._committed``).
A write that rolls back reports nothing, so a counter never counts a transfer that did not
enter its state, and a log line never tells of a state the store does not hold.

The audit chain stays the record: these facts carry what a metric label or a log line needs
(the chain, the proposal kind, the times a histogram measures), nothing the audit does not
already hold.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from .model import Chain, Decision, TransferState


@dataclass(frozen=True)
class TransferEntered:
    """A transfer entered ``state``: PENDING_APPROVAL when submitted, APPROVED at its quorum,
    SIGNED, an ending (REJECTED, EXPIRED, CANCELLED, FAILED), or PENDING_APPROVAL again when
    an approved transfer's quorum no longer holds (``reason`` says why)."""

    transfer_id: str
    chain: Chain
    state: TransferState
    actor: str = "signerd"
    reason: str = ""
    submitted_at: float = 0.0  # the transfer's creation, for the submit-to-state histograms
    quorum_at: float = 0.0  # SIGNED: the approval that completed the quorum
    wallet_id: str = ""
    tx_hash: str = ""  # SIGNED
    complete: bool = False  # SIGNED: every input signed (a multisig may wait for cosigners)


@dataclass(frozen=True)
class Decided:
    """An operator's signed decision on a transfer or a proposal was verified and stored."""

    subject: str  # "transfer", "proposal" or "attestation"
    subject_id: str
    operator_id: str
    decision: Decision


@dataclass(frozen=True)
class ProposalEntered:
    """A governance proposal entered ``state`` (PENDING_APPROVAL, APPROVED, REJECTED, EXPIRED,
    CANCELLED, FAILED). ``kind`` is the sealed document's kind, or the row's for a row signerd
    did not write (the reporter bounds it to the known kinds)."""

    proposal_id: str
    kind: str
    state: str
    actor: str = "signerd"
    reason: str = ""


@dataclass(frozen=True)
class AttestationEntered:
    """An attestation (a proof of control, ``core/attest``) entered ``state``:
    PENDING_APPROVAL when created, APPROVED at its quorum, AWAITING_COSIGNERS when signerd
    signed its part and outside cosigners must add theirs, SIGNED with its holdings statement,
    or an ending (REJECTED, EXPIRED, FAILED). The reporter bounds ``state`` to those names."""

    attestation_id: str
    state: str
    actor: str = "signerd"
    reason: str = ""


@dataclass(frozen=True)
class AuthorityViolated:
    """An act was refused and its transfer or proposal ended FAILED: something it counts does
    not trace back to the pinned genesis (``kind`` as AuthorityViolation's)."""

    subject: str  # "transfer", "proposal" or "attestation"
    subject_id: str
    kind: str
    reason: str


Event = Union[TransferEntered, Decided, ProposalEntered, AttestationEntered, AuthorityViolated]
