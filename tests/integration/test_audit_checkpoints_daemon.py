"""HSM-signed audit checkpoints on a real daemon: the monitor checkpoints the head, exports carry
the checkpoints and verify offline with `signerctl audit verify`, and a store writer who rewrites
history before a checkpoint (recomputing every later hash and the head row) or deletes a
checkpoint gets no further signature: the checkpoint is refused, the metric moves, GetHead and
Export fail with FAILED_PRECONDITION, earlier exports still verify and an export of the
rewritten store, even with a head signed by the HSM, fails offline at the checkpoint. SQLite,
and PostgreSQL (with two replicas checkpointing one chain)."""
from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import grpc
import pytest

from signerd.core import audit
from signerd.adapters.store.factory import open_store
from tests.support.daemon import Daemon, edit_config, init_state, signerctl_cmd
from tests.support.governance import decide
from tests.support.rpc import pb, rpc_error
from tests.support.ethereum import tx_fields

CHECKPOINT_SECONDS = 0.5


# ---------------------------------------------------------------- helpers

def metric(d: Daemon, name: str, **labels: str) -> float:
    total = 0.0
    for line in d.metrics().splitlines():
        m = re.match(r"^([a-z_]+)(\{[^}]*\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def wait_until(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def store_state(url: str) -> tuple[tuple[int, bytes], list[audit.Checkpoint],
                                   list[audit.AuditEvent]]:
    st = open_store(url)
    try:
        with st.read() as tx:
            return tx.audit_head(), tx.audit_checkpoints(), tx.audit_events(0, 1_000_000)
    finally:
        st.close()


def history(d: Daemon, case: str, transfers: int = 2) -> None:
    w = d.custody().CreateWallet(pb.CreateWalletRequest(
        chain=pb.ETHEREUM, chain_ids=[1], category=pb.SEIZED, case_ref=case))
    for n in range(transfers):
        t = d.custody().SubmitTransfer(pb.SubmitTransferRequest(
            wallet_id=w.id, ethereum=pb.EthereumTransaction(json=json.dumps(
                tx_fields(chainId=1, nonce=n)))))
        decide(d, t.id, "inv1")
        decide(d, t.id, "cust1")


def export(d: Daemon, path: Path) -> Path:
    path.write_bytes(b"".join(c.data for c in d.audit().Export(pb.ExportRequest())))
    return path


def ctl_verify(path: Path, key: bytes) -> subprocess.CompletedProcess[str]:
    return subprocess.run(signerctl_cmd("audit", "verify", str(path), "--audit-key", key.hex()),
                          capture_output=True, text=True, timeout=60, env=dict(os.environ))


def checkpointed(url: str) -> bool:
    (seq, _), cps, _ = store_state(url)
    return seq > 0 and bool(cps) and cps[-1].head_seq == seq


class Sql:
    """What a store writer with SQL access does, on SQLite or PostgreSQL."""

    def __init__(self, url: str):
        self.url = url

    def run(self, fn: Callable[[Any], None]) -> None:
        if self.url.startswith("sqlite:///"):
            c = sqlite3.connect(self.url[len("sqlite:///"):], timeout=30)
            try:
                with c:
                    fn(lambda q, p=(): c.execute(q, p).fetchall())
            finally:
                c.close()
        else:
            import psycopg

            with psycopg.connect(self.url) as c:
                fn(lambda q, p=(): _pg(c, q, p))

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        out: dict[str, list[tuple[Any, ...]]] = {}

        def take(q: Any) -> None:
            for table in ("audit_events", "audit_head", "audit_checkpoints"):
                out[table] = q(f"SELECT * FROM {table}")
        self.run(take)
        return out

    def restore(self, snap: dict[str, list[tuple[Any, ...]]]) -> None:
        def put(q: Any) -> None:
            mark = "?" if self.url.startswith("sqlite") else "%s"
            for table, rows in snap.items():
                q(f"DELETE FROM {table}")
                for row in rows:
                    q(f"INSERT INTO {table} VALUES ({', '.join(mark for _ in row)})", row)
        self.run(put)

    def rewrite_event(self, seq: int, **changes: Any) -> None:
        """Edit event ``seq``, recompute its hash and every later one, and move the head row:
        a chain consistent in itself, as a careful forger leaves it."""
        mark = "?" if self.url.startswith("sqlite") else "%s"

        def rewrite(q: Any) -> None:
            rows = q(f"SELECT seq, time_micros, actor, action, object, details, prev_hash"
                     f" FROM audit_events WHERE seq >= {mark} ORDER BY seq", (seq,))
            prev = bytes.fromhex(rows[0][6])
            for i, (s, t, actor, action, obj, details) in enumerate(r[:6] for r in rows):
                body = {"actor": actor, "action": action, "object": obj,
                        "details": json.loads(details)}
                if i == 0:
                    body.update(changes)
                h = audit.chain_hash(prev, s, t, body["actor"], body["action"], body["object"],
                                     body["details"])
                q(f"UPDATE audit_events SET actor = {mark}, action = {mark}, object = {mark},"
                  f" details = {mark}, prev_hash = {mark}, hash = {mark} WHERE seq = {mark}",
                  (body["actor"], body["action"], body["object"],
                   json.dumps(body["details"], sort_keys=True, separators=(",", ":")),
                   prev.hex(), h.hex(), s))
                prev = h
            q(f"UPDATE audit_head SET seq = {mark}, hash = {mark} WHERE id = 1",
              (rows[-1][0], prev.hex()))
        self.run(rewrite)


