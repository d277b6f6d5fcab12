"""History at size: a store holding years of custody (by default 1,000,000 transfers, 100,000
wallets and 1,000,000 audit events), on SQLite or PostgreSQL, under a real daemon: latency of
ListTransfers, ListPending, GetTransfer and SubmitApproval, and the daemon's start time.

How the store is filled (one state folder made by ``signerd init``, its own SoftHSM token):
  template       a real daemon: CreateWallet, one transfer submitted and approved by inv1 and
                 cust1 (signed), daemon stopped. Its rows (transfer, approvals, signature, nonce
                 lock, wallet) are the template of the history rows.
  pending        --pending transfers submitted in process through signerd's own
                 TransferService.submit (decoded, classified, sealed with the audit key in the
                 HSM, audited): every row an approval is measured on is wholly real.
  history        the other transfers: TransferRecord copies of the signed template through
                 dataclasses.replace + codec.transfer_columns, each with its own id
                 ("t_" + 20 hex, as submit makes), its own payload (eth_fields with its own
                 nonce), its own nonce lock, created over ten years, state SIGNED (88 %),
                 REJECTED (7 %) or EXPIRED (5 %); SIGNED rows carry copies of the template's two
                 approvals and its signature. They carry the template's movement and seal: the
                 seal is a real HSM seal, but over the template's record, not theirs (signerd
                 checks a transfer's seal where it decides on or signs it; list and get pages
                 do not, and history rows are never decided on again). The seal rate of the
                 audit key is measured (--seal-sample seals of real history records) to give
                 the cost of sealing every row. With --seal-all every history row is
                 sealed over its own record with the audit key (App.seal, two threads).
  wallets        copies of the template wallet's row (own id and address, template's sealed
                 record and seal), no keys: they count in the scans and indexes, not usable.
  audit events   a hash chain continued from the store's head by signerd's own
                 audit.chain_hash, written in batches (as Tx.append_audit writes each row),
                 then an HSM-signed checkpoint at the head (App.checkpoint: verifies them all),
                 as the monitor would have made every 1,000 events.
Rows are written through the store's own connection (store.transaction(), its cursor's
executemany with the Tx's placeholders).

Then a daemon started three times (wall time from the process's start to its listening line,
and in process the App's start profiled), and latencies sampled round-robin.

Run alone: .venv/bin/python bench/history.py --store sqlite|postgresql [--json OUT]
"""
from __future__ import annotations

import argparse
import cProfile
import dataclasses
import json
import random
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (ROOT, CpuMeter, Daemon, Operator, bench_limits, eth_fields,  # noqa: E402
                    loadavg, log, operator_keys, percentiles, proc_rss_mib, profile_top, rate,
                    workdir, write_json)

YEARS = 10
HISTORY_STATES = (("SIGNED", 0.88), ("REJECTED", 0.07), ("EXPIRED", 0.05))


def args() -> Any:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--transfers", type=int, default=1_000_000)
    ap.add_argument("--pending", type=int, default=5_000)
    ap.add_argument("--wallets", type=int, default=100_000)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--seal-sample", type=int, default=3_000)
    ap.add_argument("--seal-all", action="store_true",
                    help="seal every history row over its own record (the audit key, 2 threads)")
    ap.add_argument("--measure-only", action="store_true",
                    help="SQLite: measure again a store --workdir holds from an earlier run")
    ap.add_argument("--json")
    ap.add_argument("--workdir")
    return ap.parse_args()


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    r = fn()
    return r, time.perf_counter() - t0


def make_template(cfg: Path, keys: dict[str, Any]) -> dict[str, str]:
    from signerd.v1 import signerd_pb2 as pb

    d = Daemon(cfg).start()
    try:
        custody = d.custody()
        w = custody.CreateWallet(pb.CreateWalletRequest(
            chain=pb.ETHEREUM, chain_ids=[1], category=pb.SEIZED, case_ref="BENCH-HISTORY"))
        t = custody.SubmitTransfer(pb.SubmitTransferRequest(
            wallet_id=w.id, ethereum=pb.EthereumTransaction(json=json.dumps(eth_fields(0)))))
        Operator(d, "inv1", keys["inv1"]).approve(t.id)
        r = Operator(d, "cust1", keys["cust1"]).approve(t.id)
        assert r.state == pb.SIGNED, r.state
        return {"wallet": w.id, "transfer": t.id}
    finally:
        d.stop()


