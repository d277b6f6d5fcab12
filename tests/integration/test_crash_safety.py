"""Nothing lost, nothing signed twice: SIGKILL at each step of the sign path, and a soak of
concurrent approvals while the daemon is killed and restarted."""
from __future__ import annotations

import json
import random
import socket
import sqlite3
import threading
import time
from pathlib import Path

import grpc
import pytest
from eth_account import Account

from signerd.core.audit import verify_export
from tests.support.daemon import Daemon, edit_config, init_state
from tests.support.governance import decide
from tests.support.rpc import pb, rpc_error
from tests.support.ethereum import tx_fields

POINTS = ["after_approval_stored", "after_hsm_signed", "before_result_stored",
          "after_result_stored"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def db(d: Daemon) -> sqlite3.Connection:
    return sqlite3.connect(d.state / "signerd.db")


def counts(d: Daemon, transfer_id: str) -> tuple[int, int]:
    with db(d) as c:
        sigs = c.execute("SELECT COUNT(*) FROM signatures WHERE transfer_id = ?",
                         (transfer_id,)).fetchone()[0]
        apps = c.execute("SELECT COUNT(*) FROM approvals WHERE transfer_id = ?",
                         (transfer_id,)).fetchone()[0]
    return sigs, apps


def wait_until(pred, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_in_the_sign_path_ends_in_exactly_one_signature(tmp_path: Path,
                                                                point: str) -> None:
    cfg = init_state(tmp_path / "s")
    d = Daemon(cfg).start()
    w = d.custody().CreateWallet(pb.CreateWalletRequest(
        chain=pb.ETHEREUM, chain_ids=[1], category=pb.SEIZED, case_ref="CRASH"))
    t = d.custody().SubmitTransfer(pb.SubmitTransferRequest(
        wallet_id=w.id, ethereum=pb.EthereumTransaction(json=json.dumps(tx_fields(chainId=1)))))
    decide(d, t.id, "inv1")
    d.stop()
    edit_config(cfg, "testing", crash_points=[point])
    d.start()
    e = rpc_error(decide, d, t.id, "cust1")  # the daemon dies inside this call
    assert e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                        grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)
    assert d.proc is not None and d.proc.wait(30) == 137
    d.proc = None
    d.channels.clear()
    edit_config(cfg, "testing", crash_points=[])
    d.start()  # recovery signs what reached quorum
    wait_until(lambda: d.custody().GetTransfer(
        pb.GetTransferRequest(transfer_id=t.id)).state == pb.SIGNED)
    got = d.custody().GetTransfer(pb.GetTransferRequest(transfer_id=t.id))
    sigs, apps = counts(d, t.id)
    assert sigs == 1 and apps == 2
    assert Account.recover_transaction(bytes.fromhex(got.raw_tx)) == w.address
    assert d.stop() == 0


def test_soak_concurrent_approvals_with_kills_and_restarts(tmp_path: Path) -> None:
    """200 transfers, 8 clients, random approval orders, 5 SIGKILLs; bounded to a few minutes."""
    rng = random.Random(20261125)
    cfg = init_state(tmp_path / "s")
    edit_config(cfg, "server", listen=f"127.0.0.1:{free_port()}")
    d = Daemon(cfg).start()
    wallets = [d.custody().CreateWallet(pb.CreateWalletRequest(
        chain=pb.ETHEREUM, chain_ids=[1], category=pb.SEIZED, case_ref=f"SOAK-{i}")).id
        for i in range(8)]
    plans = []
    for i in range(200):
        kind = rng.choice(["quorum", "quorum", "quorum", "partial", "veto"])
        ops = {"quorum": rng.sample(["inv1", "cust1", "inv2"], 3),
               "partial": [rng.choice(["inv1", "inv2", "cust1", "cust2"])],
               "veto": [rng.choice(["inv1", "cust1"]), "judge1"]}[kind]
        plans.append((i, kind, ops))
    results: dict[int, str] = {}
    lock = threading.Lock()
    alive = threading.Event()
    alive.set()
    errors: list[str] = []

    def call(fn, *a, **kw):
        deadline = time.time() + 120
        while True:
            alive.wait(60)
            try:
                return fn(*a, **kw)
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.FAILED_PRECONDITION and (
                        "already decided" in e.details() or "not waiting" in e.details()):
                    return None
                if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                                grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL,
                                grpc.StatusCode.DEADLINE_EXCEEDED) and time.time() < deadline:
                    time.sleep(0.2)
                    continue
                raise
            except ValueError as e:
                # The kill below closes this test's channels; a client that took a stub just
                # before gets grpc's "closed channel" (or, racing the close, "Channel closed!")
                # instead of UNAVAILABLE: the same event.
                text = str(e).lower()
                if ("closed channel" in text or "channel closed" in text) \
                        and time.time() < deadline:
                    time.sleep(0.2)
                    continue
                raise

    def client(k: int) -> None:
        try:
            for i, kind, ops in plans[k::8]:
                fields = tx_fields(chainId=1, nonce=i)
                t = call(lambda: d.custody().SubmitTransfer(pb.SubmitTransferRequest(
                    wallet_id=wallets[i % 8], idempotency_key=f"soak-{i}",
                    ethereum=pb.EthereumTransaction(json=json.dumps(fields))), timeout=20))
                with lock:
                    results[i] = t.id
                for op in ops:
                    reason = "veto" if op == "judge1" else ""
                    decision = pb.REJECT if op == "judge1" else pb.APPROVE
                    call(lambda: decide(d, t.id, op, decision, reason=reason))
        except Exception as e:  # collected, asserted below
            errors.append(f"client {k}: {e!r}")

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for th in threads:
        th.start()
    for _ in range(5):
        time.sleep(rng.uniform(1.0, 3.0))
        alive.clear()
        d.kill()
        d.start()
        alive.set()
    for th in threads:
        th.join(300)
    assert not errors, errors[:3]
    assert len(results) == 200
    time.sleep(1)
    by_id = {t.id: t for t in _all_transfers(d)}
    with db(d) as c:
        sig_counts = dict(c.execute(
            "SELECT transfer_id, COUNT(*) FROM signatures GROUP BY transfer_id").fetchall())
    for i, kind, _ops in plans:
        t = by_id[results[i]]
        if kind == "quorum":
            assert t.state == pb.SIGNED, (i, t.state)
            assert sig_counts.get(t.id) == 1
        elif kind == "partial":
            assert t.state == pb.PENDING_APPROVAL and sig_counts.get(t.id) is None
        else:
            assert t.state == pb.REJECTED and sig_counts.get(t.id) is None
    assert len(by_id) == 200  # idempotent resubmission after a kill never duplicated a transfer
    export = b"".join(c.data for c in d.audit().Export(pb.ExportRequest()))
    result = verify_export(export)
    assert result.ok, result.problem
    assert d.stop() == 0


def _all_transfers(d: Daemon) -> list[pb.Transfer]:
    out, token = [], ""
    while True:
        r = d.custody().ListTransfers(pb.ListTransfersRequest(page=pb.Page(page_size=1000,
                                                                           page_token=token)))
        out.extend(r.transfers)
        if not r.next_page_token:
            return out
        token = r.next_page_token
