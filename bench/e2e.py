"""Parts 1b and 2: signed transfers per second through the full gRPC path, the latency from the
last approval to the signed result, and a profile of the approve-to-sign RPC.

A real daemon (``signerd run``) on a state folder from ``signerd init`` (SQLite, its own SoftHSM
token, mTLS), per-principal rate limit off. One client = one thread doing the whole flow as the
platform and two operators would: SubmitTransfer (platform), then for inv1 and cust1
GetStatement + SubmitApproval with the operator's Ed25519 key (the demo policy two-key.toml: one
investigator and one custody officer); the quorum-making approval returns the signed transfer.
Clients run in this process, on the same cores as the daemon; the CPU each side used is reported.

Latency: one-input Bitcoin PSBTs (P2WPKH), one at a time: the time of the quorum-making
SubmitApproval RPC, from sending it to holding the signed PSBT and raw transaction.

Profile: after the daemon stops, signerd's App and gRPC server run in this process on the same
state folder; cProfile records the server's handler threads while one client makes transfers.

Run alone: .venv/bin/python bench/e2e.py [--quick] [--json OUT]
"""
from __future__ import annotations

import base64
import cProfile
import sys
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (CpuMeter, Daemon, Operator, as_stats, bench_state, build_psbt,  # noqa: E402
                    eth_fields, log, operator_keys, part_args, percentiles, perf_report,
                    perf_start, proc_rss_mib, profile_summary, profile_top, rate, unit_cost,
                    workdir, write_json)


class Flow:
    """The platform and two operators of one daemon, shared by all client threads."""

    def __init__(self, d: Daemon, keys: dict[str, Any], eth_wallet: str, nonce0: int = 0):
        from signerd.v1 import signerd_pb2 as pb

        self.pb = pb
        self.d = d
        self.custody = d.custody()
        self.inv = Operator(d, "inv1", keys["inv1"])
        self.cust = Operator(d, "cust1", keys["cust1"])
        self.wallet = eth_wallet
        self._nonce = nonce0
        self._lock = threading.Lock()

    def next_nonce(self) -> int:
        with self._lock:
            n = self._nonce
            self._nonce += 1
            return n

    def eth_transfer(self) -> tuple[bool, dict[str, float]]:
        """One Ethereum transfer from submission to signed result; (signed?, phase seconds)."""
        import json

        pb = self.pb
        t0 = time.perf_counter()
        t = self.custody.SubmitTransfer(pb.SubmitTransferRequest(
            wallet_id=self.wallet,
            ethereum=pb.EthereumTransaction(json=json.dumps(eth_fields(self.next_nonce())))))
        t1 = time.perf_counter()
        self.inv.approve(t.id)
        t2 = time.perf_counter()
        st = self.cust.statement(t.id)
        t3 = time.perf_counter()
        done = self.cust.submit(t.id, st)
        t4 = time.perf_counter()
        ok = done.state == pb.SIGNED and bool(done.raw_tx)
        return ok, {"submit": t1 - t0, "first_approval": t2 - t1, "statement": t3 - t2,
                    "last_approval": t4 - t3, "total": t4 - t0}


