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

from . import seal as SEAL
from . import wallets as W
from .config import Config
from .errors import AuthorityViolation, ConfigError, HsmUnavailable, InvalidArgument, SignerError
from .errors import InvalidKey as InvalidKeyError
from .hsm import Keystore, KeyInfo
from .ledger import Ledger
from .metrics import Metrics
from .proposals import ProposalService
from .runtime import Notifier
from .store import Store, open_store
from .transfers import TransferService

GENESIS_LABEL = "signerd-genesis"  # the HSM data object that pins the genesis digest

log = logging.getLogger("signerd.app")


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
        self.ledger = Ledger(config.genesis, on_violation=self._ledger_violation)
        self.audit_key_id = ""
        self._anchored = False  # the HSM token's genesis anchor was checked (check_hsm_anchor)
        self._anchor_lock = threading.Lock()
        self._stop = threading.Event()
        self._sign_pool: ThreadPoolExecutor | None = None
        self._sign_pool_lock = threading.Lock()
        self._health_listeners: list[Callable[[bool], None]] = []
        self._store_up = True
        # The services exist once start() has verified the authority ledger.
        self.started = False
        self.transfers: TransferService
        self.proposals: ProposalService
        self.wallets: W.WalletService
        # Called after every monitor iteration (the systemd watchdog ping): a probe stuck inside
        # the PKCS#11 module stops the pings, and systemd restarts the daemon.
        self.on_tick: Callable[[], None] | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Check that the store's authority ledger starts at the pinned genesis and verifies to
        its head (before the HSM is opened, so that a refused store is refused with one line
        and nothing else on stderr), open the HSM (errors are fatal at start), prepare the
        audit key."""
        if not self.config.genesis:
            raise ConfigError("config: [governance] genesis is not set: this state folder "
                              "predates governance; make a new one with `signerd init`")
        with self.store.transaction() as tx:
            known = tx.get_meta("instance_id")
            if known is None:
                tx.set_meta("instance_id", self.instance_id)
            elif known != self.instance_id:
                raise InvalidArgument(
                    f"the store belongs to instance {known}, the config says {self.instance_id}")
        try:
            with self.store.read() as tx:
                state = self.ledger.state(tx)
        except AuthorityViolation as e:  # counted by the ledger
            raise ConfigError(f"refusing to serve this store: {e.message}") from None
        if state.instance_id != self.instance_id:
            raise ConfigError(f"refusing to serve this store: its genesis is for instance "
                              f"{state.instance_id}, the config says {self.instance_id}")
        self.keystore.open()
        self.metrics.hsm_up.set(1)
        self.audit_key_id = state.audit_key_id
        try:
            self.check_hsm_anchor()
        except HsmUnavailable as e:  # checked again once the HSM answers; nothing signs before
            log.warning("the HSM's genesis anchor is not checked yet: %s", e.message)
        self.metrics.authority_seq.set(state.seq)
        self.metrics.store_up.set(1)
        self.transfers = TransferService(self)
        self.proposals = ProposalService(self)
        self.wallets = W.WalletService(self)
        self.proposals.on_applied.append(self._after_proposal)
        self.started = True
        self.transfers.recover()
        self.refresh_gauges()

    def _ledger_violation(self, e: AuthorityViolation) -> None:
        """The store's authority ledger does not verify: every act reading it is refused and
        counted (and logged once serving; at start the refusal itself names it)."""
        self.metrics.authority_violations.labels(e.kind).inc()
        if self.started:
            log.error("authority ledger does not verify: %s", e.message, extra={"kind": e.kind})

    def check_hsm_anchor(self) -> None:
        """The genesis digest is pinned twice outside the store: in the config and in a data
        object of the HSM token that can be neither changed nor destroyed; both must agree, and
        the token must hold the audit key the genesis names. Until this has passed, the HSM
        signs nothing (HsmUnavailable); a token that disagrees is a ConfigError."""
        pinned = self.config.genesis
        anchors = set(self.keystore.read_data(GENESIS_LABEL))
        if anchors != {pinned}:
            found = ", ".join(sorted(a.hex() for a in anchors)) or "none"
            raise ConfigError(f"the HSM token's genesis anchor ({found}) differs from the "
                              f"config's [governance] genesis {pinned.hex()}; refusing to sign")
        with self.store.read() as tx:
            state = self.ledger.state(tx)
        try:
            held = self.keystore.public_key(state.audit_key_id)
        except InvalidKeyError:
            held = b""
        if held != state.audit_public_key:
            raise ConfigError(f"the audit key {state.audit_key_id} named by the genesis is not "
                              "in the HSM token (or differs): this is not the token the store "
                              "was made with")
        self._anchored = True

    def _require_anchor(self) -> None:
        if self._anchored:
            return
        with self._anchor_lock:
            if not self._anchored:
                try:
                    self.check_hsm_anchor()
                except ConfigError as e:
                    log.error("%s", e.message)
                    raise HsmUnavailable(f"signing refused: {e.message}") from None

    def _after_proposal(self, doc: dict[str, Any]) -> None:
        if doc["kind"] == "wallet.unfreeze":
            self.transfers.tick()  # sign what waited for the unfreeze
        if doc["kind"] in ("wallet.import", "wallet.create"):
            self.refresh_gauges()

    def seal(self, kind: str, record: dict[str, Any]) -> str:
        """signerd's seal over a record it writes that no quorum signs (see signerd.seal)."""
        r, s = self.hsm_sign(self.audit_key_id, SEAL.digest(kind, record))
        return SEAL.encode(r, s)

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
        if hsm_up and store_up and self.started:
            if not was_hsm:
                log.warning("hsm back: resuming approved transfers")
            self.proposals.tick()
            self.transfers.tick()
        if store_up:
            self.refresh_gauges()

    def stop(self) -> None:
        self._stop.set()
        if self.started:
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
        self._require_anchor()
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
        key_id = self.audit_key_id
        r, s = self.hsm_sign(key_id, audit.head_digest(self.instance_id, seq, head))
        return pb.AuditHead(seq=seq, hash=head, signature=r.to_bytes(32, "big") + s.to_bytes(32, "big"),
                            audit_public_key=self.keystore.public_key(key_id),
                            instance_id=self.instance_id)


    def audit_export(self) -> bytes:
        from . import audit

        events: list[Any] = []
        key_id = self.audit_key_id
        with self.store.read() as tx:
            seq, head = tx.audit_head()
            after = 0
            while after < seq:
                batch = tx.audit_events(after, 5000)
                if not batch:
                    break
                events.extend(e for e in batch if e.seq <= seq)
                after = batch[-1].seq
        r, s = self.hsm_sign(key_id, audit.head_digest(self.instance_id, seq, head))
        return audit.export_document(events, r.to_bytes(32, "big") + s.to_bytes(32, "big"),
                                     self.keystore.public_key(key_id), self.instance_id)
