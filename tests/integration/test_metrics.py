"""Metrics of a real daemon after an Ethereum end-to-end run: every DESIGN §8 series moves exactly
as the run says it should (and the ones that should stay still do), read from /metrics with
prometheus_client's own parser."""
from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass, field

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

import signerd
from signerd.adapters.metrics import Metrics
from tests.support.daemon import Daemon, init_state
from tests.support.governance import decide
from tests.support.rpc import pb, rpc_error
from tests.unit.eth_oracle import CHAIN_ID

GWEI = 10**9
TINY_POLICY = ('name = "tiny"\n[[rule]]\nname = "tiny"\nasset = "ETH"\nmax_amount = "10"\n'
               'approvers = 2\n')
PROBE_SECONDS = 2.0  # the default [hsm] probe_seconds: gauges refresh on each health tick


class Scrape:
    """One /metrics scrape: sample name -> list of (labels, value)."""

    def __init__(self, text: str):
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
        for fam in self.families.values():
            for s in fam.samples:
                self.samples[s.name].append((dict(s.labels), s.value))

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels`` (0 if none)."""
        return sum(v for lab, v in self.samples.get(name, [])
                   if all(lab.get(k) == want for k, want in labels.items()))

    def has(self, name: str) -> bool:
        return bool(self.samples.get(name))


@dataclass
class Run:
    before: Scrape
    after: Scrape
    right_after_sign: Scrape
    gauge_lag: float
    secrets: list[str] = field(default_factory=list)

    def delta(self, name: str, **labels: str) -> float:
        return self.after.value(name, **labels) - self.before.value(name, **labels)


def tx(nonce: int, value: int = 10**15) -> dict:
    return {"chainId": CHAIN_ID, "nonce": nonce, "maxPriorityFeePerGas": GWEI,
            "maxFeePerGas": 2 * GWEI, "gas": 21000,
            "to": "0x000000000000000000000000000000000000dEaD", "value": value, "data": "0x",
            "accessList": []}


def submit(d: Daemon, wallet_id: str, fields: dict) -> pb.Transfer:
    return d.custody().SubmitTransfer(pb.SubmitTransferRequest(
        wallet_id=wallet_id, ethereum=pb.EthereumTransaction(json=json.dumps(fields))))


def eth_wallet(d: Daemon, policy: str = "") -> pb.Wallet:
    from tests.support.governance import set_policy

    w = d.custody().CreateWallet(pb.CreateWalletRequest(
        chain=pb.ETHEREUM, chain_ids=[CHAIN_ID], category=pb.SEIZED, case_ref="CASE-METRICS"))
    if policy:
        set_policy(d, w.id, policy)
    return w


def wait_for(d: Daemon, ok, timeout: float) -> tuple[Scrape, float]:
    t0 = time.monotonic()
    while True:
        s = Scrape(d.metrics())
        if ok(s) or time.monotonic() - t0 > timeout:
            return s, time.monotonic() - t0
        time.sleep(0.2)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    d = Daemon(init_state(tmp_path_factory.mktemp("metrics") / "state")).start()
    try:
        before = Scrape(d.metrics())
        # Both wallets first: CreateWallet refreshes the gauges itself, so after this only the
        # health tick can bring signerd_transfers up to date (which the end of the run checks).
        w = eth_wallet(d)
        tiny = eth_wallet(d, policy=TINY_POLICY)
        # 1. Two-key approval: investigator, then custody officer -> quorum -> HSM -> SIGNED.
        t1 = submit(d, w.id, tx(0))
        assert decide(d, t1.id, "inv1").state == pb.PENDING_APPROVAL
        t1 = decide(d, t1.id, "cust1")
        assert t1.state == pb.SIGNED and t1.raw_tx
        right_after_sign = Scrape(d.metrics())
        # 2. The judge's veto in the two-key policy -> REJECTED.
        t2 = submit(d, w.id, tx(1))
        assert decide(d, t2.id, "judge1", pb.REJECT, reason="court order pending"
                      ).state == pb.REJECTED
        # 3. Cancelled by the platform -> CANCELLED.
        t3 = submit(d, w.id, tx(2))
        d.custody().CancelTransfer(pb.CancelTransferRequest(transfer_id=t3.id, reason="test"))
        # 4. A policy matching nothing -> FAILED_PRECONDITION, counted as a policy denial.
        e = rpc_error(submit, d, tiny.id, tx(0, value=11))
        assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
        # 5. The platform may not fetch an approval statement -> PERMISSION_DENIED.
        e = rpc_error(d.approval("platform").GetStatement,
                      pb.GetStatementRequest(transfer_id=t2.id, decision=pb.APPROVE))
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED
        # 6. A malformed request -> INVALID_ARGUMENT.
        e = rpc_error(submit, d, w.id, {**tx(3), "to": "0x12"})
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
        # Transfer gauges are refreshed by the health tick; allow a few ticks.
        after, lag = wait_for(d, lambda s: (
            s.value("signerd_transfers", chain="ethereum", state="SIGNED") >= 1
            and s.value("signerd_transfers", chain="ethereum", state="REJECTED") >= 1
            and s.value("signerd_transfers", chain="ethereum", state="CANCELLED") >= 1),
            timeout=4 * PROBE_SECONDS + 5)
        ids = [w.id, tiny.id, t1.id, t2.id, t3.id, w.address, tiny.address, t1.tx_hash]
        return Run(before, after, right_after_sign, lag, [i for i in ids if i])
    finally:
        d.stop()


# (series, labels, expected change over the run)
EXACT_DELTAS = [
    ("signerd_transfer_transitions_total", {"chain": "ethereum", "state": "PENDING_APPROVAL"}, 3),
    ("signerd_transfer_transitions_total", {"chain": "ethereum", "state": "APPROVED"}, 1),
    ("signerd_transfer_transitions_total", {"chain": "ethereum", "state": "SIGNED"}, 1),
    ("signerd_transfer_transitions_total", {"chain": "ethereum", "state": "REJECTED"}, 1),
    ("signerd_transfer_transitions_total", {"chain": "ethereum", "state": "CANCELLED"}, 1),
    ("signerd_transfer_transitions_total", {"chain": "ethereum", "state": "EXPIRED"}, 0),
    ("signerd_transfer_transitions_total", {"chain": "ethereum", "state": "FAILED"}, 0),
    ("signerd_transfer_transitions_total", {"chain": "bitcoin"}, 0),
    ("signerd_approvals_total", {"decision": "APPROVE"}, 2),
    ("signerd_approvals_total", {"decision": "REJECT"}, 1),
    ("signerd_policy_denials_total", {}, 1),
    ("signerd_policy_denials_total", {"reason": "policy_denied"}, 1),
    ("signerd_submit_to_quorum_seconds_count", {}, 1),
    ("signerd_submit_to_signed_seconds_count", {}, 1),
    ("signerd_quorum_to_signed_seconds_count", {}, 1),
    # the seals of the two wallets and the three transfers the run creates, of the policy
    # proposal for one of them and of the ledger entry that applies it, and the signed
    # transfer's one digest
    ("signerd_hsm_sign_seconds_count", {}, 8),
    ("signerd_grpc_requests_total", {"method": "Custody/CreateWallet", "code": "OK"}, 2),
    ("signerd_grpc_requests_total", {"method": "Custody/SubmitTransfer", "code": "OK"}, 3),
    ("signerd_grpc_requests_total",
     {"method": "Custody/SubmitTransfer", "code": "FAILED_PRECONDITION"}, 1),
    ("signerd_grpc_requests_total",
     {"method": "Custody/SubmitTransfer", "code": "INVALID_ARGUMENT"}, 1),
    ("signerd_grpc_requests_total", {"method": "Custody/CancelTransfer", "code": "OK"}, 1),
    ("signerd_grpc_requests_total", {"method": "Approval/GetStatement", "code": "OK"}, 3),
    ("signerd_grpc_requests_total", {"method": "Approval/SubmitApproval", "code": "OK"}, 3),
    ("signerd_grpc_requests_total",
     {"method": "Approval/GetStatement", "code": "PERMISSION_DENIED"}, 1),
    ("signerd_grpc_requests_total", {"code": "INTERNAL"}, 0),
    ("signerd_grpc_permission_denied_total", {"method": "Approval/GetStatement"}, 1),
    ("signerd_grpc_permission_denied_total", {}, 1),
    ("signerd_audit_write_failures_total", {}, 0),
    ("signerd_hsm_errors_total", {}, 0),
    ("signerd_store_errors_total", {}, 0),
]


@pytest.mark.parametrize("name,labels,expected", EXACT_DELTAS,
                         ids=[f"{n}{sorted(lab.values())}" for n, lab, _ in EXACT_DELTAS])
def test_counter_moved_by_exactly(run: Run, name: str, labels: dict, expected: float) -> None:
    assert run.delta(name, **labels) == expected, (name, labels)


def test_brief_minimums(run: Run) -> None:
    a = run.after
    assert a.value("signerd_transfer_transitions_total", chain="ethereum", state="SIGNED") >= 1
    assert a.value("signerd_approvals_total", decision="APPROVE") >= 2
    assert a.value("signerd_policy_denials_total") >= 1
    for h in ("signerd_hsm_sign_seconds", "signerd_submit_to_quorum_seconds",
              "signerd_submit_to_signed_seconds", "signerd_quorum_to_signed_seconds"):
        assert a.value(f"{h}_count") >= 1, h
    assert a.value("signerd_grpc_requests_total", method="Custody/SubmitTransfer",
                   code="OK") >= 2
    assert a.value("signerd_grpc_permission_denied_total", method="Approval/GetStatement") >= 1
    assert a.value("signerd_wallets", chain="ethereum", category="seized") >= 1
    assert a.value("signerd_transfers", chain="ethereum", state="SIGNED") >= 1


def test_histograms_are_consistent(run: Run) -> None:
    a = run.after
    for h, top in (("signerd_hsm_sign_seconds", 5.0), ("signerd_quorum_to_signed_seconds", 300.0),
                   ("signerd_submit_to_quorum_seconds", 7 * 24 * 3600.0),
                   ("signerd_submit_to_signed_seconds", 7 * 24 * 3600.0)):
        buckets = sorted(((float(lab["le"]), v) for lab, v in a.samples[f"{h}_bucket"]))
        counts = [v for _, v in buckets]
        assert counts == sorted(counts), f"{h}: buckets not cumulative"
        assert buckets[-1] == (float("inf"), a.value(f"{h}_count")), h
        assert max(le for le, _ in buckets if le != float("inf")) == top, h
        total = a.value(f"{h}_sum")
        assert 0 < total < 120, f"{h}: sum {total} s for a run of seconds"
    # Ordering of the waits of the one signed transfer.
    assert (a.value("signerd_submit_to_quorum_seconds_sum")
            <= a.value("signerd_submit_to_signed_seconds_sum"))
    # SoftHSM signs in milliseconds: the signatures (seven seals, one transfer) landed in a
    # bucket at or under 1 s.
    assert a.value("signerd_hsm_sign_seconds_bucket", le="1.0") == 8


def test_gauges_show_the_store(run: Run) -> None:
    a = run.after
    assert a.value("signerd_hsm_up") == 1 and a.value("signerd_store_up") == 1
    assert a.value("signerd_wallets", chain="ethereum", category="seized") == 2
    assert a.value("signerd_wallets", chain="bitcoin") == 0
    for state in ("SIGNED", "REJECTED", "CANCELLED"):
        assert a.value("signerd_transfers", chain="ethereum", state=state) == 1, state
    assert a.value("signerd_transfers", state="PENDING_APPROVAL") == 0
    assert a.value("signerd_transfers", state="APPROVED") == 0
    assert a.value("signerd_transfers_past_expiry") == 0
    # The transfer gauges trail the store by at most a couple of health ticks.
    assert run.gauge_lag <= 4 * PROBE_SECONDS + 5


def test_wallet_gauge_refreshes_at_once(run: Run) -> None:
    """CreateWallet refreshes the gauges itself: the scrape right after signing (no tick
    needed) already counts both wallets."""
    assert run.right_after_sign.value("signerd_wallets", chain="ethereum", category="seized") == 2


def test_counters_move_at_once(run: Run) -> None:
    """Counters and histograms are updated in the request itself, before the reply."""
    r = run.right_after_sign
    assert r.value("signerd_transfer_transitions_total", chain="ethereum", state="SIGNED") == 1
    # two wallet seals, a proposal's and its ledger entry's, the signed transfer's seal and its
    # digest (the other transfers come later)
    assert r.value("signerd_hsm_sign_seconds_count") == 6
    assert r.value("signerd_quorum_to_signed_seconds_count") == 1


def test_build_info_and_help_texts(run: Run) -> None:
    a = run.after
    assert a.samples["signerd_build_info"] == [({"version": signerd.__version__}, 1.0)]
    declared = {f.name: f for f in Metrics().registry.collect()}
    for name, fam in declared.items():
        # The text format has no info type: an Info is a gauge named <name>_info.
        name, kind = (f"{name}_info", "gauge") if fam.type == "info" else (name, fam.type)
        assert name in a.families, f"{name} is not exposed"
        assert a.families[name].documentation == fam.documentation, name
        assert a.families[name].type == kind, name


def test_no_identifier_leaks_into_labels(run: Run) -> None:
    for name, samples in run.after.samples.items():
        for labels, _ in samples:
            for value in labels.values():
                for secret in run.secrets:
                    assert secret.lower() not in value.lower(), (name, labels)
