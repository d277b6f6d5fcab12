"""The store codec: a row as read becomes its typed record once; a row without its types makes
no record (AuthorityViolation), and a record's columns read back to the same record."""
from __future__ import annotations

import pytest

from signerd.adapters.store.codec import (approval_columns, approval_from_row,
                                          proposal_columns, proposal_from_row,
                                          transfer_columns, transfer_from_row)
from signerd.core.errors import AuthorityViolation
from signerd.core.model import Chain, Decision, ProposalState, TransferState

TRANSFER = {
    "id": "t_1", "wallet_id": "w_1", "chain": "ethereum", "state": "APPROVED",
    "payload": memoryview(b"p"), "movement": "{}", "submitter": "platform", "policy_version": 2,
    "requirement": "{}", "expires_at": 10, "created_at": 1.5, "updated_at": 2.5, "replaces": "",
    "legal_basis": "", "category_change": "none", "raw_tx": "", "psbt": "", "tx_hash": "",
    "failure": "", "idempotency_key": "", "replaces_state": "", "replaces_fee_delta": "0",
    "vetoed": "[]", "seal": "s"}
APPROVAL = {"transfer_id": "t_1", "operator_id": "inv1", "decision": "REJECT",
            "signature": "00", "statement_sha256": "11", "reason": "no", "created_at": 3}
PROPOSAL = {"id": "p_1", "kind": "freeze", "body": "{}", "state": "PENDING_APPROVAL",
            "submitter": "admin1", "subject": "w_1", "expires_at": 9.0, "created_at": 1.0,
            "updated_at": 1.0, "applied_seq": 0, "failure": "", "seal": ""}


def test_records_are_typed_and_round_trip() -> None:
    t = transfer_from_row(TRANSFER)
    assert (t.chain, t.state, t.payload, t.policy_version, t.expires_at) == \
        (Chain.ETHEREUM, TransferState.APPROVED, b"p", 2, 10.0)
    assert transfer_from_row(transfer_columns(t)) == t
    a = approval_from_row(APPROVAL)
    assert a.decision is Decision.REJECT and approval_from_row(approval_columns(a)) == a
    p = proposal_from_row(PROPOSAL)
    assert p.state is ProposalState.PENDING_APPROVAL
    assert proposal_from_row(proposal_columns(p)) == p


@pytest.mark.parametrize("column, value", [("state", "SIGNED-ISH"), ("chain", "dogecoin"),
                                           ("policy_version", "two"), ("payload", "text"),
                                           ("expires_at", None)])
def test_a_transfer_row_without_its_types_makes_no_record(column: str, value: object) -> None:
    with pytest.raises(AuthorityViolation, match="transfer t_1: its row is malformed") as e:
        transfer_from_row({**TRANSFER, column: value})
    assert e.value.kind == "transfer"


def test_a_decision_that_is_no_decision_makes_no_record() -> None:
    with pytest.raises(AuthorityViolation, match="a stored decision is malformed") as e:
        approval_from_row({**APPROVAL, "decision": "MAYBE"})
    assert e.value.kind == "approval"
    with pytest.raises(AuthorityViolation, match="proposal p_1: its row is malformed"):
        proposal_from_row({**PROPOSAL, "state": "DONE"})


def test_wallet_and_key_share_rows() -> None:
    """A wallet row's columns are all text (its status and sealed record mean something only
    once ledger.verified_wallet checks them); a key share's creation time is a number. A row
    without a column makes no record, naming the row."""
    from signerd.adapters.store.codec import key_share_from_row, wallet_from_row

    wallet = {"id": "w_1", "chain": "ethereum", "network": "", "script_type": "eoa",
              "category": "seized", "case_ref": "C-1", "legal_basis": "", "status": "NOT A STATE",
              "address": "0xab", "freeze_order": None, "origin": "", "chain_ids": "[1]",
              "record": "{}", "seal": "s", "proposal_id": "", "threshold": 1,
              "safe_owners": "", "safe_threshold": 0, "safe_setup": ""}
    w = wallet_from_row(wallet)
    assert (w.status, w.freeze_order, w.record) == ("NOT A STATE", "", "{}")
    share = {"key_id": "k_1", "public_key": "02" * 33, "label": "l", "category": "seized",
             "case_ref": "C-1", "wallet_id": None, "seal": "s", "created_at": "12.5"}
    k = key_share_from_row(share)
    assert (k.wallet_id, k.created_at) == ("", 12.5)
    with pytest.raises(AuthorityViolation, match="wallet w_1: its row is malformed"):
        wallet_from_row({k: v for k, v in wallet.items() if k != "record"})
    with pytest.raises(AuthorityViolation, match="key share k_1: its row is malformed") as e:
        key_share_from_row({**share, "created_at": "yesterday"})
    assert e.value.kind == "wallet"
