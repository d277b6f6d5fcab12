"""The sign step's batches (signerd.services.sign_step) through the real transfer service:
SoftHSM and SQLite, in process. Concurrent callers share batches and still sign every transfer
exactly once; one transfer's failure stays its own; a transfer without a valid quorum is never
signed, even when the store says APPROVED and it rides in a batch with signable ones. Signed
transactions are checked by eth-account."""
from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from eth_account import Account

from signerd.app import App
from signerd.core.approval import sign_statement
from signerd.core.errors import FailedPrecondition, WalletFrozen
from signerd.core.model import Decision
from signerd.adapters.key_files import load_private
from signerd.services.wallets import WalletRequest
from tests.support.fixtures import in_process_app
from tests.support.governance import app_govern
from tests.support.ethereum import tx_fields


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    yield from in_process_app(tmp_path_factory.mktemp("signstep") / "state")


def state_dir(app: App) -> Path:
    return Path(app.config.policies_dir).parent


def db(app: App) -> sqlite3.Connection:
    return sqlite3.connect(state_dir(app) / "signerd.db", timeout=30)


_nonce = iter(range(10**6))
_case = iter(range(10**6))


def wallet(app: App) -> Any:
    return app.wallets.create("platform", WalletRequest(
        chain="ethereum", network="", category="seized", case_ref=f"SIGNSTEP-{next(_case)}",
        chain_ids=(1,)))


def approve(app: App, transfer_id: str, operator: str) -> None:
    key = load_private(state_dir(app) / "operators" / f"{operator}.key")
    statement, _, _ = app.transfers.statement(transfer_id, Decision.APPROVE)
    app.transfers.decide(operator, transfer_id, operator, Decision.APPROVE,
                         sign_statement(key, statement))


def submitted(app: App, wallet_id: str, approvers: tuple[str, ...] = ("inv1", "cust1"),
              monkeypatch: pytest.MonkeyPatch | None = None) -> str:
    """A transfer with these approvals recorded, the sign step not yet run."""
    t = app.transfers.submit("platform", wallet_id,
                             json.dumps(tx_fields(nonce=next(_nonce), chainId=1)).encode())
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(app.transfers, "sign", lambda transfer_id, **kw: None)
        for op in approvers:
            approve(app, t.id, op)
    return t.id


def signature_count(app: App, transfer_id: str) -> int:
    with db(app) as c:
        return c.execute("SELECT COUNT(*) FROM signatures WHERE transfer_id = ?",
                         (transfer_id,)).fetchone()[0]


def signed_events(app: App, transfer_id: str) -> int:
    with db(app) as c:
        return c.execute("SELECT COUNT(*) FROM audit_events WHERE object = ? AND action = ?",
                         (transfer_id, "transfer.signed")).fetchone()[0]


def state_of(app: App, transfer_id: str) -> str:
    return str(app.transfers.get(transfer_id).row["state"])


@contextlib.contextmanager
def held_worker(step: Any, ready: Any) -> Iterator[None]:
    """Within the block, the sign step's worker takes nothing from its queue; it resumes once
    the block has ended and ``ready()`` holds (each transfer queued once)."""
    gate = threading.Event()
    take = step._take

    def gated_take() -> Any:
        gate.wait(30)
        return take()

    step._take = gated_take
    try:
        yield
        deadline = time.monotonic() + 20
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ready()
    finally:
        gate.set()
        del step._take


