"""Shared pieces of the benchmarks: state folders, the raw PKCS#11 token, a daemon runner,
time-bounded loops, percentiles, CPU and memory readings, and the machine description.

The state folder (``signerd init``), config edits, the daemon runner and the operators' keys
are the tests' own harness, tests/support/daemon.py, taken from this checkout (it imports no
signerd module when imported, so bench/authority.py can still choose the tree signerd comes from).

Nothing here asserts anything about time; the parts measure and report.
"""
from __future__ import annotations

import contextlib
import cProfile
import ctypes
import io
import json
import os
import platform
import pstats
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support import daemon as harness  # noqa: E402  (the tests' harness: ROOT above)
from tests.support.daemon import LISTEN_RE, edit_config  # noqa: E402,F401

SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
SECP256K1_OID = "1.3.132.0.10"
CKF_OS_LOCKING_OK = 0x2
NPROC = os.cpu_count() or 1


# ---------------------------------------------------------------- arguments and output

# ---------------------------------------------------------------- signerd at either layout

LAYERS = ("core", "adapters", "services")  # signerd's layer packages (none at 91a50dd)


def signerd_module(name: str) -> Any:
    """signerd's module ``name`` as the flat layout named it ("approval", "bitcoin.signer",
    "store"): ``signerd.<layer>.<name>`` in the layered tree, else ``signerd.<name>`` (the
    flat tree, e.g. 91a50dd), so one harness measures both.

    Which one is decided by the files of the signerd package imported, not by trying imports:
    an editable install of another checkout (a .venv made by scripts/install.sh) would answer
    an import the imported tree cannot, with that checkout's module."""
    import importlib

    for layer in LAYERS:
        if _in_tree(f"{layer}.{name}"):
            return importlib.import_module(f"signerd.{layer}.{name}")
    return importlib.import_module(f"signerd.{name}")


def _in_tree(dotted: str) -> bool:
    """Whether the signerd package imported has module or package ``signerd.<dotted>``."""
    import signerd

    path = Path(signerd.__file__).resolve().parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def flat_path(path: str) -> str:
    """A source path as the flat layout names it (signerd/core/policy.py -> signerd/policy.py),
    so profile entries match at either layout."""
    return re.sub(r"signerd/(?:%s)/" % "|".join(LAYERS), "signerd/", path)


def part_args(doc: str) -> Any:
    """The command line every part takes: --quick, --json OUT, --workdir DIR."""
    import argparse

    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("--quick", action="store_true", help="shorter measurements (< 2 min in all)")
    ap.add_argument("--json", help="write this part's results here")
    ap.add_argument("--workdir", help="temporary folder (default: a fresh one, removed after)")
    return ap.parse_args()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def write_json(path: str | None, data: dict[str, Any]) -> None:
    text = json.dumps(data, indent=2, sort_keys=False, default=str)
    if path:
        Path(path).write_text(text + "\n")
    else:
        print(text)


@contextlib.contextmanager
def workdir(path: str | None) -> Iterator[Path]:
    if path:
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        yield p
    else:
        with tempfile.TemporaryDirectory(prefix="signerd-bench-") as d:
            yield Path(d)


# ---------------------------------------------------------------- statistics

