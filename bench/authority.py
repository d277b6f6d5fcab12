"""Authority checks: before and after. The sign step's CPU per transfer, and the latency from
the quorum-making approval to the signed result, measured with one harness at two checkouts of
signerd, in alternating runs.

    .venv/bin/python bench/authority.py                      # 91a50dd vs this checkout, 3 rounds
    .venv/bin/python bench/authority.py --rounds 3 --json bench/results-authority.json
    .venv/bin/python bench/authority.py --quick              # a smoke run (~10 s per run)

"before" is a commit (default 91a50dd, the last one before governance and the authority checks;
its tree is extracted with ``git archive`` into a temporary folder, or given with
--before-tree); "after" is this checkout's tree (the files as they are; --after-tree another).
Runs alternate before, after, before, after, ... (--rounds pairs); each is a fresh process
importing signerd from its tree only (the harness, this file and common.py, is the same for
both) with its own ``signerd init`` state folder. Before each run it waits (at most
--max-waits minutes) until the 1-minute load average is at most --max-load and the machine kept
at most --busy cores busy over 10 s; the load at start and end and the CPU other processes used
during the run are recorded with it, and a run during which other processes used more than
--busy cores is measured again (at most --retries times; the discarded runs stay in the JSON).

One run, at one checkout:

1. Latency through a real daemon (``signerd run``, mTLS, rate limit off; the demo policy
   two-key: inv1 and cust1). ``--transfers`` (default 1,000) one-input P2WPKH PSBTs, one at a
   time: SubmitTransfer (platform), GetStatement + SubmitApproval by inv1, GetStatement by cust1,
   then the measured span: cust1's quorum-making SubmitApproval, from sending it to holding the
   response with the signed PSBT and raw transaction. The daemon's CPU inside that span (the sum
   over its threads of /proc/<pid>/task/*/schedstat, in ns) and over the whole flow, and the
   daemon's own ``signerd_quorum_to_signed_seconds`` mean. The same RPCs exist at both commits,
   so the client code is identical. Every RPC has a 30 s deadline: one that is not answered is
   an incident (the daemon runs with faulthandler on SIGUSR1, so its thread stacks and log tail
   are kept), the daemon is restarted on the same state folder and the measurement goes on.
2. The sign step in process (signerd's App on the same state folder, daemon stopped), as
   bench/hsm_rate.py measures it: transfers submitted and approved by the quorum with the sign
   step deferred, then signed one at a time through ``TransferService.sign`` (what a
   quorum-making approval calls); process CPU time per signed transfer (``time.process_time``:
   all threads, SoftHSM included), for one-input P2WPKH PSBTs and one-digest EIP-1559
   transfers; and App.hsm_sign's CPU per signature alone, so signerd's own share is the rest.
3. The quorum-making decision in process (``TransferService.decide`` by cust1, the statement
   and signature made beforehand): wall time per call and process CPU per call, which is the
   latency span of part 1 without gRPC and TLS.
4. Where the sign step's CPU goes, three ways: (a) without a profiler, the CPU time of the
   worker thread in each stage (read and checks, HSM, write; inside them the authority
   functions: App.ended, Ledger.state, ledger.load_wallet, classify, context, engine.judge;
   before: the quorum check), by thin wrappers using ``time.thread_time``; (b) cProfile of the
   worker thread (``SignStep._pipeline``) with its CPU clock, summarised by function with call
   counts; (c) unit costs of each authority function alone, and the hits and misses of the
   content-keyed caches (functools.lru_cache) during the sign step. And a wall-clock cProfile
   of the deciding thread (the quorum-making decide, which waits for the sign step).

Nothing here asserts anything about time; it measures and reports. It is not part of the test
suite. Results: --json (default bench/results/authority-<UTC timestamp>.json, gitignored), the
table on stdout.
"""
from __future__ import annotations

import argparse
import base64
import cProfile
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402
from common import (Daemon, bench_state, build_psbt, child_result, cpu_busy_seconds,  # noqa: E402
                    eth_payload, flat_path, fmt, loadavg, log, machine, operator_keys, percentiles,
                    proc_cpu_seconds, profile_top, profiled_worker, run_measured, signerd_module,
                    signing_deferred, unit_cost, write_json)

BEFORE = "91a50dd"


# ---------------------------------------------------------------- the checkout under test

def use_tree(tree: Path) -> None:
    """Import signerd from ``tree`` only, in this process and in the processes it starts
    (``signerd init``, ``signerd run``: common.py runs them with cwd = common.ROOT)."""
    for p in {str(REPO), str(REPO.resolve())}:
        while p in sys.path:
            sys.path.remove(p)
    sys.path.insert(0, str(tree))
    os.environ["PYTHONPATH"] = str(tree)
    common.ROOT = tree
    import signerd

    where = Path(signerd.__file__).resolve()
    if not where.is_relative_to(tree.resolve()):
        raise RuntimeError(f"signerd imported from {where}, not from {tree}")


def proc_cpu_ns(pid: int) -> int:
    """CPU time of every thread of a process so far, in ns (schedstat: not rounded to ticks;
    threads that already exited are not counted, so read it around spans, not over a life)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


# ---------------------------------------------------------------- 1. through the daemon

RPC_DEADLINE = 30.0  # seconds: an RPC not answered by then is a hang, recorded as an incident

# ``signerd run`` with Python's faulthandler registered on SIGUSR1 (thread stacks to the daemon's
# stderr, its log file), so that a hang can be shown; signerd's own code is unchanged.
LAUNCH = ("import faulthandler, runpy, signal; "
          "faulthandler.register(signal.SIGUSR1, all_threads=True); "
          "runpy.run_module('signerd.daemon', run_name='__main__', alter_sys=True)")


class BenchDaemon(Daemon):
    """common.Daemon (run from common.ROOT, its log file in the state folder) started through
    LAUNCH."""

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-c", LAUNCH, *args]

    def stacks(self) -> list[str]:
        """The daemon's thread stacks (faulthandler, SIGUSR1), paths shortened."""
        import signal

        assert self.proc is not None and self.log_path is not None
        size = self.log_path.stat().st_size
        os.kill(self.proc.pid, signal.SIGUSR1)
        time.sleep(1.0)
        text = self.log_path.read_text(errors="replace")[size:]
        return [common._short_paths(x) for x in text.splitlines() if x.strip()][:200]

    def log_tail(self, n: int = 8) -> list[str]:
        assert self.log_path is not None
        return [x[:400] for x in self.log_path.read_text(errors="replace").splitlines()[-n:]]


