"""The one table of transfer state transitions (core.model.TRANSFER_TRANSITIONS) and the
store's write path that checks every state it writes against it."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from signerd.adapters.store.factory import open_store
from signerd.core.errors import SignerError
from signerd.core.model import (NEW_TRANSFER, TRANSFER_TRANSITIONS, TransferState,
                                check_transition, may_move)

T = TransferState
ALLOWED = [
    (T.PENDING_APPROVAL, T.APPROVED), (T.PENDING_APPROVAL, T.REJECTED),
    (T.PENDING_APPROVAL, T.EXPIRED), (T.PENDING_APPROVAL, T.CANCELLED),
    (T.PENDING_APPROVAL, T.FAILED),
    (T.APPROVED, T.SIGNED), (T.APPROVED, T.PENDING_APPROVAL), (T.APPROVED, T.EXPIRED),
    (T.APPROVED, T.CANCELLED), (T.APPROVED, T.FAILED),
]
FINAL = [T.SIGNED, T.REJECTED, T.EXPIRED, T.CANCELLED, T.FAILED]
FORBIDDEN = [
    (T.APPROVED, T.APPROVED), (T.PENDING_APPROVAL, T.PENDING_APPROVAL),
    (T.PENDING_APPROVAL, T.SIGNED),  # never signed without the quorum's APPROVED first
    (T.APPROVED, T.REJECTED),
    *[(final, other) for final in FINAL for other in TransferState],  # finals stay final
]


def test_the_table_names_every_state_and_exactly_the_allowed_moves() -> None:
    assert set(TRANSFER_TRANSITIONS) == set(TransferState)
    assert {(a, b) for a, nexts in TRANSFER_TRANSITIONS.items() for b in nexts} == set(ALLOWED)
    assert all(not TRANSFER_TRANSITIONS[s] for s in FINAL)
    assert all(s.live == bool(TRANSFER_TRANSITIONS[s]) for s in TransferState)


@pytest.mark.parametrize("old, new", ALLOWED)
def test_allowed_transition(old: TransferState, new: TransferState) -> None:
    assert may_move(old, new)
    check_transition("t_1", old, new)


@pytest.mark.parametrize("old, new", FORBIDDEN)
def test_forbidden_transition(old: TransferState, new: TransferState) -> None:
    assert not may_move(old, new)
    with pytest.raises(SignerError, match=f"refuses to write it {new.value} when it is "
                                          f"{old.value}") as e:
        check_transition("t_1", old, new)
    assert e.value.reason == "TRANSFER_TRANSITION" and e.value.status.name == "INTERNAL"


@pytest.mark.parametrize("state", list(TransferState))
def test_a_transfer_is_born_pending(state: TransferState) -> None:
    assert may_move(None, state) == (state is NEW_TRANSFER is T.PENDING_APPROVAL)


def _transfer(tid: str, state: str = "PENDING_APPROVAL") -> dict[str, object]:
    now = time.time()
    return {"id": tid, "wallet_id": "w1", "chain": "ethereum", "state": state,
            "payload": b"p", "movement": "{}", "submitter": "platform", "policy_version": 1,
            "requirement": "{}", "expires_at": now + 60, "created_at": now, "updated_at": now}


def test_the_store_refuses_a_forbidden_transition(tmp_path: Path) -> None:
    st = open_store(f"sqlite:///{tmp_path / 'signerd.db'}")
    try:
        with st.transaction() as tx:
            tx.insert_wallet({"id": "w1", "chain": "ethereum", "network": "ethereum",
                              "script_type": "eoa", "category": "seized", "case_ref": "C",
                              "legal_basis": "", "status": "ACTIVE", "address": "0xabc",
                              "descriptor": "", "threshold": 1, "chain_ids": [1],
                              "cosigners": [], "created_at": time.time()})
            tx.insert_transfer(_transfer("t1"), [])
        with pytest.raises(SignerError, match="refuses to write it SIGNED when it is "
                                              "PENDING_APPROVAL"):
            with st.transaction() as tx:
                tx.update_transfer("t1", state=T.SIGNED, raw_tx="00")
        with pytest.raises(SignerError, match="refuses to write it APPROVED when it is new"):
            with st.transaction() as tx:
                tx.insert_transfer(_transfer("t2", "APPROVED"), [])
        with st.read() as tx:  # nothing was written
            t1 = tx.get_transfer("t1")
            assert (t1.state, t1.raw_tx) == (T.PENDING_APPROVAL, "")
            assert tx.one("SELECT id FROM transfers WHERE id = 't2'") is None
        with st.transaction() as tx:  # the allowed path goes on, and then the final state holds
            tx.update_transfer("t1", state=T.APPROVED)
            tx.update_transfer("t1", state=T.SIGNED, raw_tx="00")
        with pytest.raises(SignerError, match="refuses to write it PENDING_APPROVAL when it "
                                              "is SIGNED"):
            with st.transaction() as tx:
                tx.update_transfer("t1", state=T.PENDING_APPROVAL)
        with st.read() as tx:
            assert tx.get_transfer("t1").state is T.SIGNED
    finally:
        st.close()
