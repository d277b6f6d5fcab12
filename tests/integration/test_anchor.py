"""Rollback after a restart: the HSM's monotonic anchors (signerd.core.anchor).

A database administrator who restores an older copy of the store (or cuts the tails of the
governance ledger and of the audit chain consistently) and waits for a restart must not erase a
court-ordered freeze or the ending of a transfer. Real daemons over mTLS, real SoftHSM, real
SQLite (and PostgreSQL for the ledger truncation); the writer uses the database and nothing
else (an online backup through SQLite's own backup API, or SQL).

1. SQLite: a wallet frozen by FreezeWallet (immediate); the daemon stopped; the database copy
   taken before the freeze put back: the daemon refuses to start with one line naming the
   ledger entry the store lacks, and nothing can sign for the wallet (an App on that store
   refuses every HSM signature). The real store back: it starts, the wallet still FROZEN.
2. SQLite: a transfer cancelled and checkpointed; an older copy (from before the cancellation)
   put back, then the same by SQL (checkpoints, events and head cut back consistently, the
   transfer set back to PENDING_APPROVAL), then the audit events alone cut below the anchored
   checkpoint: each refused at start, naming the checkpoint or the event. A cancellation after
   the latest checkpoint is anchored too when the daemon stops on SIGTERM (it checkpoints
   before it exits).
3. A restart without tampering starts, and the token's anchors are at the store's heads, one
   object each (the superseded ones destroyed).
4. kill -9 between the commit of a freeze and its anchor write, and between the commit of a
   checkpoint and its anchor write (the HSM slowed so that the window is wide): the restarted
   daemon starts and brings the anchors forward.
5. The anchors themselves: forward only whatever order two replicas write in; an anchor object
   destroyed (which takes the PIN) with the ledger past the genesis is refused; with the ledger
   at the genesis alone the daemon starts and anchors it; objects signerd did not write, or two
   that disagree, are refused.
6. PostgreSQL: the freeze entry deleted from authority_log and the head row moved back: refused
   at start; the rows put back: it starts, the wallet FROZEN.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import grpc
import psycopg
import pytest

from signerd.core import anchor as A
from signerd.adapters import hsm
from signerd.adapters.config import load
from signerd.core.errors import ConfigError, HsmUnavailable, SignerError
from signerd.adapters.hsm import Keystore
from tests.support.daemon import Daemon, edit_config, init_state
from tests.support.governance import decide
from tests.support.rpc import pb, rpc_error
from tests.support.ethereum import submit, tx_fields
from tests.support.fixtures import DaemonFactory

PROBE = 0.5
EXTERNAL_ETH = "0x000000000000000000000000000000000000dEaD"
_nonce = iter(range(10_000))


# ---------------------------------------------------------------- helpers

def daemon_for(path: Path, *extra: str) -> Daemon:
    cfg = init_state(path, *extra)
    edit_config(cfg, "hsm", probe_seconds=PROBE)
    # No checkpoint by the monitor's timer: the tests checkpoint through GetHead.
    edit_config(cfg, "audit", checkpoint_seconds=3600.0, checkpoint_events=100_000)
    return Daemon(cfg)


def eth_wallet(d: Daemon, case: str) -> pb.Wallet:
    from tests.unit.eth_oracle import CHAIN_ID

    return d.custody().CreateWallet(pb.CreateWalletRequest(
        chain=pb.ETHEREUM, chain_ids=[CHAIN_ID], category=pb.SEIZED, case_ref=case))


def eth_transfer(d: Daemon, w: pb.Wallet) -> pb.Transfer:
    return submit(d, w.id, tx_fields(nonce=next(_nonce), to=EXTERNAL_ETH))


def db_path(d: Daemon) -> Path:
    return d.state / "signerd.db"


def backup(d: Daemon, name: str) -> Path:
    """An online copy of the daemon's database, as a DBA takes one (SQLite's backup API)."""
    to = d.state.parent / f"{name}.db"
    with contextlib.closing(sqlite3.connect(db_path(d))) as src, \
            contextlib.closing(sqlite3.connect(to)) as dst:
        src.backup(dst)
    return to


def put_back(d: Daemon, copy: Path) -> None:
    """The database replaced by ``copy`` (the daemon stopped)."""
    assert d.proc is None
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{db_path(d)}{suffix}")
    with contextlib.closing(sqlite3.connect(copy)) as src, \
            contextlib.closing(sqlite3.connect(db_path(d))) as dst:
        src.backup(dst)


def sql(d: Daemon, *statements: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(db_path(d), timeout=30)) as c:
        with c:
            rows: list[tuple[Any, ...]] = []
            for s in statements:
                rows = c.execute(s, params if "?" in s else ()).fetchall()
        return rows


def refused_start(d: Daemon) -> str:
    """Start the daemon, which must exit 2 with one line on stderr: that line."""
    with pytest.raises(RuntimeError, match="daemon exited 2"):
        d.start()
    d.stop()
    assert d.log_path is not None
    lines = [ln for ln in d.log_path.read_text().splitlines() if ln.strip()]
    assert lines, "nothing on stderr"
    assert lines[-1].startswith("signerd: "), lines
    return lines[-1]


@contextlib.contextmanager
def token(state: Path) -> Iterator[Keystore]:
    """The state folder's HSM token, opened by the test with the daemon stopped."""
    cfg = load(state / "signerd.toml")
    uri = cfg.hsm.token if cfg.hsm.token.startswith("pkcs11:") else None
    ks = Keystore(cfg.hsm.module, token_uri=uri, token_label=None if uri else cfg.hsm.token,
                  pin_file=cfg.hsm.pin_file, env={"SOFTHSM2_CONF": str(cfg.hsm.softhsm_conf)})
    hsm._INITIALISED.pop(cfg.hsm.module, None)  # initialise the module for this token folder
    ks.open()
    try:
        yield ks
    finally:
        ks.close()
        hsm._INITIALISED.pop(cfg.hsm.module, None)  # the next in-process user does the same