def _pg(c: Any, q: str, p: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    cur = c.execute(q.replace("?", "%s"), p)
    return cur.fetchall() if cur.description else []


def refused(d: Daemon, what: str) -> grpc.RpcError:
    call = (lambda: d.audit().GetHead(pb.GetHeadRequest())) if what == "GetHead" else (
        lambda: b"".join(c.data for c in d.audit().Export(pb.ExportRequest())))
    e = rpc_error(call)
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, (e.code(), e.details())
    return e


def fast_config(cfg: Path) -> Path:
    edit_config(cfg, "hsm", probe_seconds=0.2)
    edit_config(cfg, "audit", checkpoint_seconds=CHECKPOINT_SECONDS, checkpoint_events=5)
    return cfg


# ---------------------------------------------------------------- SQLite

@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, str, bytes]]:
    cfg = fast_config(init_state(tmp_path_factory.mktemp("ckpt") / "state"))
    d = Daemon(cfg).start()
    try:
        history(d, "CASE-CKPT")
        key = d.governance().GetAuthority(pb.GetAuthorityRequest()).audit_public_key
        yield d, f"sqlite:///{d.state / 'signerd.db'}", bytes(key)
    finally:
        d.stop()


@pytest.fixture
def intact(env: tuple[Daemon, str, bytes]) -> Iterator[tuple[Daemon, str, bytes]]:
    """The store as it was before the test's tampering, restored afterwards (and the daemon's
    checkpointing works again then: a refusal is not latched)."""
    d, url, key = env
    assert wait_until(lambda: checkpointed(url))
    snap = Sql(url).snapshot()
    yield env
    Sql(url).restore(snap)
    if d.proc is None:
        d.start()
    assert d.audit().GetHead(pb.GetHeadRequest()).seq == snap["audit_head"][0][1]


def test_the_monitor_checkpoints_the_head(env: tuple[Daemon, str, bytes]) -> None:
    d, url, key = env
    assert wait_until(lambda: checkpointed(url))
    (seq, head), cps, events = store_state(url)
    assert [c.seq for c in cps] == list(range(1, len(cps) + 1)) and cps[-1].head_hash == head
    r = audit.verify_checkpoints(cps, events, instance_id=d.audit().GetHead(
        pb.GetHeadRequest()).instance_id, audit_public_key=key)
    assert r.ok and r.checked == len(cps), r.problem
    assert wait_until(lambda: metric(d, "signerd_audit_checkpoint_head_seq") >= seq)
    assert metric(d, "signerd_audit_head_seq") >= seq
    assert metric(d, "signerd_audit_chain_violations_total") == 0


def test_get_head_and_export_are_checkpointed_and_verify_offline(
        env: tuple[Daemon, str, bytes], tmp_path: Path) -> None:
    d, url, key = env
    history(d, "CASE-CKPT-2", transfers=1)  # the head moves; GetHead checkpoints it at once
    head = d.audit().GetHead(pb.GetHeadRequest())
    (seq, hash_), cps, _ = store_state(url)
    assert (head.seq, bytes(head.hash)) == (cps[-1].head_seq, cps[-1].head_hash) == (seq, hash_)
    f = export(d, tmp_path / "audit.jsonl")
    doc = audit.read_export(f.read_bytes())
    assert doc.header.format == "signerd-audit-export/v2"
    assert doc.checkpoints == cps and doc.checkpoints[-1].head_seq == doc.header.head_seq
    r = ctl_verify(f, key)
    assert r.returncode == 0, r.stderr
    assert f"{len(cps)} checkpoints verified, the last at the head" in r.stdout


