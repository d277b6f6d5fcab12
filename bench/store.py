"""Part 4: the store under load. A real daemon (SQLite, the embedded default) holding 10,000
pending transfers: latency of listing and approving, the daemon's memory (RSS) after 10,000
transfers and after 100,000 audit events, what the idle daemon spends on its health monitor,
and the speed of audit export and offline verification.

How the store is filled:
  transfers      SubmitTransfer RPCs (4 client threads), one-output Ethereum transfers of one
                 wallet (distinct nonces), left PENDING_APPROVAL
  audit events   appended in batches of 1,000 per transaction by signerd's own store code
                 (Tx.append_audit, the same hash chain the daemon writes) from this process
                 while the daemon runs, up to 100,000 events in all

Latencies are sampled round-robin (one of each operation per round), so the daemon's 2-second
health monitor falls on every operation alike.

Run alone: .venv/bin/python bench/store.py [--quick] [--json OUT]
"""
from __future__ import annotations

import json
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (CpuMeter, Daemon, Operator, bench_state, eth_fields, log,  # noqa: E402
                    part_args, percentiles, proc_rss_mib, rate, workdir, write_json)


def fill_transfers(d: Daemon, wallet_id: str, count: int, threads: int = 4) -> dict[str, Any]:
    from signerd.v1 import signerd_pb2 as pb

    custody = d.custody()
    ids: list[str] = []
    lat: list[tuple[int, float]] = []
    lock = threading.Lock()
    it = iter(range(count))

    def work() -> None:
        while True:
            with lock:
                i = next(it, None)
            if i is None:
                return
            t0 = time.perf_counter()
            t = custody.SubmitTransfer(pb.SubmitTransferRequest(
                wallet_id=wallet_id, ethereum=pb.EthereumTransaction(
                    json=json.dumps(eth_fields(i)))))
            dt = time.perf_counter() - t0
            with lock:
                ids.append(t.id)
                lat.append((i, dt))

    with CpuMeter(d.pid) as cpu:
        ts = [threading.Thread(target=work) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    lat.sort()
    tenth = max(1, count // 10)
    return {"ids": ids, "stats": {
        "transfers": count, "seconds": round(cpu.wall, 1),
        "submits_per_second": rate(count, cpu.wall),
        "daemon_cpu_ms_per_submit": round(cpu.other_cpu / count * 1000, 2),
        "submit_ms_first_tenth": percentiles([x for _, x in lat[:tenth]]),
        "submit_ms_last_tenth": percentiles([x for _, x in lat[-tenth:]])}}


def sample_round_robin(ops: dict[str, Callable[[], Any]], rounds: int) -> dict[str, Any]:
    samples: dict[str, list[float]] = {k: [] for k in ops}
    for _ in range(rounds):
        for name, fn in ops.items():
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    return {k: percentiles(v) for k, v in samples.items()}


def fill_audit(store_url: str, target: int, batch: int = 1000) -> dict[str, Any]:
    from signerd.adapters.store.factory import open_store

    store = open_store(store_url)
    with store.read() as tx:
        start, _ = tx.audit_head()
    todo = max(0, target - start)
    t0 = time.perf_counter()
    done = 0
    while done < todo:
        k = min(batch, todo - done)
        with store.transaction() as tx:
            for j in range(k):
                i = start + done + j
                tx.append_audit("platform", "transfer.submitted", f"t_bench{i:012d}", {
                    "wallet_id": "w_bench", "chain": "ethereum",
                    "payload_sha256": f"{i:064x}", "digests": [f"{i * 7:064x}"],
                    "outputs": [["0x000000000000000000000000000000000000dEaD", "1000000000000000",
                                 "ETH", False]],
                    "fee": "630000000000000", "requirement": "2 approvers",
                    "policy_version": 1, "replaces": "", "category_change": "none",
                    "legal_basis": ""})
        done += k
    dt = time.perf_counter() - t0
    with store.read() as tx:
        end, _ = tx.audit_head()
    store.close()
    return {"events_before": start, "events_after": end, "appended": todo,
            "seconds": round(dt, 1), "appends_per_second": rate(todo, dt)}


def main() -> None:
    args = part_args(__doc__ or "")
    n_transfers = 1000 if args.quick else 10_000
    n_events = 10_000 if args.quick else 100_000
    rounds = 40 if args.quick else 150
    results: dict[str, Any] = {"pending_transfers": n_transfers, "audit_events": n_events}
    from signerd.core import audit
    from signerd.v1 import signerd_pb2 as pb

    with workdir(args.workdir) as wd:
        cfg, keys = bench_state(wd / "state-store")
        d = Daemon(cfg).start()
        try:
            custody = d.custody()
            w = custody.CreateWallet(pb.CreateWalletRequest(
                chain=pb.ETHEREUM, chain_ids=[1], category=pb.SEIZED, case_ref="BENCH-STORE"))
            time.sleep(2.1)
            results["rss_mib_empty"] = proc_rss_mib(d.pid)
            filled = fill_transfers(d, w.id, n_transfers)
            ids = filled["ids"]
            results["fill"] = filled["stats"]
            log(f"{n_transfers} pending transfers in {filled['stats']['seconds']} s "
                f"({filled['stats']['submits_per_second']}/s)")
            time.sleep(2.1)
            results["rss_mib_after_transfers"] = proc_rss_mib(d.pid)

            # the idle daemon: its health monitor every 2 s walks the live transfers
            with CpuMeter(d.pid) as idle:
                time.sleep(3.0 if args.quick else 6.0)
            results["idle_daemon_cpu_cores"] = round(idle.other_cpu / idle.wall, 3)

            inv = Operator(d, "inv1", keys["inv1"])
            cust = Operator(d, "cust1", keys["cust1"])
            rnd = random.Random(7)
            targets = rnd.sample(ids, rounds * 2)
            first = iter(targets[:rounds])
            second_pool: list[tuple[str, bytes]] = []
            statements = {t: inv.statement(t) for t in targets[:rounds]}
            pending_state = pb.PENDING_APPROVAL
            sorted_ids = sorted(ids)

            def approve_first() -> None:
                t = next(first)
                r = inv.submit(t, statements[t])
                assert r.state == pb.PENDING_APPROVAL, r.state
                second_pool.append((t, b""))

            ops: dict[str, Callable[[], Any]] = {
                "ListTransfers(PENDING, first page of 100)": lambda: custody.ListTransfers(
                    pb.ListTransfersRequest(state=pending_state, page=pb.Page(page_size=100))),
                "ListTransfers(PENDING, page at a random point)": lambda: custody.ListTransfers(
                    pb.ListTransfersRequest(state=pending_state, page=pb.Page(
                        page_size=100, page_token=rnd.choice(sorted_ids)))),
                "ListPending(operator, page of 100)": lambda: inv.stub.ListPending(
                    pb.ListPendingRequest(page=pb.Page(page_size=100))),
                "GetTransfer": lambda: custody.GetTransfer(
                    pb.GetTransferRequest(transfer_id=rnd.choice(ids))),
                "GetStatement": lambda: inv.statement(rnd.choice(ids)),
                "SubmitApproval (first of two)": approve_first,
            }
            with CpuMeter(d.pid) as busy:
                results["latency_ms"] = sample_round_robin(ops, rounds)
            results["sampling_daemon_cpu_cores"] = round(busy.other_cpu / busy.wall, 3)
            # the quorum-making approvals: these sign (one HSM signature each) before answering
            st2 = {t: cust.statement(t) for t, _ in second_pool}
            lat2 = []
            for t, _ in second_pool:
                t0 = time.perf_counter()
                r = cust.submit(t, st2[t])
                lat2.append(time.perf_counter() - t0)
                assert r.state == pb.SIGNED, r.state
            results["latency_ms"]["SubmitApproval (quorum-making: signs)"] = percentiles(lat2)
            for k, v in results["latency_ms"].items():
                log(f"{k}: p50 {v['p50']} ms, p99 {v['p99']} ms, max {v['max']} ms")
            results["rss_mib_after_sampling"] = proc_rss_mib(d.pid)

            # audit: 100,000 events, export, verify
            results["audit_fill"] = fill_audit(store_url(cfg), n_events)
            log(f"audit: {results['audit_fill']}")
            time.sleep(2.1)
            results["rss_mib_after_audit_events"] = proc_rss_mib(d.pid)
            t0 = time.perf_counter()
            head = d.audit().GetHead(pb.GetHeadRequest())
            results["audit_get_head_ms"] = round((time.perf_counter() - t0) * 1000, 2)
            chunks = []
            t0 = time.perf_counter()
            for c in d.audit().Export(pb.ExportRequest()):
                chunks.append(c.data)
            export_s = time.perf_counter() - t0
            data = b"".join(chunks)
            results["rss_mib_after_export"] = proc_rss_mib(d.pid)
            t0 = time.perf_counter()
            header, events = audit.parse_export(data)
            parse_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            res = audit.verify_chain(events, expected_head=header.head_hash,
                                     expected_count=header.head_seq)
            chain_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            full = audit.verify_export(data)
            full_s = time.perf_counter() - t0
            n = len(events)
            results["audit_export"] = {
                "events": n, "bytes": len(data), "export_rpc_seconds": round(export_s, 2),
                "export_events_per_second": rate(n, export_s),
                "parse_seconds": round(parse_s, 2),
                "verify_chain_seconds": round(chain_s, 2),
                "verify_chain_events_per_second": rate(n, chain_s),
                "verify_export_seconds": round(full_s, 2),
                "verify_export_events_per_second": rate(n, full_s),
                "head_seq": head.seq, "ok": bool(res.ok and full.ok)}
            log(f"audit export/verify: {results['audit_export']}")
        finally:
            d.stop()
        results["in_process"] = in_process_costs(cfg)
        log(f"in-process: {results['in_process']['ms']}")
    write_json(args.json, results)


def in_process_costs(cfg: Path) -> dict[str, Any]:
    """With the daemon stopped, signerd's App on the same state folder (same store): what the
    health monitor's periodic work costs with this many live transfers, and a profile of one
    page of ListTransfers."""
    import cProfile

    from common import open_app, profile_top

    app = open_app(cfg)

    def best(fn: Callable[[], Any], n: int = 3) -> float:
        b = float("inf")
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            b = min(b, time.perf_counter() - t0)
        return round(b * 1000, 2)

    out: dict[str, Any] = {"ms": {
        "TransferService.tick (every probe_seconds)": best(app.transfers.tick),
        "App.refresh_gauges (every probe_seconds)": best(app.refresh_gauges),
        "Keystore.probe (every probe_seconds)": best(app.keystore.probe),
        "TransferService.list(PENDING, 100)": best(
            lambda: app.transfers.list(state="PENDING_APPROVAL", limit=100)),
        "TransferService.pending_for(inv1, 100)": best(
            lambda: app.transfers.pending_for("inv1", limit=100)),
    }}
    prof = cProfile.Profile()
    prof.enable()
    app.transfers.list(state="PENDING_APPROVAL", limit=100)
    prof.disable()
    out["profile_list_page"] = profile_top(prof, 18, "cumulative")
    app.stop()
    return out


def store_url(cfg: Path) -> str:
    from signerd.adapters import config as C

    return C.load(cfg).store_url


if __name__ == "__main__":
    main()