def marks(d: Daemon) -> tuple[A.Marks, int, int]:
    """The token's anchors, and how many objects of each label it holds."""
    with token(d.state) as ks:
        m = A.Anchors(ks, load(d.config).instance_id).read()
        return m, len(ks.read_data(A.LEDGER_LABEL)), len(ks.read_data(A.AUDIT_LABEL))


def heads(d: Daemon) -> tuple[int, str, int, int, str]:
    """(ledger seq, ledger hash, latest checkpoint seq, its head seq, its head hash)."""
    ((lseq, lhash),) = sql(d, "SELECT seq, hash FROM authority_head WHERE id = 1")
    cp = sql(d, "SELECT seq, head_seq, head_hash FROM audit_checkpoints ORDER BY seq DESC "
                "LIMIT 1")
    return (lseq, lhash, *(cp[0] if cp else (0, 0, "")))


def no_signature(d: Daemon, transfer_id: str) -> None:
    assert sql(d, "SELECT COUNT(*) FROM signatures WHERE transfer_id = ?",
               params=(transfer_id,)) == [(0,)]
    ((state, raw),) = sql(d, "SELECT state, raw_tx FROM transfers WHERE id = ?",
                          params=(transfer_id,))
    assert state != "SIGNED" and raw == ""


def app_on(d: Daemon) -> Any:
    """An App on the daemon's state folder (its token and store), not started."""
    from signerd.app import App

    cfg = load(d.config)
    hsm._INITIALISED.pop(cfg.hsm.module, None)
    return App(cfg)


# ---------------------------------------------------------------- 1. a freeze rolled back

@pytest.fixture(scope="module")
def daemon(daemon_factory: DaemonFactory, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Daemon]:
    yield from daemon_factory.run(config=daemon_for(tmp_path_factory.mktemp("anchor") / "state")
                                  .config)