def test_concurrent_callers_share_one_write_and_sign_each_once(app: App) -> None:
    w = wallet(app)
    ids = [submitted(app, w.id) for _ in range(8)]
    assert {state_of(app, t) for t in ids} == {"APPROVED"}
    step = app.transfers.signer
    writes: list[list[str]] = []
    commit = step._commit

    def recording_commit(jobs: list[Any], expired: list[Any], ends: list[Any]) -> Any:
        writes.append([j.id for j in jobs])
        return commit(jobs, expired, ends)

    step._commit = recording_commit  # type: ignore[method-assign]
    errors: list[BaseException] = []

    def caller(order: list[str]) -> None:
        try:
            for tid in order:
                app.transfers.sign(tid)
        except BaseException as e:
            errors.append(e)

    # The worker waits until 16 callers (each transfer asked for twice) have queued; then it
    # takes every queued transfer into one batch: one read, one write.
    with held_worker(step, lambda: len(step._queue) >= len(ids)):
        threads = [threading.Thread(target=caller, args=([tid],)) for tid in ids + ids[::-1]]
        for t in threads:
            t.start()
    for t in threads:
        t.join(30)
    del step._commit
    assert not errors
    assert [sorted(w) for w in writes] == [sorted(ids)]
    for tid in ids:
        v = app.transfers.get(tid)
        assert v.row["state"] == "SIGNED"
        assert signature_count(app, tid) == 1 and signed_events(app, tid) == 1
        assert Account.recover_transaction(v.row["raw_tx"]) == w.address