def throughput(flow: Flow, clients: int, seconds: float, perf_out: Path | None = None
               ) -> dict[str, Any]:
    stop = threading.Event()
    lock = threading.Lock()
    phases: dict[str, list[float]] = {}
    counts = {"signed": 0, "not_signed": 0, "errors": 0}
    err_text: list[str] = []

    def client() -> None:
        while not stop.is_set():
            try:
                ok, ph = flow.eth_transfer()
            except Exception as e:  # an RPC error is counted, not fatal
                with lock:
                    counts["errors"] += 1
                    if len(err_text) < 3:
                        err_text.append(repr(e)[:300])
                continue
            with lock:
                counts["signed" if ok else "not_signed"] += 1
                for k, v in ph.items():
                    phases.setdefault(k, []).append(v)

    # warm-up: one transfer per client, not counted
    for _ in range(min(clients, 4)):
        flow.eth_transfer()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    with CpuMeter(flow.d.pid) as cpu:
        for t in threads:
            t.start()
        perf = perf_start(flow.d.pid, seconds - 1, perf_out) if perf_out else None
        stop.wait(seconds)
        stop.set()
        for t in threads:
            t.join()
    n = counts["signed"]
    native = perf_report(perf, perf_out) if perf_out else None
    return {
        "clients": clients, "seconds": round(cpu.wall, 2), **counts,
        "transfers_per_second": rate(n, cpu.wall),
        "signatures_per_second": rate(n, cpu.wall),
        "daemon_cpu_cores": round(cpu.other_cpu / cpu.wall, 2),
        "client_cpu_cores": round(cpu.self_cpu / cpu.wall, 2),
        "daemon_cpu_ms_per_transfer": round(cpu.other_cpu / max(n, 1) * 1000, 2),
        "client_cpu_ms_per_transfer": round(cpu.self_cpu / max(n, 1) * 1000, 2),
        "phase_ms": {k: percentiles(v) for k, v in phases.items()},
        "error_samples": err_text,
        **({"daemon_native_profile": native} if native else {}),
    }


def latency(d: Daemon, keys: dict[str, Any], btc_wallet: Any, count: int) -> dict[str, Any]:
    from signerd.core.bitcoin.signer import WalletSpec
    from signerd.core.model import BitcoinNetwork, ScriptType
    from signerd.v1 import signerd_pb2 as pb

    pub = btc_wallet.keys[0].public_key
    spec = WalletSpec(ScriptType.P2WPKH, BitcoinNetwork.REGTEST, 1, (pub,), (pub,))
    payloads = [base64.b64encode(build_psbt(spec, 1, salt=100 + i).serialize())
                for i in range(count)]
    custody = d.custody()
    inv = Operator(d, "inv1", keys["inv1"])
    cust = Operator(d, "cust1", keys["cust1"])
    before = d.histogram("signerd_quorum_to_signed_seconds")
    samples, bad = [], 0
    final = False
    for p in payloads:
        t = custody.SubmitTransfer(pb.SubmitTransferRequest(wallet_id=btc_wallet.id, psbt=p))
        inv.approve(t.id)
        st = cust.statement(t.id)
        t0 = time.perf_counter()
        done = cust.submit(t.id, st)
        samples.append(time.perf_counter() - t0)
        final = bool(done.raw_tx) and bool(done.psbt)
        if done.state != pb.SIGNED or not final:
            bad += 1
    after = d.histogram("signerd_quorum_to_signed_seconds")
    n = after["count"] - before["count"]
    return {"transfers": count, "not_signed": bad, "last_approval_rpc_ms": percentiles(samples),
            "server_sign_step_mean_ms": round((after["sum"] - before["sum"]) / n * 1000, 3)
            if n else None}


def approval_crypto_cost(state: Path, seconds: float) -> dict[str, Any]:
    """Per approval: Ed25519 verification of the statement signature, as decide() does it."""
    from signerd.core import approval as A

    keys = operator_keys(state)
    pem = (state / "operators" / "inv1.pub").read_bytes()
    statement = b"signerd-approval-statement-v1\n" + b"{" + b"x" * 600 + b"}"
    sig = A.sign_statement(keys["inv1"], statement)
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        A.verify_statement(pem, statement, sig, operator_id="inv1")
        n += 1
    per = (time.perf_counter() - t0) / n
    return {"verify_statement_us": round(per * 1e6, 1),
            "two_approvals_cap_per_core": round(1 / (2 * per), 0)}


