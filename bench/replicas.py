"""Two replicas on one PostgreSQL: signed transfers per second end to end with two daemons
against one, in the same run.

A throwaway PostgreSQL cluster (the tests' tests/support/pg.py), one state folder made by
``signerd init --store-url`` (its own SoftHSM token, PKI, operators), per-principal rate limit
off. Replica B is the same config file copied (tests/support/daemon.py ``replica_config``), so
both serve one instance, one store and one token. The flow per client thread is e2e.py's:
SubmitTransfer, then GetStatement + SubmitApproval by inv1 and by cust1 (the quorum-making one
returns the signed transfer). Clients run in this process; each replica's clients use nonces of
their own range on the one Ethereum wallet.

The CPU of each daemon (/proc), of this process's clients, and of the whole machine
(/proc/stat; what is neither daemons nor clients is PostgreSQL's backends, plus any other work).

Phases, each 30 s long (8 with --quick), the same 8 client threads: A alone, A and B together (the clients
split between them), A alone again (so a drift of the machine shows).

Run alone: .venv/bin/python bench/replicas.py [--quick] [--json OUT]
"""
from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (ROOT, CpuMeter, Daemon, bench_limits, cpu_busy_seconds,  # noqa: E402
                    loadavg, log,
                    operator_keys, part_args, percentiles, rate, workdir, write_json)
from e2e import Flow  # noqa: E402


def run_phase(flows: list[Flow], clients: int, seconds: float, pids: list[int]
              ) -> dict[str, Any]:
    stop = threading.Event()
    lock = threading.Lock()
    signed = [0] * len(flows)
    errors: list[str] = []
    lat: list[float] = []

    def client(k: int) -> None:
        f = flows[k % len(flows)]
        while not stop.is_set():
            try:
                ok, ph = f.eth_transfer()
            except Exception as e:  # counted, not fatal
                with lock:
                    errors.append(repr(e)[:200])
                continue
            with lock:
                if ok:
                    signed[k % len(flows)] += 1
                lat.append(ph["total"])

    for f in flows:  # warm-up, not counted
        f.eth_transfer()
    meters = [CpuMeter(p) for p in pids]
    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(clients)]
    busy0 = cpu_busy_seconds()
    for m in meters:
        m.__enter__()
    for t in threads:
        t.start()
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join()
    for m in meters:
        m.__exit__()
    busy = cpu_busy_seconds() - busy0
    wall = meters[0].wall
    daemons = sum(m.other_cpu for m in meters)
    n = sum(signed)
    return {"daemons": len(flows), "clients": clients, "seconds": round(wall, 2),
            "signed": n, "signed_per_daemon": signed, "errors": len(errors),
            "error_samples": errors[:3], "transfers_per_second": rate(n, wall),
            "daemon_cpu_cores": [round(m.other_cpu / m.wall, 2) for m in meters],
            "client_cpu_cores": round(meters[0].self_cpu / wall, 2),
            "daemon_cpu_ms_per_transfer": round(sum(m.other_cpu for m in meters)
                                                / max(1, n) * 1000, 2),
            "machine_cpu_cores": round(busy / wall, 2),
            "postgres_and_other_cpu_cores": round(
                max(0.0, busy - daemons - meters[0].self_cpu) / wall, 2),
            "machine_cpu_ms_per_transfer": round(busy / max(1, n) * 1000, 2),
            "flow_ms": percentiles(lat), "loadavg": loadavg()}


def main() -> None:
    args = part_args(__doc__ or "")
    seconds = 8.0 if args.quick else 30.0
    clients = 8
    from signerd.v1 import signerd_pb2 as pb
    from tests.support import daemon as harness
    from tests.support.pg import PgCluster

    results: dict[str, Any] = {"loadavg_start": loadavg(), "clients": clients,
                               "seconds_per_phase": seconds}
    with workdir(args.workdir) as wd:
        cluster = PgCluster().start()
        a = b = None
        try:
            url = cluster.create_database("replicas")
            cfg = harness.init_state(wd / "state", "--store-url", url, cwd=ROOT, timeout=180)
            bench_limits(cfg)
            keys = operator_keys(cfg.parent)
            a = Daemon(cfg).start()
            b = Daemon(harness.replica_config(cfg, "b")).start()
            w = a.custody().CreateWallet(pb.CreateWalletRequest(
                chain=pb.ETHEREUM, chain_ids=[1], category=pb.SEIZED, case_ref="BENCH-REPL"))
            fa = Flow(a, keys, w.id, 0)
            fa2 = Flow(a, keys, w.id, 3_000_000)
            fb = Flow(b, keys, w.id, 1_000_000)
            fa3 = Flow(a, keys, w.id, 2_000_000)
            phases = []
            for name, flows, pids in (("one daemon (A)", [fa], [a.pid]),
                                      ("two daemons (A + B)", [fa2, fb], [a.pid, b.pid]),
                                      ("one daemon again (A)", [fa3], [a.pid])):
                r = run_phase(flows, clients, seconds, pids)
                r["phase"] = name
                phases.append(r)
                log(f"{name}: {r['transfers_per_second']}/s, daemons' cores "
                    f"{r['daemon_cpu_cores']}, clients {r['client_cpu_cores']}, errors "
                    f"{r['errors']}, load {r['loadavg']}")
            results["phases"] = phases
            one = (phases[0]["transfers_per_second"] + phases[2]["transfers_per_second"]) / 2
            results["ratio_two_over_one"] = round(phases[1]["transfers_per_second"] / one, 3)
            log(f"ratio two/one: {results['ratio_two_over_one']}")
        finally:
            for d in (b, a):
                if d is not None:
                    d.stop()
            cluster.stop()
    results["loadavg_end"] = loadavg()
    write_json(args.json, results)


if __name__ == "__main__":
    main()