def daemon_latency(d: BenchDaemon, keys: dict[str, Any], btc_wallet: Any, count: int,
                   warmup: int) -> dict[str, Any]:
    A, M = signerd_module("approval"), signerd_module("model")
    sign_statement, statement_digest = A.sign_statement, A.statement_digest
    WalletSpec = signerd_module("bitcoin.signer").WalletSpec
    BitcoinNetwork, ScriptType = M.BitcoinNetwork, M.ScriptType
    from signerd.v1 import signerd_pb2 as pb
    from signerd.v1 import signerd_pb2_grpc as rpc

    pub = btc_wallet.keys[0].public_key
    spec = WalletSpec(ScriptType.P2WPKH, BitcoinNetwork.REGTEST, 1, (pub,), (pub,))
    payloads = [base64.b64encode(build_psbt(spec, 1, salt=1000 + i).serialize())
                for i in range(warmup + count)]
    T = RPC_DEADLINE

    def decide(op: str, tid: str, statement: bytes) -> Any:
        return rpc.ApprovalStub(d.channel(op)).SubmitApproval(pb.SubmitApprovalRequest(
            transfer_id=tid, operator_id=op, decision=pb.APPROVE,
            signature=sign_statement(keys[op], statement),
            statement_sha256=statement_digest(statement)), timeout=T)

    def statement(op: str, tid: str) -> bytes:
        return bytes(rpc.ApprovalStub(d.channel(op)).GetStatement(pb.GetStatementRequest(
            transfer_id=tid, decision=pb.APPROVE), timeout=T).statement)

    def one(p: bytes) -> tuple[float, int, bool]:
        t = rpc.CustodyStub(d.channel("platform")).SubmitTransfer(pb.SubmitTransferRequest(
            wallet_id=btc_wallet.id, psbt=p), timeout=T)
        decide("inv1", t.id, statement("inv1", t.id))
        st = statement("cust1", t.id)
        c0 = proc_cpu_ns(d.pid)
        t0 = time.perf_counter()
        done = decide("cust1", t.id, st)
        t1 = time.perf_counter()
        c1 = proc_cpu_ns(d.pid)
        return t1 - t0, c1 - c0, done.state == pb.SIGNED and bool(done.raw_tx and done.psbt)

    incidents: list[dict[str, Any]] = []

    def guarded(i: int, p: bytes) -> tuple[float, int, bool] | None:
        """One transfer; an RPC error or a hang is an incident: the daemon's stacks and log
        tail are kept, the daemon is stopped (killed if it does not stop) and started again on
        the same state folder, and the measurement goes on with the next transfer."""
        try:
            return one(p)
        except Exception as e:  # grpc.RpcError mostly
            code = getattr(e, "code", lambda: None)()
            inc = {"transfer_index": i, "error": f"{code}: {getattr(e, 'details', lambda: e)()}"
                   [:300], "loadavg": loadavg()}
            log(f"incident at transfer {i}: {inc['error']}")
            try:
                inc["daemon_stacks"] = d.stacks()
            except Exception as e2:  # the daemon may be gone
                inc["daemon_stacks"] = [f"(not available: {e2!r})"]
            inc["daemon_log_tail"] = d.log_tail()
            t0 = time.perf_counter()
            inc["daemon_exit"] = d.stop(timeout=10)
            inc["stop_seconds"] = round(time.perf_counter() - t0, 1)
            d.start()
            incidents.append(inc)
            return None

    for i, p in enumerate(payloads[:warmup]):
        guarded(i - warmup, p)
    before = d.histogram("signerd_quorum_to_signed_seconds")
    samples: list[float] = []
    cpu_ns: list[int] = []
    bad = 0
    load0 = loadavg()
    pid0 = d.pid
    w0, self0, daemon0 = time.perf_counter(), time.process_time(), proc_cpu_seconds(pid0)
    for i, p in enumerate(payloads[warmup:]):
        r = guarded(i, p)
        if r is None:
            continue
        dt, dc, ok = r
        samples.append(dt)
        cpu_ns.append(dc)
        bad += not ok
    wall, self_cpu = time.perf_counter() - w0, time.process_time() - self0
    same = d.pid == pid0  # no restart: the daemon's CPU over the whole loop is known
    daemon_cpu = proc_cpu_seconds(pid0) - daemon0 if same else 0.0
    after = d.histogram("signerd_quorum_to_signed_seconds")
    n = after["count"] - before["count"]
    done = len(samples)
    return {
        "transfers": count, "measured": done, "warmup": warmup,
        "quorum_making_rpc_not_signed": bad,
        "incidents": incidents,
        "quorum_making_rpc_ms": percentiles(samples),
        "samples_over_20_ms": sum(1 for x in samples if x > 0.020),
        "daemon_cpu_ms_in_quorum_making_rpc": {
            "mean": round(sum(cpu_ns) / max(1, len(cpu_ns)) / 1e6, 3),
            **{k: v for k, v in percentiles([c / 1e9 for c in cpu_ns]).items()
               if k in ("p50", "p99")}},
        "daemon_sign_step_mean_ms (signerd_quorum_to_signed_seconds)":
            round((after["sum"] - before["sum"]) / n * 1000, 3) if n and same else None,
        "whole_flow": {
            "seconds": round(wall, 2), "transfers_per_second": round(done / wall, 1),
            "daemon_cpu_ms_per_transfer": round(daemon_cpu / max(1, done) * 1000, 2)
            if same else None,
            "client_cpu_ms_per_transfer": round(self_cpu / max(1, done) * 1000, 2),
            "note": "5 RPCs per transfer (submit, 2 x statement + approval), one at a time; "
                    "daemon CPU from /proc/<pid>/stat (clock ticks)"},
        "loadavg": {"start": load0, "end": loadavg()},
        "samples_ms": [round(s * 1000, 3) for s in samples],
    }


# ---------------------------------------------------------------- 2.-4. in process

def create_wallet(app: Any, req: Any) -> Any:
    """The API for wallets changed between the commits (App.create_wallet -> app.wallets)."""
    if hasattr(app, "wallets") and hasattr(app.wallets, "create"):
        return app.wallets.create("platform", req)
    return app.create_wallet("platform", req)


def approve(app: Any, keys: dict[str, Any], tid: str, op: str) -> Any:
    return common.in_process_approve(app, keys, tid, op)


def prepare(app: Any, keys: dict[str, Any], make: Callable[[int], tuple[str, bytes]],
            start: int, count: int) -> list[str]:
    """``count`` transfers submitted and approved by inv1 and cust1, left APPROVED (the sign
    step deferred)."""
    ids = []
    with signing_deferred(app):
        for i in range(start, start + count):
            wallet_id, payload = make(i)
            t = app.transfers.submit("platform", wallet_id, payload)
            approve(app, keys, t.id, "inv1")
            approve(app, keys, t.id, "cust1")
            ids.append(t.id)
    return ids