def test_a_backup_from_before_a_freeze_does_not_start(daemon: Daemon) -> None:
    d = daemon
    w = eth_wallet(d, "CASE-ANCHOR-FREEZE")
    t = eth_transfer(d, w)
    decide(d, t.id, "inv1")
    before = backup(d, "before-freeze")
    d.admin().FreezeWallet(pb.FreezeWalletRequest(wallet_id=w.id, order_ref="ORDER-ANCHOR-1"))
    frozen = heads(d)
    d.stop()
    after = backup(d, "after-freeze")
    m, n_ledger, _ = marks(d)
    assert m.ledger == A.LedgerMark(frozen[0], bytes.fromhex(frozen[1]))
    assert n_ledger == 1  # the genesis anchor was superseded and destroyed

    # The DBA restores the copy from before the freeze and waits for a restart.
    put_back(d, before)
    assert heads(d)[0] == frozen[0] - 1
    line = refused_start(d)
    assert line == (f"signerd: the store's governance ledger ends at entry {frozen[0] - 1} but "
                    f"the HSM anchor records entry {frozen[0]} (hash {frozen[1][:16]}...): the "
                    "store was rolled back or truncated; restore it or see the runbook "
                    "(README: Restoring the store)"), line

    # Nothing signs for the wallet: the approval that completes the quorum is refused its
    # signature by any App on this store (the HSM signs nothing until the anchors agree).
    app = app_on(d)
    with pytest.raises(ConfigError, match=f"ends at entry {frozen[0] - 1}"):
        app.start()
    app.keystore.open()
    try:
        with pytest.raises(HsmUnavailable, match="signing refused: the store's governance"):
            app.hsm_sign(app.ledger.cached.audit_key_id, bytes(32))
    finally:
        app.keystore.close()
        app.store.close()
    no_signature(d, t.id)
    assert m == marks(d)[0]  # the refusal wrote nothing

    # The store as it was: it starts, and the freeze holds.
    put_back(d, after)
    d.start()
    assert d.custody().GetWallet(pb.GetWalletRequest(wallet_id=w.id)).status == pb.FROZEN
    t = decide(d, t.id, "cust1")
    time.sleep(3 * PROBE)
    no_signature(d, t.id)


# ---------------------------------------------------------------- 2. the audit trail cut back

def test_an_audit_checkpoint_rolled_back_or_truncated_does_not_start(daemon: Daemon) -> None:
    d = daemon
    if d.proc is None:
        d.start()
    w = eth_wallet(d, "CASE-ANCHOR-CANCEL")
    t = eth_transfer(d, w)
    d.audit().GetHead(pb.GetHeadRequest())  # checkpointed with the transfer pending
    before = backup(d, "before-cancel")
    pending = heads(d)
    d.custody().CancelTransfer(pb.CancelTransferRequest(transfer_id=t.id, reason="anchor test"))
    d.audit().GetHead(pb.GetHeadRequest())  # the cancellation is checkpointed and anchored
    d.stop()
    real = backup(d, "after-cancel")
    lseq, _, cp, cp_head, cp_hash = heads(d)
    assert cp == pending[2] + 1 and lseq == pending[0]
    assert marks(d)[0].checkpoint == A.CheckpointMark(cp, cp_head, bytes.fromhex(cp_hash))

    # (a) the copy from before the cancellation
    put_back(d, before)
    line = refused_start(d)
    assert line == (f"signerd: the store's audit checkpoints end at checkpoint {cp - 1} but the "
                    f"HSM anchor records checkpoint {cp} (audit head seq {cp_head}, hash "
                    f"{cp_hash[:16]}...): the store was rolled back or truncated; restore it or "
                    "see the runbook (README: Restoring the store)"), line

    # (b) the same by SQL on the real store: the tail cut back consistently and the cancelled
    # transfer waiting again
    put_back(d, real)
    sql(d, f"DELETE FROM audit_checkpoints WHERE seq > {cp - 1}",
        f"DELETE FROM audit_events WHERE seq > {pending[3]}",
        f"UPDATE audit_head SET seq = {pending[3]}, hash = '{pending[4]}' WHERE id = 1",
        f"UPDATE transfers SET state = 'PENDING_APPROVAL' WHERE id = '{t.id}'")
    assert f"audit checkpoints end at checkpoint {cp - 1} but the HSM anchor records " \
           f"checkpoint {cp} " in refused_start(d)

    # (c) the checkpoints kept, the events cut below the anchored checkpoint's head
    put_back(d, real)
    sql(d, f"DELETE FROM audit_events WHERE seq > {cp_head - 2}",
        f"UPDATE audit_head SET seq = {cp_head - 2}, hash = (SELECT hash FROM audit_events "
        f"WHERE seq = {cp_head - 2}) WHERE id = 1")
    line = refused_start(d)
    assert line.startswith(f"signerd: the store's audit chain ends at event {cp_head - 2} but "
                           f"the HSM anchor records checkpoint {cp} "), line
    assert "rolled back or truncated" in line

    put_back(d, real)
    d.start()
    got = d.custody().GetTransfer(pb.GetTransferRequest(transfer_id=t.id))
    assert got.state == pb.CANCELLED
    no_signature(d, t.id)


