"""The application object: wires the pure core to the HSM, the store and the metrics.

gRPC servicers and tests call this object; it holds no gRPC types.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from signerd.adapters.config import Config
from signerd.adapters.hsm import Keystore, KeyInfo
from signerd.adapters.metrics import Metrics
from signerd.adapters import observe
from signerd.adapters.store import Store, Tx
from signerd.adapters.store.factory import open_store
from signerd.core import anchor
from signerd.core.anchor import GENESIS_LABEL
from signerd.core import audit
from signerd.core import seal as SEAL
from signerd.core.errors import (AlreadyExists, AuditChainViolation, AuthorityViolation,
                                 ConfigError, HsmUnavailable, InvalidArgument, SignerError,
                                 StoreUnavailable)
from signerd.core.model import Category, Chain, TransferState
from signerd.services import wallets as W
from signerd.services.attest import AttestService
from signerd.services.ledger import Ledger
from signerd.services.proposals import ProposalService
from signerd.services.runtime import Notifier
from signerd.services.transfers import TransferService

# Audit events one monitor tick verifies at most (about a second of work): a first checkpoint
# over a long chain is spread over ticks instead of stalling the monitor and its watchdog ping.
MONITOR_VERIFY_EVENTS = 20_000

log = logging.getLogger("signerd.app")


@dataclass(frozen=True)
class SignedHead:
    """The audit chain's head with the audit key's signature over it (GetHead)."""

    seq: int
    hash: bytes
    signature: bytes  # r || s, 32 bytes each
    audit_public_key: bytes
    instance_id: str


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
        self.audit_public_key = b""  # pinned by the genesis; checkpoints verify under it
        # The latest audit checkpoint this process signed or verified, and how far past it the
        # chain was verified (checkpoint seq, event seq, event hash): see checkpoint().
        self._audit_checkpoint: audit.Checkpoint | None = None
        # (checkpoint seq, event seq, event hash, endings digest at that event)
        self._audit_progress: tuple[int, int, bytes, bytes] | None = None
        self._checkpoint_lock = threading.Lock()
        self._checkpoint_retry_at = 0.0
        # The transfers, proposals and attestations that ended (audit.ENDING_ACTIONS), as the
        # chain this process verified proves them; and the checkpoint head up to which they
        # were read through the index and checked against the checkpoint's signed digest.
        self._ended: set[str] = set()
        # Among them, the transfers the chain proves signed (transfer.signed), whatever their
        # rows' states now say (a Safe nonce is signed once: sign_step.check_safe_nonce).
        self._signed: set[str] = set()
        # The vetoes (audit.VETO_ACTION) the same chain proves: (wallet, transaction) -> the
        # (role, transfer) of each veto of that transaction in that wallet.
        # Values are replaced, never changed, so reading one needs no lock.
        self._vetoes: dict[tuple[str, str], frozenset[tuple[str, str]]] = {}
        self.store.on_commit = self._committed
        self._endings_known: tuple[int, bytes] = (0, audit.NO_ENDINGS)
        self._anchored = False  # the HSM token's genesis anchor was checked (check_hsm_anchor)
        # How far the governance ledger and the audit checkpoints got, recorded in the HSM
        # after each commit that moves them (signerd.core.anchor): a store rolled back behind them
        # is refused at start.
        self.anchors = anchor.Anchors(self.keystore, self.instance_id)
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
            raise ConfigError("config: [governance] genesis is not set: pin the digest that "
                              "`signerd genesis seal` printed (a state folder made before "
                              "governance: make a new one with `signerd init`)")
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
        self.audit_public_key = state.audit_public_key
        try:
            self.check_hsm_anchor()
        except HsmUnavailable as e:  # checked again once the HSM answers; nothing signs before
            log.warning("the HSM's genesis anchor is not checked yet: %s", e.message)
        self.metrics.authority_seq.set(state.seq)
        self.metrics.store_up.set(1)
        self.transfers = TransferService(self)
        self.proposals = ProposalService(self)
        self.wallets = W.WalletService(self)
        self.attestations = AttestService(self)
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
        the token must hold the audit key the genesis names. The store must also hold all that
        the token's monotonic anchors record (signerd.core.anchor: the ledger entry and the audit
        checkpoint last anchored; read before the store). Until this has passed, the HSM signs
        nothing (HsmUnavailable); a token that disagrees, or a store rolled back behind its
        anchors, is a ConfigError."""
        pinned = self.config.genesis
        anchors = set(self.keystore.read_data(GENESIS_LABEL))
        if anchors != {pinned}:
            found = ", ".join(sorted(a.hex() for a in anchors)) or "none"
            raise ConfigError(f"the HSM token's genesis anchor ({found}) differs from the "
                              f"config's [governance] genesis {pinned.hex()}; refusing to sign")
        marks = self._anchored_marks(self.anchors.read)  # before the store
        with self.store.read() as tx:
            state = self.ledger.state(tx)
            self._anchored_marks(lambda: anchor.check(tx, state, marks))
        if self.keystore.held_public_key(state.audit_key_id) != state.audit_public_key:
            raise ConfigError(f"the audit key {state.audit_key_id} named by the genesis is not "
                              "in the HSM token (or differs): this is not the token the store "
                              "was made with")
        self._anchored = True
        self.advance_anchors()

    def _anchored_marks(self, fn: Callable[[], Any]) -> Any:
        """``fn()``, with the violations of signerd.core.anchor counted and made a ConfigError (the
        daemon refuses to start with its one line; later, the HSM signs nothing)."""
        try:
            return fn()
        except AuthorityViolation as e:
            self.metrics.authority_violations.labels(e.kind).inc()
            raise ConfigError(e.message) from None
        except AuditChainViolation as e:
            self.metrics.audit_violations.labels(e.kind).inc()
            raise ConfigError(e.message) from None

    def advance_anchors(self) -> None:
        """Bring the HSM anchors up to what this process has verified in the store (committed):
        after a crash between a commit and its anchor, an anchor write the HSM refused, or
        another replica's progress. Nothing is written while they are there already; nothing
        at all before check_hsm_anchor passed. Failures are logged (the monitor tries again)."""
        if not self._anchored:
            return
        try:
            with self.store.read() as tx:
                seq, head = tx.authority_head()
        except SignerError as e:  # reported by the ledger's readers; the next tick tries again
            log.debug("HSM anchor of the governance ledger not brought forward: %s", e.message)
        else:
            # The head this process verified, once the store's committed head is that one (a
            # head not verified yet waits for a reader: nothing here counts violations twice).
            state = self.ledger.cached
            if state is not None and (state.seq, state.head) == (seq, head):
                self._anchor_ledger(seq, head)
        cp = self._audit_checkpoint
        if cp is not None:
            self._anchor_checkpoint(cp)

    def _anchor_ledger(self, seq: int, head: bytes) -> None:
        """Record a committed, verified ledger head in the HSM (forward only; never raises)."""
        known = self.anchors.known.ledger
        if not self._anchored or (known is not None and known.seq >= seq):
            return
        try:
            if self.anchors.advance_ledger(seq, head):
                log.info("governance ledger anchored in the HSM at entry %d", seq)
        except SignerError as e:
            log.warning("governance ledger entry %d not anchored in the HSM yet: %s", seq,
                        e.message)
        except Exception:  # a commit that happened must not look failed to its caller
            log.exception("governance ledger entry %d not anchored in the HSM", seq)

    def _anchor_checkpoint(self, cp: audit.Checkpoint) -> None:
        """Record a committed audit checkpoint in the HSM (forward only; never raises)."""
        known = self.anchors.known.checkpoint
        if not self._anchored or (known is not None and known.seq >= cp.seq):
            return
        try:
            self.anchors.advance_checkpoint(cp)
        except SignerError as e:
            log.warning("audit checkpoint %d not anchored in the HSM yet: %s", cp.seq,
                        e.message)
        except Exception:
            log.exception("audit checkpoint %d not anchored in the HSM", cp.seq)

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
        if doc["kind"] in ("wallet.unfreeze", "safe.owners"):
            self.transfers.tick()  # sign what waited for the unfreeze or the Safe's governance
        if doc["kind"] in ("wallet.import", "wallet.create"):
            self.refresh_gauges()

    def seal(self, kind: str, record: dict[str, Any]) -> str:
        """signerd's seal over a record it writes that no quorum signs (see signerd.core.seal)."""
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
                log.info("hsm back: resuming approved transfers")
            self.proposals.tick()
            self.transfers.tick()
        if store_up:
            self.refresh_gauges()
        if hsm_up and store_up and self.audit_key_id:
            self.audit_tick()
        if hsm_up and store_up and self._anchored:
            self.advance_anchors()

    def stop(self, *, checkpoint: bool = False) -> None:
        """Stop the monitor and the sign step, then close the HSM and the store. With
        ``checkpoint`` (the daemon draining on SIGTERM), the audit chain is checkpointed up to
        its head and anchored in the HSM first, so that after an orderly restart no event of
        this process (a veto, a cancellation) lies outside the anchors (signerd.core.anchor)."""
        self._stop.set()
        if self.started:
            self.transfers.signer.close()
        if self._sign_pool is not None:
            self._sign_pool.shutdown(wait=True)
        if checkpoint and self.started and self.audit_key_id and self.healthy():
            try:
                self.checkpoint()
                self.advance_anchors()
            except SignerError as e:  # a refused checkpoint was logged and counted already
                log.warning("no audit checkpoint at exit: %s", e.message)
        self.keystore.close()
        self.store.close()

    def refresh_gauges(self) -> None:
        """Set every chain x state and chain x category series, zeros included, so a scrape
        never sees a series vanish and reappear."""
        with self.store.read() as tx:
            wallets = tx.count_wallets()
            transfers = tx.count_transfers()
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
        with self.metrics.hsm_signing.track_inprogress():
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
    def audit_tick(self) -> None:
        """The monitor's part of checkpointing: once the audit head has moved past the latest
        checkpoint, and either checkpoint_events events have accumulated or the oldest of them
        is checkpoint_seconds old ([audit]), verify (at most MONITOR_VERIFY_EVENTS events a tick)
        and sign a checkpoint. So no event waits much longer than checkpoint_seconds for one.
        A refused checkpoint is retried after checkpoint_seconds, not every tick."""
        cfg = self.config.audit
        now = time.time()
        try:
            with self.store.read() as tx:
                latest = tx.latest_audit_checkpoint()
                head_seq, _ = tx.audit_head()
                base = latest.head_seq if latest is not None else 0
                oldest = tx.audit_events(base, 1) if head_seq > base else []
            self.metrics.audit_head_seq.set(head_seq)
            self.metrics.audit_checkpoint_head_seq.set(base)
            due = head_seq < base or (head_seq > base and (
                head_seq - base >= cfg.checkpoint_events or not oldest
                or now - oldest[0].time / 1e6 >= cfg.checkpoint_seconds))
        except (AuditChainViolation, InvalidArgument, ValueError):
            due = True  # a malformed checkpoint or event row: checkpoint() reports it
        except SignerError as e:  # the store went away meanwhile: the next tick tries again
            log.warning("audit checkpoint not considered: %s", e.message)
            return
        if not due or now < self._checkpoint_retry_at:
            return
        try:
            self.checkpoint(max_events=MONITOR_VERIFY_EVENTS)
        except AuditChainViolation:
            self._checkpoint_retry_at = now + max(cfg.checkpoint_seconds,
                                                  self.config.hsm.probe_seconds)
        except SignerError as e:
            log.warning("audit checkpoint not made: %s", e.message)

    def checkpoint(self, *, max_events: int | None = None) -> audit.Checkpoint | None:
        """Verify the audit chain since the latest checkpoint and, if the head has moved past
        it, have the HSM sign a checkpoint of the head. Returns the checkpoint at the head
        (None while the chain is empty, or when ``max_events`` were verified without reaching
        the head: the next call goes on from there).

        Verified before anything is signed (docs/ARCHITECTURE.md, "Flow of a governance proposal"):
        - the store's checkpoints are not behind, and do not differ from, the latest one this
          process signed or verified (a deleted or replaced checkpoint);
        - each checkpoint after that one (another replica's; after a restart, the latest and
          the one before it) is signed by the pinned audit key and links to the one before;
        - the event at each of those checkpoints' heads still has the hash the checkpoint
          signed: rewriting any earlier event, even recomputing every later hash and the head
          row, changes it;
        - every event after the latest checkpoint links and hashes up to the head row, and the
          last event an earlier call verified on the way there still has the same hash.
        Anything else is AuditChainViolation (FAILED_PRECONDITION): logged naming the checkpoint
        and the first bad seq, counted in signerd_audit_chain_violations_total, nothing signed.
        Events before the latest checkpoint are not read again (an export verified offline
        checks them all)."""
        with self._checkpoint_lock:
            for _ in range(3):
                try:
                    cp, done = self._checkpoint_once(max_events)
                except AuditChainViolation as e:
                    # What was verified stays known, so a retry is refused too until the store
                    # is restored (rather than verifying the rewritten events afresh).
                    self.metrics.audit_violations.labels(e.kind).inc()
                    log.error("audit checkpoint refused, nothing signed: %s", e.message)
                    raise
                if done:
                    break
                if cp is not None or max_events is not None:
                    return None  # verified max_events; the next call goes on
            else:
                raise StoreUnavailable("audit checkpoint: other replicas kept storing "
                                       "checkpoints meanwhile; retry")
        if cp is not None:  # committed, and signed or verified here: recorded in the HSM
            self._anchor_checkpoint(cp)
        return cp

    def _committed(self, tx: Tx) -> None:
        """A write of this process committed: its facts are counted and logged
        (signerd.adapters.observe), the transfers and proposals it ended are known ended at
        once (a store writer erasing the end before the chain is read again is seen), and a new
        ledger head is anchored in the HSM (after the commit: see signerd.core.anchor)."""
        if tx.events:
            observe.report(self.metrics, tx.events)
        ended = [e.object for e in tx.appended if e.action in audit.ENDING_ACTIONS]
        if ended:
            signed = [e.object for e in tx.appended if e.action == audit.SIGNED_ACTION]
            with self._checkpoint_lock:
                self._ended.update(ended)
                self._signed.update(signed)
        if tx.authority_appended:
            last = tx.authority_appended[-1]
            self._anchor_ledger(last.seq, last.hash)

    def ended(self, object_ids: Iterable[str]) -> set[str]:
        """Which of these transfers, proposals and attestations ended (signed, rejected,
        expired, cancelled, failed; applied), by the audit chain verified up to its head now,
        whatever their rows say: a store writer who deletes a veto or a cancellation and sets
        the row back to waiting is found here. Raises AuditChainViolation when the chain does
        not verify. Call it outside a store transaction."""
        with self._checkpoint_lock:
            while True:
                _, done = self._checkpoint_once(None, sign=False)
                if done:
                    break
            return {i for i in object_ids if i in self._ended}

    def signed(self, object_ids: Iterable[str]) -> set[str]:
        """Which of these transfers were signed, as the verified audit chain proves it (their
        ``transfer.signed`` events), whatever their rows' states say: what was verified so far
        (after ``ended`` in the same request; call it inside a store transaction)."""
        return {i for i in object_ids if i in self._signed}

    def vetoes(self, wallet_id: str, transaction: str, *, verify: bool = True
               ) -> tuple[tuple[str, str], ...]:
        """The (role, transfer) of each veto of this transaction (``engine.transaction_key``) in
        this wallet, sorted, as the verified audit chain proves them: each veto's
        ``transfer.vetoed`` event is folded into the endings digest the HSM-signed checkpoints
        commit to, so a store writer can neither delete nor alter one unseen (the chain stops
        verifying, or, after a restart, the endings no longer match the latest checkpoint).
        With ``verify`` the chain is verified up to its head first (call it outside a store
        transaction, as ``ended``); without, what was verified so far (after ``ended`` or
        ``vetoes`` in the same request, inside a transaction)."""
        if verify:
            self.ended(())
        return tuple(sorted(self._vetoes.get((wallet_id, transaction), frozenset())))

    def _note_endings(self, found: Iterable[tuple[str, str]]) -> None:
        """Record ending events (action, object) of the verified chain (the lock is held)."""
        for action, obj in found:
            if action != audit.VETO_ACTION:
                self._ended.add(obj)
                if action == audit.SIGNED_ACTION:
                    self._signed.add(obj)
                continue
            veto = audit.parse_veto_object(obj)
            if veto is not None:
                wallet_id, transaction, role, transfer_id = veto
                key = (wallet_id, transaction)
                self._vetoes[key] = self._vetoes.get(key, frozenset()) | {(role, transfer_id)}

    def _catch_up_endings(self, tx: Any, cp: audit.Checkpoint) -> None:
        """Bring the set of ended ids up to checkpoint ``cp`` (verified) by reading only the
        ending events after the checkpoint known so far; their digest must be the one ``cp``
        signed, so none was deleted, added or altered."""
        seq, digest = self._endings_known
        if cp.head_seq <= seq:
            return
        found: list[tuple[str, str]] = []
        after = seq
        while True:
            rows = tx.ending_events(after, cp.head_seq)
            if not rows:
                break
            for s, action, obj in rows:
                digest = audit.endings_link(digest, s, action, obj)
                found.append((action, obj))
            after = rows[-1][0]
        if digest != cp.endings:
            raise AuditChainViolation(
                f"audit checkpoint {cp.seq}: the events that ended transfers and proposals up "
                f"to seq {cp.head_seq} are not those it signed (one was deleted, added or "
                f"altered after seq {seq})", kind="event")
        self._note_endings(found)
        self._endings_known = (cp.head_seq, digest)

    def _checkpoint_once(self, max_events: int | None, *, sign: bool = True
                         ) -> tuple[audit.Checkpoint | None, bool]:
        """One attempt: (the checkpoint at the head, True); (None, False) when another replica
        stored a checkpoint first (try again: it is verified then); (last, False) when
        ``max_events`` ran out before the head. Without ``sign``, the chain is verified up to
        the head and nothing is signed (True once there)."""
        instance, key = self.instance_id, self.audit_public_key
        known = self._audit_checkpoint
        with self.store.read() as tx:
            # Checkpoints before the head: with other replicas appending and checkpointing, a
            # checkpoint read first can never be ahead of the head read after it.
            latest = tx.latest_audit_checkpoint()
            after: audit.Checkpoint | None
            if known is not None:
                if latest is None or latest.seq < known.seq:
                    raise AuditChainViolation(
                        f"audit checkpoint {known.seq} (head seq {known.head_seq}), which this "
                        f"daemon signed or verified, is missing from the store (its latest is "
                        f"{latest.seq if latest else 'none'}): checkpoints were deleted",
                        kind="checkpoint")
                stored = tx.audit_checkpoints(known.seq - 1)
                if not stored or stored[0] != known:
                    raise AuditChainViolation(
                        f"audit checkpoint {known.seq} in the store differs from the one this "
                        "daemon signed or verified: it was replaced", kind="checkpoint")
                after, cps = known, stored[1:]
            elif latest is None:
                after, cps = None, []
            else:  # first call of this process: the latest and the one before it
                after = tx.audit_checkpoint(latest.seq - 1) if latest.seq > 1 else None
                if latest.seq > 1 and after is None:
                    raise AuditChainViolation(
                        f"audit checkpoint {latest.seq - 1} is missing from the store "
                        f"(checkpoint {latest.seq} follows it): checkpoints were deleted",
                        kind="checkpoint")
                if after is not None and not audit.checkpoint_signature_valid(after, instance,
                                                                              key):
                    raise AuditChainViolation(
                        f"audit checkpoint {after.seq}: the signature does not verify under the "
                        "audit key (forged or altered checkpoint)", kind="checkpoint")
                cps = [latest]
            head_seq, head_hash = tx.audit_head()
            heads = [c.head_seq for c in ([after] if after else []) + cps]
            found = audit.verify_checkpoints(cps, self._stored_events_at(tx, heads),
                                             instance_id=instance, audit_public_key=key,
                                             after=after)
            if not found.ok:
                raise AuditChainViolation(
                    f"audit {found.problem}"
                    + (f" (first bad seq {found.first_bad_seq})" if found.first_bad_seq else ""),
                    kind="event" if found.first_bad_seq is not None else "checkpoint")
            last = cps[-1] if cps else after
            for c in ([after] if after else []) + cps:
                self._catch_up_endings(tx, c)
            base_seq, base_hash = (last.head_seq, last.head_hash) if last else (0, audit.GENESIS)
            name = f"checkpoint {last.seq}" if last else "the start of the chain"
            if head_seq < base_seq:
                raise AuditChainViolation(
                    f"the audit head row says seq {head_seq}, behind {name} at seq {base_seq}: "
                    f"events were removed (first bad seq {head_seq + 1})", kind="event")
            start = (base_seq, base_hash)
            endings = last.endings if last else audit.NO_ENDINGS
            progress = self._audit_progress
            if progress is not None and progress[0] == (last.seq if last else 0) \
                    and head_seq < progress[1]:
                raise AuditChainViolation(
                    f"the audit head row says seq {head_seq}, behind seq {progress[1]} that this "
                    f"daemon verified since {name}: events were removed (first bad seq "
                    f"{head_seq + 1})", kind="event")
            if progress is not None and progress[0] == (last.seq if last else 0) \
                    and base_seq < progress[1] <= head_seq:
                again = self._stored_events_at(tx, [progress[1]])
                if not again or again[0].hash != progress[2]:
                    raise AuditChainViolation(
                        f"audit event seq {progress[1]}, verified since {name}, was changed or "
                        f"removed before the next checkpoint (first bad seq at or before "
                        f"{progress[1]})", kind="event")
                start = (progress[1], progress[2])
                endings = progress[3]
            upto = head_seq if max_events is None else min(head_seq, start[0] + max_events)
            tail: list[audit.AuditEvent] = []  # the last event read
            ended: list[tuple[str, str]] = []

            def events() -> Iterator[audit.AuditEvent]:
                nonlocal endings
                for e in self._stored_events(tx, start[0], upto):
                    tail[:] = [e]
                    if e.action in audit.ENDING_ACTIONS:
                        endings = audit.endings_link(endings, e.seq, e.action, e.object)
                        ended.append((e.action, e.object))
                    yield e
            chain = audit.verify_chain(
                events(), after=start,
                expected_head=head_hash if upto == head_seq else None,
                expected_count=upto - start[0])
            if not chain.ok:
                raise AuditChainViolation(
                    f"the audit chain since {name} does not verify (first bad seq "
                    f"{chain.first_bad_seq}): {chain.problem}", kind="event")
        self._audit_checkpoint = last
        self._note_endings(ended)
        if upto < head_seq:
            if tail:
                self._audit_progress = (last.seq if last else 0, tail[0].seq, tail[0].hash,
                                        endings)
            return last, False
        if not sign:
            if head_seq > base_seq:
                self._audit_progress = (last.seq if last else 0, head_seq, head_hash, endings)
            return last, True
        self._audit_progress = None
        if head_seq == base_seq:
            return last, True
        unsigned = audit.next_checkpoint(last, instance, head_seq=head_seq, head_hash=head_hash,
                                         time=int(time.time() * 1_000_000),
                                         endings=endings)
        r, s = self.hsm_sign(self.audit_key_id, unsigned.digest(instance))
        cp = unsigned.signed(r.to_bytes(32, "big") + s.to_bytes(32, "big"), instance, key)
        try:
            with self.store.transaction() as tx:
                tx.append_audit_checkpoint(cp)
        except (StoreUnavailable, AlreadyExists):
            with self.store.read() as tx:
                now_latest = tx.latest_audit_checkpoint()
            if now_latest is not None and now_latest.seq >= cp.seq:
                return None, False  # another replica's checkpoint: verify it and go on
            raise
        self._audit_checkpoint = cp
        self._endings_known = (cp.head_seq, cp.endings)  # its ending events were just verified
        self.metrics.audit_checkpoint_head_seq.set(cp.head_seq)
        log.info("audit checkpoint %d signed at head seq %d", cp.seq, cp.head_seq)
        return cp, True

    @staticmethod
    def _stored_events_at(tx: Any, seqs: list[int]) -> list[audit.AuditEvent]:
        try:
            return tx.audit_events_at(seqs)
        except (InvalidArgument, ValueError, TypeError) as e:
            raise AuditChainViolation(f"an audit event the checkpoints signed is malformed in "
                                      f"the store: {e}", kind="event") from None

    @staticmethod
    def _stored_events(tx: Any, after: int, upto: int) -> Iterator[audit.AuditEvent]:
        """Events after ``after`` up to ``upto`` in seq order, read in batches."""
        while after < upto:
            try:
                batch = tx.audit_events(after, min(5000, upto - after))
            except (InvalidArgument, ValueError, TypeError) as e:
                raise AuditChainViolation(f"an audit event after seq {after} is malformed in the "
                                          f"store (first bad seq {after + 1} or later): {e}",
                                          kind="event") from None
            for event in batch:
                if event.seq > upto:
                    return
                yield event
            if not batch:
                return
            after = batch[-1].seq

    def audit_head(self) -> SignedHead:
        """The head, signed only after checkpoint() verified the chain up to it: the head is
        that of the checkpoint (a new one, or the latest when the head has not moved)."""
        cp = self.checkpoint()
        seq, head = (cp.head_seq, cp.head_hash) if cp is not None else (0, audit.GENESIS)
        r, s = self.hsm_sign(self.audit_key_id, audit.head_digest(self.instance_id, seq, head))
        return SignedHead(seq=seq, hash=head,
                          signature=r.to_bytes(32, "big") + s.to_bytes(32, "big"),
                          audit_public_key=self.audit_public_key,
                          instance_id=self.instance_id)

    def audit_export(self) -> Iterator[bytes]:
        """The lines of a v2 export up to the head of a checkpoint made (or found current) just
        before, with every checkpoint up to it: signed only after checkpoint() verified the
        chain. The head is signed and the checkpoints read before the first line; the events
        are then read in batches, each in a read transaction of its own (the events up to a
        checkpointed head never change), so an export of any length streams in constant memory
        and holds no transaction open while a slow reader takes it."""
        cp = self.checkpoint()
        seq, head = (cp.head_seq, cp.head_hash) if cp is not None else (0, audit.GENESIS)
        with self.store.read() as tx:
            checkpoints = tx.audit_checkpoints(0, cp.seq) if cp is not None else []
        r, s = self.hsm_sign(self.audit_key_id, audit.head_digest(self.instance_id, seq, head))
        header = audit.export_header(
            head_seq=seq, head_hash=head, count=seq,
            head_signature=r.to_bytes(32, "big") + s.to_bytes(32, "big"),
            audit_pubkey=self.audit_public_key, instance_id=self.instance_id,
            checkpoints=len(checkpoints))
        return audit.export_lines(header, self._events_upto(seq), checkpoints)

    def _events_upto(self, seq: int, batch: int = 5000) -> Iterator[audit.AuditEvent]:
        after = 0
        while after < seq:
            with self.store.read() as tx:
                events = list(self._stored_events(tx, after, min(seq, after + batch)))
            if not events:
                return
            yield from events
            after = events[-1].seq