def states(app: Any, ids: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    with app.store.read() as tx:
        for tid in ids:
            s = common.transfer_state(tx.get_transfer(tid))
            out[s] = out.get(s, 0) + 1
    return out


CACHED = {  # content-keyed caches (functools.lru_cache) the sign step may use, where present
    "approval._valid (Ed25519 over a statement digest)": ("approval", "_valid"),
    "seal._valid (audit key's seal over a record digest)": ("seal", "_valid"),
    "operator_keys._load_public_pem": ("operator_keys", "_load_public_pem"),
    "policy._parse_policy_cached": ("policy", "_parse_policy_cached"),
}


def cache_infos() -> dict[str, tuple[int, int, int]]:
    out = {}
    for label, (mod, name) in CACHED.items():
        try:
            fn = getattr(signerd_module(mod), name)
            ci = fn.cache_info()
        except (ImportError, AttributeError):
            continue
        out[label] = (ci.hits, ci.misses, ci.currsize)
    return out


def cache_delta(a: dict[str, tuple[int, int, int]], b: dict[str, tuple[int, int, int]],
                n: int) -> dict[str, Any]:
    return {k: {"hits_per_transfer": round((b[k][0] - a[k][0]) / n, 2),
                "misses_per_transfer": round((b[k][1] - a[k][1]) / n, 2), "size": b[k][2]}
            for k in b if k in a}


def sign_one_at_a_time(app: Any, ids: list[str]) -> dict[str, Any]:
    """The sign step for each transfer in turn, as the quorum-making approval runs it."""
    walls = []
    c_before = cache_infos()
    c0, t0 = time.process_time(), time.perf_counter()
    for tid in ids:
        w0 = time.perf_counter()
        app.transfers.sign(tid)
        walls.append(time.perf_counter() - w0)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"transfers": len(ids), "seconds": round(wall, 3),
            "process_cpu_ms_per_transfer": round(cpu / len(ids) * 1000, 3),
            "wall_ms": percentiles(walls), "states": states(app, ids),
            "caches": cache_delta(c_before, cache_infos(), len(ids))}


def decide_quorum_making(app: Any, keys: dict[str, Any], ids: list[str],
                         prof: tuple[cProfile.Profile, cProfile.Profile] | None = None
                         ) -> dict[str, Any]:
    """cust1's quorum-making decision on transfers inv1 has approved: wall and process CPU of
    the decide call alone (it includes the sign step)."""
    A = signerd_module("approval")
    sign_statement, statement_digest = A.sign_statement, A.statement_digest
    Decision = signerd_module("model").Decision

    walls, cpus = [], []
    signed = 0
    for tid in ids:
        statement = app.transfers.statement(tid, Decision.APPROVE)[0]
        sig = sign_statement(keys["cust1"], statement)
        sha = statement_digest(statement)
        if prof:
            prof[0].enable()
        c0, w0 = time.process_time(), time.perf_counter()
        v = app.transfers.decide("cust1", tid, "cust1", Decision.APPROVE, sig,
                                 statement_sha256=sha)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        if prof:
            prof[0].disable()
        signed += v.row["state"] == "SIGNED"
    return {"transfers": len(ids), "signed": signed, "wall_ms": percentiles(walls),
            "process_cpu_ms_per_call": round(sum(cpus) / len(ids) * 1000, 3)}


def profile_sign_step(app: Any, ids: list[str]) -> dict[str, Any]:
    """cProfile (CPU of the worker thread) of the sign step for each transfer in turn."""
    worker = cProfile.Profile(time.thread_time)
    undo = profiled_worker(app, worker)
    try:
        for tid in ids:
            app.transfers.sign(tid)
    finally:
        undo()
    return {"transfers": len(ids), "timer": "CPU of the worker thread (time.thread_time)",
            "per_transfer": summary(worker, len(ids)),
            "top_tottime": profile_top(worker, 25, "tottime"),
            "top_cumulative": profile_top(worker, 40, "cumulative")}


def stage_cpu(app: Any, ids: list[str]) -> dict[str, Any]:
    """The sign step for each transfer in turn, with the CPU time (``time.thread_time``) of the
    thread running each stage summed per stage: no profiler, only a wrapper around each
    stage's function. Stages nest (``load`` holds ``ended``, ``judge``, ``decode`` ...; ``judge``
    and ``load_wallet`` run in ``load`` and again in ``commit``), so they do not add up; the
    worker's whole ``pipeline`` and the process's CPU do."""
    acc: dict[str, float] = {}
    calls: dict[str, int] = {}
    undo: list[Callable[[], None]] = []

    def wrap(obj: Any, attr: str, label: str, *, instance: bool = True) -> None:
        if not hasattr(obj, attr):
            return
        orig = getattr(obj, attr)

        def timed(*a: Any, **k: Any) -> Any:
            t0 = time.thread_time()
            try:
                return orig(*a, **k)
            finally:
                acc[label] = acc.get(label, 0.0) + time.thread_time() - t0
                calls[label] = calls.get(label, 0) + 1
        setattr(obj, attr, timed)
        if instance:
            undo.append(lambda: delattr(obj, attr))
        else:
            undo.append(lambda: setattr(obj, attr, orig))

    chains = signerd_module("chains")

    step, svc = app.transfers.signer, app.transfers
    wrap(step, "_pipeline", "pipeline (the worker's whole CPU)")
    wrap(step, "_load", "load (read, checks, decode)")
    wrap(app, "hsm_sign_start", "hsm (App.hsm_sign_start: PKCS#11 + verify)")
    wrap(step, "_commit", "commit (checks again, write)")
    for cls in (chains.BitcoinAdapter, chains.EthereumAdapter):
        wrap(cls, "decode", "decode (adapter.decode)", instance=False)
        wrap(cls, "redecode", "redecode (adapter.redecode: before)", instance=False)
        wrap(cls, "assemble", "assemble (adapter.assemble)", instance=False)
    # after: the authority checks
    wrap(app, "ended", "ended (App.ended: audit chain to its head)")
    if hasattr(app, "ledger"):
        wrap(app.ledger, "state", "ledger_state (Ledger.state)")
        wrap(svc, "classify", "classify (destinations)")
        wrap(svc, "context", "context (statement context)")
        for mod, fn, label in (("engine", "judge", "judge (engine.judge)"),
                               ("ledger", "load_wallet", "load_wallet (sealed record)")):
            wrap(signerd_module(mod), fn, label, instance=False)
    else:  # before: the quorum check
        wrap(svc, "_quorum", "quorum (TransferService._quorum: before)")
        wrap(svc, "_operators", "operators (TransferService._operators: before)")
        wrap(svc, "_wallet", "wallet (TransferService._wallet: before)")
    c0 = time.process_time()
    try:
        for tid in ids:
            app.transfers.sign(tid)
    finally:
        for u in reversed(undo):
            u()
    cpu = time.process_time() - c0
    n = len(ids)
    return {"transfers": n, "process_cpu_us_per_transfer": round(cpu / n * 1e6, 1),
            "stage_cpu_us_per_transfer": {k: round(v / n * 1e6, 1) for k, v in acc.items()},
            "stage_calls_per_transfer": {k: round(v / n, 2) for k, v in calls.items()},
            "states": states(app, ids)}