def load(app: Any, tmpl: dict[str, str], n: int, n_pending: int, n_wallets: int,
         n_events: int, seal_sample: int, seal_all: bool = False) -> dict[str, Any]:
    from signerd.adapters.store.codec import transfer_columns
    from signerd.core import engine as E
    from signerd.core.model import TransferState

    store = app.store
    out: dict[str, Any] = {}
    # -- pending: the real submit path
    t0 = time.perf_counter()
    pending_ids = []
    for i in range(n_pending):
        v = app.transfers.submit("platform", tmpl["wallet"],
                                 json.dumps(eth_fields(1 + i)).encode())
        pending_ids.append(v.transfer.id)
    dt = time.perf_counter() - t0
    out["pending"] = {"transfers": n_pending, "seconds": round(dt, 1),
                      "per_second": rate(n_pending, dt), "how": "TransferService.submit"}
    log(f"pending: {out['pending']}  load {loadavg()}")

    with store.read() as tx:
        trow = tx.get_transfer(tmpl["transfer"])
        apps = tx.all("SELECT * FROM approvals WHERE transfer_id = ?", (trow.id,))
        sigs = tx.all("SELECT * FROM signatures WHERE transfer_id = ?", (trow.id,))
        locks = tx.transfer_lock_keys(trow.id)
        wrow = tx.one("SELECT * FROM wallets WHERE id = ?", (tmpl["wallet"],))
    assert len(locks) == 1 and locks[0].endswith(":0"), locks
    lock_prefix = locks[0][:-1]

    app_cols = _row_dicts(apps)
    sig_cols = _row_dicts(sigs)
    wallet_cols = _row_dicts([wrow])[0]

    # -- seal rate of the audit key over real history records (the cost of sealing them all)
    sample = [dataclasses.replace(trow, id="t_" + secrets.token_hex(10),
                                  payload=json.dumps(eth_fields(10**9 + i)).encode())
              for i in range(seal_sample)]
    with CpuMeter() as cm:
        for r in sample:
            app.seal("transfer", E.transfer_record(r))
    out["seal_rate"] = {"seals": seal_sample, "seconds": round(cm.wall, 2),
                        "per_second": rate(seal_sample, cm.wall),
                        "cpu_ms_per_seal": round(cm.self_cpu / seal_sample * 1000, 3),
                        "how": "App.seal('transfer', engine.transfer_record(row)), one thread"}
    log(f"seal rate: {out['seal_rate']}")

    # -- history transfers
    now = time.time()
    span = YEARS * 365 * 86400
    rnd = random.Random(20)
    n_hist = n - n_pending - 1
    t_cols = list(transfer_columns(trow))
    ph = "%s" if store.dialect == "postgresql" else "?"

    def ins(table: str, columns: list[str]) -> str:
        return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                f"({', '.join(ph for _ in columns)})")

    a_keys = list(app_cols[0]) if app_cols else []
    s_keys = list(sig_cols[0]) if sig_cols else []
    counts = {s: 0 for s, _ in HISTORY_STATES}
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=2)  # the keystore signs in parallel (OS locking)
    t0 = time.perf_counter()
    batch = 10_000
    done = 0
    while done < n_hist:
        k = min(batch, n_hist - done)
        trs, lks, aps, sgs = [], [], [], []
        recs: list[Any] = []
        for j in range(k):
            i = done + j
            nonce = n_pending + 1 + i
            created = now - span + span * i / n_hist
            x = rnd.random()
            state = "SIGNED" if x < 0.88 else ("REJECTED" if x < 0.95 else "EXPIRED")
            counts[state] += 1
            tid = "t_" + secrets.token_hex(10)
            row = dataclasses.replace(
                trow, id=tid, state=TransferState(state),
                payload=json.dumps(eth_fields(nonce)).encode(),
                created_at=created, updated_at=created + 600,
                expires_at=float(int(created + 86400)))
            recs.append(row)
            lks.append((lock_prefix + str(nonce), tid))
            if state == "SIGNED":
                for a in app_cols:
                    aps.append([tid if kk == "transfer_id" else
                                (created + 300 if kk == "created_at" else a[kk]) for kk in a_keys])
                for s in sig_cols:
                    sgs.append([tid if kk == "transfer_id" else s[kk] for kk in s_keys])
        if seal_all:  # each row sealed over its own record with the audit key in the HSM
            seals = list(pool.map(lambda r: app.seal("transfer", E.transfer_record(r)), recs))
            recs = [dataclasses.replace(r, seal=x) for r, x in zip(recs, seals)]
        for row in recs:
            c = transfer_columns(row)
            trs.append([c[name] for name in t_cols])
        with store.transaction() as tx:
            tx.cur.executemany(ins("transfers", t_cols), trs)
            tx.cur.executemany(ins("transfer_locks", ["lock_key", "transfer_id"]), lks)
            if aps:
                tx.cur.executemany(ins("approvals", a_keys), aps)
            if sgs:
                tx.cur.executemany(ins("signatures", s_keys), sgs)
        done += k
        if done % 100_000 < batch:
            log(f"history {done:,}/{n_hist:,} ({rate(done, time.perf_counter() - t0)}/s)"
                f"  load {loadavg()}")
    dt = time.perf_counter() - t0
    pool.shutdown()
    out["history"] = {"transfers": n_hist, "by_state": counts, "seconds": round(dt, 1),
                      "per_second": rate(n_hist, dt),
                      "seals": "each its own, App.seal in 2 threads" if seal_all else
                      "the template's (real, over the template's record)"}

    # -- wallets
    t0 = time.perf_counter()
    w_keys = list(wallet_cols)
    done = 0
    while done < n_wallets:
        k = min(batch, n_wallets - done)
        rows = []
        for j in range(k):
            i = done + j
            wid = "w_" + secrets.token_hex(10)
            addr = "0x" + (i + 1).to_bytes(20, "big").hex()
            rows.append([wid if kk == "id" else addr if kk == "address" else wallet_cols[kk]
                         for kk in w_keys])
        with store.transaction() as tx:
            tx.cur.executemany(ins("wallets", w_keys), rows)
        done += k
    dt = time.perf_counter() - t0
    out["wallets"] = {"wallets": n_wallets, "seconds": round(dt, 1),
                      "per_second": rate(n_wallets, dt)}
    log(f"wallets: {out['wallets']}  load {loadavg()}")

    out["audit"] = fill_audit_bulk(store, n_events)
    out["audit"]["checkpoint"] = checkpoint_now(app)
    log(f"audit: {out['audit']}")
    out["pending_ids"] = pending_ids
    return out


