"""PostgreSQL backend: the store on a real server, two replicas racing on one database and one
SoftHSM token, and tampering with the audit chain inside PostgreSQL.

The two replicas share everything a real deployment shares: the instance id (approval
statements name it), the HSM token folder and PIN, the PKI and the store URL; only their
listening ports differ (both configs say port 0, so each gets a free one). Keys are created
through replica A only: SoftHSM's file object store is safe for one process creating objects
while others sign, but a process signing with a key that another process created *while it was
itself creating keys* was seen to miss the new key once (NoSuchKey, then found on a retry).
"""
from __future__ import annotations

import hashlib
import json
import random
import shutil
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import grpc
import psycopg
import pytest
from eth_account import Account

from signerd.core import audit
from signerd.core.approval import sign_statement, statement_digest
from signerd.core.errors import AlreadyExists, Conflict, InvalidArgument, StoreUnavailable
from signerd.adapters.key_files import load_private
from signerd.adapters.store.factory import open_store
from signerd.adapters.store.postgres import PostgresStore
from tests.support.daemon import Daemon, edit_config, init_state, replica_config
from tests.support.governance import decide
from tests.support.rpc import pb, rpc, rpc_error
from tests.support.pg import PgCluster
from tests.unit.eth_oracle import CHAIN_ID

pytestmark = [pytest.mark.postgres]

GWEI = 10**9
TRANSFERS = 100
CLIENTS = 8


# ---------------------------------------------------------------- helpers

def tx_fields(nonce: int, value: int = 10**15) -> dict[str, Any]:
    return {"chainId": CHAIN_ID, "nonce": nonce, "maxPriorityFeePerGas": 1 * GWEI,
            "maxFeePerGas": 2 * GWEI, "gas": 21000,
            "to": "0x000000000000000000000000000000000000dEaD", "value": value, "data": "0x",
            "accessList": []}


def submit(d: Daemon, wallet_id: str, fields: dict[str, Any],
           stub: rpc.CustodyStub | None = None) -> pb.Transfer:
    return (stub or d.custody()).SubmitTransfer(pb.SubmitTransferRequest(
        wallet_id=wallet_id, ethereum=pb.EthereumTransaction(json=json.dumps(fields))))


def eth_wallet(d: Daemon, case: str) -> pb.Wallet:
    return d.custody().CreateWallet(pb.CreateWalletRequest(
        chain=pb.ETHEREUM, chain_ids=[CHAIN_ID], category=pb.SEIZED, case_ref=case))