# Functions whose cumulative time the profiles report, per transfer (absent at a commit: not
# listed). Cumulative: a function's time includes what it calls, so rows overlap. Paths as the
# flat layout names them; summary() matches the layered tree's through common.flat_path.
FUNCS = {
    # the worker and its stages
    "SignStep._pipeline (the worker, whole)": "signerd/sign_step.py:_pipeline",
    "SignStep._load (read, checks, decode)": "signerd/sign_step.py:_load",
    "SignStep._job (decode + judge)": "signerd/sign_step.py:_job",
    "App.hsm_sign_start (HSM, incl. verify)": "signerd/app.py:hsm_sign_start",
    "Keystore.sign_digest": "signerd/hsm.py:sign_digest",
    "SignStep._finish (assemble, write, answer)": "signerd/sign_step.py:_finish",
    "adapter.assemble": "signerd/chains.py:assemble",
    "SignStep._commit (the write, checks again)": "signerd/sign_step.py:_commit",
    # the deciding thread
    "TransferService.decide": "signerd/transfers.py:decide",
    "TransferService._record_decision": "signerd/transfers.py:_record_decision",
    "TransferService.sign (waits for the worker)": "signerd/transfers.py:sign",
    "TransferService.get (the response view)": "signerd/transfers.py:get",
    # authority checks (after)
    "App.ended (audit chain verified to its head)": "signerd/app.py:ended",
    "App._checkpoint_once": "signerd/app.py:_checkpoint_once",
    "audit.verify_checkpoints": "signerd/audit.py:verify_checkpoints",
    "audit.verify_chain": "signerd/audit.py:verify_chain",
    "App._committed (after each write)": "signerd/app.py:_committed",
    "Ledger.state (verified ledger, cached by head)": "signerd/ledger.py:state",
    "ledger.load_wallet (row + sealed record)": "signerd/ledger.py:load_wallet",
    "ledger.wallet_record (canonical JSON parse)": "signerd/ledger.py:wallet_record",
    "ledger.wallet_from_record": "signerd/ledger.py:wallet_from_record",
    "seal.valid (digest + cached verify)": "signerd/seal.py:valid",
    "seal.digest (canonical JSON + SHA-256)": "signerd/seal.py:digest",
    "seal._valid (cache misses only: secp256k1 verify)": "signerd/seal.py:_valid",
    "sign_step.submitted_tokens": "signerd/sign_step.py:submitted_tokens",
    "TransferService.classify (destinations)": "signerd/transfers.py:classify",
    "ledger.destinations": "signerd/ledger.py:destinations",
    "engine.check_category_change": "signerd/engine.py:check_category_change",
    "TransferService.context (statement context)": "signerd/transfers.py:context",
    "App.vetoes": "signerd/app.py:vetoes",
    "engine.judge": "signerd/engine.py:judge",
    "engine.effective_requirement": "signerd/engine.py:effective_requirement",
    "engine.policy_of": "signerd/engine.py:policy_of",
    "policy.with_floor": "signerd/policy.py:with_floor",
    "approval.verified_votes": "signerd/approval.py:verified_votes",
    "approval.build_statement": "signerd/approval.py:build_statement",
    "approval.signature_valid": "signerd/approval.py:signature_valid",
    "approval._valid (cache misses only: Ed25519 verify)": "signerd/approval.py:_valid",
    "AuthorityState.keys": "signerd/authority.py:keys",
    "AuthorityState.operator_views": "signerd/authority.py:operator_views",
    "policy.evaluate": "signerd/policy.py:evaluate",
    # quorum checks (before)
    "TransferService._wallet (before: wallet row)": "signerd/transfers.py:_wallet",
    "TransferService._operators (before)": "signerd/transfers.py:_operators",
    "TransferService._quorum (before: quorum check)": "signerd/transfers.py:_quorum",
    # decoding
    "adapter.decode": "signerd/chains.py:decode",
    "adapter.redecode (before)": "signerd/chains.py:redecode",
    "bitcoin.signer.analyze": "signerd/bitcoin/signer.py:analyze",
    # the store
    "store.read (read transactions: enter + exit)": "signerd/store/sqlite.py:read",
    "store.transaction (write: BEGIN IMMEDIATE .. COMMIT)": "signerd/store/sqlite.py:transaction",
    "Tx.get_transfer": "signerd/store/__init__.py:get_transfer",
    "Tx.get_wallet": "signerd/store/__init__.py:get_wallet",
    "Tx.approvals_for": "signerd/store/__init__.py:approvals_for",
    "Tx.signatures": "signerd/store/__init__.py:signatures",
    "Tx.authority_head": "signerd/store/__init__.py:authority_head",
    "Tx.wallets_by_address": "signerd/store/__init__.py:wallets_by_address",
    "Tx.latest_audit_checkpoint": "signerd/store/__init__.py:latest_audit_checkpoint",
    "Tx.audit_checkpoints": "signerd/store/__init__.py:audit_checkpoints",
    "Tx.audit_events_at": "signerd/store/__init__.py:audit_events_at",
    "Tx.audit_events": "signerd/store/__init__.py:audit_events",
    "Tx.audit_head": "signerd/store/__init__.py:audit_head",
    "Tx.update_transfer": "signerd/store/__init__.py:update_transfer",
    "Tx.insert_signature": "signerd/store/__init__.py:insert_signature",
    "Tx.append_audit": "signerd/store/__init__.py:append_audit",
    "sqlite3 Cursor.execute": "~:<method 'execute' of 'sqlite3.Cursor' objects>",
    "sqlite3 Connection.execute": "~:<method 'execute' of 'sqlite3.Connection' objects>",
}


def summary(prof: cProfile.Profile, per: int) -> dict[str, Any]:
    """Per transfer: cumulative ms and calls of each function of FUNCS, and the profile's
    total (sum of tottime)."""
    st = pstats.Stats(prof)
    out: dict[str, Any] = {}
    stats = st.stats  # type: ignore[attr-defined]
    for label, spec in FUNCS.items():
        fsuffix, func = spec.rsplit(":", 1)
        ct, nc = 0.0, 0
        for (fname, _l, fn), (_cc, ncalls, _tt, cum, _c) in stats.items():
            if fn == func and flat_path(fname).endswith(fsuffix):
                ct += cum
                nc += ncalls
        if nc:
            out[label] = {"ms": round(ct / per * 1000, 4), "calls": round(nc / per, 2)}
    out["_total_ms (sum of tottime)"] = round(sum(v[2] for v in stats.values()) / per * 1000, 4)
    return out