def test_sigterm_checkpoints_so_an_ending_since_the_last_checkpoint_is_anchored(
        daemon: Daemon) -> None:
    """A cancellation after the latest checkpoint, then an orderly stop (SIGTERM): the daemon
    checkpoints and anchors the head before it exits, so the copy from before the cancellation
    does not start either (after a kill -9, the events since the last checkpoint would be the
    chain's alone to defend)."""
    d = daemon
    if d.proc is None:
        d.start()
    w = eth_wallet(d, "CASE-ANCHOR-SIGTERM")
    t = eth_transfer(d, w)
    d.audit().GetHead(pb.GetHeadRequest())
    before = backup(d, "before-late-cancel")
    checkpointed = heads(d)
    d.custody().CancelTransfer(pb.CancelTransferRequest(transfer_id=t.id, reason="late"))
    assert heads(d)[2] == checkpointed[2]  # not checkpointed while it runs
    assert d.stop() == 0
    real = backup(d, "after-late-cancel")
    cp = heads(d)
    assert cp[2] == checkpointed[2] + 1 and cp[3] > checkpointed[3]
    assert marks(d)[0].checkpoint == A.CheckpointMark(cp[2], cp[3], bytes.fromhex(cp[4]))
    put_back(d, before)
    assert f"audit checkpoints end at checkpoint {checkpointed[2]} but the HSM anchor records " \
           f"checkpoint {cp[2]} " in refused_start(d)
    put_back(d, real)
    d.start()
    got = d.custody().GetTransfer(pb.GetTransferRequest(transfer_id=t.id))
    assert got.state == pb.CANCELLED


# ---------------------------------------------------------------- 3. an honest restart

def test_a_restart_without_tampering_starts_and_the_anchors_follow_the_store(
        daemon: Daemon) -> None:
    d = daemon
    if d.proc is None:
        d.start()
    w = eth_wallet(d, "CASE-ANCHOR-HONEST")
    d.admin().FreezeWallet(pb.FreezeWalletRequest(wallet_id=w.id, order_ref="ORDER-ANCHOR-2"))
    d.audit().GetHead(pb.GetHeadRequest())
    d.stop()
    lseq, lhash, cp, cp_head, cp_hash = heads(d)
    assert marks(d) == (A.Marks(A.LedgerMark(lseq, bytes.fromhex(lhash)),
                                A.CheckpointMark(cp, cp_head, bytes.fromhex(cp_hash))), 1, 1)
    for _ in range(2):
        d.start()
        assert d.custody().GetWallet(pb.GetWalletRequest(wallet_id=w.id)).status == pb.FROZEN
        d.stop()
    assert marks(d)[0].ledger == A.LedgerMark(lseq, bytes.fromhex(lhash))


# ---------------------------------------------------------------- 4. kill -9 before the anchor

