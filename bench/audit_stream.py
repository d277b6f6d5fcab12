"""Audit export and offline verification at size, in constant memory.

A real daemon (SQLite, the embedded default) whose audit chain is filled to N events by
signerd's own store code (Tx.append_audit, the chain the daemon writes; bench/store.py's
fill_audit), then:

  export    the Export RPC streamed to a file as signerctl writes it; the daemon's RSS sampled
            every 50 ms before and during the export (its growth is what the export costs)
  verify    `signerctl audit verify FILE --audit-key KEY` in a child process: its wall time,
            and its peak RSS (ru_maxrss of its own) against its RSS once signerctl is imported

Run alone: .venv/bin/python bench/audit_stream.py [--events N] [--quick] [--json OUT]
(default 1,000,000 events; --quick 100,000). Prints a table; --json writes the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (Daemon, bench_state, log, proc_rss_mib, rate, workdir,  # noqa: E402
                    write_json)
from store import fill_audit, store_url  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


class RssSampler:
    """The peak RSS of a process, sampled every ``period`` seconds while in the block."""

    def __init__(self, pid: int, period: float = 0.05):
        self.pid, self.period, self.peak = pid, period, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, proc_rss_mib(self.pid))
            self._stop.wait(self.period)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, proc_rss_mib(self.pid))


# The verifier in a child process that reports its own RSS: after importing signerctl (the
# baseline) and at its peak (ru_maxrss of the process itself), as one JSON line on stderr.
VERIFY_CHILD = """
import json, resource, sys
from signerd.cli import main
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
code = main(sys.argv[1:])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"code": code, "base_kib": base, "peak_kib": peak}), file=sys.stderr)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=None, help="audit events (default 1,000,000)")
    ap.add_argument("--quick", action="store_true", help="100,000 events")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--workdir", help="temporary folder (default: a fresh one, removed after)")
    args = ap.parse_args()
    n = args.events or (100_000 if args.quick else 1_000_000)
    from signerd.v1 import signerd_pb2 as pb

    results: dict[str, Any] = {"events": n}
    py = sys.executable
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with workdir(args.workdir) as wd:
        cfg, _ = bench_state(wd / "state-audit")
        d = Daemon(cfg).start()
        try:
            t0 = time.perf_counter()
            results["fill"] = fill_audit(store_url(cfg), n, batch=5000)
            log(f"filled {n} events in {time.perf_counter() - t0:.1f} s")
            time.sleep(2.5)  # a monitor tick or two (it checkpoints what was appended)
            head = d.audit().GetHead(pb.GetHeadRequest())
            rss_before = proc_rss_mib(d.pid)
            out = wd / "audit.jsonl"
            size = 0
            with RssSampler(d.pid) as sampler, open(out, "wb") as f:
                t0 = time.perf_counter()
                for chunk in d.audit().Export(pb.ExportRequest()):
                    f.write(chunk.data)
                    size += len(chunk.data)
                export_s = time.perf_counter() - t0
            results["export"] = {
                "head_seq": head.seq, "bytes": size, "seconds": round(export_s, 1),
                "events_per_second": rate(n, export_s),
                "daemon_rss_mib_before": rss_before, "daemon_rss_mib_peak": sampler.peak,
                "daemon_rss_growth_mib": round(sampler.peak - rss_before, 1)}
            log(f"export: {results['export']}")
            key = head.audit_public_key.hex()
        finally:
            d.stop()
        t0 = time.perf_counter()
        done = subprocess.run([py, "-c", VERIFY_CHILD, "audit", "verify", str(out),
                               "--audit-key", key], capture_output=True, text=True, cwd=ROOT,
                              env=env)
        wall = time.perf_counter() - t0
        mem = json.loads(done.stderr.strip().splitlines()[-1])
        if mem["code"] != 0:
            raise SystemExit(f"verify failed: {done.stdout}{done.stderr}")
        results["verify"] = {
            "seconds": round(wall, 1), "events_per_second": rate(n, wall),
            "rss_mib_after_imports": round(mem["base_kib"] / 1024, 1),
            "rss_mib_peak": round(mem["peak_kib"] / 1024, 1),
            "rss_growth_mib": round((mem["peak_kib"] - mem["base_kib"]) / 1024, 1),
            "output": done.stdout.strip()[:200]}
        log(f"verify: {results['verify']}")
    e, v = results["export"], results["verify"]
    print(f"{'audit events':<34}{n:>14,}")
    print(f"{'export: events/s':<34}{e['events_per_second']:>14,.0f}")
    print(f"{'export: daemon RSS growth (MiB)':<34}{e['daemon_rss_growth_mib']:>14.1f}")
    print(f"{'export: bytes':<34}{e['bytes']:>14,}")
    print(f"{'verify: events/s':<34}{v['events_per_second']:>14,.0f}")
    print(f"{'verify: RSS growth (MiB)':<34}{v['rss_growth_mib']:>14.1f}")
    write_json(args.json, results)


if __name__ == "__main__":
    main()