def test_rewritten_history_gets_no_signature(intact: tuple[Daemon, str, bytes],
                                            tmp_path: Path) -> None:
    d, url, key = intact
    earlier = export(d, tmp_path / "earlier.jsonl")
    assert ctl_verify(earlier, key).returncode == 0
    (_, _), cps, events = store_state(url)
    target = next(e for e in events if e.action == "transfer.approve")
    assert target.seq < cps[-1].head_seq
    before = metric(d, "signerd_audit_chain_violations_total", kind="event")
    Sql(url).rewrite_event(target.seq, actor="cust2")  # the other custody officer approved
    _, _, rewritten = store_state(url)
    assert audit.verify_chain(rewritten).ok  # consistent in itself: only a checkpoint shows it

    # The monitor's next checkpoint (the head moves) is refused and counted.
    history(d, "CASE-CKPT-3", transfers=0)
    assert wait_until(lambda: metric(d, "signerd_audit_chain_violations_total", kind="event")
                      > before)
    assert store_state(url)[1] == cps  # nothing signed since
    # The running daemon checks the latest checkpoint it signed or verified.
    latest = cps[-1]
    assert wait_until(lambda: "audit checkpoint refused" in d.log_path.read_text())
    log = d.log_path.read_text()
    assert f"audit checkpoint {latest.seq}: event seq {latest.head_seq} has hash" in log
    assert f"first bad seq {latest.head_seq}" in log

    # GetHead and Export refuse to sign, naming the problem.
    for what in ("GetHead", "Export"):
        e = refused(d, what)
        assert f"audit checkpoint {latest.seq}: event seq {latest.head_seq}" in e.details()
        assert "was rewritten after the checkpoint" in e.details()
    # ... also after a restart: a process with nothing in memory checks the latest checkpoint
    # and the one before it.
    d.stop()
    d.start()
    e = refused(d, "GetHead")
    first = cps[-2] if len(cps) > 1 and target.seq <= cps[-2].head_seq else latest
    assert f"audit checkpoint {first.seq}: event seq {first.head_seq}" in e.details()

    # The earlier export still verifies offline.
    r = ctl_verify(earlier, key)
    assert r.returncode == 0, r.stderr

    # An export of the rewritten store fails offline even with a head the HSM signed (as an
    # older signerd would have, or anyone with the token and its PIN).
    d.stop()
    forged = tmp_path / "rewritten.jsonl"
    forged.write_bytes(hsm_signed_export(d, url))
    r = ctl_verify(forged, key)
    bad = next(c for c in cps if c.head_seq >= target.seq)  # the first that covers it
    assert r.returncode != 0
    line = r.stderr.strip()
    assert "\n" not in line, line
    assert line.startswith(f"signerctl: {forged}: audit checkpoint {bad.seq} is NOT valid, first "
                           f"bad event seq {bad.head_seq} "), line
    assert "was rewritten after the checkpoint" in line
    d.start()


def hsm_signed_export(d: Daemon, url: str) -> bytes:
    """The store as it is, every checkpoint, and the head signed by the daemon's HSM key (the
    test opens the token itself, with the daemon stopped)."""
    from signerd.adapters import hsm
    from signerd.adapters.config import load
    from signerd.daemon import find_softhsm_module
    from signerd.adapters.hsm import Keystore
    from signerd.services.ledger import Ledger

    cfg = load(d.config)
    (seq, head), cps, events = store_state(url)
    st = open_store(url)
    with st.read() as tx:
        state = Ledger(cfg.genesis).state(tx)
    st.close()
    module = find_softhsm_module()
    ks = Keystore(module, token_label="signerd", pin_file=cfg.hsm.pin_file,
                  env={"SOFTHSM2_CONF": str(cfg.hsm.softhsm_conf)})
    hsm._INITIALISED.pop(module, None)  # initialise the module for this token folder
    ks.open()
    try:
        r, s = ks.sign_digest(state.audit_key_id, audit.head_digest(cfg.instance_id, seq, head))
    finally:
        ks.close()
        hsm._INITIALISED.pop(module, None)  # and let the next in-process user do the same
    return audit.export_document(events, r.to_bytes(32, "big") + s.to_bytes(32, "big"),
                                 state.audit_public_key, cfg.instance_id, cps)


