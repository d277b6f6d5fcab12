"""What the approver sees is all that can happen (issue 13): a real daemon, real SoftHSM, gRPC
over mTLS, signerctl as a subprocess; signed output checked with eth-account and
python-bitcointx, never with signerd's own code.

1. A replacement's statement binds and shows what it replaces: the replaced transfer, its state
   at submission and the fee change. signerctl rebuilds it byte for byte and shows the same
   line; a store writer who changes any of the three after the approvals voids them (the sign
   step refuses as an authority violation).
"""
from __future__ import annotations

import json
from typing import Any, Iterator

import grpc
import pytest
from eth_account import Account
from eth_account.typed_transactions import TypedTransaction
from hexbytes import HexBytes

from tests.helpers import Daemon, decide, govern, pb, rpc_error
from tests.integration.test_cli_walkthrough import ctl
from tests.integration.test_ethereum_e2e import submit, tx_fields
from tests.integration.test_governance_attacks import (SqliteWriter, assert_violation,
                                                       eth_wallet, fresh_daemon, sqlite_writer,
                                                       violation_metric, wait_state)

GWEI = 10**9
_nonce = iter(range(1, 10**6))
_order = iter(range(1, 10**6))


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = fresh_daemon(tmp_path_factory.mktemp("sees") / "state")
    yield d
    d.stop()


@pytest.fixture
def db(daemon: Daemon) -> SqliteWriter:
    return sqlite_writer(daemon)


def statement_doc(d: Daemon, transfer_id: str, operator: str = "cust1") -> tuple[dict[str, Any],
                                                                                  str]:
    st = d.approval(operator).GetStatement(pb.GetStatementRequest(transfer_id=transfer_id,
                                                                  decision=pb.APPROVE))
    tag, _, body = st.statement.partition(b"\n")
    assert tag == b"signerd-approval/v1"
    return json.loads(body), st.rendered


def signed_eth(d: Daemon, w: pb.Wallet, nonce: int, **over: Any) -> pb.Transfer:
    t = submit(d, w.id, tx_fields(nonce=nonce, **over))
    decide(d, t.id, "inv1")
    t = decide(d, t.id, "cust1")
    assert t.state == pb.SIGNED and Account.recover_transaction(bytes.fromhex(t.raw_tx)) == \
        w.address
    return t


def replace_eth(d: Daemon, w: pb.Wallet, replaces: str, fields: dict[str, Any]) -> pb.Transfer:
    return d.custody().SubmitTransfer(pb.SubmitTransferRequest(
        wallet_id=w.id, replaces=replaces, ethereum=pb.EthereumTransaction(
            json=json.dumps(fields))))


# ---------------------------------------------------------------- 1. replacements bound, shown

def test_replacement_binds_and_shows_what_it_replaces(daemon: Daemon) -> None:
    w = eth_wallet(daemon)
    nonce = next(_nonce)
    t1 = signed_eth(daemon, w, nonce)
    bump = tx_fields(nonce=nonce, maxFeePerGas=3 * GWEI)
    t2 = replace_eth(daemon, w, t1.id, bump)
    delta = 21_000 * (3 - 2) * GWEI  # gas x the max fee per gas it adds
    assert (t2.replaces, t2.replaces_state, t2.replaces_fee_delta) == (t1.id, "SIGNED",
                                                                       str(delta))
    doc, rendered = statement_doc(daemon, t2.id)
    assert doc["replaces"] == {"transfer_id": t1.id, "state": "SIGNED", "fee_delta": str(delta)}
    line = f"replaces:        {t1.id} (SIGNED), fee +21,000,000,000,000 wei"
    assert line in rendered.splitlines()
    # signerctl rebuilds the statement from the raw transaction and the Transfer message (it
    # refuses unless byte for byte equal) and shows the same line.
    shown = ctl(daemon, "--as", "inv1", "transfer", "show", t2.id).stdout
    assert "it matches" in shown
    assert f"replaces:         {t1.id} (SIGNED), fee +21,000,000,000,000 wei" in shown
    # A lower fee shows as negative; a pending transfer replaced shows its state.
    t3 = replace_eth(daemon, w, t2.id, tx_fields(nonce=nonce, maxFeePerGas=2 * GWEI + 1))
    assert (t3.replaces_state, t3.replaces_fee_delta) == ("PENDING_APPROVAL",
                                                          str(-(21_000 * (GWEI - 1))))
    _, rendered = statement_doc(daemon, t3.id)
    assert f"replaces:        {t2.id} (PENDING_APPROVAL), fee -20,999,999,979,000 wei" in \
        rendered.splitlines()
    # Approved through signerctl (which checks the statement itself), then signed.
    for op in ("inv1", "cust1"):
        ctl(daemon, "--as", op, "transfer", "approve", t3.id, "--key",
            str(daemon.state / "operators" / f"{op}.key"), "--yes")
    t3 = daemon.custody().GetTransfer(pb.GetTransferRequest(transfer_id=t3.id))
    assert t3.state == pb.SIGNED
    signed = Account.recover_transaction(bytes.fromhex(t3.raw_tx))
    assert signed == w.address
    # The transaction signed is the one shown: nonce, max fee.
    fields = TypedTransaction.from_bytes(HexBytes(t3.raw_tx)).as_dict()
    assert fields["nonce"] == nonce and fields["maxFeePerGas"] == 2 * GWEI + 1