def hotspots(app: Any, cfg: Path, transfer_id: str) -> dict[str, Any]:
    """Unit costs of the functions the profile puts on the hot path, measured on their own in
    this process with the daemon's state (current code, nothing patched). With the calls per
    transfer counted by the profile they say what each repeated computation costs."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from signerd.core import approval as A
    from signerd.adapters import pki
    from signerd.core import policy as P
    from signerd.core.ethereum.eip1559 import Eip1559Tx
    from signerd.adapters.store import row_to_event

    svc = app.transfers
    with app.store.read() as tx:
        authority = app.ledger.state(tx)
    doc = authority.texts[authority.templates["two-key"].sha256]
    pem = (cfg.parent / "pki" / "clients" / "inv1.pem").read_bytes()
    der = x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)
    tx = Eip1559Tx.from_fields(eth_fields(1))
    op_pem = (cfg.parent / "operators" / "inv1.pub").read_bytes()
    keys = operator_keys(cfg.parent)
    from signerd.core.model import Decision

    statement = svc.statement(transfer_id, Decision.APPROVE)[0]
    sig = A.sign_statement(keys["inv1"], statement)
    out: dict[str, float] = {}
    out["policy.parse_policy(two-key.toml)"] = unit_cost(lambda: P.parse_policy(doc))
    out["Eip1559Tx.signing_hash (RLP + keccak)"] = unit_cost(tx.signing_hash)
    out["client cert PEM -> principal (x509 load + DER + principal_from_cert_der)"] = unit_cost(
        lambda: pki.principal_from_cert_der(
            x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)))
    out["pki.principal_from_cert_der alone"] = unit_cost(lambda: pki.principal_from_cert_der(der))
    from signerd.services.admin import AdminService

    admin = AdminService(app)
    out["AdminService.operator_exists (store read)"] = unit_cost(
        lambda: admin.operator_exists("inv1"))

    def operators() -> None:
        with app.store.read() as t:
            svc._operators(t)

    out["TransferService._operators (all operators, per quorum check)"] = unit_cost(operators)

    def quorum() -> None:
        with app.store.read() as t:
            svc._quorum(t, t.get_transfer(transfer_id))

    out["TransferService._quorum"] = unit_cost(quorum)

    def view() -> None:
        with app.store.read() as t:
            svc._view(t, t.get_transfer(transfer_id))

    out["TransferService._view (one row of a list page)"] = unit_cost(view)

    def last_event() -> None:
        with app.store.read() as t:
            seq, _h = t.audit_head()
            row_to_event(t.one("SELECT * FROM audit_events WHERE seq = ?", (seq,)))

    out["append_audit's read of the previous event (SELECT * + row_to_event)"] = unit_cost(
        last_event)

    def head_only() -> None:
        with app.store.read() as t:
            t.one("SELECT seq, hash FROM audit_head WHERE id = 1")

    out["reading the audit head row alone"] = unit_cost(head_only)
    out["approval.verify_statement (PEM load + Ed25519 verify)"] = unit_cost(
        lambda: A.verify_statement(op_pem, statement, sig, operator_id="inv1"))
    view0 = app.transfers.get(transfer_id)
    ctx = svc.context(view0.transfer)
    out["approval.build_statement"] = unit_cost(
        lambda: A.build_statement(ctx, view0.movement, Decision.APPROVE))
    return out


class ProfilingExecutor(futures.ThreadPoolExecutor):
    """The gRPC server's pool, recording every RPC that runs while ``on`` in a profile of its
    worker thread under the current ``label`` (profiles are merged per label afterwards)."""

    profiles: dict[tuple[str, int], cProfile.Profile] = {}
    label = ""
    on = False
    timer: Any = None  # None: wall time (cProfile's default)

    @classmethod
    def merged(cls, label: str) -> Any:
        from common import as_stats

        return as_stats([p for (lb, _t), p in cls.profiles.items() if lb == label])

    @classmethod
    def call(cls, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, recorded while ``on`` in this thread's profile under the
        current label."""
        if not cls.on:
            return fn(*args, **kwargs)
        key = (cls.label, threading.get_ident())
        prof = cls.profiles.get(key)
        if prof is None:
            prof = cls.profiles[key] = (cProfile.Profile(cls.timer) if cls.timer
                                        else cProfile.Profile())
        prof.enable()
        try:
            return fn(*args, **kwargs)
        finally:
            prof.disable()

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        return super().submit(ProfilingExecutor.call, fn, *args, **kwargs)