def test_a_deleted_checkpoint_is_found_by_the_running_daemon(
        intact: tuple[Daemon, str, bytes], tmp_path: Path) -> None:
    d, url, key = intact
    d.audit().GetHead(pb.GetHeadRequest())  # this process signed or verified the latest
    _, cps, _ = store_state(url)
    before = metric(d, "signerd_audit_chain_violations_total", kind="checkpoint")
    latest = cps[-1]
    Sql(url).run(lambda q: q(f"DELETE FROM audit_checkpoints WHERE seq = {latest.seq}"))
    e = refused(d, "GetHead")
    assert f"audit checkpoint {latest.seq} (head seq {latest.head_seq})" in e.details()
    assert "missing from the store" in e.details()
    refused(d, "Export")
    now = metric(d, "signerd_audit_chain_violations_total", kind="checkpoint")
    assert now >= before + 2
    # and the monitor finds it too once the head moves (no RPC needed)
    history(d, "CASE-CKPT-4", transfers=0)
    assert wait_until(lambda: metric(d, "signerd_audit_chain_violations_total",
                                     kind="checkpoint") > now)
    assert store_state(url)[1] == cps[:-1]  # nothing signed over the rolled-back list


def test_a_replaced_checkpoint_or_a_missing_middle_one_is_found(
        intact: tuple[Daemon, str, bytes]) -> None:
    d, url, key = intact
    for _ in range(2):  # at least two checkpoints
        history(d, "CASE-CKPT-5", transfers=0)
        d.audit().GetHead(pb.GetHeadRequest())
    _, cps, _ = store_state(url)
    latest = cps[-1]
    Sql(url).run(lambda q: q("UPDATE audit_checkpoints SET time_micros = time_micros + 1"
                             f" WHERE seq = {latest.seq}"))
    e = refused(d, "GetHead")
    assert f"audit checkpoint {latest.seq} in the store differs" in e.details()
    # A fresh process checks the latest checkpoint and its link to the one before.
    d.stop()
    d.start()
    e = refused(d, "GetHead")
    assert f"audit checkpoint {latest.seq}: the signature does not verify" in e.details()
    Sql(url).run(lambda q: q(f"UPDATE audit_checkpoints SET time_micros = {latest.time}"
                             f" WHERE seq = {latest.seq}"))
    Sql(url).run(lambda q: q(f"DELETE FROM audit_checkpoints WHERE seq = {latest.seq - 1}"))
    d.stop()
    d.start()
    e = refused(d, "GetHead")
    assert f"audit checkpoint {latest.seq - 1} is missing from the store" in e.details()


# ---------------------------------------------------------------- PostgreSQL

