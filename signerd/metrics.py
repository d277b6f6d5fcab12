"""Prometheus metrics, all prefixed ``signerd_``, on their own registry and HTTP port.

Label values are always from closed sets (chains, states, method names, status codes, reasons);
never an id, an address, a PIN or key material.
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from . import __version__

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
WAIT_BUCKETS = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600,
                3 * 24 * 3600, 7 * 24 * 3600)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.build = Info("signerd_build", "Version of signerd running.", registry=r)
        self.build.info({"version": __version__})
        self.hsm_up = Gauge("signerd_hsm_up", "1 while the HSM token is reachable and logged in.",
                            registry=r)
        self.store_up = Gauge("signerd_store_up", "1 while the store answers.", registry=r)
        self.hsm_sign_seconds = Histogram(
            "signerd_hsm_sign_seconds", "Time of one HSM ECDSA signature.",
            buckets=LATENCY_BUCKETS, registry=r)
        self.hsm_errors = Counter("signerd_hsm_errors_total", "HSM operations that failed.",
                                  ["operation"], registry=r)
        self.store_errors = Counter("signerd_store_errors_total", "Store operations that failed.",
                                    ["operation"], registry=r)
        self.wallets = Gauge("signerd_wallets", "Wallets by chain and category.",
                             ["chain", "category"], registry=r)
        self.transfers = Gauge("signerd_transfers", "Transfers by chain and state.",
                               ["chain", "state"], registry=r)
        self.transfer_events = Counter("signerd_transfer_transitions_total",
                                       "Transfers that entered a state.", ["chain", "state"],
                                       registry=r)
        self.approvals = Counter("signerd_approvals_total", "Approval decisions accepted.",
                                 ["decision"], registry=r)
        self.policy_denials = Counter("signerd_policy_denials_total",
                                      "Requests refused by policy or validation, by reason.",
                                      ["reason"], registry=r)
        self.quorum_seconds = Histogram("signerd_submit_to_quorum_seconds",
                                        "Time from submission to quorum.", buckets=WAIT_BUCKETS,
                                        registry=r)
        self.signed_seconds = Histogram("signerd_submit_to_signed_seconds",
                                        "Time from submission to signature.",
                                        buckets=WAIT_BUCKETS, registry=r)
        self.quorum_to_signed_seconds = Histogram(
            "signerd_quorum_to_signed_seconds", "Time from the last approval to the signed result.",
            buckets=LATENCY_BUCKETS, registry=r)
        self.grpc_requests = Counter("signerd_grpc_requests_total", "gRPC requests handled.",
                                     ["method", "code"], registry=r)
        self.grpc_denied = Counter("signerd_grpc_permission_denied_total",
                                   "Calls refused for the caller's principal.", ["method"],
                                   registry=r)
        self.audit_failures = Counter("signerd_audit_write_failures_total",
                                      "Audit appends that failed (the act failed with them).",
                                      registry=r)
        self.pending_expired = Gauge("signerd_transfers_past_expiry",
                                     "Live transfers whose approval window has passed.",
                                     registry=r)