def unit_costs(app: Any, tid: str, eth_tid: str) -> dict[str, float]:
    """The sign step's checks one by one, on a signed one-input PSBT transfer (and decoding a
    signed EIP-1559 one), no profiler (whichever exist at this commit)."""
    adapter_for = signerd_module("chains").adapter_for

    svc = app.transfers
    out: dict[str, float] = {}
    store = app.store

    def in_read(fn: Callable[[Any], Any]) -> Callable[[], None]:
        def run() -> None:
            with store.read() as tx:
                fn(tx)
        return run

    out["store.read() with nothing in it"] = unit_cost(in_read(lambda tx: None))
    with store.read() as tx:
        row = tx.get_transfer(tid)
        approvals = tx.approvals_for([tid])[tid]
        wrow = tx.get_wallet(common.col(row, "wallet_id"))
        erow = tx.get_transfer(eth_tid)
    out["store.read() + get_transfer + approvals_for (both commits read these)"] = unit_cost(
        in_read(lambda tx: (tx.get_transfer(tid), tx.approvals_for([tid]))))
    if hasattr(app, "ledger"):  # after: the authority checks
        E, L, seal = signerd_module("engine"), signerd_module("ledger"), signerd_module("seal")

        with store.read() as tx:
            state = app.ledger.state(tx)
            wallet = L.load_wallet(tx, state, common.col(row, "wallet_id"))
            policy, _ = E.policy_of(state, wallet, int(common.col(row, "policy_version")))
            adapter = adapter_for(wallet.chain)
            decoded = adapter.decode(wallet, bytes(common.col(row, "payload")), svc.limits,
                                     allowed_sighash=policy.sighash_types)
            movement = svc.classify(tx, state, wallet, decoded, policy)
        ctx = svc.context(row)
        decisions = E.approvals_of(approvals)
        out["App.ended([id]) (audit chain verified to its head; nothing new)"] = unit_cost(
            lambda: app.ended([tid]), reps=50)
        out["store.read() + Ledger.state (head unchanged)"] = unit_cost(
            in_read(lambda tx: app.ledger.state(tx)))
        out["store.read() + ledger.load_wallet"] = unit_cost(
            in_read(lambda tx: L.load_wallet(tx, state, common.col(row, "wallet_id"))))
        out["ledger.verified_wallet (row in hand)"] = unit_cost(
            lambda: L.verified_wallet(state, wrow))
        out["  ledger.wallet_record (canonical JSON parse)"] = unit_cost(
            lambda: L.wallet_record(wrow))
        record = L.wallet_record(wrow)
        out["  seal.digest (canonical JSON + SHA-256)"] = unit_cost(
            lambda: seal.digest("wallet", record))
        out["  seal.valid (digest + cache hit)"] = unit_cost(
            lambda: seal.valid(state.audit_public_key, "wallet", record, wrow["seal"]))
        out["engine.policy_of (cached parse)"] = unit_cost(
            lambda: E.policy_of(state, wallet, int(common.col(row, "policy_version"))))
        out["adapter.decode (one-input PSBT: parse + analyze)"] = unit_cost(
            lambda: adapter.decode(wallet, bytes(common.col(row, "payload")), svc.limits,
                                   allowed_sighash=policy.sighash_types))
        with store.read() as tx:
            ewallet = L.load_wallet(tx, state, common.col(erow, "wallet_id"))
        eadapter = adapter_for(ewallet.chain)
        out["adapter.decode (EIP-1559: parse + movement with the token registry)"] = unit_cost(
            lambda: eadapter.decode(ewallet, bytes(common.col(erow, "payload")), svc.limits,
                                    tokens=state.tokens, chains=state.chains))
        out["store.read() + TransferService.classify (destinations)"] = unit_cost(
            in_read(lambda tx: svc.classify(tx, state, wallet, decoded, policy)))
        out["TransferService.context (statement context)"] = unit_cost(lambda: svc.context(row))
        out["App.vetoes (verify=False)"] = unit_cost(
            lambda: app.vetoes(wallet.id, E.transaction_key(movement), verify=False))
        out["engine.judge (2 approvals, Ed25519 cached)"] = unit_cost(
            lambda: E.judge(state, wallet, ctx, movement, decisions, approved=True))
        out["  engine.effective_requirement"] = unit_cost(
            lambda: E.effective_requirement(state, wallet, movement, ctx.category_change,
                                            ctx.policy_version))
        A = signerd_module("approval")
        Decision = signerd_module("model").Decision

        out["  approval.build_statement"] = unit_cost(
            lambda: A.build_statement(ctx, movement, Decision.APPROVE))
        out["  approval.verified_votes (cache hits)"] = unit_cost(
            lambda: A.verified_votes(lambda d: A.build_statement(ctx, movement, d),
                                     decisions, state.keys()))
        st = A.build_statement(ctx, movement, Decision.APPROVE)
        pem = state.keys()["cust1"]
        sig = next(d.signature for d in decisions if d.operator_id == "cust1")
        raw_valid = A._valid.__wrapped__  # the function under the cache
        sd = A.statement_digest(st)
        out["  Ed25519 verify of one approval, uncached (approval._valid miss)"] = unit_cost(
            lambda: raw_valid(pem, sd, sig))
    else:  # before
        movement_from_json = signerd_module("transfers").movement_from_json

        with store.read() as tx:
            wallet = svc._wallet(tx, common.col(row, "wallet_id"))
        adapter = adapter_for(wallet.chain)
        out["store.read() + TransferService._operators"] = unit_cost(
            in_read(lambda tx: svc._operators(tx)))
        out["store.read() + TransferService._wallet"] = unit_cost(
            in_read(lambda tx: svc._wallet(tx, common.col(row, "wallet_id"))))
        out["store.read() + TransferService._quorum"] = unit_cost(
            in_read(lambda tx: svc._quorum(tx, row, None, approvals)))
        mv = movement_from_json(common.col(row, "movement"))
        out["adapter.redecode (one-input PSBT: parse + analyze + compare)"] = unit_cost(
            lambda: adapter.redecode(wallet, bytes(common.col(row, "payload")), svc.limits, mv,
                                     allowed_sighash=frozenset({1})))
        with store.read() as tx:
            ewallet = svc._wallet(tx, common.col(erow, "wallet_id"))
        eadapter = adapter_for(ewallet.chain)
        emv = movement_from_json(common.col(erow, "movement"))
        out["adapter.redecode (EIP-1559: parse + digest compare)"] = unit_cost(
            lambda: eadapter.redecode(ewallet, bytes(common.col(erow, "payload")), svc.limits, emv))
    return out


