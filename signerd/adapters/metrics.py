"""Prometheus metrics, all prefixed ``signerd_``, on their own registry and HTTP port.

Label values are always from closed sets (chains, states, method names, status codes, reasons);
never an id, an address, a PIN or key material.

The alert rules in ``deploy/prometheus/alerts.yml`` and the dashboard in
``deploy/grafana/signerd.json`` use these names; ``tests/unit/test_deploy_files.py`` checks that
every series they query exists here, so rename nothing without updating both.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from signerd import __version__

# One HSM signature: SoftHSM answers in well under a millisecond, a network HSM in 5-50 ms;
# anything past a second means a saturated or failing HSM.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# From the quorum-making approval to the stored signed result: every HSM signature of the
# transfer (a PSBT may have thousands of inputs) plus the store transaction.
SIGN_STEP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                     120.0, 300.0)
# Human waits: from submission to quorum and to signature, seconds up to a week (approval
# windows are hours to days).
WAIT_BUCKETS = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600,
                3 * 24 * 3600, 7 * 24 * 3600)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.build = Info("signerd_build", "Version of signerd running.", registry=r)
        self.build.info({"version": __version__})
        self.hsm_up = Gauge(
            "signerd_hsm_up",
            "1 while the HSM token is reachable and logged in, 0 while it is not (health is "
            "NOT_SERVING then).", registry=r)
        self.store_up = Gauge(
            "signerd_store_up",
            "1 while the store answers its ping, 0 while it does not (health is NOT_SERVING "
            "then).", registry=r)
        self.hsm_sign_seconds = Histogram(
            "signerd_hsm_sign_seconds",
            "Seconds one HSM ECDSA signature took (successful signatures only).",
            buckets=LATENCY_BUCKETS, registry=r)
        self.hsm_signing = Gauge(
            "signerd_hsm_signatures_in_flight",
            "HSM ECDSA signatures asked for and not answered yet (the sign step's and signerd's "
            "seals); one that stays up means an HSM that hangs.", registry=r)
        self.hsm_errors = Counter(
            "signerd_hsm_errors_total",
            "HSM operations that failed because the HSM was unavailable, by operation "
            "(sign, generate).", ["operation"], registry=r)
        self.store_errors = Counter(
            "signerd_store_errors_total",
            "Store operations that failed, by operation (ping).", ["operation"], registry=r)
        self.wallets = Gauge(
            "signerd_wallets",
            "Wallets in the store by chain and category (refreshed on each health tick and "
            "after a wallet is created).", ["chain", "category"], registry=r)
        self.transfers = Gauge(
            "signerd_transfers",
            "Transfers in the store by chain and state (refreshed on each health tick).",
            ["chain", "state"], registry=r)
        self.transfer_events = Counter(
            "signerd_transfer_transitions_total",
            "Transfers that entered a state, by chain and the state entered.",
            ["chain", "state"], registry=r)
        self.approvals = Counter(
            "signerd_approvals_total",
            "Operator decisions accepted (signature verified and stored), by decision "
            "(APPROVE, REJECT).", ["decision"], registry=r)
        self.policy_denials = Counter(
            "signerd_policy_denials_total",
            "Transfer submissions refused by the wallet's policy, by reason.", ["reason"],
            registry=r)
        self.quorum_seconds = Histogram(
            "signerd_submit_to_quorum_seconds",
            "Seconds from a transfer's submission to the approval that completed its quorum.",
            buckets=WAIT_BUCKETS, registry=r)
        self.signed_seconds = Histogram(
            "signerd_submit_to_signed_seconds",
            "Seconds from a transfer's submission to its stored signed result.",
            buckets=WAIT_BUCKETS, registry=r)
        self.quorum_to_signed_seconds = Histogram(
            "signerd_quorum_to_signed_seconds",
            "Seconds from the approval that completed a quorum to the stored signed result "
            "(all HSM signatures of the transfer and the store write).",
            buckets=SIGN_STEP_BUCKETS, registry=r)
        self.grpc_requests = Counter(
            "signerd_grpc_requests_total",
            "gRPC requests handled, by method (Service/Method) and status code.",
            ["method", "code"], registry=r)
        self.grpc_denied = Counter(
            "signerd_grpc_permission_denied_total",
            "gRPC calls refused with PERMISSION_DENIED (principal unknown or not allowed the "
            "method, operator revoked or deciding on its own submission), by method.",
            ["method"], registry=r)
        self.audit_failures = Counter(
            "signerd_audit_write_failures_total",
            "Audit log appends that failed (the act they recorded failed with them).",
            registry=r)
        self.authority_violations = Counter(
            "signerd_authority_violations_total",
            "Acts refused because something they count does not trace back to the pinned "
            "genesis through approved governance proposals (a row signerd did not write), by "
            "kind: genesis, ledger, approval, operator, wallet, policy, quorum, ended, veto, "
            "transfer (a transfer row without signerd's seal over what was submitted), "
            "proposal, attestation (an attestation row, or its record of cosigning, without "
            "signerd's seal).",
            ["kind"], registry=r)
        self.proposal_events = Counter(
            "signerd_proposal_transitions_total",
            "Governance proposals that entered a state, by kind and state.", ["kind", "state"],
            registry=r)
        self.proposal_approvals = Counter(
            "signerd_proposal_decisions_total",
            "Operator decisions on governance proposals accepted, by decision.", ["decision"],
            registry=r)
        self.attestation_events = Counter(
            "signerd_attestation_transitions_total",
            "Attestations (proofs of control) that entered a state, by state: "
            "PENDING_APPROVAL, APPROVED, AWAITING_COSIGNERS, SIGNED, REJECTED, EXPIRED, FAILED.",
            ["state"], registry=r)
        self.attestation_approvals = Counter(
            "signerd_attestation_decisions_total",
            "Operator decisions on attestations accepted, by decision.", ["decision"],
            registry=r)
        self.authority_seq = Gauge(
            "signerd_authority_ledger_seq",
            "The last authority ledger entry this daemon verified.", registry=r)
        for kind in ("genesis", "ledger", "approval", "operator", "wallet", "policy", "quorum",
                     "ended", "veto", "transfer", "proposal", "attestation"):
            self.authority_violations.labels(kind)  # every series from 0: alerts see the first
        self.audit_violations = Counter(
            "signerd_audit_chain_violations_total",
            "Audit checkpoints refused because the chain in the store does not match what the "
            "HSM signed (nothing was signed), by kind: event (an event since the latest "
            "checkpoint, or at a checkpoint's head, was changed or removed), checkpoint (a "
            "checkpoint was deleted, replaced or forged).", ["kind"], registry=r)
        for kind in ("event", "checkpoint"):
            self.audit_violations.labels(kind)
        self.audit_head_seq = Gauge(
            "signerd_audit_head_seq",
            "The audit chain's head seq in the store (refreshed on each health tick).",
            registry=r)
        self.audit_checkpoint_head_seq = Gauge(
            "signerd_audit_checkpoint_head_seq",
            "The head seq of the latest HSM-signed audit checkpoint in the store (refreshed on "
            "each health tick and when this daemon signs one).", registry=r)
        self.pending_expired = Gauge(
            "signerd_transfers_past_expiry",
            "Approved transfers still waiting to be signed after their approval window "
            "closed (for example on a frozen wallet).", registry=r)
