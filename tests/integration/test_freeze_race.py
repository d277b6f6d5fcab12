"""Freeze overtaken: a court-ordered FreezeWallet that commits while the sign step is in the HSM.

The sign step reads an APPROVED transfer (wallet ACTIVE, quorum holding), asks the HSM for its
signature, then stores it in a second transaction that locks the transfer's row, share-locks
the authority ledger head and reads the wallet again from the verified ledger
(signerd.services.sign_step). A freeze that commits between that read and that commit wins: the
transfer stays APPROVED with no signature, the audit trail shows ``wallet.frozen`` after
``transfer.approved`` and no ``transfer.signed``; only a governed unfreeze lets it be signed.

A real daemon (subprocess, real SoftHSM, real gRPC over mTLS, SQLite store) with the testing
knob ``[testing] hsm_delay_seconds``: every PKCS#11 call takes HSM_DELAY longer, so the sign
step's HSM part (the key lookup, then the signature) lasts at least twice that. The test knows
the sign step is there, its read done, from the gauge ``signerd_hsm_signatures_in_flight``
(nothing else signs meanwhile: no audit checkpoint is due, no proposal is open), and only then
sends FreezeWallet, whose transaction begins (wallet row and ledger head locked) within
milliseconds; the sign step's commit waits for it. The daemon's log shows which check stopped
the signature: the one under the commit's locks, not the read. The daemon is killed at the end
(its orderly stop would checkpoint and anchor through the slow HSM), keeping the test near 14 s.
"""
from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

from tests.support.daemon import Daemon, edit_config, init_state
from tests.support.governance import decide, govern
from tests.support.rpc import pb
from tests.support.attacks import (assert_eth_signed, assert_no_signature, audit_events,
                                   eth_transfer, eth_wallet, sqlite_writer, transfer, wait_for,
                                   wait_state)

HSM_DELAY = 0.4  # seconds added to every PKCS#11 call: the sign step's HSM part takes >= 2x
OVERTAKEN = "before its signature was stored; not signed"  # the sign step's commit, in the log


def in_flight(d: Daemon) -> float:
    m = re.search(r"^signerd_hsm_signatures_in_flight (\S+)$", d.metrics(), re.M)
    assert m, "no signerd_hsm_signatures_in_flight gauge"
    return float(m.group(1))


def test_freeze_between_the_sign_steps_read_and_commit_wins(tmp_path: Path) -> None:
    cfg = init_state(tmp_path / "state")
    # The monitor's HSM probe is a PKCS#11 call too: rare here, so that it slows nothing. No
    # audit checkpoint (an HSM signature) falls due during the test.
    edit_config(cfg, "hsm", probe_seconds=60.0, call_timeout=10 * HSM_DELAY)
    edit_config(cfg, "audit", checkpoint_seconds=3600.0, checkpoint_events=100_000)
    edit_config(cfg, "testing", hsm_delay_seconds=HSM_DELAY)
    d = Daemon(cfg).start(timeout=60)
    db = sqlite_writer(d)
    try:
        w = eth_wallet(d)
        t = eth_transfer(d, w)
        assert decide(d, t.id, "inv1").state == pb.PENDING_APPROVAL
        d.admin().GetPolicy(pb.GetPolicyRequest(wallet_id=w.id))  # the admin's channel is up
        wait_for(lambda: in_flight(d) == 0, 10, "no HSM signature in flight")

        # The quorum-making approval, in a thread: it waits for the sign step's outcome.
        result: dict[str, Any] = {}

        def approve() -> None:
            try:
                result["transfer"] = decide(d, t.id, "cust1")
            except BaseException as e:  # shown by the assertion below
                result["error"] = e
        approver = threading.Thread(target=approve, daemon=True)
        approver.start()
        deadline = time.monotonic() + 10
        while in_flight(d) < 1:  # the sign step read the transfer and is in the HSM
            assert time.monotonic() < deadline, "the sign step never reached the HSM"
            assert approver.is_alive() or "error" in result or transfer(d, t.id).state == \
                pb.APPROVED, result
            time.sleep(0.002)
        seen = time.monotonic()
        frozen = d.admin().FreezeWallet(pb.FreezeWalletRequest(wallet_id=w.id,
                                                               order_ref="COURT-ORDER-RACE-1"))
        answered = time.monotonic() - seen
        assert frozen.status == pb.FROZEN
        approver.join(20)
        assert not approver.is_alive() and "error" not in result, result
        got = result["transfer"]
        assert got.state != pb.SIGNED, (
            f"signed on a wallet frozen meanwhile (FreezeWallet answered {answered:.2f} s after "
            "the sign step reached the HSM): the commit did not check the wallet again, or the "
            "freeze began only after the commit (then widen HSM_DELAY)")
        assert got.state == pb.APPROVED and not got.raw_tx, got  # quorum, no signature

        # Overtaken at the commit: the check under the locks refused it, not the read.
        assert d.log_path is not None
        log = d.log_path.read_text()
        assert f"transfer {t.id}: wallet {w.id} became FROZEN {OVERTAKEN}" in log, log[-3000:]
        assert assert_no_signature(d, db, t.id).state == pb.APPROVED
        (approved,) = audit_events(d, action="transfer.approved", obj=t.id)
        (froze,) = audit_events(d, action="wallet.frozen", obj=w.id)
        assert approved.seq < froze.seq
        assert not audit_events(d, action="transfer.signed", obj=t.id)

        # A governed unfreeze: then it is signed, and the signature is the wallet's.
        p = d.admin().UnfreezeWallet(pb.FreezeWalletRequest(wallet_id=w.id,
                                                            order_ref="COURT-ORDER-RACE-2"))
        assert p.state == "PENDING_APPROVAL"
        assert transfer(d, t.id).state == pb.APPROVED  # still waiting for the quorum
        assert govern(d, p).state == "APPROVED"
        assert_eth_signed(wait_state(d, t.id, pb.SIGNED, timeout=10), w)
        (signed,) = audit_events(d, action="transfer.signed", obj=t.id)
        assert signed.seq > froze.seq
        print(f"\n[freeze race] FreezeWallet answered {answered:.2f} s after the sign step "
              f"reached the HSM (each PKCS#11 call +{HSM_DELAY} s)")
    finally:
        d.kill()