def test_kill_9_between_a_commit_and_its_anchor_still_starts(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    d = daemon_for(tmp_path_factory.mktemp("anchor-kill") / "state")
    d.start()
    w = eth_wallet(d, "CASE-ANCHOR-KILL")
    d.audit().GetHead(pb.GetHeadRequest())
    d.stop()
    start = heads(d)
    assert marks(d)[0].ledger == A.LedgerMark(start[0], bytes.fromhex(start[1]))
    # Every PKCS#11 call takes 0.4 s longer: the anchor write (a read, a create) begins a
    # while after the commit, and the test kills the daemon in between.
    edit_config(d.config, "testing", hsm_delay_seconds=0.4)

    def killed_after(commit: str, rpc: Any) -> None:
        d.start(timeout=120)
        errors: list[BaseException] = []

        def call() -> None:
            try:
                rpc()
            except grpc.RpcError as e:  # the daemon dies under it
                errors.append(e)
        th = threading.Thread(target=call)
        th.start()
        deadline = time.monotonic() + 60
        while not sql(d, commit):
            assert time.monotonic() < deadline, "the commit did not happen"
            time.sleep(0.005)
        assert d.proc is not None
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(30)
        d.stop()
        th.join(30)

    killed_after(f"SELECT 1 FROM authority_head WHERE seq > {start[0]}",
                 lambda: d.admin().FreezeWallet(pb.FreezeWalletRequest(
                     wallet_id=w.id, order_ref="ORDER-ANCHOR-KILL")))
    frozen = heads(d)
    assert frozen[0] == start[0] + 1
    assert marks(d)[0].ledger == A.LedgerMark(start[0], bytes.fromhex(start[1]))  # behind

    killed_after(f"SELECT 1 FROM audit_checkpoints WHERE seq > {frozen[2]}",
                 lambda: d.audit().GetHead(pb.GetHeadRequest()))
    ckpt = heads(d)
    assert ckpt[2] == frozen[2] + 1
    assert marks(d)[0].checkpoint == A.CheckpointMark(frozen[2], frozen[3],
                                                      bytes.fromhex(frozen[4]))  # behind

    # The anchors behind the store are no alarm: it starts, the freeze holds, and the anchors
    # are brought forward to what it verified.
    edit_config(d.config, "testing", hsm_delay_seconds=0.0)
    d.start()
    assert d.custody().GetWallet(pb.GetWalletRequest(wallet_id=w.id)).status == pb.FROZEN
    d.audit().GetHead(pb.GetHeadRequest())  # verifies the latest checkpoint (or makes one)
    d.stop()
    final = heads(d)
    assert final[0] == ckpt[0] and final[2] >= ckpt[2]
    assert marks(d) == (A.Marks(A.LedgerMark(final[0], bytes.fromhex(final[1])),
                                A.CheckpointMark(final[2], final[3], bytes.fromhex(final[4]))),
                        1, 1)


# ---------------------------------------------------------------- 5. the anchors themselves

def test_anchors_only_move_forward_and_refuse_what_signerd_did_not_write(daemon: Daemon
                                                                         ) -> None:
    d = daemon
    d.stop()
    instance = load(d.config).instance_id
    with token(d.state) as ks:
        a, b = A.Anchors(ks, instance), A.Anchors(ks, instance)  # two replicas, one token
        base = a.read().ledger
        assert base is not None
        a.read(), b.read()
        h = bytes(range(32))
        try:
            assert a.advance_ledger(base.seq + 2, h)
            # b knows only base: its later write of a lower entry leaves the anchor where a put
            # it, and writes nothing.
            assert not b.advance_ledger(base.seq + 1, bytes(32))
            assert A.Anchors(ks, instance).read().ledger == A.LedgerMark(base.seq + 2, h)
            assert len(ks.read_data(A.LEDGER_LABEL)) == 1
            # even one written without looking (a replica whose read raced) changes nothing
            ks.create_data(A.LEDGER_LABEL, A.encode(instance, A.LedgerMark(base.seq + 1, h)),
                           destroyable=True)
            assert A.Anchors(ks, instance).read().ledger == A.LedgerMark(base.seq + 2, h)
            # two objects that disagree at the highest entry: a fork, refused
            ks.create_data(A.LEDGER_LABEL, A.encode(instance, A.LedgerMark(base.seq + 2,
                                                                           bytes(32))),
                           destroyable=True)
            with pytest.raises(SignerError, match="anchors disagree about ledger entry"):
                A.Anchors(ks, instance).read()
            ks.destroy_data(A.LEDGER_LABEL, lambda v: A.decode(A.LEDGER_LABEL, instance, v)
                            == A.LedgerMark(base.seq + 2, bytes(32)))
            assert A.Anchors(ks, instance).read().ledger == A.LedgerMark(base.seq + 2, h)
            # an object signerd did not write
            ks.create_data(A.AUDIT_LABEL, b"not an anchor", destroyable=True)
            with pytest.raises(SignerError, match="signerd-anchor-audit object that signerd "
                                                  "did not write"):
                A.Anchors(ks, instance).read()
        finally:  # the token as it was
            ks.destroy_data(A.AUDIT_LABEL, lambda v: v == b"not an anchor")
            ks.destroy_data(A.LEDGER_LABEL, lambda v: A.decode(A.LEDGER_LABEL, instance, v)
                            != base)
            if not ks.read_data(A.LEDGER_LABEL):
                ks.create_data(A.LEDGER_LABEL, A.encode(instance, base), destroyable=True)
        assert A.Anchors(ks, instance).read().ledger == base
    d.start()
    d.stop()


def test_a_destroyed_anchor_is_refused_once_the_ledger_is_past_the_genesis(
        daemon: Daemon, tmp_path_factory: pytest.TempPathFactory) -> None:
    d = daemon
    d.stop()
    instance = load(d.config).instance_id
    with token(d.state) as ks:
        saved = ks.read_data(A.LEDGER_LABEL)
        ks.destroy_data(A.LEDGER_LABEL, lambda v: True)  # with the PIN
    seq = heads(d)[0]
    assert seq > 1
    line = refused_start(d)
    assert line == (f"signerd: the HSM token holds no anchor of the governance ledger, but the "
                    f"store's ledger has {seq} entries: the anchor was destroyed (that takes the "
                    "token's user PIN) or this state folder predates anchors; restore it or see "
                    "the runbook (README: Restoring the store)"), line
    with token(d.state) as ks:
        for v in saved:
            ks.create_data(A.LEDGER_LABEL, v, destroyable=True)
    d.start()

    # A new state folder whose anchor is missing (a crash inside `signerd init`) starts while
    # its ledger holds the genesis alone, and anchors it.
    fresh = daemon_for(tmp_path_factory.mktemp("anchor-genesis") / "state")
    with token(fresh.state) as ks:
        ks.destroy_data(A.LEDGER_LABEL, lambda v: True)
    fresh.start()
    fresh.stop()
    lseq, lhash, *_ = heads(fresh)
    assert lseq == 1
    assert marks(fresh)[0].ledger == A.LedgerMark(1, bytes.fromhex(lhash))


# ---------------------------------------------------------------- 6. PostgreSQL

@pytest.mark.postgres
def test_postgres_a_truncated_ledger_does_not_start(
        pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    d = daemon_for(tmp_path_factory.mktemp("anchor-pg") / "state", "--store-url", pg_url)
    d.start()
    try:
        w = eth_wallet(d, "CASE-ANCHOR-PG")
        t = eth_transfer(d, w)
        decide(d, t.id, "inv1")
        d.admin().FreezeWallet(pb.FreezeWalletRequest(wallet_id=w.id, order_ref="ORDER-PG-1"))
    finally:
        d.stop()
    with psycopg.connect(pg_url, autocommit=True) as c:
        ((seq, head),) = c.execute("SELECT seq, hash FROM authority_head").fetchall()
        entry = c.execute("SELECT * FROM authority_log WHERE seq = %s", (seq,)).fetchall()
        prev = c.execute("SELECT hash FROM authority_log WHERE seq = %s",
                         (seq - 1,)).fetchone()[0]
    # The DBA cuts the freeze from the ledger, moves the head back and thaws the row.
    with psycopg.connect(pg_url) as c:
        c.execute("DELETE FROM authority_log WHERE seq = %s", (seq,))
        c.execute("UPDATE authority_head SET seq = %s, hash = %s WHERE id = 1", (seq - 1, prev))
        c.execute("UPDATE wallets SET status = 'ACTIVE', freeze_order = '' WHERE id = %s",
                  (w.id,))
    line = refused_start(d)
    assert line == (f"signerd: the store's governance ledger ends at entry {seq - 1} but the "
                    f"HSM anchor records entry {seq} (hash {head[:16]}...): the store was rolled "
                    "back or truncated; restore it or see the runbook (README: Restoring the "
                    "store)"), line
    # put back: it starts, and the freeze holds whatever the row says
    with psycopg.connect(pg_url) as c:
        marks_ = ", ".join(["%s"] * len(entry[0]))
        c.execute(f"INSERT INTO authority_log VALUES ({marks_})", entry[0])
        c.execute("UPDATE authority_head SET seq = %s, hash = %s WHERE id = 1", (seq, head))
    d.start()
    try:
        assert d.custody().GetWallet(pb.GetWalletRequest(wallet_id=w.id)).status == pb.FROZEN
        e = rpc_error(eth_transfer, d, w)
        assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
        got = decide(d, t.id, "cust1")
        assert not got.raw_tx
    finally:
        d.stop()
    with psycopg.connect(pg_url, autocommit=True) as c:
        assert c.execute("SELECT COUNT(*) FROM signatures WHERE transfer_id = %s",
                         (t.id,)).fetchone()[0] == 0