def in_process(cfg: Path, keys: dict[str, Any], btc_id: str, eth_id: str, btc_pub: bytes,
               eth_key: str, n_sign: int, n_decide: int, n_profile: int) -> dict[str, Any]:
    import secrets

    WalletSpec = signerd_module("bitcoin.signer").WalletSpec
    M = signerd_module("model")
    BitcoinNetwork, ScriptType = M.BitcoinNetwork, M.ScriptType

    app = common.open_app(cfg)
    out: dict[str, Any] = {}
    try:
        spec = WalletSpec(ScriptType.P2WPKH, BitcoinNetwork.REGTEST, 1, (btc_pub,), (btc_pub,))

        def btc(i: int) -> tuple[str, bytes]:
            return btc_id, base64.b64encode(build_psbt(spec, 1, salt=500_000 + i).serialize())

        def eth(i: int) -> tuple[str, bytes]:
            return eth_id, eth_payload(100_000 + i)

        # App.hsm_sign alone: its CPU per signature, to split the sign step's CPU
        digests = [secrets.token_bytes(32) for _ in range(600)]
        for dg in digests[:100]:
            app.hsm_sign(eth_key, dg)
        c0 = time.process_time()
        for dg in digests[100:]:
            app.hsm_sign(eth_key, dg)
        out["hsm_sign_process_cpu_ms"] = round((time.process_time() - c0) / 500 * 1000, 3)

        t0 = time.perf_counter()
        warm_b = prepare(app, keys, btc, 0, 20)
        warm_e = prepare(app, keys, eth, 0, 20)
        sign_b = prepare(app, keys, btc, 100, n_sign)
        sign_e = prepare(app, keys, eth, 100, n_sign)
        prof_b = prepare(app, keys, btc, 100 + n_sign, n_profile)
        prof_e = prepare(app, keys, eth, 100 + n_sign, n_profile)
        stage_b = prepare(app, keys, btc, 300 + n_sign + n_decide + 2 * n_profile, n_profile)
        stage_e = prepare(app, keys, eth, 100 + n_sign + n_profile, n_profile)
        out["prepare_seconds"] = round(time.perf_counter() - t0, 1)
        out["prepare_ms_per_transfer (submit + 2 approvals, in process)"] = round(
            (time.perf_counter() - t0) / (40 + 2 * n_sign + 4 * n_profile) * 1000, 2)
        sign_one_at_a_time(app, warm_b)
        sign_one_at_a_time(app, warm_e)
        out["load_before_sign_step"] = loadavg()
        out["sign_step_psbt_1_input"] = sign_one_at_a_time(app, sign_b)
        out["sign_step_eth_1_digest"] = sign_one_at_a_time(app, sign_e)
        log("sign step, CPU ms per transfer: PSBT %.3f, ETH %.3f (App.hsm_sign %.3f)" % (
            out["sign_step_psbt_1_input"]["process_cpu_ms_per_transfer"],
            out["sign_step_eth_1_digest"]["process_cpu_ms_per_transfer"],
            out["hsm_sign_process_cpu_ms"]))

        out["stage_cpu_psbt"] = stage_cpu(app, stage_b)
        out["stage_cpu_eth"] = stage_cpu(app, stage_e)

        # 3. the quorum-making decision in process
        half = []
        base = 200 + n_sign + n_profile
        for i in range(n_decide + n_profile):
            wid, payload = btc(base + i)
            t = app.transfers.submit("platform", wid, payload)
            approve(app, keys, t.id, "inv1")
            half.append(t.id)
        decide_quorum_making(app, keys, half[:10])
        out["decide_quorum_making_psbt"] = decide_quorum_making(app, keys, half[10:n_decide])
        log("decide (quorum-making, in process): %s; CPU %.3f ms/call" % (
            out["decide_quorum_making_psbt"]["wall_ms"],
            out["decide_quorum_making_psbt"]["process_cpu_ms_per_call"]))

        # 4. profiles
        out["profile_sign_step_psbt"] = profile_sign_step(app, prof_b)
        out["profile_sign_step_eth"] = profile_sign_step(app, prof_e)
        caller, worker = cProfile.Profile(), cProfile.Profile()
        undo = profiled_worker(app, worker)
        try:
            ids = half[n_decide:]
            decide_quorum_making(app, keys, ids, (caller, worker))
        finally:
            undo()
        out["profile_decide_psbt"] = {
            "transfers": len(ids), "timer": "wall (cProfile default)",
            "caller_per_transfer": summary(caller, len(ids)),
            "worker_per_transfer": summary(worker, len(ids)),
            "caller_top_cumulative": profile_top(caller, 40, "cumulative"),
            "caller_top_tottime": profile_top(caller, 25, "tottime")}
        out["unit_costs_us"] = unit_costs(app, sign_b[0], sign_e[0])
    finally:
        app.stop()
    return out


def signerd_version() -> dict[str, str]:
    """signerd's version and a fingerprint of the code this run imported (SHA-256 over the
    paths and contents of signerd/**/*.py, sorted): equal runs ran the same code."""
    import hashlib

    import signerd

    root = Path(signerd.__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return {"version": str(getattr(signerd, "__version__", "?")),
            "code_sha256": h.hexdigest()[:16]}


def measure(tree: Path, args: Any) -> dict[str, Any]:
    """One run at one checkout."""
    use_tree(tree)
    from signerd.v1 import signerd_pb2 as pb

    res: dict[str, Any] = {"signerd_version": signerd_version(),
                           "loadavg_start": loadavg()}
    with tempfile.TemporaryDirectory(prefix="signerd-bench-authority-") as wd:
        cfg, keys = bench_state(Path(wd) / "state")
        d = BenchDaemon(cfg).start()
        try:
            custody = d.custody()
            bw = custody.CreateWallet(pb.CreateWalletRequest(
                chain=pb.BITCOIN, network="regtest", category=pb.SEIZED,
                case_ref="BENCH-AUTH-BTC", script_type=pb.P2WPKH))
            ew = custody.CreateWallet(pb.CreateWalletRequest(
                chain=pb.ETHEREUM, chain_ids=[1], category=pb.SEIZED, case_ref="BENCH-AUTH-ETH"))
            res["latency"] = daemon_latency(d, keys, bw, args.transfers, args.warmup)
            m = res["latency"]["quorum_making_rpc_ms"]
            log(f"quorum-making SubmitApproval -> signed: p50 {m['p50']} p90 {m['p90']} "
                f"p99 {m['p99']} max {m['max']} ms; daemon CPU in it "
                f"{res['latency']['daemon_cpu_ms_in_quorum_making_rpc']['mean']} ms")
        finally:
            rc = d.stop()
        res["daemon_exit"] = rc
        res["in_process"] = in_process(cfg, keys, bw.id, ew.id, bw.keys[0].public_key,
                                       ew.keys[0].key_id,
                                       args.sign_transfers, args.decide_transfers,
                                       args.profile_transfers)
    res["loadavg_end"] = loadavg()
    return res


# ---------------------------------------------------------------- the driver

def git(*a: str) -> str:
    return subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True,
                          check=True).stdout.strip()


def busy_cores(seconds: float = 10.0) -> float:
    """Cores the whole machine kept busy over the next ``seconds`` (/proc/stat)."""
    b0, t0 = cpu_busy_seconds(), time.perf_counter()
    time.sleep(seconds)
    return round((cpu_busy_seconds() - b0) / (time.perf_counter() - t0), 2)


