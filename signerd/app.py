"""The application object: wires the pure core to the HSM, the store and the metrics.

gRPC servicers and tests call this object; it holds no gRPC types.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from . import wallets as W
from .config import Config
from .errors import HsmUnavailable, InvalidArgument, SignerError
from .hsm import Keystore, KeyInfo
from .metrics import Metrics
from .model import Wallet
from .store import Store, open_store

log = logging.getLogger("signerd.app")


class Notifier:
    """Wakes watchers when a transfer changes (in this process)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._version = 0

    def notify(self) -> None:
        with self._cond:
            self._version += 1
            self._cond.notify_all()

    @property
    def version(self) -> int:
        return self._version

    def wait(self, seen: int, timeout: float) -> int:
        with self._cond:
            if self._version == seen:
                self._cond.wait(timeout)
            return self._version


class App:
    def __init__(self, config: Config, *, keystore: Keystore | None = None,
                 store: Store | None = None):
        self.config = config
        self.metrics = Metrics()
        env = {}
        if config.hsm.softhsm_conf:
            env["SOFTHSM2_CONF"] = str(config.hsm.softhsm_conf)
        token_uri = config.hsm.token if config.hsm.token.startswith("pkcs11:") else None
        token_label = None if token_uri else config.hsm.token
        self.keystore = keystore or Keystore(
            config.hsm.module, token_uri=token_uri, token_label=token_label,
            pin_file=config.hsm.pin_file, concurrency=config.hsm.concurrency,
            pool_size=config.hsm.sessions, env=env,
            fault_delay=float(config.testing.get("hsm_delay_seconds", 0.0)),
            call_timeout=config.hsm.call_timeout,
        )
        self.keystore.on_state_change = lambda up: self.metrics.hsm_up.set(1 if up else 0)
        self.store = store or open_store(config.store_url)
        self.notifier = Notifier()
        self.instance_id = config.instance_id
        self._stop = threading.Event()
        self._sign_pool: ThreadPoolExecutor | None = None
        self._sign_pool_lock = threading.Lock()
        self._health_listeners: list[Callable[[bool], None]] = []
        self._store_up = True
        self.transfers: Any = None  # set by start() once the transfer service exists
        # Called after every monitor iteration (the systemd watchdog ping): a probe stuck inside
        # the PKCS#11 module stops the pings, and systemd restarts the daemon.
        self.on_tick: Callable[[], None] | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Open the HSM (errors are fatal at start), check the store, prepare the audit key."""
        self.keystore.open()
        self.metrics.hsm_up.set(1)
        with self.store.transaction() as tx:
            known = tx.get_meta("instance_id")
            if known is None:
                tx.set_meta("instance_id", self.instance_id)
            elif known != self.instance_id:
                raise InvalidArgument(
                    f"the store belongs to instance {known}, the config says {self.instance_id}")
            audit_key = tx.get_meta("audit_key_id")
        if audit_key is None:
            info = self.keystore.generate_key("signerd-audit")
            with self.store.transaction() as tx:
                if tx.get_meta("audit_key_id") is None:  # a replica starting with us may have won
                    tx.set_meta("audit_key_id", info.key_id)
                    tx.append_audit("signerd", "audit_key.created", info.key_id,
                                    {"public_key": info.public_key.hex()})
        self.metrics.store_up.set(1)
        from .transfers import TransferService

        self.transfers = TransferService(self)
        self.transfers.recover()
        self.refresh_gauges()

    def healthy(self) -> bool:
        return self.keystore.up and self._store_up

    def on_health(self, listener: Callable[[bool], None]) -> None:
        self._health_listeners.append(listener)

    def _publish_health(self) -> None:
        ok = self.healthy()
        for fn in self._health_listeners:
            fn(ok)

    def monitor(self) -> None:
        """Background loop: probe HSM and store, publish health, expire and resume transfers."""
        while not self._stop.wait(self.config.hsm.probe_seconds):
            try:
                self.check_once()
            except Exception:  # the monitor must never die; the failure is logged with trace
                log.exception("health monitor iteration failed")
            if self.on_tick is not None:
                self.on_tick()

    def check_once(self) -> None:
        was_hsm = self.keystore.up
        hsm_up = self.keystore.probe()
        store_up = self.store.ping()
        if not store_up:
            self.metrics.store_errors.labels("ping").inc()
        self._store_up = store_up
        self.metrics.hsm_up.set(1 if hsm_up else 0)
        self.metrics.store_up.set(1 if store_up else 0)
        self._publish_health()
        if hsm_up and store_up and self.transfers is not None:
            if not was_hsm:
                log.warning("hsm back: resuming approved transfers")
            self.transfers.tick()
        if store_up:
            self.refresh_gauges()

    def stop(self) -> None:
        self._stop.set()
        if self.transfers is not None:
            self.transfers.signer.close()
        if self._sign_pool is not None:
            self._sign_pool.shutdown(wait=True)
        self.keystore.close()
        self.store.close()

    def refresh_gauges(self) -> None:
        """Set every chain x state and chain x category series, zeros included, so a scrape
        never sees a series vanish and reappear."""
        from .model import Category, Chain, TransferState

        with self.store.read() as tx:
            wallets = {(r["chain"], r["category"]): r["n"] for r in tx.count_wallets()}
            transfers = {(r["chain"], r["state"]): r["n"] for r in tx.count_transfers()}
            overdue = tx.count_past_expiry(time.time())
        for chain in Chain:
            for cat in Category:
                self.metrics.wallets.labels(chain.value, cat.value).set(
                    wallets.get((chain.value, cat.value), 0))
            for st in TransferState:
                self.metrics.transfers.labels(chain.value, st.value).set(
                    transfers.get((chain.value, st.value), 0))
        self.metrics.pending_expired.set(overdue)

    # ------------------------------------------------------------------ HSM with metrics
    def hsm_sign(self, key_id: str, digest: bytes) -> tuple[int, int]:
        t0 = time.perf_counter()
        try:
            rs = self.keystore.sign_digest(key_id, digest)
        except HsmUnavailable:
            self.metrics.hsm_errors.labels("sign").inc()
            raise
        self.metrics.hsm_sign_seconds.observe(time.perf_counter() - t0)
        return rs

    def hsm_sign_many(self, jobs: list[tuple[str, bytes]]) -> list[tuple[int, int]]:
        """Sign ``(key_id, digest)`` jobs; the signatures in the same order (see
        :meth:`hsm_sign_start`). The first failure is raised."""
        out = []
        for result in self.hsm_sign_start(jobs)():
            if isinstance(result, BaseException):
                raise result
            out.append(result)
        return out

    def hsm_sign_start(self, jobs: list[tuple[str, bytes]], *, background: bool = False
                       ) -> Callable[[], list[tuple[int, int] | SignerError]]:
        """Start signing ``(key_id, digest)`` jobs and return a function that waits for them:
        for each job, in order, its signature or the SignerError that job met (a missing key
        fails its own job only; an HSM that is down fails every job after it went down).

        With OS locking the jobs are spread over the keystore's sessions, one thread each
        (PKCS#11 C_Sign runs without the GIL, so the token signs in parallel and the caller's
        thread may go on with other work until it asks for the results); a single job is signed
        at once in the caller's thread unless ``background``. Without OS locking, every job is
        signed at once, one after another."""
        def one(key_id: str, digest: bytes) -> tuple[int, int] | SignerError:
            try:
                return self.hsm_sign(key_id, digest)
            except SignerError as e:
                return e

        parallel = self.keystore.concurrency == "os-locking"
        workers = min(len(jobs), self.keystore.pool_size) if parallel else 1
        if workers == 0 or (workers == 1 and not (background and parallel)):
            done = [one(k, d) for k, d in jobs]
            return lambda: done
        with self._sign_pool_lock:
            if self._sign_pool is None:
                self._sign_pool = ThreadPoolExecutor(max_workers=self.keystore.pool_size,
                                                     thread_name_prefix="hsm-sign")
            pool = self._sign_pool

        def run(part: list[tuple[str, bytes]]) -> list[tuple[int, int] | SignerError]:
            return [one(k, d) for k, d in part]

        futures = [pool.submit(run, jobs[i::workers]) for i in range(workers)]

        def wait() -> list[tuple[int, int] | SignerError]:
            parts = [f.result() for f in futures]
            out: list[tuple[int, int] | SignerError] = [(0, 0)] * len(jobs)
            for i, results in enumerate(parts):
                out[i::workers] = results
            return out
        return wait

    def hsm_generate(self, label: str) -> KeyInfo:
        try:
            return self.keystore.generate_key(label)
        except HsmUnavailable:
            self.metrics.hsm_errors.labels("generate").inc()
            raise

    # ------------------------------------------------------------------ audit
    def audit_head(self) -> Any:
        from . import audit
        from .v1 import signerd_pb2 as pb

        with self.store.read() as tx:
            seq, head = tx.audit_head()
            key_id = tx.get_meta("audit_key_id")
        if key_id is None:
            raise HsmUnavailable("no audit key yet")
        r, s = self.hsm_sign(key_id, audit.head_digest(self.instance_id, seq, head))
        return pb.AuditHead(seq=seq, hash=head, signature=r.to_bytes(32, "big") + s.to_bytes(32, "big"),
                            audit_public_key=self.keystore.public_key(key_id),
                            instance_id=self.instance_id)


    def audit_export(self) -> bytes:
        from . import audit

        events: list[Any] = []
        with self.store.read() as tx:
            seq, head = tx.audit_head()
            key_id = tx.get_meta("audit_key_id")
            after = 0
            while after < seq:
                batch = tx.audit_events(after, 5000)
                if not batch:
                    break
                events.extend(e for e in batch if e.seq <= seq)
                after = batch[-1].seq
        if key_id is None:
            raise HsmUnavailable("no audit key yet")
        r, s = self.hsm_sign(key_id, audit.head_digest(self.instance_id, seq, head))
        return audit.export_document(events, r.to_bytes(32, "big") + s.to_bytes(32, "big"),
                                     self.keystore.public_key(key_id), self.instance_id)

    # ------------------------------------------------------------------ wallets
    def default_policy(self) -> str:
        p = Path(self.config.policies_dir) / self.config.default_policy
        try:
            return p.read_text(encoding="utf-8")
        except OSError:
            return ""

    def create_wallet(self, actor: str, req: W.WalletRequest) -> Wallet:
        checked = W.check_request(req)
        policy_doc = req.policy_toml or self.default_policy()
        if policy_doc:
            from .policy import parse_policy

            parse_policy(policy_doc)
        wallet_id = W.new_wallet_id()
        keys = [self.hsm_generate(f"{wallet_id}/{i}") for i in range(checked.hsm_keys)]
        with self.store.transaction() as tx:
            for key_id in req.hsm_key_ids:
                share = tx.take_key_share(key_id, wallet_id)
                if share["category"] != checked.category.value:
                    raise InvalidArgument(f"hsm_key_ids: key share {key_id} belongs to category "
                                          f"{share['category']}; categories never share a key")
                keys.append(KeyInfo(key_id, share["label"], bytes.fromhex(share["public_key"])))
            W.insert_wallet(tx, checked, wallet_id, keys)
            version = 0
            if policy_doc:
                version = tx.insert_policy(wallet_id, policy_doc, actor)
            w = W.get_wallet(tx, wallet_id)
            tx.append_audit(actor, "wallet.created", wallet_id, {
                "chain": w.chain.value, "network": w.network, "category": w.category.value,
                "case_ref": w.case_ref, "address": w.address, "script_type": w.script_type.value,
                "keys": [k.key_id for k in w.keys], "policy_version": version,
                "chain_ids": list(w.chain_ids)})
        self.refresh_gauges()
        log.info("wallet created", extra={"wallet_id": wallet_id, "chain": w.chain.value})
        return w

    def create_key_share(self, actor: str, category: str, case_ref: str) -> KeyInfo:
        """An HSM key for a multisig wallet that other institutions must know before it exists."""
        probe = W.check_request(W.WalletRequest(chain="bitcoin", network="mainnet",
                                                category=category, case_ref=case_ref))
        key = self.hsm_generate(f"share/{probe.category.value}/{probe.case_ref[:40]}")
        with self.store.transaction() as tx:
            tx.insert_key_share(key.key_id, key.public_key.hex(), key.label, probe.category.value,
                                probe.case_ref)
            tx.append_audit(actor, "key_share.created", key.key_id,
                            {"public_key": key.public_key.hex(), "category": probe.category.value,
                             "case_ref": probe.case_ref})
        return key

    def get_wallet(self, wallet_id: str) -> Wallet:
        with self.store.read() as tx:
            return W.get_wallet(tx, wallet_id)

    def wallet_policy_version(self, wallet_id: str) -> int:
        with self.store.read() as tx:
            r = tx.latest_policy(wallet_id)
        return int(r["version"]) if r else 0

    def list_wallets(self, *, category: str = "", case_ref: str = "", after: str = "",
                     limit: int = 100) -> list[Wallet]:
        with self.store.read() as tx:
            rows = tx.list_wallets(category=category, case_ref=case_ref, after=after, limit=limit)
            return [W.wallet_from_rows(r, tx.wallet_keys(r["id"])) for r in rows]