def fill_audit_bulk(store: Any, n_events: int, batch: int = 10_000) -> dict[str, Any]:
    """The store's audit chain continued by ``n_events`` events (audit.chain_hash, as
    Tx.append_audit computes it), written ``batch`` per transaction."""
    from signerd.core import audit

    ph = "%s" if store.dialect == "postgresql" else "?"
    ecols = ["seq", "time_micros", "actor", "action", "object", "details", "prev_hash", "hash"]
    sql = (f"INSERT INTO audit_events ({', '.join(ecols)}) VALUES "
           f"({', '.join(ph for _ in ecols)})")
    t0 = time.perf_counter()
    with store.read() as tx:
        seq, prev = tx.audit_head()
    start_seq = seq
    now_us = int(time.time() * 1_000_000)
    done = 0
    while done < n_events:
        k = min(batch, n_events - done)
        rows = []
        for j in range(k):
            i = seq + 1
            t_us = now_us + done + j  # after the events already there, one microsecond apart
            details = {
                "wallet_id": "w_bench", "chain": "ethereum",
                "payload_sha256": f"{i:064x}", "digests": [f"{i * 7:064x}"],
                "outputs": [["0x000000000000000000000000000000000000dEaD", "1000000000000000",
                             "ETH", False]],
                "fee": "630000000000000", "requirement": "2 approvers",
                "policy_version": 1, "replaces": "", "category_change": "none",
                "legal_basis": ""}
            h = audit.chain_hash(prev, i, t_us, "platform", "transfer.submitted",
                                 f"t_bench{i:012d}", details)
            rows.append((i, t_us, "platform", "transfer.submitted", f"t_bench{i:012d}",
                         json.dumps(details, sort_keys=True, separators=(",", ":")),
                         prev.hex(), h.hex()))
            seq, prev = i, h
        with store.transaction() as tx:
            head = tx.one("SELECT seq FROM audit_head WHERE id = 1" + tx.for_update)
            assert head is not None and int(head["seq"]) == rows[0][0] - 1, "head moved"
            tx.cur.executemany(sql, rows)
            tx.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (seq, prev.hex()))
        done += k
        if done % 200_000 < batch:
            log(f"audit {done:,}/{n_events:,} ({rate(done, time.perf_counter() - t0)}/s)"
                f"  load {loadavg()}")
    dt = time.perf_counter() - t0
    return {"events": n_events, "from_seq": start_seq, "to_seq": seq,
            "seconds": round(dt, 1), "per_second": rate(n_events, dt)}