def profile_sign_worker(app: Any) -> None:
    """Record the sign step's worker thread (where transfers are signed since the sign step
    got its own thread) in the same per-label profiles as the RPC handler threads."""
    step = app.transfers.signer
    run = step._pipeline
    step._pipeline = lambda: ProfilingExecutor.call(run)


def profile_rpcs(cfg: Path, keys: dict[str, Any], eth_wallet: str, nonce0: int,
                 count: int) -> dict[str, Any]:
    """cProfile of the daemon's handler threads (in this process) for ``count`` transfers made
    one at a time: the quorum-making SubmitApproval alone, and every RPC of the flow."""
    import logging
    import types

    from signerd.adapters import config as C
    from signerd.api import server as S
    from signerd.app import App

    logging.getLogger("signerd").setLevel(logging.WARNING)
    app = App(C.load(cfg))
    app.start()
    real = S.futures
    S.futures = types.SimpleNamespace(ThreadPoolExecutor=ProfilingExecutor)  # type: ignore
    try:
        server, _health, port = S.build_server(app)
    finally:
        S.futures = real
    server.start()
    profile_sign_worker(app)
    d = Daemon(cfg)
    d.port = port
    flow = Flow(d, keys, eth_wallet, nonce0)
    pb = flow.pb
    import json

    for _ in range(5):
        flow.eth_transfer()
    # no profiler: the server's CPU per transfer (this process less the client's main thread)
    c0, m0, w0 = time.process_time(), time.thread_time(), time.perf_counter()
    for _ in range(count):
        flow.eth_transfer()
    server_cpu = time.process_time() - c0 - (time.thread_time() - m0)
    plain_wall = time.perf_counter() - w0

    # the floor of one RPC: the same server CPU measure for calls that do (almost) nothing
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    health = health_pb2_grpc.HealthStub(d.channel("platform"))
    floor: dict[str, float] = {}
    for label, call in (
            ("grpc.health.v1.Health/Check (TLS + gRPC, no signerd code)",
             lambda: health.Check(health_pb2.HealthCheckRequest())),
            ("Custody/GetWallet (+ Gate: identify, authorize, log; one store read)",
             lambda: flow.custody.GetWallet(pb.GetWalletRequest(wallet_id=eth_wallet)))):
        for _ in range(20):
            call()
        c0, m0 = time.process_time(), time.thread_time()
        for _ in range(200):
            call()
        floor[label] = round((time.process_time() - c0 - (time.thread_time() - m0)) / 200
                             * 1000, 3)
    t_last = 0.0
    t_whole = 0.0
    for _ in range(count):
        t = flow.custody.SubmitTransfer(pb.SubmitTransferRequest(
            wallet_id=eth_wallet,
            ethereum=pb.EthereumTransaction(json=json.dumps(eth_fields(flow.next_nonce())))))
        flow.inv.approve(t.id)
        st = flow.cust.statement(t.id)
        ProfilingExecutor.label, ProfilingExecutor.on = "last", True
        t0 = time.perf_counter()
        done = flow.cust.submit(t.id, st)
        t_last += time.perf_counter() - t0
        ProfilingExecutor.on = False
        assert done.state == pb.SIGNED
    ProfilingExecutor.timer = time.thread_time
    ProfilingExecutor.label, ProfilingExecutor.on = "whole", True
    t0 = time.perf_counter()
    for _ in range(count):
        flow.eth_transfer()
    t_whole = time.perf_counter() - t0
    ProfilingExecutor.on = False
    last = ProfilingExecutor.merged("last")
    whole = ProfilingExecutor.merged("whole")
    server.stop(1).wait()
    hot = hotspots(app, cfg, t.id)
    app.stop()
    d.channels.clear()
    whole_py_cpu = sum(v[2] for v in whole.stats.values())  # type: ignore[attr-defined]
    funcs = {
        "Gate handler (whole RPC)": "signerd/api/server.py:handler",
        "Gate.identify (client cert -> principal)": "signerd/api/server.py:identify",
        "TransferService.decide": "signerd/services/transfers.py:decide",
        "  approval.verify_statement (Ed25519)": "signerd/core/approval.py:verify_statement",
        "  approval.build_statement": "signerd/core/approval.py:build_statement",
        "  TransferService.sign (waiting for the sign step)": "signerd/services/transfers.py:sign",
        "sign step worker (SignStep._pipeline)": "signerd/services/sign_step.py:_pipeline",
        "  SignStep._load (read, quorum, decode)": "signerd/services/sign_step.py:_load",
        "  SignStep._commit (write)": "signerd/services/sign_step.py:_commit",
        "  chain adapter assemble": "signerd/core/chains.py:assemble",
        "    Keystore.sign_digest": "signerd/adapters/hsm.py:sign_digest",
        "    policy.parse_policy": "signerd/core/policy.py:parse_policy",
        "    Eip1559Tx.signing_hash": "signerd/core/ethereum/eip1559.py:signing_hash",
        "  TransferService.get (response view)": "signerd/services/transfers.py:get",
        "store.transaction (incl. commit)": "signerd/adapters/store/sqlite.py:transaction",
        "Tx.append_audit": "signerd/adapters/store/__init__.py:append_audit",
        "TransferService._quorum": "signerd/services/transfers.py:_quorum",
        "api.convert.transfer_pb": "signerd/api/convert.py:transfer_pb",
        "TransferService.submit": "signerd/services/transfers.py:submit",
        "TransferService.statement_package (GetStatement)":
            "signerd/services/transfers.py:statement_package",
        "App.refresh_gauges": "signerd/app.py:refresh_gauges",
    }
    more_funcs = {
        "logging (Logger._log)": "logging/__init__.py:_log",
        "grpc server poll loop (_serve)": "grpc/_server.py:_serve",
        "grpc _unary_response_in_pool": "grpc/_server.py:_unary_response_in_pool",
        "policy.evaluate (quorum)": "signerd/core/policy.py:evaluate",
        "TransferService._operators": "signerd/services/transfers.py:_operators",
        "TransferService._view": "signerd/services/transfers.py:_view",
        "AdminService.operator_exists": "signerd/services/admin.py:operator_exists",
        "pki.principal_from_cert_der": "signerd/adapters/pki.py:principal_from_cert_der",
        "x509 load_pem_x509_certificate": "~:<built-in method _rust.x509.load_pem_x509_certificate>",
        "store.row_to_event": "signerd/adapters/store/__init__.py:row_to_event",
        "audit.new_event": "signerd/core/audit.py:new_event",
        "chains.EthereumAdapter.decode": "signerd/core/chains.py:decode",
    }
    return {
        "transfers": count,
        "hotspot_unit_costs_us": hot,
        "calls_per_transfer": calls_per_transfer(whole, count),
        "last_approval": {
            "wall_ms_per_rpc": round(t_last / count * 1000, 3),
            "cumulative_ms_per_rpc": {k: round(v / count * 1000, 3) for k, v in
                                      profile_summary(last, funcs).items()},
            "top_tottime": profile_top(last, 20, "tottime"),
            "top_cumulative": profile_top(last, 30, "cumulative"),
        },
        "unprofiled": {
            "wall_ms_per_transfer": round(plain_wall / count * 1000, 3),
            "server_cpu_ms_per_transfer": round(server_cpu / count * 1000, 3),
            "server_cpu_ms_per_rpc_floor": floor,
            "note": "in-process server, one client in the main thread; server CPU = process "
                    "CPU less the main thread's"},
        "whole_flow_cpu": {
            "note": "CPU time (thread_time) of the RPC handlers only, under cProfile (its "
                    "overhead inflates call-heavy code); gRPC core, TLS and the poll thread "
                    "are outside",
            "wall_ms_per_transfer": round(t_whole / count * 1000, 3),
            "handler_cpu_ms_per_transfer": round(whole_py_cpu / count * 1000, 3),
            "cumulative_cpu_ms_per_transfer": {k: round(v / count * 1000, 3) for k, v in
                                               profile_summary(whole, {**funcs, **more_funcs}
                                                               ).items()},
            "top_tottime": profile_top(whole, 25, "tottime"),
            "top_cumulative": profile_top(whole, 45, "cumulative"),
        },
    }