def wait_for_quiet(max_load: float, busy: float, minutes: int) -> dict[str, Any]:
    """Wait (at most ``minutes``) until the 1-minute load average is at most ``max_load`` and
    the machine kept at most ``busy`` cores busy over 10 s (nothing of ours runs meanwhile)."""
    deadline = time.time() + 60 * minutes
    t0 = time.time()
    while True:
        cores = busy_cores()
        load = loadavg()
        if (load[0] <= max_load and cores <= busy) or time.time() >= deadline:
            break
        log(f"load average {load}, {cores} cores busy: waiting (at most "
            f"{(deadline - time.time()) / 60:.0f} more minutes)")
        time.sleep(20)
    return {"waited_seconds": round(time.time() - t0), "loadavg": load,
            "busy_cores_over_10_s_before": cores}


def run_one(label: str, tree: Path, args: Any, rnd: int) -> dict[str, Any]:
    quiet = wait_for_quiet(args.max_load, args.busy, args.max_waits)
    with tempfile.TemporaryDirectory(prefix="signerd-bench-authority-run-") as tmp:
        out = Path(tmp) / "out.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--measure", str(tree),
               "--json", str(out), *child_args(args)]
        log(f"== round {rnd}: {label} ({tree if label == 'before' else 'this checkout'})")
        p, m = run_measured(cmd, cwd=str(REPO))
        meta = {"label": label, "round": rnd, "seconds": m["seconds"], "exit": p.returncode,
                "before_start": quiet, "loadavg_end": loadavg(),
                "cpu_cores_used_by_this_run": m["cores"],
                "cpu_cores_used_by_other_work": m["other_cores"]}
        return child_result(p, out, meta, f"exit {p.returncode}")


def child_args(args: Any) -> list[str]:
    return ["--transfers", str(args.transfers), "--warmup", str(args.warmup),
            "--sign-transfers", str(args.sign_transfers),
            "--decide-transfers", str(args.decide_transfers),
            "--profile-transfers", str(args.profile_transfers)]


def extract_tree(rev: str, dest: Path) -> None:
    """The files of commit ``rev`` (git archive), without touching the repository's worktrees."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def mean(xs: list[Any]) -> float:
    xs = [x for x in xs if x is not None]
    return round(statistics.fmean(xs), 3) if xs else float("nan")


def digest_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per side: each run's headline numbers, and latency percentiles over all its samples."""
    out: dict[str, Any] = {}
    for side in ("before", "after"):
        mine = [r for r in runs if r["_run"]["label"] == side and "error" not in r]
        if not mine:
            continue
        pooled = [s / 1000 for r in mine for s in r["latency"]["samples_ms"]]

        def each(f: Callable[[dict[str, Any]], Any]) -> list[Any]:
            return [f(r) for r in mine]

        ip = lambda r: r["in_process"]  # noqa: E731
        out[side] = {
            "runs": len(mine),
            "latency_pooled_ms": percentiles(pooled),
            "latency_p50_ms": each(lambda r: r["latency"]["quorum_making_rpc_ms"]["p50"]),
            "latency_p90_ms": each(lambda r: r["latency"]["quorum_making_rpc_ms"]["p90"]),
            "latency_p99_ms": each(lambda r: r["latency"]["quorum_making_rpc_ms"]["p99"]),
            "latency_max_ms": each(lambda r: r["latency"]["quorum_making_rpc_ms"]["max"]),
            "daemon_cpu_ms_in_quorum_making_rpc": each(
                lambda r: r["latency"]["daemon_cpu_ms_in_quorum_making_rpc"]["mean"]),
            "daemon_sign_step_mean_ms": each(
                lambda r: r["latency"]["daemon_sign_step_mean_ms (signerd_quorum_to_signed_"
                                       "seconds)"]),
            "daemon_cpu_ms_per_transfer_whole_flow": each(
                lambda r: r["latency"]["whole_flow"]["daemon_cpu_ms_per_transfer"]),
            "sign_step_cpu_ms_psbt": each(
                lambda r: ip(r)["sign_step_psbt_1_input"]["process_cpu_ms_per_transfer"]),
            "sign_step_cpu_ms_eth": each(
                lambda r: ip(r)["sign_step_eth_1_digest"]["process_cpu_ms_per_transfer"]),
            "hsm_sign_cpu_ms": each(lambda r: ip(r)["hsm_sign_process_cpu_ms"]),
            "sign_step_wall_p50_ms_psbt": each(
                lambda r: ip(r)["sign_step_psbt_1_input"]["wall_ms"]["p50"]),
            "decide_wall_p50_ms": each(lambda r: ip(r)["decide_quorum_making_psbt"]["wall_ms"]
                                       ["p50"]),
            "decide_wall_p99_ms": each(lambda r: ip(r)["decide_quorum_making_psbt"]["wall_ms"]
                                       ["p99"]),
            "decide_cpu_ms": each(lambda r: ip(r)["decide_quorum_making_psbt"]
                                  ["process_cpu_ms_per_call"]),
            "incidents": each(lambda r: len(r["latency"]["incidents"])),
            "not_signed": each(lambda r: r["latency"]["quorum_making_rpc_not_signed"]),
            "samples_over_20_ms": each(lambda r: r["latency"]["samples_over_20_ms"]),
            "load_at_start": each(lambda r: r["_run"]["before_start"]["loadavg"][0]),
            "other_work_cores": each(lambda r: r["_run"]["cpu_cores_used_by_other_work"]),
        }
    return out