def checkpoint_now(app: Any) -> dict[str, Any]:
    """An HSM-signed checkpoint at the head, as the daemon's monitor makes every
    checkpoint_events events ([audit]): App.checkpoint verifies the chain from the latest
    checkpoint (here: every event the bulk load wrote) and signs. Without it the daemon would
    verify the whole loaded tail at its first decision and again when it drains on SIGTERM."""
    cp, dt = timed(app.checkpoint)
    return {"seconds": round(dt, 1), "head_seq": cp.head_seq if cp else None}


def _row_dicts(rows: list[Any]) -> list[dict[str, Any]]:
    return [dict(r.data) for r in rows]


def counts(store: Any) -> dict[str, int]:
    out = {}
    with store.read() as tx:
        for t in ("transfers", "approvals", "signatures", "transfer_locks", "wallets",
                  "audit_events"):
            r = tx.one(f"SELECT COUNT(*) AS n FROM {t}")
            out[t] = int(r["n"]) if r else 0
    return out


def explain(store: Any, history_id: str) -> dict[str, list[str]]:
    qs = {
        "list state=SIGNED page": ("SELECT * FROM transfers WHERE id > ? AND state = ?"
                                   " ORDER BY id LIMIT ?", ("", "SIGNED", 100)),
        "list state=PENDING page": ("SELECT * FROM transfers WHERE id > ? AND state = ?"
                                    " ORDER BY id LIMIT ?", ("", "PENDING_APPROVAL", 100)),
        "list no filter, random point": ("SELECT * FROM transfers WHERE id > ? ORDER BY id"
                                         " LIMIT ?", (history_id, 100)),
        "due transfers": ("SELECT id, state, expires_at FROM transfers WHERE (state = ? AND"
                          " expires_at <= ?) OR state = ? ORDER BY created_at",
                          ("PENDING_APPROVAL", time.time(), "APPROVED")),
        "count by chain, state": ("SELECT chain, state, COUNT(*) AS n FROM transfers"
                                  " GROUP BY chain, state", ()),
        "count wallets": ("SELECT chain, category, COUNT(*) AS n FROM wallets"
                          " GROUP BY chain, category", ()),
    }
    out = {}
    with store.read() as tx:
        pre = "EXPLAIN QUERY PLAN " if store.dialect == "sqlite" else "EXPLAIN ANALYZE "
        for name, (sql, p) in qs.items():
            try:
                rows = tx.all(pre + sql, p)
                out[name] = [" | ".join(str(v) for v in r.data.values()) for r in rows]
            except Exception as e:  # a query the schema does not have: say so
                out[name] = [f"error: {e}"]
    return out