def calls_per_transfer(stats: Any, count: int) -> dict[str, float]:
    """How often the whole flow calls each hot function, per transfer (from the profile)."""
    names = {"parse_policy": "signerd/core/policy.py",
             "signing_hash": "signerd/core/ethereum/eip1559.py",
             "identify": "signerd/api/server.py",
             "append_audit": "signerd/adapters/store/__init__.py",
             "_operators": "signerd/services/transfers.py",
             "_quorum": "signerd/services/transfers.py",
             "_view": "signerd/services/transfers.py",
             "verify_statement": "signerd/core/approval.py",
             "build_statement": "signerd/core/approval.py",
             "sign_digest": "signerd/adapters/hsm.py",
             "transaction": "signerd/adapters/store/sqlite.py",
             "read": "signerd/adapters/store/sqlite.py",
             "wallet_addresses": "signerd/adapters/store/__init__.py"}
    out: dict[str, float] = {}
    for (fname, _l, fn), (_cc, nc, _tt, _ct, _c) in stats.stats.items():
        if fn in names and fname.endswith(names[fn]):
            out[fn] = round(out.get(fn, 0) + nc / count, 2)
    return out


def main() -> None:
    args = part_args(__doc__ or "")
    seconds = 2.0 if args.quick else 10.0
    n_latency = 100 if args.quick else 1000
    n_profile = 30 if args.quick else 200
    results: dict[str, Any] = {"seconds_per_measurement": seconds}
    from signerd.v1 import signerd_pb2 as pb

    with workdir(args.workdir) as wd:
        cfg, keys = bench_state(wd / "state-e2e")
        d = Daemon(cfg).start()
        try:
            custody = d.custody()
            ew = custody.CreateWallet(pb.CreateWalletRequest(
                chain=pb.ETHEREUM, chain_ids=[1], category=pb.SEIZED, case_ref="BENCH-E2E"))
            bw = custody.CreateWallet(pb.CreateWalletRequest(
                chain=pb.BITCOIN, network="regtest", category=pb.SEIZED,
                case_ref="BENCH-E2E-BTC", script_type=pb.P2WPKH))
            flow = Flow(d, keys, ew.id)
            results["rss_mib_start"] = proc_rss_mib(d.pid)
            tp = {}
            for c in (1, 4, 16):
                tp[c] = throughput(flow, c, seconds, wd / "perf-e2e.data" if c == 4 else None)
                log(f"e2e {c} client(s): {tp[c]['transfers_per_second']:.0f} transfers/s "
                    f"(daemon {tp[c]['daemon_cpu_cores']} cores, "
                    f"client {tp[c]['client_cpu_cores']} cores, errors {tp[c]['errors']})")
            results["throughput"] = tp
            lat = latency(d, keys, bw, n_latency)
            log(f"latency last approval -> signed: {lat['last_approval_rpc_ms']}")
            results["latency"] = lat
            results["rss_mib_end"] = proc_rss_mib(d.pid)
            nonce = flow.next_nonce() + 10
        finally:
            d.stop()
        results["approval_crypto"] = approval_crypto_cost(cfg.parent, 1.0)
        results["profile"] = profile_rpcs(cfg, keys, ew.id, nonce, n_profile)
        log("profile: last approval %.2f ms/RPC" %
            results["profile"]["last_approval"]["wall_ms_per_rpc"])
    write_json(args.json, results)


if __name__ == "__main__":
    main()
