"""signerd's own CPU per signed transfer against the HSM's CPU per signature, same run.

One-digest Ethereum transfers (the demo wallet, two-key policy), in process on a state folder of
its own (SoftHSM inside the process, real SQLite, the governance ledger and its authority checks
as the daemon runs them):

  backlog        APPROVED transfers drained by SignStep.sign_many (the monitor's path)
  quorum-making  TransferService.decide of the second approval, which signs before it returns
                 (the operator's Ed25519 signature over the statement is made before the clock
                 starts: that is the operator's CPU, not signerd's)

The HSM's share is measured inside the same run: every C_Sign (python-pkcs11's
``SignMixin.sign``, which SoftHSM computes in the calling thread) is wrapped with the calling
thread's CPU clock (``time.thread_time``), summed over every thread. signerd's own CPU is the
process's CPU over the measured span (``time.process_time``, all threads) minus that sum.
A networked HSM would take the HSM's share off this machine; signerd's own share stays.

Run alone: .venv/bin/python bench/own_cpu.py [--quick] [--json OUT]
"""
from __future__ import annotations

import cProfile
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (eth_payload, in_process_approve, profile_top, profiled_worker, loadavg, log, open_app, operator_keys,  # noqa: E402
                    part_args, signerd_init, signerd_module, workdir, write_json)
from hsm_rate import prepare_eth  # noqa: E402


class HsmClock:
    """CPU seconds spent inside C_Sign, summed over the threads that called it."""

    def __init__(self) -> None:
        import pkcs11.types as T

        self.T = T
        self.orig = T.SignMixin.sign
        self.lock = threading.Lock()
        self.cpu = 0.0
        self.calls = 0
        clock = self

        def sign(key: Any, data: Any, **kw: Any) -> bytes:
            c0 = time.thread_time()
            try:
                return clock.orig(key, data, **kw)
            finally:
                dt = time.thread_time() - c0
                with clock.lock:
                    clock.cpu += dt
                    clock.calls += 1

        T.SignMixin.sign = sign  # type: ignore[method-assign]

    def read(self) -> tuple[float, int]:
        with self.lock:
            return self.cpu, self.calls

    def undo(self) -> None:
        self.T.SignMixin.sign = self.orig  # type: ignore[method-assign]


def split(clock: HsmClock, fn: Any, n: int) -> dict[str, Any]:
    h0, c0 = clock.read()
    p0, t0 = time.process_time(), time.perf_counter()
    fn()
    p1, t1 = time.process_time(), time.perf_counter()
    h1, c1 = clock.read()
    proc, hsm, calls = p1 - p0, h1 - h0, c1 - c0
    own = proc - hsm
    return {"transfers": n, "seconds": round(t1 - t0, 3), "per_second": round(n / (t1 - t0), 1),
            "hsm_sign_calls": calls,
            "process_cpu_ms_per_transfer": round(proc / n * 1000, 3),
            "hsm_cpu_ms_per_signature": round(hsm / max(1, calls) * 1000, 3),
            "hsm_cpu_ms_per_transfer": round(hsm / n * 1000, 3),
            "signerd_own_cpu_ms_per_transfer": round(own / n * 1000, 3),
            "own_over_hsm": round(own / hsm, 3) if hsm else None,
            "loadavg": loadavg()}


def main() -> None:
    args = part_args(__doc__ or "")
    n = 300 if args.quick else 2000
    results: dict[str, Any] = {"loadavg_start": loadavg()}
    Decision = signerd_module("model").Decision
    A = signerd_module("approval")
    with workdir(args.workdir) as wd:
        cfg = signerd_init(wd / "state-own")
        keys = operator_keys(cfg.parent)
        app = open_app(cfg)
        from signerd.v1 import signerd_pb2  # noqa: F401  (imported before the clock)
        from signerd.services.wallets import WalletRequest

        w = app.wallets.create("platform", WalletRequest(
            chain="ethereum", network="", category="seized", case_ref="BENCH-OWN",
            chain_ids=(1,)))
        t0 = time.perf_counter()
        backlog = prepare_eth(app, keys, w.id, n, 0)
        log(f"prepared {n} approved transfers in {time.perf_counter() - t0:.1f} s")
        # the quorum-making path: n transfers with inv1's approval; cust1's prepared
        pend = []
        for i in range(n):
            t = app.transfers.submit("platform", w.id, eth_payload(n + i))
            in_process_approve(app, keys, t.id, "inv1")
            st = app.transfers.statement(t.id, Decision.APPROVE)[0]
            pend.append((t.id, A.sign_statement(keys["cust1"], st), A.statement_digest(st)))
        log(f"prepared {n} pending transfers with one approval")
        k = max(50, n // 4)  # profiled afterwards, apart from the measured spans
        prof_backlog = prepare_eth(app, keys, w.id, k, 2 * n)
        prof_pend = []
        for i in range(k):
            t = app.transfers.submit("platform", w.id, eth_payload(2 * n + k + i))
            in_process_approve(app, keys, t.id, "inv1")
            st = app.transfers.statement(t.id, Decision.APPROVE)[0]
            prof_pend.append((t.id, A.sign_statement(keys["cust1"], st), A.statement_digest(st)))
        clock = HsmClock()
        try:
            results["backlog"] = split(
                clock, lambda: app.transfers.signer.sign_many(backlog), len(backlog))
            log(f"backlog: {results['backlog']}")

            def quorum() -> None:
                for tid, sig, dig in pend:
                    app.transfers.decide("cust1", tid, "cust1", Decision.APPROVE, sig,
                                         statement_sha256=dig)
            results["quorum_making"] = split(clock, quorum, len(pend))
            log(f"quorum-making: {results['quorum_making']}")
            # where signerd's own CPU goes: cProfile (CPU clock) of the caller's thread and of
            # the sign step's worker, on transfers of their own
            results["profile"] = {}
            for name, run in (
                    ("backlog", lambda: app.transfers.signer.sign_many(prof_backlog)),
                    ("quorum_making", lambda: [app.transfers.decide(
                        "cust1", tid, "cust1", Decision.APPROVE, sig, statement_sha256=dig)
                        for tid, sig, dig in prof_pend])):
                main_p = cProfile.Profile(time.thread_time)
                worker_p = cProfile.Profile(time.thread_time)
                undo = profiled_worker(app, worker_p)
                main_p.enable()
                run()
                main_p.disable()
                undo()
                results["profile"][name] = {
                    "transfers": k, "top_tottime": profile_top([main_p, worker_p], 30),
                    "top_cumulative": profile_top([main_p, worker_p], 30, "cumulative")}
            with app.store.read() as tx:
                states: dict[str, int] = {}
                for tid in backlog + [p[0] for p in pend]:
                    s = tx.get_transfer(tid).state.value
                    states[s] = states.get(s, 0) + 1
            results["states_after"] = states
        finally:
            clock.undo()
            app.stop()
    results["loadavg_end"] = loadavg()
    write_json(args.json, results)


if __name__ == "__main__":
    main()