def measure_start(cfg: Path, times: int = 3) -> dict[str, Any]:
    """Wall time from spawning ``signerd run`` to its listening line, ``times`` times; then in
    process: config load, App construction (store open + migrations check) and App.start
    (genesis and authority checks, HSM open, recover, gauges), profiled once."""
    from common import signerd_module

    walls = []
    for _ in range(times):
        t0 = time.perf_counter()
        d = Daemon(cfg).start(timeout=300)
        walls.append(time.perf_counter() - t0)
        d.stop()
    C = signerd_module("config")
    from signerd.app import App

    import logging
    logging.getLogger("signerd").setLevel(logging.WARNING)
    conf, t_conf = timed(lambda: C.load(cfg))
    app, t_app = timed(lambda: App(conf))
    prof = cProfile.Profile()
    prof.enable()
    _, t_start = timed(app.start)
    prof.disable()
    phases: dict[str, float] = {}
    with app.store.read() as tx:
        _, phases["ledger.state (genesis + authority ledger)"] = timed(
            lambda: app.ledger.state(tx))
    _, phases["TransferService.tick (recover)"] = timed(app.transfers.tick)
    _, phases["App.refresh_gauges"] = timed(app.refresh_gauges)
    with app.store.read() as tx:
        _, phases["gauges: Tx.count_wallets"] = timed(tx.count_wallets)
        _, phases["gauges: Tx.count_transfers"] = timed(tx.count_transfers)
        _, phases["gauges: Tx.count_past_expiry"] = timed(lambda: tx.count_past_expiry(time.time()))
    app.stop()
    return {"daemon_start_to_listening_s": [round(w, 3) for w in walls],
            "config_load_s": round(t_conf, 4), "app_construct_s (store open, migrations)":
            round(t_app, 4), "app_start_s": round(t_start, 4),
            "phases_again_s": {k: round(v, 4) for k, v in phases.items()},
            "profile_app_start": profile_top(prof, 25, "cumulative")}


def sample(d: Daemon, keys: dict[str, Any], pending: list[str], history: list[str],
           wallet_id: str, rounds: int) -> dict[str, Any]:
    from signerd.v1 import signerd_pb2 as pb

    custody = d.custody()
    inv = Operator(d, "inv1", keys["inv1"])
    cust = Operator(d, "cust1", keys["cust1"])
    rnd = random.Random(7)
    targets = rnd.sample(pending, rounds)
    first = iter(targets)
    statements = {t: inv.statement(t) for t in targets}
    approved: list[str] = []

    def approve_first() -> None:
        t = next(first)
        r = inv.submit(t, statements[t])
        assert r.state == pb.PENDING_APPROVAL, r.state
        approved.append(t)

    ops: dict[str, Callable[[], Any]] = {
        "ListTransfers(SIGNED, first page of 100)": lambda: custody.ListTransfers(
            pb.ListTransfersRequest(state=pb.SIGNED, page=pb.Page(page_size=100))),
        "ListTransfers(SIGNED, page at a random point)": lambda: custody.ListTransfers(
            pb.ListTransfersRequest(state=pb.SIGNED, page=pb.Page(
                page_size=100, page_token=rnd.choice(history)))),
        "ListTransfers(PENDING, first page of 100)": lambda: custody.ListTransfers(
            pb.ListTransfersRequest(state=pb.PENDING_APPROVAL, page=pb.Page(page_size=100))),
        "ListTransfers(PENDING, page at a random point)": lambda: custody.ListTransfers(
            pb.ListTransfersRequest(state=pb.PENDING_APPROVAL, page=pb.Page(
                page_size=100, page_token=rnd.choice(pending)))),
        "ListTransfers(wallet, no state, random point)": lambda: custody.ListTransfers(
            pb.ListTransfersRequest(wallet_id=wallet_id, page=pb.Page(
                page_size=100, page_token=rnd.choice(history)))),
        "ListPending(operator, page of 100)": lambda: cust.stub.ListPending(
            pb.ListPendingRequest(page=pb.Page(page_size=100))),
        "GetTransfer(history)": lambda: custody.GetTransfer(
            pb.GetTransferRequest(transfer_id=rnd.choice(history))),
        "GetTransfer(pending)": lambda: custody.GetTransfer(
            pb.GetTransferRequest(transfer_id=rnd.choice(pending))),
        "SubmitApproval (first of two)": approve_first,
    }
    samples: dict[str, list[float]] = {k: [] for k in ops}
    with CpuMeter(d.pid) as busy:
        for _ in range(rounds):
            for name, fn in ops.items():
                t0 = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - t0)
    out = {k: percentiles(v) for k, v in samples.items()}
    st2 = {t: cust.statement(t) for t in approved}
    lat2 = []
    for t in approved:
        t0 = time.perf_counter()
        r = cust.submit(t, st2[t])
        lat2.append(time.perf_counter() - t0)
        assert r.state == pb.SIGNED, r.state
    out["SubmitApproval (quorum-making: signs)"] = percentiles(lat2)
    out["_daemon_cores_while_sampling"] = round(busy.other_cpu / busy.wall, 3)
    return out


