"""Typed records of the store's rows, built once where a row is read (the store's codec,
``signerd.adapters.store.codec``) and used by attribute everywhere above it.

Field names are the column names. Text that signerd seals or judges as written (the movement,
the requirement, the record of earlier vetoes, the replaced transfer's fee delta) stays the
text the row holds: ``engine.transfer_record`` seals it as stored, and its parsers decide what
a malformed value means. A row whose columns do not even have their types (a state that is no
state, a policy version that is no number) makes no record: the codec raises
AuthorityViolation (signerd writes none such).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from .model import Chain, Decision, ProposalState, TransferState


@dataclass(frozen=True)
class TransferRecord:
    """One row of ``transfers``."""

    id: str
    wallet_id: str
    chain: Chain
    state: TransferState
    payload: bytes  # as submitted: a PSBT (binary or base64) or the Ethereum JSON
    movement: str  # movement_json, as decoded and classified at submission (sealed)
    submitter: str
    policy_version: int
    requirement: str  # JSON of the requirement, a copy for people
    expires_at: float
    created_at: float
    updated_at: float
    replaces: str = ""
    legal_basis: str = ""
    category_change: str = "none"
    raw_tx: str = ""
    psbt: str = ""
    tx_hash: str = ""
    failure: str = ""
    idempotency_key: str = ""
    replaces_state: str = ""
    replaces_fee_delta: str = "0"  # a signed decimal (wei exceed 64 bits)
    vetoed: str = "[]"  # JSON [[role, transfer], ...] (engine.vetoes_of)
    seal: str = ""

    @property
    def live(self) -> bool:
        return self.state.live


@dataclass(frozen=True)
class ApprovalRecord:
    """One row of ``approvals``: an operator's signed decision on a transfer."""

    transfer_id: str
    operator_id: str
    decision: Decision
    signature: str  # hex of the Ed25519 signature over the statement (checked when judged)
    statement_sha256: str  # hex
    reason: str
    created_at: float


@dataclass(frozen=True)
class ProposalRecord:
    """One row of ``proposals``. Only ``body`` with its ``seal`` is signerd's word on a
    proposal (``ProposalService._doc``); the other columns are copies for queries."""

    id: str
    kind: str  # a kind of authority.KINDS once the sealed document says so
    body: str  # canonical JSON of the proposal document
    state: ProposalState
    submitter: str
    subject: str
    expires_at: float
    created_at: float
    updated_at: float
    applied_seq: int = 0
    failure: str = ""
    seal: str = ""


@dataclass(frozen=True)
class ProposalApprovalRecord:
    """One row of ``proposal_approvals``: an operator's signed decision on a proposal."""

    proposal_id: str
    operator_id: str
    decision: Decision
    signature: str  # hex (checked when counted)
    statement_sha256: str  # hex
    reason: str
    created_at: float


@dataclass(frozen=True)
class WalletRecord:
    """One row of ``wallets``. Only ``record`` with its ``seal`` (and, for a wallet with outside
    or imported keys, the ledger's approval of that record) is signerd's word on a wallet
    (``ledger.verified_wallet``); ``status`` and ``freeze_order`` are the row's, the rest are
    copies for queries. Every column is read as text: what a value means (an unknown status, a
    record that does not parse) is decided where the row is verified, so a row a store writer
    made is refused there with its reason, or left out of a listing and logged."""

    id: str
    chain: str
    network: str
    script_type: str
    category: str
    case_ref: str
    legal_basis: str
    status: str
    address: str
    freeze_order: str
    origin: str
    chain_ids: str  # JSON list of chain ids (a copy: the record holds them)
    record: str  # canonical JSON of the wallet's sealed record
    seal: str
    proposal_id: str
    # A Safe wallet's owners (JSON list), threshold and setup: copies of its sealed record
    safe_owners: str = ""
    safe_threshold: str = ""
    safe_setup: str = ""


@dataclass(frozen=True)
class KeyShareRecord:
    """One row of ``key_shares``: a cosigner key share made in the HSM for a multisig wallet
    yet to be created, sealed over its key id, public key, category and case
    (``ledger.verified_key_share``); ``wallet_id`` is the wallet that took it, if any."""

    key_id: str
    public_key: str  # hex, compressed
    label: str
    category: str
    case_ref: str
    wallet_id: str
    seal: str
    created_at: float


D = TypeVar("D", ApprovalRecord, ProposalApprovalRecord)


@dataclass(frozen=True)
class Shown(Generic[D]):
    """A stored decision, on a transfer or on a proposal, as the API shows it: whether it
    counts toward the quorum now."""

    record: D
    counted: bool


@dataclass(frozen=True)
class AttestationRecord:
    """One row of ``attestations``: a proof-of-control act (``core/attest``). Only ``document``
    with its ``seal`` is signerd's word on what it covers; ``result`` is the sealed holdings
    statement once signed."""

    id: str
    category: str
    case_ref: str
    document: str  # canonical JSON of the attestation document (sealed)
    seal: str
    state: str  # attest.STATES
    submitter: str
    expires_at: float
    created_at: float
    updated_at: float
    result: str = ""  # the holdings statement (JSON) once SIGNED
    failure: str = ""


@dataclass(frozen=True)
class AttestationApprovalRecord:
    """One row of ``attestation_approvals``: an operator's signed decision on an attestation."""

    attestation_id: str
    operator_id: str
    decision: Decision
    signature: str  # hex (checked when counted)
    statement_sha256: str  # hex
    reason: str
    created_at: float