def percentiles(samples: list[float], scale: float = 1000.0) -> dict[str, float]:
    """p50/p90/p99/max/mean of ``samples`` (seconds), scaled (default: to milliseconds)."""
    if not samples:
        return {"n": 0}
    s = sorted(samples)
    n = len(s)

    def pct(p: float) -> float:
        # nearest-rank percentile
        k = max(0, min(n - 1, int(-(-p * n // 100)) - 1))
        return s[k] * scale

    return {"n": n, "p50": round(pct(50), 3), "p90": round(pct(90), 3), "p99": round(pct(99), 3),
            "max": round(s[-1] * scale, 3), "mean": round(sum(s) / n * scale, 3)}


def timed_loop(fn: Callable[[], Any], seconds: float, *, min_iters: int = 1) -> tuple[int, float]:
    """Call ``fn`` until ``seconds`` have passed (at least ``min_iters`` times); (calls, elapsed)."""
    n = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while n < min_iters or time.perf_counter() < deadline:
        fn()
        n += 1
    return n, time.perf_counter() - t0


def run_threads(workers: list[Callable[[threading.Event], int]], seconds: float
                ) -> tuple[int, float, list[int]]:
    """Start one thread per worker together; each runs until the stop event is set after
    ``seconds`` and returns how many operations it did. Returns (total, elapsed, per worker)."""
    stop = threading.Event()
    start = threading.Barrier(len(workers) + 1)
    counts = [0] * len(workers)
    errors: list[BaseException] = []
    left = [len(workers)]
    left_lock = threading.Lock()
    ends = [0.0] * len(workers)

    def body(i: int, w: Callable[[threading.Event], int]) -> None:
        start.wait()
        try:
            counts[i] = w(stop)
        except BaseException as e:  # reported by the caller
            errors.append(e)
            stop.set()
        ends[i] = time.perf_counter()
        with left_lock:
            left[0] -= 1
            if left[0] == 0:
                stop.set()  # every worker ran out of work before the time was up

    threads = [threading.Thread(target=body, args=(i, w), daemon=True)
               for i, w in enumerate(workers)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    stop.wait(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = max(ends) - t0
    if errors:
        raise errors[0]
    return sum(counts), elapsed, counts


def rate(ops: int, seconds: float) -> float:
    return round(ops / seconds, 1) if seconds > 0 else 0.0


# ---------------------------------------------------------------- CPU and memory

def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def cpu_busy_seconds() -> float:
    """CPU-seconds the whole machine has spent busy (all cores) since boot."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] if len(f) > 7 else 0)) / os.sysconf(
        "SC_CLK_TCK")


def run_measured(cmd: list[str], **kw: Any) -> tuple[subprocess.CompletedProcess[Any],
                                                       dict[str, float]]:
    """``subprocess.run(cmd, **kw)``, measured: its wall seconds, the cores it used (the CPU of
    the child processes it waited for, over the wall time) and the cores other work on the
    machine used meanwhile (/proc/stat's busy time less its own)."""
    busy0, t0 = cpu_busy_seconds(), time.perf_counter()
    before = os.times()
    p = subprocess.run(cmd, **kw)
    wall = time.perf_counter() - t0
    after = os.times()
    ours = (after.children_user + after.children_system
            - before.children_user - before.children_system)
    busy = cpu_busy_seconds() - busy0
    return p, {"seconds": round(wall, 1), "cores": round(ours / wall, 2),
               "other_cores": round(max(0.0, busy - ours) / wall, 2)}


def child_result(p: subprocess.CompletedProcess[Any], out: Path, meta: dict[str, Any],
                 error: str) -> dict[str, Any]:
    """The JSON a benchmark child process wrote to ``out``, with ``meta`` as its "_run"; or
    ``error`` if it failed or wrote nothing."""
    if p.returncode != 0 or not out.exists():
        return {"_run": meta, "error": error}
    data = json.loads(out.read_text())
    data["_run"] = meta
    return data


class CpuMeter:
    """CPU seconds used by this process and (optionally) another one over a measured span."""

    def __init__(self, other_pid: int | None = None):
        self.other = other_pid

    def __enter__(self) -> "CpuMeter":
        self.t0 = time.perf_counter()
        self.self0 = sum(os.times()[:2])
        self.other0 = proc_cpu_seconds(self.other) if self.other else 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        self.self_cpu = sum(os.times()[:2]) - self.self0
        self.other_cpu = (proc_cpu_seconds(self.other) - self.other0) if self.other else 0.0


def machine() -> dict[str, Any]:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    try:
        softhsm = subprocess.run(["softhsm2-util", "--version"], capture_output=True,
                                 text=True, timeout=10).stdout.strip()
    except OSError:
        softhsm = "?"
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--",
                                "signerd"], capture_output=True, text=True,
                               timeout=10).stdout.strip()
    except OSError:
        commit, dirty = "?", ""
    import pkcs11  # noqa: F401  (version below)
    from importlib.metadata import version

    return {
        "nproc": NPROC, "cpu_model": cpu, "mem_total_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(), "python": platform.python_version(),
        "softhsm": softhsm, "python_pkcs11": version("python-pkcs11"),
        "grpcio": version("grpcio"), "coincurve": version("coincurve"),
        "git_commit": commit + ("+local changes in signerd/" if dirty else ""),
        "loadavg": loadavg(),
    }


# ---------------------------------------------------------------- profiles

def as_stats(prof: cProfile.Profile | pstats.Stats | list[cProfile.Profile],
             stream: Any = None) -> pstats.Stats:
    """One pstats.Stats of a profile, or of several (one per thread) merged."""
    if isinstance(prof, pstats.Stats):
        if stream is not None:
            prof.stream = stream  # type: ignore[attr-defined]
        return prof
    profs = prof if isinstance(prof, list) else [prof]
    st = pstats.Stats(profs[0], stream=stream)
    for p in profs[1:]:
        st.add(p)
    return st


def profile_top(prof: Any, n: int = 20, sort: str = "tottime") -> list[str]:
    """The top ``n`` lines of a profile, paths shortened to the package."""
    buf = io.StringIO()
    st = as_stats(prof, buf)
    st.sort_stats(sort).print_stats(n)
    lines = buf.getvalue().splitlines()
    out = []
    started = False
    for line in lines:
        if line.strip().startswith("ncalls"):
            started = True
        if started and line.strip():
            out.append(_short_paths(line.rstrip()))
    return out


def _short_paths(line: str) -> str:
    line = re.sub(r"/\S*/site-packages/", "", line)
    line = re.sub(r"/\S*/lib/python3\.\d+/", "", line)
    return line.replace(str(ROOT) + "/", "")


def profile_summary(prof: Any, names: dict[str, str]) -> dict[str, float]:
    """Cumulative seconds of chosen functions: ``names`` maps a label to 'file:function'
    (file as a path suffix)."""
    st = as_stats(prof)
    out: dict[str, float] = {}
    for label, spec in names.items():
        fsuffix, func = spec.rsplit(":", 1)
        total = 0.0
        for (fname, _line, fn), (_cc, _nc, _tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
            if fn == func and flat_path(fname).endswith(flat_path(fsuffix)):
                total += ct
        out[label] = round(total, 4)
    total_tt = sum(v[2] for v in st.stats.values())  # type: ignore[attr-defined]
    out["_total"] = round(total_tt, 4)
    return out


# ---------------------------------------------------------------- state folders and config

def signerd_init(path: Path, *extra: str) -> Path:
    """A state folder made by ``signerd init`` (own SoftHSM token, SQLite, PKI, operators),
    run from ROOT (the checkout signerd is imported from)."""
    return harness.init_state(path, *extra, cwd=ROOT, timeout=180)


def set_config(cfg: Path, section: str, **values: Any) -> None:
    """Set keys of one [section] of a signerd TOML config (the tests' ``edit_config``)."""
    edit_config(cfg, section, **values)


def bench_limits(cfg: Path) -> None:
    """The per-principal rate limit off (rate_per_second = 0): the benchmarks measure the
    daemon, not the limiter. The default (200/s, burst 400 per principal) would cap the
    five-RPC transfer flow at 100 transfers/s (each operator makes two RPCs per transfer)."""
    set_config(cfg, "limits", rate_per_second=0.0)


def bench_state(path: Path) -> tuple[Path, dict[str, Any]]:
    """A state folder for a benchmark daemon at ``path`` (signerd_init, bench_limits): its
    config file and the demo operators' keys."""
    cfg = signerd_init(path)
    bench_limits(cfg)
    return cfg, operator_keys(cfg.parent)


@dataclass
class TokenInfo:
    module: str
    conf: Path
    label: str
    pin: str


def token_of(cfg: Path) -> TokenInfo:
    """The SoftHSM token of a state folder made by ``signerd init``."""
    doc = tomllib.loads(cfg.read_text())
    h = doc["hsm"]
    base = cfg.parent
    token = h["token"]
    label = token.split("token=", 1)[1].split(";")[0] if token.startswith("pkcs11:") else token
    return TokenInfo(h["module"], base / h["softhsm_conf"],
                     label, (base / h["pin_file"]).read_text().strip())


# ---------------------------------------------------------------- the raw token

class _InitArgs(ctypes.Structure):
    _fields_ = [("CreateMutex", ctypes.c_void_p), ("DestroyMutex", ctypes.c_void_p),
                ("LockMutex", ctypes.c_void_p), ("UnlockMutex", ctypes.c_void_p),
                ("flags", ctypes.c_ulong), ("pReserved", ctypes.c_void_p)]


def init_with_os_locking(module: str) -> int:
    """What signerd's HSM adapter does once per process: python-pkcs11 initialised the module with
    C_Initialize(NULL) (SoftHSM then turns its own locking off); finalize it and initialise
    it again with CKF_OS_LOCKING_OK on the same function list. Returns the CKR of the
    second C_Initialize (0 = OS locking on)."""
    dl = ctypes.CDLL(module)
    dl.C_Finalize(None)
    args = _InitArgs(None, None, None, None, CKF_OS_LOCKING_OK, None)
    return int(dl.C_Initialize(ctypes.byref(args)))


class RawToken:
    """python-pkcs11 on its own: the token, logged in, one session per signing thread."""

    def __init__(self, info: TokenInfo):
        self.info = info
        os.environ["SOFTHSM2_CONF"] = str(info.conf)
        import pkcs11

        self.lib = pkcs11.lib(info.module)
        self.token: Any = None
        self.login: Any = None
        self.sessions: list[Any] = []

    def initialise(self) -> int:
        rv = init_with_os_locking(self.info.module)
        if rv != 0:
            raise RuntimeError(f"the module refused OS locking (CKR 0x{rv:x})")
        return rv

    def attach(self) -> None:
        """Find the token and log in (a login already made by another session is reused)."""
        from pkcs11 import exceptions as px

        self.token = self.lib.get_token(token_label=self.info.label)
        try:
            self.login = self.token.open(rw=True, user_pin=self.info.pin)
        except px.UserAlreadyLoggedIn:
            self.login = self.token.open(rw=True)

    def generate_key(self) -> bytes:
        """A secp256k1 key pair with signerd's own template (token object, private,
        sensitive, not extractable); returns its CKA_ID."""
        from pkcs11 import Attribute, KeyType, Mechanism
        from pkcs11.util.ec import encode_named_curve_parameters

        kid = secrets.token_bytes(16)
        params = self.login.create_domain_parameters(
            KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(SECP256K1_OID)},
            local=True)
        params.generate_keypair(
            mechanism=Mechanism.EC_KEY_PAIR_GEN, store=True,
            public_template={Attribute.TOKEN: True, Attribute.PRIVATE: False,
                             Attribute.VERIFY: True, Attribute.ID: kid,
                             Attribute.LABEL: "bench-raw"},
            private_template={Attribute.TOKEN: True, Attribute.PRIVATE: True,
                              Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
                              Attribute.DERIVE: False, Attribute.SIGN: True,
                              Attribute.DECRYPT: False, Attribute.UNWRAP: False,
                              Attribute.ID: kid, Attribute.LABEL: "bench-raw"})
        return kid

    def signer(self, key_id: bytes) -> Callable[[bytes], bytes]:
        """A new session of its own and the private key found in it; the returned function
        signs a 32-byte digest with CKM_ECDSA (r || s, 64 bytes)."""
        from pkcs11 import Mechanism, ObjectClass

        s = self.token.open(rw=True)
        self.sessions.append(s)
        key = s.get_key(object_class=ObjectClass.PRIVATE_KEY, id=key_id)
        mech = Mechanism.ECDSA

        def sign(digest: bytes) -> bytes:
            return key.sign(digest, mechanism=mech)

        return sign

    def close(self) -> None:
        for s in self.sessions:
            with contextlib.suppress(Exception):
                s.close()
        self.sessions.clear()
        if self.login is not None:
            with contextlib.suppress(Exception):
                self.login.close()
            self.login = None


def raw_rate(tok: RawToken, key_id: bytes, threads: int, seconds: float) -> dict[str, Any]:
    """Raw CKM_ECDSA signatures per second from ``threads`` threads, one session each."""
    signers = [tok.signer(key_id) for _ in range(threads)]
    digests = [secrets.token_bytes(32) for _ in range(256)]

    def worker(sign: Callable[[bytes], bytes]) -> Callable[[threading.Event], int]:
        def run(stop: threading.Event) -> int:
            n = 0
            while not stop.is_set():
                sign(digests[n & 255])
                n += 1
            return n
        return run

    total, elapsed, per = run_threads([worker(s) for s in signers], seconds)
    for s in tok.sessions:
        with contextlib.suppress(Exception):
            s.close()
    tok.sessions.clear()
    return {"threads": threads, "signs": total, "seconds": round(elapsed, 2),
            "per_second": rate(total, elapsed), "per_thread": per}


# ---------------------------------------------------------------- in-process App

def open_app(cfg: Path) -> Any:
    """signerd's App on a state folder, started (HSM open with its concurrency mode, store
    migrated, transfer service ready), logging quiet."""
    import logging

    C = signerd_module("config")
    from signerd.app import App

    logging.getLogger("signerd").setLevel(logging.WARNING)
    app = App(C.load(cfg))
    app.start()
    return app


def operator_keys(state: Path) -> dict[str, Any]:
    """The operators' private keys of a state folder, by operator id (the tests' harness; a
    tree from before signerd.adapters.key_files, such as 91a50dd, loads them with its own
    operator_keys.load_private)."""
    if _in_tree("adapters.key_files"):
        return harness.operator_keys(state)
    load_private = signerd_module("operator_keys").load_private
    return {p.stem: load_private(p) for p in sorted((state / "operators").glob("*.key"))}


GWEI = 10**9
ETH_CHAIN_ID = 1


def eth_fields(nonce: int, **over: Any) -> dict[str, Any]:
    f = {"chainId": ETH_CHAIN_ID, "nonce": nonce, "maxPriorityFeePerGas": 1 * GWEI,
         "maxFeePerGas": 30 * GWEI, "gas": 21000,
         "to": "0x000000000000000000000000000000000000dEaD", "value": 10**15, "data": "0x",
         "accessList": []}
    f.update(over)
    return f


def eth_payload(nonce: int) -> bytes:
    return json.dumps(eth_fields(nonce)).encode()


# ---------------------------------------------------------------- PSBTs

def build_psbt(spec: Any, n_inputs: int, *, salt: int = 0, value: int = 20_000) -> Any:
    """An ``n_inputs``-input sweep of the wallet of ``spec``: each input spends output 0 of a
    funding transaction of its own, carried as both non-witness and witness UTXO (as Bitcoin
    Core writes segwit v0 PSBTs), with a BIP-32 origin for the wallet key; one external output
    and one change output."""
    P, S = signerd_module("bitcoin.psbt"), signerd_module("bitcoin.script")
    T = signerd_module("bitcoin.tx")
    KeyOrigin, Psbt, PsbtInput, PsbtOutput = P.KeyOrigin, P.Psbt, P.PsbtInput, P.PsbtOutput
    p2wpkh_script = S.p2wpkh_script
    OutPoint, Transaction, TxIn, TxOut = T.OutPoint, T.Transaction, T.TxIn, T.TxOut

    inputs, txins = [], []
    for i in range(n_inputs):
        fund = Transaction(2, (TxIn(OutPoint((salt * 10_000_000 + i + 1).to_bytes(32, "big"), 0),
                                    b"\x51"),),
                           (TxOut(value, spec.script_pubkey),), 0)
        txins.append(TxIn(OutPoint(fund.txid(), 0), b"", 0xFFFFFFFD))
        inputs.append(PsbtInput(
            non_witness_utxo=fund, witness_utxo=fund.outputs[0],
            bip32_derivs={k: KeyOrigin(b"\x01\x02\x03\x04", (0x80000054, 0x80000001, 0x80000000,
                                                              0, i))
                          for k in spec.pubkeys}))
    total = value * n_inputs
    fee = 200 + 68 * n_inputs
    external = p2wpkh_script(bytes.fromhex(
        "02" + "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"))
    pay = total // 2
    outs = (TxOut(pay, external), TxOut(total - pay - fee, spec.script_pubkey))
    tx = Transaction(2, tuple(txins), outs, 0)
    return Psbt(tx, tuple(inputs), (PsbtOutput(), PsbtOutput()))


# ---------------------------------------------------------------- a daemon of its own

class Daemon(harness.Daemon):
    """The tests' daemon runner (``signerd run`` as a subprocess, mTLS channels per principal),
    run from ROOT, with client channels that take messages up to 64 MiB."""

    channel_options = (("grpc.max_receive_message_length", 64 << 20),)

    def start(self, timeout: float = 60) -> "Daemon":
        self.cwd = ROOT
        super().start(timeout)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def histogram(self, name: str) -> dict[str, float]:
        """Sum and count of one Prometheus histogram of the daemon."""
        text = self.metrics()
        out = {"sum": 0.0, "count": 0.0}
        for line in text.splitlines():
            if line.startswith(f"{name}_sum"):
                out["sum"] = float(line.split()[-1])
            elif line.startswith(f"{name}_count"):
                out["count"] = float(line.split()[-1])
        return out


class Operator:
    """An operator approving as signerctl does: fetch the statement, sign it, send it."""

    def __init__(self, d: Daemon, op_id: str, key: Any):
        self.id = op_id
        self.key = key
        self.stub = d.approval(op_id)

    def statement(self, transfer_id: str) -> bytes:
        from signerd.v1 import signerd_pb2 as pb

        return self.stub.GetStatement(pb.GetStatementRequest(
            transfer_id=transfer_id, decision=pb.APPROVE)).statement

    def submit(self, transfer_id: str, statement: bytes) -> Any:
        sign_statement, statement_digest = (signerd_module("approval").sign_statement,
                                            signerd_module("approval").statement_digest)
        from signerd.v1 import signerd_pb2 as pb

        return self.stub.SubmitApproval(pb.SubmitApprovalRequest(
            transfer_id=transfer_id, operator_id=self.id, decision=pb.APPROVE,
            signature=sign_statement(self.key, statement),
            statement_sha256=statement_digest(statement)))

    def approve(self, transfer_id: str) -> Any:
        return self.submit(transfer_id, self.statement(transfer_id))


def in_process_approve(app: Any, keys: dict[str, Any], transfer_id: str, op: str) -> Any:
    """An approval through TransferService.decide, signed with the operator's own key."""
    A = signerd_module("approval")
    sign_statement, statement_digest = A.sign_statement, A.statement_digest
    Decision = signerd_module("model").Decision

    statement = app.transfers.statement(transfer_id, Decision.APPROVE)[0]
    return app.transfers.decide(op, transfer_id, op, Decision.APPROVE,
                                sign_statement(keys[op], statement),
                                statement_sha256=statement_digest(statement))


def profiled_worker(app: Any, prof: cProfile.Profile) -> Callable[[], None]:
    """Record the sign step's worker thread (SignStep._pipeline) in ``prof``; returns undo."""
    step = app.transfers.signer
    run = step._pipeline

    def profiled() -> None:
        prof.enable()
        try:
            run()
        finally:
            prof.disable()

    step._pipeline = profiled

    def undo() -> None:
        del step._pipeline
    return undo


def unit_cost(fn: Callable[[], Any], reps: int = 200, rounds: int = 5) -> float:
    """Microseconds per call: the best of ``rounds`` rounds of ``reps`` calls (the minimum
    filters out time lost to other work on a shared machine)."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t0) / reps)
    return round(best * 1e6, 1)


@contextlib.contextmanager
def signing_deferred(app: Any) -> Iterator[None]:
    """Within this block, a quorum-making approval leaves the transfer APPROVED without running
    the sign step (so the sign step can be measured on its own afterwards)."""
    app.transfers.sign = lambda transfer_id, **kw: None  # shadows the method
    try:
        yield
    finally:
        del app.transfers.sign


def fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v >= 100:
            return f"{v:,.0f}{unit}"
        if v >= 10:
            return f"{v:.1f}{unit}"
        return f"{v:.2f}{unit}"
    if isinstance(v, int):
        return f"{v:,}{unit}"
    return f"{v}{unit}"


# ---------------------------------------------------------------- native sampling profile

def perf_start(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """``perf record`` of a process (all threads, 499 Hz) for ``seconds``; None without perf."""
    import shutil

    if shutil.which("perf") is None:
        return None
    try:
        return subprocess.Popen(["perf", "record", "-F", "499", "-p", str(pid), "-o", str(out),
                                 "--", "sleep", str(seconds)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return None


def perf_report(proc: subprocess.Popen[bytes] | None, out: Path, top: int = 12
                ) -> dict[str, Any]:
    """CPU samples by shared object and by symbol, as percentages."""
    if proc is None:
        return {"available": False}
    proc.wait()
    if proc.returncode != 0 or not out.exists():
        return {"available": False, "why": f"perf record exited {proc.returncode}"}

    def report(sort: str) -> list[tuple[float, str]]:
        r = subprocess.run(["perf", "report", "-i", str(out), "--stdio", "--sort", sort],
                           capture_output=True, text=True, timeout=120)
        rows = []
        for line in r.stdout.splitlines():
            m = re.match(r"\s*([\d.]+)%\s+(.*\S)", line)
            if m:
                rows.append((float(m.group(1)), re.sub(r"\s+", " ", m.group(2))))
        return rows[:top]

    samples = 0
    r = subprocess.run(["perf", "report", "-i", str(out), "--stdio", "--sort", "dso"],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r"Samples: (\d+)", r.stdout)
    if m:
        samples = int(m.group(1))
    return {"available": True, "samples": samples,
            "by_shared_object_pct": [[p, n] for p, n in report("dso")],
            "by_symbol_pct": [[p, n] for p, n in report("dso,sym")]}


def transfer_state(row: Any) -> str:
    """A stored transfer's state name, whether the store hands back a row mapping (older
    layouts) or a typed record (TransferRecord)."""
    state = getattr(row, "state", None)  # a record; a row (sqlite3.Row, dict) has none
    if state is None:
        return str(row["state"])
    return str(getattr(state, "value", state))


def col(row: Any, name: str) -> Any:
    """A stored transfer's column, from a row mapping (older layouts) or a typed record."""
    try:
        return row[name]
    except TypeError:  # a record is not subscriptable
        return getattr(row, name)