def main() -> None:
    a = args()
    from common import machine
    from tests.support import daemon as harness

    results: dict[str, Any] = {"store": a.store, "machine": machine(),
                               "started_utc": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
                               "loadavg_start": loadavg()}
    cluster = None
    with workdir(a.workdir) as wd:
        try:
            extra: tuple[str, ...] = ()
            if a.store == "postgresql":
                from tests.support.pg import PgCluster

                cluster = PgCluster().start()
                extra = ("--store-url", cluster.create_database("history"))
            from common import open_app

            if a.measure_only:
                cfg = wd / "state" / "signerd.toml"
                keys = operator_keys(cfg.parent)
                app = open_app(cfg)
                with app.store.read() as tx:
                    rows = tx.all("SELECT id, wallet_id FROM transfers t WHERE state = ? AND NOT"
                                  " EXISTS (SELECT 1 FROM approvals a WHERE a.transfer_id = t.id)",
                                  ("PENDING_APPROVAL",))
                tmpl = {"wallet": str(rows[0]["wallet_id"])}
                loaded = {"pending_ids": [str(r["id"]) for r in rows],
                          "measured_again": "store of an earlier run, not loaded again"}
                if a.events:
                    loaded["audit_added"] = fill_audit_bulk(app.store, a.events)
                    loaded["audit_added"]["checkpoint"] = checkpoint_now(app)
                    log(f"audit added: {loaded['audit_added']}")
            else:
                cfg = harness.init_state(wd / "state", *extra, cwd=ROOT, timeout=180)
                bench_limits(cfg)
                keys = operator_keys(cfg.parent)
                tmpl = make_template(cfg, keys)
                app = open_app(cfg)
            try:
                if not a.measure_only:
                    loaded = load(app, tmpl, a.transfers, a.pending, a.wallets, a.events,
                                  a.seal_sample, a.seal_all)
                results["counts"] = counts(app.store)
                with app.store.read() as tx:
                    hist = [str(r["id"]) for r in tx.all(
                        "SELECT id FROM transfers WHERE state = ? AND id > ? ORDER BY id"
                        " LIMIT 1000", ("SIGNED", "t_" + secrets.token_hex(2)))]
                if a.store == "postgresql":
                    with app.store.transaction() as tx:
                        tx.execute("ANALYZE")
                results["explain"] = explain(app.store, hist[0])
            finally:
                app.stop()
            pending = loaded.pop("pending_ids")
            results["load"] = loaded
            log(f"counts: {results['counts']}")
            results["loadavg_before_start"] = loadavg()
            results["start"] = measure_start(cfg)
            log(f"start: {results['start']['daemon_start_to_listening_s']} s, app.start "
                f"{results['start']['app_start_s']} s  load {loadavg()}")
            d = Daemon(cfg).start(timeout=300)
            try:
                time.sleep(2.1)
                results["daemon_rss_mib"] = proc_rss_mib(d.pid)
                # idle: the health monitor every probe_seconds (recover tick, gauges' counts)
                with CpuMeter(d.pid) as idle:
                    time.sleep(10.0)
                results["idle_daemon_cpu_cores"] = round(idle.other_cpu / idle.wall, 3)
                results["loadavg_idle"] = loadavg()
                results["loadavg_before_sampling"] = loadavg()
                results["latency_ms"] = sample(d, keys, pending, hist, tmpl["wallet"],
                                               a.rounds)
                results["loadavg_after_sampling"] = loadavg()
                for k, v in results["latency_ms"].items():
                    if isinstance(v, dict):
                        log(f"{k}: p50 {v['p50']} ms, p99 {v['p99']} ms, max {v['max']} ms")
            finally:
                d.stop()
        finally:
            if cluster is not None:
                cluster.stop()
    write_json(a.json, results)


if __name__ == "__main__":
    main()