def test_many_threads_many_rounds_one_signature_each(app: App) -> None:
    w = wallet(app)
    ids = [submitted(app, w.id) for _ in range(30)]

    def caller(k: int) -> None:
        for tid in ids[k:] + ids[:k]:
            app.transfers.sign(tid)

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(0, 30, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for tid in ids:
        assert state_of(app, tid) == "SIGNED"
        assert signature_count(app, tid) == 1 and signed_events(app, tid) == 1


def test_one_batch_failures_stay_their_own(app: App) -> None:
    w_ok, w_frozen = wallet(app), wallet(app)
    ok = submitted(app, w_ok.id)
    frozen = submitted(app, w_frozen.id)
    no_quorum = submitted(app, w_ok.id, approvers=("inv1",))
    pending = submitted(app, w_ok.id, approvers=())
    tampered = submitted(app, w_ok.id)
    with db(app) as c:
        # a wallet row that says FROZEN is frozen, whatever the ledger says (it only tightens)
        c.execute("UPDATE wallets SET status = 'FROZEN' WHERE id = ?", (w_frozen.id,))
        # a store that claims APPROVED for a transfer one approval short of its quorum
        c.execute("UPDATE transfers SET state = 'APPROVED' WHERE id = ?", (no_quorum,))
        # the payload is no longer the transaction the approvals bound
        c.execute("UPDATE transfers SET payload = ? WHERE id = ?",
                  (json.dumps(tx_fields(nonce=next(_nonce), chainId=1)).encode(), tampered))

    errors = app.transfers.signer.sign_many([frozen, no_quorum, pending, tampered, ok])

    assert set(errors) == {frozen}
    assert isinstance(errors[frozen], WalletFrozen)
    assert state_of(app, ok) == "SIGNED" and signature_count(app, ok) == 1
    assert Account.recover_transaction(app.transfers.get(ok).row["raw_tx"]) == w_ok.address
    for tid, state in ((frozen, "APPROVED"), (no_quorum, "FAILED"),
                       (pending, "PENDING_APPROVAL"), (tampered, "FAILED")):
        assert state_of(app, tid) == state
        assert signature_count(app, tid) == 0
    # Rows no one but signerd writes do not stand: both end FAILED, with the reason.
    assert "never met its quorum" in app.transfers.get(no_quorum).row["failure"]
    assert "does not carry signerd's seal" in app.transfers.get(tampered).row["failure"]
    with db(app) as c:
        c.execute("UPDATE wallets SET status = 'ACTIVE' WHERE id = ?", (w_frozen.id,))
    assert app.transfers.signer.sign_many([frozen, no_quorum]) == {}
    assert state_of(app, frozen) == "SIGNED" and state_of(app, no_quorum) == "FAILED"
    assert signature_count(app, no_quorum) == 0


def test_expired_while_approved_is_closed_in_the_batch(app: App) -> None:
    w = wallet(app)
    late, fine = submitted(app, w.id), submitted(app, w.id)
    with db(app) as c:
        c.execute("UPDATE transfers SET expires_at = ? WHERE id = ?", (time.time() - 1, late))
    assert app.transfers.signer.sign_many([late, fine]) == {}
    assert state_of(app, late) == "EXPIRED" and signature_count(app, late) == 0
    assert state_of(app, fine) == "SIGNED" and signature_count(app, fine) == 1


def test_hsm_signs_a_batch_in_parallel_in_order(app: App) -> None:
    """hsm_sign_many returns each job's own signature, in the order given."""
    import coincurve

    w1, w2 = wallet(app), wallet(app)
    jobs = [((w1 if i % 3 else w2).keys[0].key_id, bytes([i]) * 32) for i in range(1, 40)]
    results = app.hsm_sign_many(jobs)
    pubs = {w1.keys[0].key_id: w1.keys[0].public_key, w2.keys[0].key_id: w2.keys[0].public_key}
    for (key_id, digest), (r, s) in zip(jobs, results):
        der = coincurve.ecdsa.cdata_to_der(coincurve.ecdsa.deserialize_compact(
            r.to_bytes(32, "big") + s.to_bytes(32, "big")))
        assert coincurve.PublicKey(pubs[key_id]).verify(der, digest, hasher=None)


def test_a_failing_write_spoils_only_its_own_transfer(app: App,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from signerd.core.errors import StoreUnavailable
    from signerd.adapters.store import Tx

    w = wallet(app)
    ids = [submitted(app, w.id) for _ in range(4)]
    bad = ids[2]
    real = Tx.update_transfer

    def failing(self: Tx, transfer_id: str, **fields: Any) -> None:
        if transfer_id == bad and fields.get("state") == "SIGNED":
            raise StoreUnavailable("store error: disk I/O error (test)")
        real(self, transfer_id, **fields)

    monkeypatch.setattr(Tx, "update_transfer", failing)
    step = app.transfers.signer
    outcomes: dict[str, BaseException | None] = {}

    def caller(tid: str) -> None:
        try:
            app.transfers.sign(tid)
            outcomes[tid] = None
        except BaseException as e:
            outcomes[tid] = e

    threads = [threading.Thread(target=caller, args=(tid,)) for tid in ids]
    with held_worker(step, lambda: len(step._queue) >= len(ids)):  # one batch, one write
        for t in threads:
            t.start()
    for t in threads:
        t.join(30)
    assert isinstance(outcomes[bad], StoreUnavailable)
    assert state_of(app, bad) == "APPROVED" and signature_count(app, bad) == 0
    for tid in ids:
        if tid != bad:
            assert outcomes[tid] is None
            assert state_of(app, tid) == "SIGNED" and signature_count(app, tid) == 1
    monkeypatch.undo()
    app.transfers.sign(bad)  # the next sign step (the monitor's) completes it
    assert state_of(app, bad) == "SIGNED" and signature_count(app, bad) == 1


def test_backlog_runs_through_the_pipeline_in_batches(app: App,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from signerd.services import sign_step

    monkeypatch.setattr(sign_step, "BATCH", 8)
    w, w_frozen = wallet(app), wallet(app)
    ids = [submitted(app, w.id) for _ in range(40)]
    frozen = submitted(app, w_frozen.id)
    with db(app) as c:
        c.execute("UPDATE wallets SET status = 'FROZEN' WHERE id = ?", (w_frozen.id,))
    step = app.transfers.signer
    started: list[tuple[list[str], bool]] = []
    start = step._start

    def recording_start(batch: list[str], *, background: bool) -> Any:
        started.append((list(batch), background))
        return start(batch, background=background)

    step._start = recording_start  # type: ignore[method-assign]
    try:
        errors = step.sign_many(ids + [frozen] + ids[:5])  # duplicates are signed once
    finally:
        del step._start
    assert set(errors) == {frozen} and isinstance(errors[frozen], WalletFrozen)
    assert [len(b) for b, _ in started] == [8, 8, 8, 8, 8, 1]
    assert all(background for _, background in started)  # the HSM signs while the next loads
    assert sorted(t for b, _ in started for t in b) == sorted(ids + [frozen])
    for tid in ids:
        assert state_of(app, tid) == "SIGNED"
        assert signature_count(app, tid) == 1 and signed_events(app, tid) == 1
    assert state_of(app, frozen) == "APPROVED" and signature_count(app, frozen) == 0
    with db(app) as c:
        c.execute("UPDATE wallets SET status = 'ACTIVE' WHERE id = ?", (w_frozen.id,))


def test_a_lone_transfer_is_signed_in_the_workers_thread(app: App) -> None:
    """Nothing else queued: no hand-off to the HSM pool, so a lone approval waits no longer."""
    w = wallet(app)
    tid = submitted(app, w.id)
    step = app.transfers.signer
    started: list[bool] = []
    start = step._start

    def recording_start(batch: list[str], *, background: bool) -> Any:
        started.append(background)
        return start(batch, background=background)

    step._start = recording_start  # type: ignore[method-assign]
    try:
        app.transfers.sign(tid)
    finally:
        del step._start
    assert started == [False] and state_of(app, tid) == "SIGNED"


def test_a_bounded_wait_returns_and_the_worker_finishes(app: App) -> None:
    """The monitor's tick waits a bounded time (systemd's watchdog is pinged between ticks);
    what is not signed by then is signed by the worker all the same, once."""
    w = wallet(app)
    ids = [submitted(app, w.id) for _ in range(5)]
    step = app.transfers.signer
    with held_worker(step, lambda: True):
        t0 = time.monotonic()
        assert step.sign_many(ids, timeout=0.2) == {}
        assert time.monotonic() - t0 < 5
        assert {state_of(app, t) for t in ids} == {"APPROVED"}
        assert sorted(step._queue) == sorted(ids)
        assert step.sign_many(ids[:2], timeout=0.1) == {}  # asked again: still queued once
        assert sorted(step._queue) == sorted(ids)
    step.sign_many(ids)  # shares the queued tickets; returns once they are done
    for tid in ids:
        assert state_of(app, tid) == "SIGNED" and signature_count(app, tid) == 1


def test_a_missing_key_fails_only_its_own_transfer(app: App) -> None:
    from signerd.core.errors import InvalidKey

    from pkcs11 import ObjectClass

    w_ok, w_bad = wallet(app), wallet(app)
    ok, bad = submitted(app, w_ok.id), submitted(app, w_bad.id)
    ks = app.keystore  # the wallet's key is no longer in the HSM token
    with ks._session() as s:
        s.get_key(object_class=ObjectClass.PRIVATE_KEY,
                  id=bytes.fromhex(w_bad.keys[0].key_id)).destroy()
    ks._key_cache.clear()
    errors = app.transfers.signer.sign_many([ok, bad])  # one batch
    assert set(errors) == {bad} and isinstance(errors[bad], InvalidKey)
    assert state_of(app, ok) == "SIGNED" and signature_count(app, ok) == 1
    assert state_of(app, bad) == "APPROVED" and signature_count(app, bad) == 0


def test_an_urgent_request_goes_ahead_of_the_queue(app: App) -> None:
    w = wallet(app)
    backlog = [submitted(app, w.id) for _ in range(3)]
    quorum_made = submitted(app, w.id)
    step = app.transfers.signer
    with held_worker(step, lambda: True):
        assert step.sign_many(backlog, timeout=0) == {}
        assert step.sign_many([quorum_made], timeout=0, urgent=True) == {}
        assert step._queue == [quorum_made] + backlog
        assert step.sign_many([backlog[2]], timeout=0, urgent=True) == {}
        assert step._queue == [backlog[2], quorum_made] + backlog[:2]
    assert step.sign_many(backlog + [quorum_made]) == {}
    assert {state_of(app, t) for t in backlog + [quorum_made]} == {"SIGNED"}


def test_asked_again_while_in_a_batch_gets_one_more_pass(app: App) -> None:
    """A batch that has already read a transfer (e.g. its wallet frozen) must not answer a
    later request (e.g. from the unfreeze): the later request gets its own pass."""
    w = wallet(app)
    tid = submitted(app, w.id)
    step = app.transfers.signer
    in_load, go_on = threading.Event(), threading.Event()
    load = step._load
    passes: list[list[str]] = []

    def slow_load(ids: list[str], errors: dict[str, BaseException]) -> Any:
        passes.append(list(ids))
        out = load(ids, errors)
        if len(passes) == 1:
            in_load.set()
            go_on.wait(20)
        return out

    step._load = slow_load  # type: ignore[method-assign]
    first: list[dict[str, BaseException]] = []
    try:
        t = threading.Thread(target=lambda: first.append(step.sign_many([tid])))
        t.start()
        assert in_load.wait(20)
        assert tid in step._taken and tid not in step._queue
        assert step.sign_many([tid], timeout=0) == {}  # a follow-up, not queued yet
        assert tid in step._followups and tid not in step._queue
        followup = step._followups[tid]
        go_on.set()
        t.join(20)
        assert followup.done.wait(20) and followup.error is None
    finally:
        del step._load
    assert first == [{}] and passes == [[tid], [tid]]
    assert state_of(app, tid) == "SIGNED" and signature_count(app, tid) == 1
    assert not step._followups and not step._taken


def test_close_answers_the_queue_unavailable_and_finishes_what_is_taken(app: App) -> None:
    from signerd.core.errors import HsmUnavailable
    from signerd.services.sign_step import SignStep

    w = wallet(app)
    ids = [submitted(app, w.id) for _ in range(4)]
    step = SignStep(app.transfers)  # a sign step of its own: the module's app keeps its one
    with held_worker(step, lambda: True):
        assert step.sign_many(ids, timeout=0) == {}
        closer = threading.Thread(target=step.close)
        closer.start()
        deadline = time.monotonic() + 10
        while step._queue and time.monotonic() < deadline:
            time.sleep(0.01)
    closer.join(30)
    assert not closer.is_alive() and not step._worker.is_alive()  # type: ignore[union-attr]
    for tid in ids:
        assert state_of(app, tid) == "APPROVED" and signature_count(app, tid) == 0
    with pytest.raises(HsmUnavailable, match="stopping"):
        step.sign_many(ids[:1])
    assert app.transfers.signer.sign_many(ids) == {}  # the daemon's own sign step signs them
    assert {state_of(app, t) for t in ids} == {"SIGNED"}


def test_quorum_lost_between_read_and_write_is_not_signed(app: App) -> None:
    """An approver revoked after the batch read the transfer: the write re-evaluates the
    quorum under the row lock and stores nothing."""
    from signerd.services.admin import AdminService
    from signerd.core.approval import sign_statement
    from signerd.core.operator_keys import generate, public_pem

    admin = AdminService(app)
    key = generate()
    op = f"cust{next(_case)}x"
    assert app_govern(app, admin.register_operator("admin", op, ["custody_officer"],
                                                   public_pem(key))).state == "APPROVED"
    w = wallet(app)
    t = app.transfers.submit("platform", w.id,
                             json.dumps(tx_fields(nonce=next(_nonce), chainId=1)).encode())
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(app.transfers, "sign", lambda transfer_id, **kw: None)
        approve(app, t.id, "inv1")
        statement, _, _ = app.transfers.statement(t.id, Decision.APPROVE)
        app.transfers.decide(op, t.id, op, Decision.APPROVE, sign_statement(key, statement))
    assert state_of(app, t.id) == "APPROVED"
    step = app.transfers.signer
    write = step._write

    def revoke_then_write(*args: Any) -> Any:
        assert app_govern(app, admin.revoke_operator("admin", op)).state == "APPROVED"
        return write(*args)

    step._write = revoke_then_write  # type: ignore[method-assign]
    try:
        assert step.sign_many([t.id]) == {}
    finally:
        del step._write
    # Not a violation: the quorum was met and then lost; the transfer waits for approvals.
    assert state_of(app, t.id) == "PENDING_APPROVAL" and signature_count(app, t.id) == 0
    approve(app, t.id, "cust1")
    assert state_of(app, t.id) == "SIGNED" and signature_count(app, t.id) == 1


def test_freeze_committed_during_a_cosigners_combine_wins(app: App,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """CombinePsbt checks the returned PSBT outside any store transaction; a freeze that
    commits meanwhile is seen by its write (the transfer locked, then the ledger head
    share-locked and the wallet read again from the verified ledger): WALLET_FROZEN, and the
    transfer keeps its partial PSBT. Once unfrozen, the same PSBT completes it (checked by
    python-bitcointx)."""
    import base64
    from dataclasses import replace

    import coincurve

    from signerd.services.admin import AdminService
    from signerd.core.bitcoin.psbt import Psbt, PsbtInput, PsbtOutput, parse_psbt
    from signerd.core.bitcoin.script import p2wpkh_script
    from signerd.core.bitcoin.signer import analyze
    from signerd.core.bitcoin.tx import OutPoint, Transaction, TxIn, TxOut
    from signerd.core.chains import BitcoinAdapter
    from tests.support.bitcoin import verify_with_bitcointx

    cold = coincurve.PrivateKey(b"\x0d" * 31 + bytes([next(_case) % 200 + 1]))
    w = app.wallets.create("platform", WalletRequest(
        chain="bitcoin", network="regtest", category="confiscated",
        case_ref=f"SIGNSTEP-{next(_case)}", script_type="p2wsh-sortedmulti", threshold=2,
        hsm_keys=1, cosigners=(cold.public_key.format().hex(),)))
    assert app_govern(app, app.proposals.get(w.proposal)).state == "APPROVED"
    spec = BitcoinAdapter.spec(w)
    prev = Transaction(2, (TxIn(OutPoint(b"\x5a" * 32, 0), b"\x51"),),
                       (TxOut(100_000, spec.script_pubkey),), 0)
    external = p2wpkh_script(coincurve.PrivateKey(b"\x07" * 32).public_key.format())
    psbt = Psbt(Transaction(2, (TxIn(OutPoint(prev.txid(), 0), b"", 0xFFFFFFFD),),
                            (TxOut(99_000, external),), 0),
                (PsbtInput(non_witness_utxo=prev, witness_utxo=prev.outputs[0],
                           witness_script=spec.witness_script),), (PsbtOutput(),))
    t = app.transfers.submit("platform", w.id, psbt.to_base64().encode())
    approve(app, t.id, "inv1")
    approve(app, t.id, "cust1")
    row = app.transfers.get(t.id).row
    assert row["state"] == "SIGNED" and row["psbt"] and not row["raw_tx"]
    half = parse_psbt(base64.b64decode(row["psbt"]))
    (req,) = analyze(half, replace(spec, own_pubkeys=(cold.public_key.format(),))).to_sign
    full = half.with_input(0, replace(half.inputs[0], partial_sigs={
        **half.inputs[0].partial_sigs,
        cold.public_key.format(): cold.sign(req.digest, hasher=None) + b"\x01"}))
    combine = BitcoinAdapter.combine

    def freeze_meanwhile(self: Any, *args: Any) -> Any:
        out = combine(self, *args)
        AdminService(app).freeze("admin", w.id, "ORDER-RACE")
        return out

    monkeypatch.setattr(BitcoinAdapter, "combine", freeze_meanwhile)
    with pytest.raises(WalletFrozen, match=f"wallet {w.id} is frozen by court order"):
        app.transfers.combine_psbt("platform", t.id, full.to_base64().encode())
    monkeypatch.undo()
    after = app.transfers.get(t.id).row
    assert after["psbt"] == row["psbt"] and not after["raw_tx"]
    admin = AdminService(app)
    assert app_govern(app, admin.unfreeze("admin", w.id, "ORDER-RACE-2")).state == "APPROVED"
    done = app.transfers.combine_psbt("platform", t.id, full.to_base64().encode()).row
    assert done["raw_tx"] and verify_with_bitcointx(done["raw_tx"], prev) == 1