def test_a_plain_transfer_replaces_nothing(daemon: Daemon) -> None:
    w = eth_wallet(daemon)
    t = submit(daemon, w.id, tx_fields(nonce=next(_nonce)))
    assert (t.replaces, t.replaces_state, t.replaces_fee_delta) == ("", "", "0")
    doc, rendered = statement_doc(daemon, t.id)
    assert doc["replaces"] is None and "replaces:" not in rendered


@pytest.mark.parametrize("column, value", [
    ("replaces_state", "PENDING_APPROVAL"),
    ("replaces_fee_delta", "1"),
    ("replaces", "t_0000000000000000000000"),
    (None, None),  # the honest counterpart: untouched, it is signed
])
def test_replacement_fields_changed_after_approval_void_it(daemon: Daemon, db: SqliteWriter,
                                                            column: str | None,
                                                            value: str | None) -> None:
    """The replacement is approved while its wallet is frozen by court order (so the quorum is
    recorded and nothing is signed yet); a store writer changes one of the bound fields; once
    the governance quorum unfreezes the wallet, the sign step rebuilds the statement from the
    row, the approvals no longer verify over it, and the transfer ends FAILED unsigned."""
    w = eth_wallet(daemon)
    nonce = next(_nonce)
    t1 = signed_eth(daemon, w, nonce)
    t2 = replace_eth(daemon, w, t1.id, tx_fields(nonce=nonce, maxFeePerGas=5 * GWEI))
    daemon.admin().FreezeWallet(pb.FreezeWalletRequest(wallet_id=w.id,
                                                       order_ref=f"ORDER-{next(_order)}"))
    decide(daemon, t2.id, "inv1")
    assert decide(daemon, t2.id, "cust1").state == pb.APPROVED
    before = violation_metric(daemon, "approval")
    if column is not None:
        db.run((f"UPDATE transfers SET {column} = ? WHERE id = ?", (value, t2.id)))
    p = daemon.admin().UnfreezeWallet(pb.FreezeWalletRequest(wallet_id=w.id,
                                                             order_ref=f"ORDER-{next(_order)}"))
    assert govern(daemon, p).state == "APPROVED"
    if column is None:
        t2 = wait_state(daemon, t2.id, pb.SIGNED)
        assert Account.recover_transaction(bytes.fromhex(t2.raw_tx)) == w.address
        return
    t = assert_violation(daemon, db, t2.id, "approval",
                         "does not verify over this act's statement", before)
    assert "inv1" in t.failure and "cust1" in t.failure


def test_bad_replacements_are_refused_naming_the_problem(daemon: Daemon) -> None:
    w, other = eth_wallet(daemon), eth_wallet(daemon)
    nonce = next(_nonce)
    t1 = signed_eth(daemon, w, nonce)
    e = rpc_error(replace_eth, daemon, w, "t_nothere", tx_fields(nonce=nonce))
    assert e.code() == grpc.StatusCode.NOT_FOUND
    assert e.details() == "replaces: transfer t_nothere not found", e.details()
    e = rpc_error(replace_eth, daemon, other, t1.id, tx_fields(nonce=nonce))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"replaces: transfer {t1.id} belongs to wallet {w.id}, not {other.id}" == e.details()
    e = rpc_error(replace_eth, daemon, w, t1.id, tx_fields(nonce=nonce + 1))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.details() == f"replaces: transfer {t1.id} does not spend the same nonce or outputs"
    t2 = replace_eth(daemon, w, t1.id, tx_fields(nonce=nonce, maxFeePerGas=3 * GWEI))
    e = rpc_error(replace_eth, daemon, w, t1.id, tx_fields(nonce=nonce, maxFeePerGas=4 * GWEI))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.details() == (f"replaces: transfer {t1.id} no longer holds its nonce or outputs: "
                           f"transfer {t2.id} replaced it; replace that one instead")
    daemon.custody().CancelTransfer(pb.CancelTransferRequest(transfer_id=t2.id, reason="x"))
    e = rpc_error(replace_eth, daemon, w, t2.id, tx_fields(nonce=nonce, maxFeePerGas=4 * GWEI))
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert e.details() == (f"replaces: transfer {t2.id} is CANCELLED; only a live or signed "
                           "transfer can be replaced")