@pytest.mark.postgres
def test_postgres_replicas_checkpoint_one_chain_and_refuse_a_rewrite(
        pg_url: str, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    from tests.support.daemon import replica_config

    cfg = fast_config(init_state(tmp_path_factory.mktemp("ckpt-pg") / "state",
                                 "--store-url", pg_url))
    a = Daemon(cfg).start()
    b = Daemon(replica_config(cfg, "b")).start()
    try:
        key = bytes(a.governance().GetAuthority(pb.GetAuthorityRequest()).audit_public_key)
        errors: list[BaseException] = []

        def heads(d: Daemon) -> None:
            try:
                for _ in range(15):
                    d.audit().GetHead(pb.GetHeadRequest())
            except BaseException as e:  # noqa: BLE001 - asserted below
                errors.append(e)

        # Both replicas checkpoint the same moving chain at once (monitors and GetHead).
        threads = [threading.Thread(target=heads, args=(d,)) for d in (a, b, a, b)]
        for t in threads:
            t.start()
        history(a, "CASE-CKPT-PG", transfers=2)
        history(b, "CASE-CKPT-PG-B", transfers=0)
        for t in threads:
            t.join(120)
        assert not errors, errors[:2]
        assert wait_until(lambda: checkpointed(pg_url))
        (seq, head), cps, events = store_state(pg_url)
        r = audit.verify_checkpoints(cps, events, instance_id=a.audit().GetHead(
            pb.GetHeadRequest()).instance_id, audit_public_key=key)
        assert r.ok and len(cps) >= 2, r.problem
        for d in (a, b):
            assert metric(d, "signerd_audit_chain_violations_total") == 0
        earlier = export(b, tmp_path / "earlier.jsonl")
        assert ctl_verify(earlier, key).returncode == 0

        # A writer rewrites an event before the latest checkpoint, consistently.
        (_, _), cps, events = store_state(pg_url)
        target = next(e for e in events if e.action == "transfer.approve")
        Sql(pg_url).rewrite_event(target.seq, details={"forged": True})
        assert audit.verify_chain(store_state(pg_url)[2]).ok
        for d in (a, b):
            e = refused(d, "GetHead")
            assert "audit checkpoint" in e.details(), e.details()
            assert "was rewritten after the checkpoint" in e.details(), e.details()
            assert metric(d, "signerd_audit_chain_violations_total", kind="event") >= 1
        refused(b, "Export")
        assert store_state(pg_url)[1] == cps
        assert ctl_verify(earlier, key).returncode == 0
    finally:
        b.stop()
        a.stop()


# ---------------------------------------------------------------- in process

@pytest.fixture
def app(tmp_path: Path) -> Iterator[Any]:
    from signerd.adapters import config as C
    from signerd.adapters import hsm
    from signerd.app import App

    cfg = C.load(init_state(tmp_path / "state"))
    a = App(cfg)
    hsm._INITIALISED.pop(cfg.hsm.module, None)  # this test's token folder, not another test's
    a.start()
    yield a
    a.stop()
    hsm._INITIALISED.pop(cfg.hsm.module, None)  # the next in-process user initialises its own


def append_events(app: Any, n: int) -> None:
    with app.store.transaction() as tx:
        for i in range(n):
            tx.append_audit("test", "test.event", f"o/{i}", {"i": i})


def test_a_long_chain_is_verified_over_several_ticks(app: Any, monkeypatch) -> None:
    """The monitor verifies a bounded number of events per tick and goes on where it stopped;
    an event verified in an earlier tick and rewritten before the checkpoint is still found."""
    import signerd.app as A

    monkeypatch.setattr(A, "MONITOR_VERIFY_EVENTS", 400)
    append_events(app, 1000)
    with app.store.read() as tx:
        seq, head = tx.audit_head()
    app.audit_tick()
    app.audit_tick()
    with app.store.read() as tx:
        assert tx.latest_audit_checkpoint() is None  # 800 of the events verified so far
    app.audit_tick()
    with app.store.read() as tx:
        cp = tx.latest_audit_checkpoint()
    assert cp is not None and (cp.seq, cp.head_seq, cp.head_hash) == (1, seq, head)

    append_events(app, 1000)
    app.audit_tick()  # verified up to cp.head_seq + 400
    Sql(f"sqlite:///{Path(app.config.path).parent / 'signerd.db'}").rewrite_event(
        cp.head_seq + 10, actor="mallory")
    before = app.metrics.audit_violations.labels("event")._value.get()
    app.audit_tick()
    assert app.metrics.audit_violations.labels("event")._value.get() == before + 1
    with pytest.raises(A.AuditChainViolation, match=f"audit event seq {cp.head_seq + 400}, "
                                                      "verified since checkpoint 1, was changed"):
        app.checkpoint()


def test_another_replicas_checkpoint_first_is_verified_and_adopted(app: Any) -> None:
    """Two replicas checkpoint the same head: the one that stores second finds the other's
    checkpoint, verifies it and returns it, signing nothing more."""
    from signerd.core import audit as AU

    append_events(app, 5)
    first = app.checkpoint()
    append_events(app, 5)
    sign = app.hsm_sign
    competing: list[AU.Checkpoint] = []

    def replica_b_first(key_id: str, digest: bytes) -> tuple[int, int]:
        if not competing:  # "replica B" stores its checkpoint of the same head just now
            with app.store.read() as tx:
                seq, head = tx.audit_head()
            u = AU.next_checkpoint(first, app.instance_id, head_seq=seq, head_hash=head,
                                   time=int(time.time() * 1e6) - 1)
            r, s = sign(key_id, u.digest(app.instance_id))
            competing.append(u.signed(r.to_bytes(32, "big") + s.to_bytes(32, "big"),
                                      app.instance_id, app.audit_public_key))
            with app.store.transaction() as tx:
                tx.append_audit_checkpoint(competing[0])
        return sign(key_id, digest)

    app.hsm_sign = replica_b_first
    assert app.checkpoint() == competing[0]
    with app.store.read() as tx:
        assert tx.audit_checkpoints() == [first, competing[0]]
    assert app.metrics.audit_violations.labels("event")._value.get() == 0
    assert app.metrics.audit_violations.labels("checkpoint")._value.get() == 0
