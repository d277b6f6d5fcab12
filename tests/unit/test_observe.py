"""Metrics and logs come from the facts a committed write recorded (``signerd.core.events``),
reported by ``signerd.adapters.observe`` after the commit: a write that rolls back counts and
logs nothing, and each fact counts the series it names."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from signerd.adapters import observe
from signerd.adapters.metrics import Metrics
from signerd.adapters.store import Tx
from signerd.adapters.store.factory import open_store
from signerd.core import events as EV
from signerd.core.model import Chain, Decision, TransferState


def _value(m: Metrics, name: str, **labels: str) -> float:
    v = m.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


def _store(tmp_path: Path) -> Any:
    return open_store(f"sqlite:///{tmp_path / 'signerd.db'}")


def test_facts_are_reported_after_the_commit_and_never_for_a_rollback(tmp_path: Path) -> None:
    st = _store(tmp_path)
    seen: list[list[EV.Event]] = []

    def on_commit(tx: Tx) -> None:
        seen.append(list(tx.events))

    st.on_commit = on_commit
    ended = EV.TransferEntered("t_1", Chain.ETHEREUM, TransferState.EXPIRED, reason="window")
    with pytest.raises(RuntimeError):
        with st.transaction() as tx:
            tx.emit(ended)
            raise RuntimeError("the write fails after the transfer was ended")
    assert seen == []  # rolled back: nothing counted, nothing logged
    with st.transaction() as tx:
        tx.emit(ended)  # a fact without an audit append is reported too
        assert seen == []  # not while the transaction is open
    assert seen == [[ended]]
    with st.transaction() as tx:
        tx.set_meta("k", "v")  # a write with no fact and no audit: no report
    assert seen == [[ended]]
    st.close()


def test_each_fact_counts_its_series(caplog: pytest.LogCaptureFixture) -> None:
    m = Metrics()
    caplog.set_level(logging.INFO, logger="signerd")
    observe.report(m, [
        EV.TransferEntered("t_1", Chain.ETHEREUM, TransferState.PENDING_APPROVAL, "platform",
                           wallet_id="w_1"),
        EV.Decided("transfer", "t_1", "inv1", Decision.APPROVE),
        EV.TransferEntered("t_1", Chain.ETHEREUM, TransferState.APPROVED, submitted_at=90.0),
        EV.TransferEntered("t_1", Chain.ETHEREUM, TransferState.SIGNED, submitted_at=90.0,
                           quorum_at=99.5, tx_hash="0xab", complete=True),
        EV.TransferEntered("t_2", Chain.BITCOIN, TransferState.PENDING_APPROVAL,
                           reason="its quorum no longer holds (inv1 was revoked)"),
        EV.AuthorityViolated("transfer", "t_3", "transfer", "its seal does not verify"),
        EV.ProposalEntered("p_1", "operator.register", "PENDING_APPROVAL", "admin1"),
        EV.Decided("proposal", "p_1", "admin2", Decision.REJECT),
        EV.ProposalEntered("p_2", "a kind a store writer made up", "FAILED"),
    ], now=100.0)
    assert _value(m, "signerd_transfer_transitions_total", chain="ethereum",
                  state="PENDING_APPROVAL") == 1
    assert _value(m, "signerd_transfer_transitions_total", chain="ethereum",
                  state="APPROVED") == 1
    assert _value(m, "signerd_transfer_transitions_total", chain="ethereum", state="SIGNED") == 1
    # A quorum lost is a return to PENDING_APPROVAL: counted as entering it, and a warning.
    assert _value(m, "signerd_transfer_transitions_total", chain="bitcoin",
                  state="PENDING_APPROVAL") == 1
    assert _value(m, "signerd_approvals_total", decision="APPROVE") == 1
    assert _value(m, "signerd_submit_to_quorum_seconds_sum") == pytest.approx(10.0)
    assert _value(m, "signerd_submit_to_signed_seconds_sum") == pytest.approx(10.0)
    assert _value(m, "signerd_quorum_to_signed_seconds_sum") == pytest.approx(0.5)
    assert _value(m, "signerd_authority_violations_total", kind="transfer") == 1
    assert _value(m, "signerd_proposal_transitions_total", kind="operator.register",
                  state="PENDING_APPROVAL") == 1
    assert _value(m, "signerd_proposal_decisions_total", decision="REJECT") == 1
    # A row's kind is not signerd's word: the label is bounded to the known kinds.
    assert _value(m, "signerd_proposal_transitions_total", kind="unknown", state="FAILED") == 1
    levels = {(r.name, r.getMessage().split(":")[0], r.levelname) for r in caplog.records}
    assert ("signerd.transfers", "transfer t_2 returns to PENDING_APPROVAL", "WARNING") in levels
    assert ("signerd.transfers", "authority violation", "ERROR") in levels
    signed = [r for r in caplog.records if getattr(r, "state", "") == "SIGNED"]
    assert len(signed) == 1 and signed[0].tx_hash == "0xab"  # type: ignore[attr-defined]


def test_attestations_count_their_states_and_decisions_with_bounded_labels(
        caplog: pytest.LogCaptureFixture) -> None:
    m = Metrics()
    caplog.set_level(logging.INFO)
    observe.report(m, [
        EV.AttestationEntered("a_1", "PENDING_APPROVAL"),
        EV.Decided("attestation", "a_1", "inv1", Decision.APPROVE),
        EV.AttestationEntered("a_1", "APPROVED"),
        EV.AttestationEntered("a_1", "AWAITING_COSIGNERS"),
        EV.AttestationEntered("a_1", "SIGNED"),
        EV.AttestationEntered("a_2", "APPROVED\nstate=\"x\""),  # never a label as written
        EV.AuthorityViolated("attestation", "a_3", "attestation", "not signerd's")])
    for state in ("PENDING_APPROVAL", "APPROVED", "AWAITING_COSIGNERS", "SIGNED", "unknown"):
        assert _value(m, "signerd_attestation_transitions_total", state=state) == 1, state
    assert _value(m, "signerd_attestation_decisions_total", decision="APPROVE") == 1
    assert _value(m, "signerd_approvals_total", decision="APPROVE") == 0
    assert _value(m, "signerd_proposal_decisions_total", decision="APPROVE") == 0
    assert _value(m, "signerd_authority_violations_total", kind="attestation") == 1
    assert {r.name for r in caplog.records} == {"signerd.attest"}