def sql(url: str, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as c:
        cur = c.execute(query, params)
        return cur.fetchall() if cur.description else []


def channel(d: Daemon, principal: str) -> grpc.Channel:
    """A channel of its own (one per simulated client), not the Daemon's shared one."""
    pki = d.state / "pki"
    creds = grpc.ssl_channel_credentials(
        root_certificates=(pki / "ca.pem").read_bytes(),
        private_key=(pki / "clients" / f"{principal}.key").read_bytes(),
        certificate_chain=(pki / "clients" / f"{principal}.pem").read_bytes())
    return grpc.secure_channel(f"127.0.0.1:{d.port}", creds,
                               options=[("grpc.ssl_target_name_override", "localhost")])


def metric(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def replicas(pg_url: str, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[Daemon, Daemon]]:
    cfg = init_state(tmp_path_factory.mktemp("pg") / "state", "--store-url", pg_url)
    # Short probe interval: each replica's monitor keeps trying to sign every APPROVED
    # transfer, so the approving replica's inline sign races the other replica's timer.
    edit_config(cfg, "hsm", probe_seconds=0.2)
    edit_config(cfg, "limits", rate_per_second=100000.0, rate_burst=100000)
    edit_config(cfg, "testing", hsm_delay_seconds=0.01)
    a = Daemon(cfg).start()
    b = None
    try:
        b = Daemon(replica_config(cfg, "b")).start()
        assert a.port != b.port
        yield a, b
    finally:
        if b is not None:
            b.stop()
        a.stop()


# ---------------------------------------------------------------- the store on its own

def test_schema_is_migrated_once_and_the_audit_head_exists(pg_url: str) -> None:
    st = open_store(pg_url)
    again = open_store(pg_url)  # a second open finds nothing to do
    again.close()
    rows = sql(pg_url, "SELECT version FROM schema_version ORDER BY version")
    from signerd.adapters.store.migrations import MIGRATIONS

    assert [r[0] for r in rows] == [v for v, _, _ in MIGRATIONS]
    try:
        assert st.dialect == "postgresql" and isinstance(st, PostgresStore)
        with st.read() as tx:
            seq, head = tx.audit_head()
        assert seq >= 0 and len(head) == 32
    finally:
        st.close()


def test_replicas_starting_together_migrate_once(pg_cluster: PgCluster) -> None:
    url = pg_cluster.create_database("migrate_race")
    stores: list[Any] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def opener() -> None:
        barrier.wait()
        try:
            stores.append(open_store(url))
        except BaseException as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=opener) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s in stores:
        s.close()
    assert not errors
    from signerd.adapters.store.migrations import MIGRATIONS

    assert sql(url, "SELECT version FROM schema_version ORDER BY version") == [
        (v,) for v, _, _ in MIGRATIONS]
    assert sql(url, "SELECT id, seq, hash FROM audit_head") == [(1, 0, "00" * 32)]
    pg_cluster.drop_database(url)


def test_concurrent_audit_appends_from_two_stores_form_one_chain(pg_cluster: PgCluster) -> None:
    url = pg_cluster.create_database("audit_race")
    a, b = open_store(url), open_store(url)

    def work(store: Any, n: int) -> None:
        for i in range(n):
            with store.transaction() as tx:
                tx.append_audit("t", "test.event", f"{threading.get_ident()}", {"i": i})

    try:
        threads = [threading.Thread(target=work, args=(s, 40)) for s in (a, b, a, b, a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with a.read() as tx:
            seq, head = tx.audit_head()
            events = tx.audit_events(0, 10_000)
        assert seq == 240 and [e.seq for e in events] == list(range(1, 241))
        result = audit.verify_chain(events, expected_head=head, expected_count=seq)
        assert result.ok, result.problem
    finally:
        a.close()
        b.close()
        pg_cluster.drop_database(url)


def test_unique_violations_map_to_signerd_errors(pg_cluster: PgCluster) -> None:
    """Two writers that both pass the check-then-insert meet on the primary key; the loser gets
    the error the SQLite path gives (Conflict for a held nonce, AlreadyExists otherwise), never
    a raw psycopg exception."""
    url = pg_cluster.create_database("unique")
    st = open_store(url)
    try:
        now = time.time()
        with st.transaction() as tx:
            tx.insert_wallet({"id": "w1", "chain": "ethereum", "network": "x",
                              "script_type": "eoa", "category": "SEIZED", "case_ref": "C",
                              "legal_basis": "", "status": "ACTIVE", "address": "0xabc",
                              "descriptor": "", "threshold": 1, "chain_ids": [1],
                              "cosigners": [], "created_at": now})
        base = {"wallet_id": "w1", "chain": "ethereum", "state": "PENDING_APPROVAL",
                "payload": b"\x00\x01\xff", "movement": "{}", "submitter": "platform",
                "policy_version": 1, "requirement": "{}", "expires_at": now + 60,
                "created_at": now, "updated_at": now}
        with st.transaction() as tx:
            tx.insert_transfer({**base, "id": "t1"}, ["eth:w1:1:0"])
        with st.read() as tx:
            assert tx.get_transfer("t1").payload == b"\x00\x01\xff"

        # a second writer inserting the same nonce lock (as if it had checked before t1 existed)
        with pytest.raises(Conflict, match="already held"):
            with st.transaction() as tx:
                tx.execute("INSERT INTO transfers (id, wallet_id, chain, state, payload, movement,"
                           " submitter, policy_version, requirement, expires_at, created_at,"
                           " updated_at) SELECT 't2', wallet_id, chain, state, payload, movement,"
                           " submitter, policy_version, requirement, expires_at, created_at,"
                           " updated_at FROM transfers WHERE id = 't1'")
                tx.execute("INSERT INTO transfer_locks (lock_key, transfer_id) VALUES (?, ?)",
                           ("eth:w1:1:0", "t2"))
        approval = {"transfer_id": "t1", "operator_id": "op", "decision": "APPROVE",
                    "signature": "00", "statement_sha256": "00", "reason": "", "created_at": now}
        with st.transaction() as tx:
            tx.insert_approval(approval)
        with pytest.raises(AlreadyExists):
            with st.transaction() as tx:
                tx.execute("INSERT INTO approvals (transfer_id, operator_id, decision, signature,"
                           " statement_sha256, reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                           tuple(approval.values()))
        with pytest.raises(AlreadyExists):  # the checked path says the same
            with st.transaction() as tx:
                tx.insert_approval(approval)
        with st.transaction() as tx:
            tx.insert_signature("t1", b"\x11" * 32, "k1", 1, 2)
        with pytest.raises(AlreadyExists):
            with st.transaction() as tx:
                tx.insert_signature("t1", b"\x11" * 32, "k1", 3, 4)
        with pytest.raises(InvalidArgument, match="NUL"):
            with st.transaction() as tx:
                tx.set_meta("note", "a\x00b")
        with st.read() as tx:  # nothing of the failed transactions stayed
            assert len(tx.signatures("t1")) == 1 and len(tx.approvals("t1")) == 1
            assert tx.transfer_lock_keys("t1") == ["eth:w1:1:0"]
    finally:
        st.close()
        pg_cluster.drop_database(url)


def test_concurrent_conflicting_inserts_one_wins(pg_cluster: PgCluster) -> None:
    """Eight threads on two stores insert transfers holding the same nonce at once: the
    transfer_locks primary key lets exactly one commit; the others get Conflict."""
    url = pg_cluster.create_database("lock_race")
    stores = [open_store(url), open_store(url)]
    now = time.time()
    with stores[0].transaction() as tx:
        tx.insert_wallet({"id": "w1", "chain": "ethereum", "network": "x", "script_type": "eoa",
                          "category": "SEIZED", "case_ref": "C", "legal_basis": "",
                          "status": "ACTIVE", "address": "0xabc", "descriptor": "",
                          "threshold": 1, "chain_ids": [1], "cosigners": [], "created_at": now})
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def attempt(i: int) -> None:
        row = {"id": f"t{i}", "wallet_id": "w1", "chain": "ethereum",
               "state": "PENDING_APPROVAL", "payload": b"p", "movement": "{}",
               "submitter": "platform", "policy_version": 1, "requirement": "{}",
               "expires_at": now + 60, "created_at": now, "updated_at": now}
        barrier.wait()
        try:
            with stores[i % 2].transaction() as tx:
                tx.insert_transfer(row, ["eth:w1:1:7"])
                tx.append_audit("t", "transfer.submitted", row["id"], {})
                time.sleep(0.05)  # hold the new lock row while the others arrive
            outcomes.append("ok")
        except Conflict:
            outcomes.append("conflict")

    try:
        threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(outcomes) == ["conflict"] * 7 + ["ok"]
        assert sql(url, "SELECT COUNT(*) FROM transfers") == [(1,)]
        assert sql(url, "SELECT COUNT(*) FROM transfer_locks") == [(1,)]
    finally:
        for s in stores:
            s.close()
        pg_cluster.drop_database(url)


def test_lost_connections_reconnect_and_an_unreachable_server_is_unavailable(
        pg_cluster: PgCluster) -> None:
    pg_url = pg_cluster.create_database("reconnect")
    st = open_store(pg_url)
    try:
        assert st.ping()
        with st.read() as tx:
            tx.get_meta("instance_id")
        # the server drops every signerd connection (restart, failover, admin)
        sql(pg_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()")
        with st.transaction() as tx:  # re-opened before anything ran: the caller sees nothing
            tx.set_meta("reconnected", "yes")
        sql(pg_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()")
        assert st.ping()
        with st.read() as tx:
            assert tx.get_meta("reconnected") == "yes"
        with pytest.raises(RuntimeError, match="nested"):
            with st.read():
                with st.transaction():
                    pass
    finally:
        st.close()
    pg_cluster.drop_database(pg_url)
    dead = pg_url.replace(f":{pg_cluster.port}/", ":1/")
    with pytest.raises(StoreUnavailable) as e:
        open_store(dead)
    assert pg_cluster.password not in e.value.message


# ---------------------------------------------------------------- two replicas, one database

def test_both_replicas_serve_the_same_instance(replicas: tuple[Daemon, Daemon]) -> None:
    a, b = replicas
    w = eth_wallet(a, "CASE-PG-SEE")
    seen = b.custody().GetWallet(pb.GetWalletRequest(wallet_id=w.id))
    assert seen.address == w.address
    t = submit(b, w.id, tx_fields(0))
    assert decide(a, t.id, "inv1").state == pb.PENDING_APPROVAL
    signed = decide(b, t.id, "cust1")  # B signs with a key A created in the shared token
    assert signed.state == pb.SIGNED
    assert Account.recover_transaction(bytes.fromhex(signed.raw_tx)) == w.address
    again = a.custody().GetTransfer(pb.GetTransferRequest(transfer_id=t.id))
    assert again.raw_tx == signed.raw_tx
    heads = [d.audit().GetHead(pb.GetHeadRequest()) for d in replicas]
    assert heads[0].instance_id == heads[1].instance_id
    assert heads[0].audit_public_key == heads[1].audit_public_key  # one audit key, one token
    assert heads[0].seq == heads[1].seq and heads[0].hash == heads[1].hash


def test_final_approvals_raced_on_both_replicas_sign_each_transfer_once(
        replicas: tuple[Daemon, Daemon], pg_url: str) -> None:
    """100 transfers wait for their last approval. 8 clients each send that approval (4 as
    cust1, 4 as cust2) for every transfer to both replicas at the same moment: 1,600 racing
    requests. Exactly one per transfer is accepted, every transfer is signed exactly once, and
    no signature is stored or returned twice."""
    a, b = replicas
    wallets = [eth_wallet(a, f"CASE-PG-RACE-{i}") for i in range(4)]  # keys made on A only
    transfers: list[tuple[str, pb.Wallet]] = []
    for i in range(TRANSFERS):
        w = wallets[i % len(wallets)]
        d = (a, b)[i % 2]
        t = submit(d, w.id, tx_fields(1000 + i // len(wallets)))
        assert decide((b, a)[i % 2], t.id, "inv1").state == pb.PENDING_APPROVAL
        transfers.append((t.id, w))

    # What each operator signs, prepared before the race (the statement names the instance,
    # shared by both replicas, so either one's statement is the one both accept).
    requests: dict[tuple[str, str], pb.SubmitApprovalRequest] = {}
    for op in ("cust1", "cust2"):
        key = load_private(a.state / "operators" / f"{op}.key")
        for tid, _ in transfers:
            st = (a, b)[hash((op, tid)) % 2].approval(op).GetStatement(
                pb.GetStatementRequest(transfer_id=tid, decision=pb.APPROVE)).statement
            requests[(op, tid)] = pb.SubmitApprovalRequest(
                transfer_id=tid, operator_id=op, decision=pb.APPROVE,
                signature=sign_statement(key, st), statement_sha256=statement_digest(st))

    hsm_before = [metric(d.metrics(), "signerd_hsm_sign_seconds_count") for d in replicas]
    barrier = threading.Barrier(CLIENTS)
    results: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    results_lock = threading.Lock()
    unexpected: list[str] = []

    def client(n: int) -> None:
        op = "cust1" if n < CLIENTS // 2 else "cust2"
        chans = [channel(a, op), channel(b, op)]
        stubs = [rpc.ApprovalStub(c) for c in chans]
        try:
            for tid, _ in transfers:
                barrier.wait(timeout=120)  # all clients hit this transfer at the same moment
                order = [0, 1] if (n + hash(tid)) % 2 else [1, 0]
                futures = [(i, stubs[i].SubmitApproval.future(requests[(op, tid)], timeout=60))
                           for i in order]  # both replicas at once
                for i, f in futures:
                    try:
                        out: tuple[str, Any] = ("ok", f.result(), i)
                    except grpc.RpcError as e:
                        out = (e.code().name, e.details())
                        if e.code() != grpc.StatusCode.FAILED_PRECONDITION:
                            with results_lock:
                                unexpected.append(f"{tid} via {'AB'[i]}: {out}")
                    with results_lock:
                        results[tid].append(out)
        finally:
            for c in chans:
                c.close()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        for f in [pool.submit(client, n) for n in range(CLIENTS)]:
            f.result()
    race_seconds = time.perf_counter() - t0

    assert not unexpected, unexpected[:5]
    assert sum(len(v) for v in results.values()) == TRANSFERS * CLIENTS * 2
    accepted: dict[str, pb.Transfer] = {}
    accepted_by: Counter[str] = Counter()
    for tid, outs in results.items():
        oks = [o for o in outs if o[0] == "ok"]
        assert len(oks) == 1, f"{tid}: {len(oks)} accepted final approvals"
        accepted[tid] = oks[0][1]
        accepted_by["AB"[oks[0][2]]] += 1
        assert all(o[0] == "FAILED_PRECONDITION" for o in outs if o[0] != "ok")
    assert len(accepted) == TRANSFERS
    assert accepted_by["A"] and accepted_by["B"], accepted_by  # both replicas won some races

    # Wait out any sign step still finishing on the other replica's timer (normally none).
    deadline = time.time() + 30
    while time.time() < deadline and sql(
            pg_url, "SELECT COUNT(*) FROM transfers WHERE id = ANY(%s) AND state <> 'SIGNED'",
            ([t for t, _ in transfers],))[0][0]:
        time.sleep(0.2)

    ids = [t for t, _ in transfers]
    # exactly one stored signature per transfer (one digest, one key each)
    per_transfer = dict(sql(pg_url, "SELECT transfer_id, COUNT(*) FROM signatures"
                                    " WHERE transfer_id = ANY(%s) GROUP BY transfer_id", (ids,)))
    assert len(per_transfer) == TRANSFERS and set(per_transfer.values()) == {1}
    states = Counter(r[0] for r in sql(pg_url, "SELECT state FROM transfers WHERE id = ANY(%s)",
                                       (ids,)))
    assert states == {"SIGNED": TRANSFERS}
    approvals = dict(sql(pg_url, "SELECT transfer_id, COUNT(*) FROM approvals"
                                 " WHERE transfer_id = ANY(%s) GROUP BY transfer_id", (ids,)))
    assert set(approvals.values()) == {2}
    # one signed event per transfer in the audit chain, which is intact
    actions = Counter((r[0], r[1]) for r in sql(
        pg_url, "SELECT action, object FROM audit_events WHERE object = ANY(%s)"
                " AND action IN ('transfer.signed', 'transfer.approved')", (ids,)))
    assert len(actions) == 2 * TRANSFERS and set(actions.values()) == {1}
    st = open_store(pg_url)
    try:
        with st.read() as tx:
            seq, head = tx.audit_head()
            events = tx.audit_events(0, 1_000_000)
    finally:
        st.close()
    assert audit.verify_chain(events, expected_head=head, expected_count=seq).ok

    # every transfer's signed transaction: the one returned to the accepted request, the one
    # both replicas return now, recovering to the wallet's address; no two alike
    wallet_of = {tid: w for tid, w in transfers}
    raws = set()
    for tid in ids:
        got = [d.custody().GetTransfer(pb.GetTransferRequest(transfer_id=tid)) for d in replicas]
        assert got[0].state == got[1].state == pb.SIGNED
        assert got[0].raw_tx == got[1].raw_tx
        # The accepted request's answer is SIGNED with that same transaction -- or APPROVED
        # when this replica's own timer thread was already signing it (sign() then returns at
        # once instead of waiting): a later answer, never a different signature.
        assert accepted[tid].state in (pb.SIGNED, pb.APPROVED)
        if accepted[tid].state == pb.SIGNED:
            assert accepted[tid].raw_tx == got[0].raw_tx
        raw = bytes.fromhex(got[0].raw_tx)
        assert Account.recover_transaction(raw) == wallet_of[tid].address
        raws.add(raw)
    assert len(raws) == TRANSFERS

    hsm_after = [metric(d.metrics(), "signerd_hsm_sign_seconds_count") for d in replicas]
    hsm_signs = [int(x - y) for x, y in zip(hsm_after, hsm_before)]
    print(f"\n[pg race] {TRANSFERS} transfers, {CLIENTS} clients x 2 replicas = "
          f"{TRANSFERS * CLIENTS * 2} final approvals in {race_seconds:.2f}s; "
          f"accepted {len(accepted)} (A {accepted_by['A']}, B {accepted_by['B']}), stored signatures {sum(per_transfer.values())}; "
          f"HSM signatures made (A, B) = {hsm_signs}, "
          f"{sum(hsm_signs) - TRANSFERS} discarded unseen; accepted answers already SIGNED: "
          f"{sum(1 for v in accepted.values() if v.state == pb.SIGNED)}")
    # an HSM signature is made at most once per replica per transfer
    assert TRANSFERS <= sum(hsm_signs) <= 2 * TRANSFERS


def test_conflicting_submissions_raced_on_both_replicas_one_wins(
        replicas: tuple[Daemon, Daemon], pg_url: str) -> None:
    """Eight clients submit different transactions for the same nonce to both replicas at
    once, for 20 nonces: each nonce is held by exactly one transfer; the others are refused."""
    a, b = replicas
    w = eth_wallet(a, "CASE-PG-NONCE")
    barrier = threading.Barrier(CLIENTS)
    outcomes: dict[int, list[str]] = defaultdict(list)
    lock = threading.Lock()

    def client(n: int) -> None:
        chans = [channel(a, "platform"), channel(b, "platform")]
        stubs = [rpc.CustodyStub(c) for c in chans]
        try:
            for nonce in range(20):
                barrier.wait(timeout=120)
                futures = [s.SubmitTransfer.future(pb.SubmitTransferRequest(
                    wallet_id=w.id, ethereum=pb.EthereumTransaction(json=json.dumps(
                        tx_fields(nonce, value=10**15 + 2 * n + i)))), timeout=60)
                    for i, s in enumerate(stubs)]
                for f in futures:
                    try:
                        f.result()
                        out = "ok"
                    except grpc.RpcError as e:
                        out = e.code().name if "already held" in e.details() else (
                            f"{e.code().name}: {e.details()}")
                    with lock:
                        outcomes[nonce].append(out)
        finally:
            for c in chans:
                c.close()

    with ThreadPoolExecutor(CLIENTS) as pool:
        for f in [pool.submit(client, n) for n in range(CLIENTS)]:
            f.result()
    for nonce, outs in outcomes.items():
        assert Counter(outs) == {"ok": 1, "FAILED_PRECONDITION": 2 * CLIENTS - 1}, (nonce, outs)
    assert sql(pg_url, "SELECT COUNT(*) FROM transfers WHERE wallet_id = %s", (w.id,)) == [(20,)]
    assert sql(pg_url, "SELECT COUNT(*) FROM transfer_locks l JOIN transfers t"
                       " ON t.id = l.transfer_id WHERE t.wallet_id = %s", (w.id,)) == [(20,)]


# ---------------------------------------------------------------- audit tampering in PostgreSQL

@pytest.fixture(scope="module")
def tamper_env(pg_cluster: PgCluster, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[tuple[Daemon, str, pb.AuditHead]]:
    url = pg_cluster.create_database("tamper")
    d = Daemon(init_state(tmp_path_factory.mktemp("pgt") / "state", "--store-url", url)).start()
    try:
        w = eth_wallet(d, "CASE-PG-AUDIT")
        for nonce in range(3):
            t = submit(d, w.id, tx_fields(nonce))
            decide(d, t.id, "inv1")
            decide(d, t.id, "cust1")
        pinned = d.audit().GetHead(pb.GetHeadRequest())  # the auditor's head from earlier
        assert pinned.seq >= 12
        yield d, url, pinned
    finally:
        d.stop()
        pg_cluster.drop_database(url)


def _snapshot(url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    return (sql(url, "SELECT * FROM audit_events ORDER BY seq"),
            sql(url, "SELECT * FROM audit_head"))


def _restore(url: str, snap: tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]) -> None:
    events, head = snap
    with psycopg.connect(url) as c:
        c.execute("DELETE FROM audit_events")
        with c.cursor() as cur:
            cur.executemany("INSERT INTO audit_events VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                            events)
        c.execute("UPDATE audit_head SET seq = %s, hash = %s WHERE id = 1", head[0][1:])


def _findings(d: Daemon, url: str, pinned: pb.AuditHead) -> list[str]:
    """Every way the tampering shows: the daemon's own export and its offline verification
    with the pinned audit key, and the chain in the store checked against the pinned head."""
    found = []
    try:
        data = b"".join(c.data for c in d.audit().Export(pb.ExportRequest()))
        r = audit.verify_export(data, audit_public_key=bytes(pinned.audit_public_key),
                                instance_id=pinned.instance_id)
        if not r.ok:
            found.append(f"export: seq {r.first_bad_seq}: {r.problem}")
        _, events = audit.parse_export(data)
        r = audit.verify_chain(events, expected_head=bytes(pinned.hash),
                               expected_count=pinned.seq)
        if not r.ok:
            found.append(f"export vs pinned head: seq {r.first_bad_seq}: {r.problem}")
    except grpc.RpcError as e:
        found.append(f"export refused: {e.code().name}: {e.details()}")
    st = open_store(url)
    try:
        with st.read() as tx:
            events = tx.audit_events(0, 1_000_000)
    finally:
        st.close()
    r = audit.verify_chain(events, expected_head=bytes(pinned.hash), expected_count=pinned.seq)
    if not r.ok:
        found.append(f"store vs pinned head: seq {r.first_bad_seq}: {r.problem}")
    return found


def _rehash_from(url: str, seq: int) -> None:
    """What a careful forger does after an edit: recompute the hash of the edited event (and
    move the head if it was the last), leaving the following links as they were."""
    row = sql(url, "SELECT * FROM audit_events WHERE seq = %s", (seq,))[0]
    ev = audit.AuditEvent(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]),
                          bytes.fromhex(row[6]), bytes.fromhex(row[7]))
    h = audit.chain_hash(ev.prev_hash, ev.seq, ev.time, ev.actor, ev.action, ev.object,
                         ev.details)
    sql(url, "UPDATE audit_events SET hash = %s WHERE seq = %s", (h.hex(), seq))


TAMPERING = {
    "delete": ["DELETE FROM audit_events WHERE seq = 5"],
    "edit actor": ["UPDATE audit_events SET actor = 'mallory' WHERE seq = 5"],
    "edit details": ["UPDATE audit_events SET details = '{\"roles\":[\"judge\"]}' WHERE seq = 5"],
    "edit and rehash": ["UPDATE audit_events SET object = 'w_other' WHERE seq = 5", "rehash 5"],
    "reorder": ["UPDATE audit_events SET seq = -1 WHERE seq = 5",
                "UPDATE audit_events SET seq = 5 WHERE seq = 6",
                "UPDATE audit_events SET seq = 6 WHERE seq = -1"],
    "insert": ["UPDATE audit_events SET seq = seq + 1000 WHERE seq >= 5",
               "UPDATE audit_events SET seq = seq - 999 WHERE seq >= 1005",
               "INSERT INTO audit_events SELECT 5, time_micros, actor, 'transfer.cancelled',"
               " object, details, prev_hash, hash FROM audit_events WHERE seq = 6"],
    "truncate tail": ["DELETE FROM audit_events WHERE seq > (SELECT seq - 3 FROM audit_head)"],
    "truncate and move head": [
        "DELETE FROM audit_events WHERE seq > (SELECT seq - 3 FROM audit_head)",
        "UPDATE audit_head SET seq = (SELECT MAX(seq) FROM audit_events),"
        " hash = (SELECT hash FROM audit_events ORDER BY seq DESC LIMIT 1)"],
    "truncate everything": ["DELETE FROM audit_events",
                            "UPDATE audit_head SET seq = 0, hash = repeat('0', 64)"],
}


FIRST_BAD = {"delete": 5, "edit actor": 5, "edit details": 5, "edit and rehash": 6,
             "reorder": 5, "insert": 5}


@pytest.mark.parametrize("case", list(TAMPERING))
def test_tampering_with_audit_events_in_postgres_is_found(
        tamper_env: tuple[Daemon, str, pb.AuditHead], case: str) -> None:
    d, url, pinned = tamper_env
    assert _findings(d, url, pinned) == []  # intact before
    snap = _snapshot(url)
    try:
        for stmt in TAMPERING[case]:
            if stmt.startswith("rehash "):
                _rehash_from(url, int(stmt.split()[1]))
            else:
                sql(url, stmt)
        found = _findings(d, url, pinned)
        assert found, f"{case}: tampering not found"
        if case in FIRST_BAD:
            assert any(f"seq {FIRST_BAD[case]}:" in f for f in found), found
        if case.startswith("truncate"):
            assert any("truncated" in f or "refused" in f for f in found), found
    finally:
        _restore(url, snap)
    assert _findings(d, url, pinned) == []  # and intact again after the restore