def row(*cells: Any) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def table(dig: dict[str, Any], n_lat: int, n_sign: int) -> str:
    b, a = dig.get("before"), dig.get("after")
    if not b or not a:
        return "(a side has no successful run)"

    def runs(xs: list[Any]) -> str:
        return " / ".join(fmt(x) if not isinstance(x, float) else f"{x:.3f}".rstrip("0")
                          .rstrip(".") for x in xs)

    def ratio(key: str) -> str:
        ma, mb = mean(a[key]), mean(b[key])
        return f"{ma / mb:.2f}" if mb and ma == ma and mb == mb else "-"

    L = [row("measure (per run; runs alternated before, after, ...)", "before", "after",
             "after / before (means)"),
         row("---", "---:", "---:", "---:")]
    for p in ("p50", "p90", "p99", "max"):
        L.append(row(f"quorum-making SubmitApproval -> signed, {p} ms ({n_lat} one-input "
                     "P2WPKH per run, mTLS)", runs(b[f"latency_{p}_ms"]),
                     runs(a[f"latency_{p}_ms"]), ratio(f"latency_{p}_ms")))
    pb, pa = b["latency_pooled_ms"], a["latency_pooled_ms"]
    L.append(row(f"  the same, all runs pooled: p50 / p99 / max ms (n = {pb['n']} / {pa['n']})",
                 f"{pb['p50']} / {pb['p99']} / {pb['max']}",
                 f"{pa['p50']} / {pa['p99']} / {pa['max']}", ""))
    rows = [
        ("  quorum-making RPCs over 20 ms", "samples_over_20_ms"),
        ("  quorum-making RPCs answered APPROVED without the signature (the 10 s bound)",
         "not_signed"),
        (f"  daemon hangs (an RPC unanswered after {RPC_DEADLINE:.0f} s: daemon restarted)",
         "incidents"),
        ("daemon CPU inside that RPC, ms (all threads, schedstat)",
         "daemon_cpu_ms_in_quorum_making_rpc"),
        ("daemon's own quorum -> signed mean, ms (signerd_quorum_to_signed_seconds)",
         "daemon_sign_step_mean_ms"),
        ("daemon CPU per transfer, whole flow (5 RPCs), ms",
         "daemon_cpu_ms_per_transfer_whole_flow"),
        (f"**sign step CPU per transfer, one-input P2WPKH PSBT, ms** ({n_sign} per run, one at "
         "a time, process CPU incl. SoftHSM)", "sign_step_cpu_ms_psbt"),
        (f"**sign step CPU per transfer, one-digest EIP-1559, ms** ({n_sign} per run)",
         "sign_step_cpu_ms_eth"),
        ("  of which App.hsm_sign per signature, ms", "hsm_sign_cpu_ms"),
        ("sign step wall per PSBT transfer, p50 ms", "sign_step_wall_p50_ms_psbt"),
        ("quorum-making decide in process (incl. sign step), p50 ms", "decide_wall_p50_ms"),
        ("quorum-making decide in process, p99 ms", "decide_wall_p99_ms"),
        ("quorum-making decide in process, process CPU ms per call", "decide_cpu_ms"),
        ("load average (1 min) at the run's start", "load_at_start"),
        ("cores used by other processes during the run", "other_work_cores"),
    ]
    for label, key in rows:
        L.append(row(label, runs(b[key]), runs(a[key]),
                     ratio(key) if not key.startswith(("load", "other", "samples", "not_",
                                                       "incidents")) else ""))
    own_b = [c - h for c, h in zip(b["sign_step_cpu_ms_psbt"], b["hsm_sign_cpu_ms"])]
    own_a = [c - h for c, h in zip(a["sign_step_cpu_ms_psbt"], a["hsm_sign_cpu_ms"])]
    L.append(row("  sign step CPU less App.hsm_sign (signerd's own), PSBT, ms",
                 runs([round(x, 3) for x in own_b]), runs([round(x, 3) for x in own_a]),
                 f"{mean(own_a) / mean(own_b):.2f}"))
    own_b = [c - h for c, h in zip(b["sign_step_cpu_ms_eth"], b["hsm_sign_cpu_ms"])]
    own_a = [c - h for c, h in zip(a["sign_step_cpu_ms_eth"], a["hsm_sign_cpu_ms"])]
    L.append(row("  sign step CPU less App.hsm_sign (signerd's own), ETH, ms",
                 runs([round(x, 3) for x in own_b]), runs([round(x, 3) for x in own_a]),
                 f"{mean(own_a) / mean(own_b):.2f}"))
    return "\n".join(L)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", default=BEFORE, help=f"commit of 'before' (default {BEFORE})")
    ap.add_argument("--before-tree", help="a checkout of 'before' to use instead of git archive")
    ap.add_argument("--after-tree", help="a checkout of 'after' (default: this one)")
    ap.add_argument("--rounds", type=int, default=3, help="before/after pairs (default 3)")
    ap.add_argument("--only", choices=("before", "after"), help="one side only")
    ap.add_argument("--transfers", type=int, default=1000, help="latency samples per run")
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--sign-transfers", type=int, default=1000,
                    help="transfers per kind for the sign step's CPU, per run")
    ap.add_argument("--decide-transfers", type=int, default=500)
    ap.add_argument("--profile-transfers", type=int, default=300)
    ap.add_argument("--quick", action="store_true", help="a smoke run (small counts)")
    ap.add_argument("--max-load", type=float, default=1.5)
    ap.add_argument("--max-waits", type=int, default=10,
                    help="minutes to wait at most for a quiet machine before each run")
    ap.add_argument("--busy", type=float, default=0.3,
                    help="a run during which other processes used more cores than this is "
                         "measured again (kept in the JSON as discarded)")
    ap.add_argument("--retries", type=int, default=2, help="at most this many times per run")
    ap.add_argument("--json", help="where to write the results")
    ap.add_argument("--measure", help=argparse.SUPPRESS)  # child: one run at this tree
    args = ap.parse_args()
    if args.quick:
        args.transfers, args.warmup, args.sign_transfers = 100, 10, 100
        args.decide_transfers, args.profile_transfers = 60, 40
    if args.measure:
        write_json(args.json, measure(Path(args.measure).resolve(), args))
        return

    started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    after_tree = Path(args.after_tree).resolve() if args.after_tree else REPO
    with tempfile.TemporaryDirectory(prefix="signerd-bench-before-") as tmp:
        if args.before_tree:
            before_tree = Path(args.before_tree).resolve()
            how = "given checkout"
        else:
            before_tree = Path(tmp) / "tree"
            extract_tree(args.before, before_tree)
            how = "git archive"
        trees = {"before": before_tree, "after": after_tree}
        info = {
            "before": {"commit": git("rev-parse", "--short", args.before), "how": how},
            "after": {"commit": git("rev-parse", "--short", "HEAD"),
                      "local_changes_in_signerd": bool(git("status", "--porcelain", "--",
                                                            "signerd"))
                      if after_tree == REPO else None,
                      "how": "this checkout" if after_tree == REPO else "given checkout"}}
        sides = [args.only] if args.only else ["before", "after"]
        runs = []
        discarded = []
        for rnd in range(1, args.rounds + 1):
            for side in sides:
                for attempt in range(args.retries + 1):
                    r = run_one(side, trees[side], args, rnd)
                    busy = r["_run"]["cpu_cores_used_by_other_work"]
                    if busy <= args.busy or attempt == args.retries or "error" in r:
                        break
                    log(f"other processes used {busy} cores during the run (> {args.busy}): "
                        "measuring it again")
                    r["_run"]["discarded"] = f"other work used {busy} cores"
                    discarded.append(r)
                runs.append(r)
    dig = digest_runs(runs)
    tab = table(dig, args.transfers, args.sign_transfers)
    results = {
        "started_utc": started,
        "command": "bench/authority.py " + " ".join(sys.argv[1:]),
        "machine": machine(), "commits": info, "settings": {
            k: getattr(args, k) for k in ("rounds", "transfers", "warmup", "sign_transfers",
                                          "decide_transfers", "profile_transfers", "max_load")},
        "summary": dig, "table": tab, "runs": runs,
        "discarded_runs (measured again: too much other work)": discarded}
    path = args.json or str(HERE / "results" / f"authority-{started}.json")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_json(path, results)
    print(tab)
    log(f"results: {path}")


if __name__ == "__main__":
    main()
