"""The sign step: APPROVED transfers signed exactly once, in group-committed batches.

Whoever asks for transfers to be signed (the approval that completed a quorum, the monitor
resuming a backlog) prepares them in its own thread: one read transaction for its batch, the
quorum checked again, the payloads decoded again, the digests signed by the HSM (a batch's
digests spread over the HSM's sessions). Other callers prepare theirs at the same time, so the
HSM's work overlaps their Python work. The prepared results then queue for the write: the
thread that takes the committer lock writes everything queued by then in one durable
transaction (group commit), so concurrent quorum-making approvals share a commit, and a backlog
drains in batches of up to MAX_BATCH transfers.

Invariants kept here (DEVELOPERS.md):
- No signature without quorum: only transfers in state APPROVED are signed (that state is set in
  the transaction that records the approval completing the quorum), and the quorum is evaluated
  again from the stored approvals in the batch's read transaction before anything is signed.
- Digests come from the stored payload, decoded again here; they must equal the digests of the
  submitted movement that the approvals' statements bind. Nothing a client sends is signed.
- Exactly one stored signature per (transfer, digest, key): signatures are made outside the store
  transaction, then stored in one write transaction that first re-reads each transfer's state
  under its row lock; a transfer another worker finished meanwhile is skipped and our signatures
  for it are discarded unseen. A crash before the commit leaves the transfers APPROVED, and
  recovery signs the same digests again.
- One transfer's failure (frozen wallet, missing key, a payload that no longer decodes) is its
  own: the others of the batch go on. If the batch's write fails, each transfer is written alone.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import policy as P
from .chains import Decoded, Signed, adapter_for
from .errors import NotFound, SignerError, WalletFrozen
from .model import Chain, TransferState, Wallet, WalletStatus
from .store import Row, Tx

if TYPE_CHECKING:
    from .transfers import TransferService

log = logging.getLogger("signerd.transfers")

APPROVED = TransferState.APPROVED.value
MAX_BATCH = 256  # transfers per batch: bounds one read, one HSM fan-out and one write
MIN_SPLIT = 16  # a caller with more transfers than this prepares them in parallel batches
PREPARERS = 2  # threads preparing a backlog's batches side by side

Signatures = dict[tuple[str, bytes], tuple[int, int]]


@dataclass
class _Ticket:
    """One queued transfer id; every caller asking for it waits on the same ticket."""

    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


@dataclass
class _Job:
    """One transfer of a batch, from load to commit."""

    row: Row
    wallet: Wallet
    adapter: Any
    decoded: Decoded
    stored: Signatures
    last_approval: float
    fresh: Signatures = field(default_factory=dict)
    signed: Signed | None = None

    @property
    def id(self) -> str:
        return str(self.row["id"])


@dataclass
class _Commit:
    """Prepared work waiting for the shared write."""

    jobs: list[_Job]
    expired: list[Row]
    done: threading.Event = field(default_factory=threading.Event)
    written: list[_Job] = field(default_factory=list)
    errors: dict[str, BaseException] = field(default_factory=dict)


class SignStep:
    def __init__(self, service: TransferService):
        self.service = service
        self.app = service.app
        self.store = service.store
        self._tickets_lock = threading.Lock()
        self._tickets: dict[str, _Ticket] = {}
        self._committer = threading.Lock()  # held by the thread writing the queued work
        self._commit_lock = threading.Lock()
        self._commit_queue: list[_Commit] = []
        self._preparers: ThreadPoolExecutor | None = None

    # ---------------------------------------------------------------- entry points
    def sign(self, transfer_id: str) -> None:
        """Run the sign step for one transfer; raises what kept it from being signed."""
        error = self.sign_many([transfer_id]).get(transfer_id)
        if error is not None:
            raise error

    def sign_many(self, transfer_ids: list[str]) -> dict[str, BaseException]:
        """Run the sign step for these transfers (each by one thread at a time in this
        process); returns, by id, the error that kept a transfer from being signed. A transfer
        that is not APPROVED (already signed, expired, ...) is no error: nothing to do.

        The calling thread prepares its transfers (read, quorum, decode, HSM) alongside other
        callers, whose HSM calls overlap its Python work; the writes of every caller waiting
        meanwhile go into one transaction (group commit)."""
        mine: dict[str, _Ticket] = {}
        others: dict[str, _Ticket] = {}
        with self._tickets_lock:
            for tid in dict.fromkeys(transfer_ids):
                ticket = self._tickets.get(tid)
                if ticket is None:
                    mine[tid] = self._tickets[tid] = _Ticket()
                else:
                    others[tid] = ticket  # another thread has it: wait for its outcome
        ids = list(mine)
        if len(ids) <= MIN_SPLIT:
            self._run_batch(ids)
        else:  # a backlog: batches prepared on PREPARERS threads, so one's HSM calls overlap
            size = min(MAX_BATCH, -(-len(ids) // (2 * PREPARERS)))
            batches = [ids[i:i + size] for i in range(0, len(ids), size)]
            list(self._preparer_pool().map(self._run_batch, batches))
        for ticket in others.values():
            ticket.done.wait()
        outcome = {**mine, **others}
        return {tid: t.error for tid, t in outcome.items() if t.error is not None}

    def _preparer_pool(self) -> ThreadPoolExecutor:
        with self._tickets_lock:
            if self._preparers is None:
                self._preparers = ThreadPoolExecutor(max_workers=PREPARERS,
                                                     thread_name_prefix="sign-prepare")
            return self._preparers

    def close(self) -> None:
        if self._preparers is not None:
            self._preparers.shutdown(wait=True)

    # ---------------------------------------------------------------- one batch
    def _run_batch(self, batch: list[str]) -> None:
        """Sign one batch of this caller's transfers; never raises: each ticket gets its
        outcome."""
        errors: dict[str, BaseException] = {}
        try:
            errors = self._run(batch)
        except BaseException as e:  # every ticket of the batch learns of it; nobody hangs
            errors = {tid: e for tid in batch}
            if not isinstance(e, SignerError):
                log.exception("sign step failed for a batch of %d transfers", len(batch))
        finally:
            with self._tickets_lock:
                for tid in batch:
                    ticket = self._tickets.pop(tid)
                    ticket.error = errors.get(tid)
                    ticket.done.set()

    def _run(self, ids: list[str]) -> dict[str, BaseException]:
        errors: dict[str, BaseException] = {}
        jobs, expired = self._load(sorted(ids), errors)
        self._sign_digests(jobs, errors)
        ready = []
        for job in jobs:
            if job.id in errors:
                continue
            try:
                job.signed = job.adapter.assemble(job.wallet, job.decoded,
                                                  {**job.stored, **job.fresh})
            except SignerError as e:
                errors[job.id] = e
                continue
            ready.append(job)
        self.service._fault("after_hsm_signed")
        if not ready and not expired:
            return errors
        work = self._write_shared(_Commit(ready, expired))
        errors.update(work.errors)
        self._after_commit(work.written, bool(expired))
        return errors

    def _write_shared(self, work: _Commit) -> _Commit:
        """Queue ``work`` for the next write and return once it is written: the thread that
        takes the committer lock writes everything queued by then in one transaction."""
        with self._commit_lock:
            self._commit_queue.append(work)
        while not work.done.is_set():
            with self._committer:
                if work.done.is_set():
                    break
                with self._commit_lock:
                    queued, self._commit_queue = self._commit_queue, []
                if queued:
                    self._write(queued)
        return work

    def _write(self, queued: list[_Commit]) -> None:
        try:
            try:
                jobs = [j for w in queued for j in w.jobs]
                written = {j.id for j in self._commit(jobs, [r for w in queued for r in w.expired])}
                for w in queued:
                    w.written = [j for j in w.jobs if j.id in written]
            except SignerError:
                if len(queued) == 1 and len(queued[0].jobs) + len(queued[0].expired) == 1:
                    raise
                # one transfer's write spoiled the shared one: write each transfer alone
                for w in queued:
                    for job in w.jobs:
                        try:
                            w.written += self._commit([job], [])
                        except SignerError as e:
                            w.errors[job.id] = e
                    for row in w.expired:
                        try:
                            self._commit([], [row])
                        except SignerError as e:
                            w.errors[row["id"]] = e
        except BaseException as e:
            if not isinstance(e, SignerError):
                log.exception("sign step: the write of %d prepared batches failed", len(queued))
            for w in queued:
                for job in w.jobs:
                    w.errors[job.id] = e
                for row in w.expired:
                    w.errors[row["id"]] = e
        finally:
            for w in queued:
                w.done.set()

    def _load(self, ids: list[str], errors: dict[str, BaseException]
              ) -> tuple[list[_Job], list[Row]]:
        """One read transaction: the APPROVED transfers among ``ids`` with a valid quorum,
        decoded again, with the signatures already stored for them."""
        svc = self.service
        jobs: list[_Job] = []
        expired: list[Row] = []
        now = time.time()
        with self.store.read() as tx:
            operators = svc._operators(tx)
            approvals = tx.approvals_for(ids)
            wallets: dict[str, Wallet] = {}
            for tid in ids:
                try:
                    row = tx.get_transfer(tid)
                except NotFound as e:
                    errors[tid] = e
                    continue
                if row["state"] != APPROVED:
                    continue
                rows = approvals[tid]
                if not svc._quorum(tx, row, operators, rows).met:
                    # never sign without a valid quorum, even if the state says APPROVED
                    log.error("transfer %s is APPROVED without a valid quorum; refusing", tid)
                    continue
                wallet = wallets.get(row["wallet_id"])
                if wallet is None:
                    wallet = wallets[row["wallet_id"]] = svc._wallet(tx, row["wallet_id"])
                if wallet.status is not WalletStatus.ACTIVE:
                    errors[tid] = WalletFrozen(
                        f"wallet {wallet.id} is {wallet.status.value}; signing waits")
                    continue
                if now >= float(row["expires_at"]):
                    expired.append(row)
                    continue
                try:
                    jobs.append(self._job(tx, row, wallet, rows))
                except SignerError as e:
                    errors[tid] = e
        return jobs, expired

    def _job(self, tx: Tx, row: Row, wallet: Wallet, approvals: list[Row]) -> _Job:
        from .transfers import movement_from_json

        adapter = adapter_for(wallet.chain)
        allowed = frozenset({1})
        if wallet.chain is Chain.BITCOIN:
            prow = tx.policy_version(wallet.id, int(row["policy_version"]))
            if prow is not None:
                allowed = P.parse_policy(prow["document"]).sighash_types
        try:
            decoded = adapter.redecode(wallet, bytes(row["payload"]), self.service.limits,
                                       movement_from_json(row["movement"]),
                                       allowed_sighash=allowed)
        except SignerError as e:
            e.message = f"transfer {row['id']}: {e.message}"
            raise
        stored = {(s["key_id"], bytes.fromhex(s["digest"])): (int(s["r"], 16), int(s["s"], 16))
                  for s in tx.signatures(row["id"])}
        last = max((float(a["created_at"]) for a in approvals), default=time.time())
        return _Job(row, wallet, adapter, decoded, stored, last)

    def _sign_digests(self, jobs: list[_Job], errors: dict[str, BaseException]) -> None:
        """The digests no stored signature covers, signed by the HSM in parallel."""
        todo: list[tuple[_Job, str, bytes]] = []
        for job in jobs:
            seen: set[tuple[str, bytes]] = set()
            for key_id, digest in job.adapter.digests_to_sign(job.wallet, job.decoded):
                if (key_id, digest) in job.stored or (key_id, digest) in seen:
                    continue
                seen.add((key_id, digest))
                todo.append((job, key_id, digest))
        if not todo:
            return
        try:
            results = self.app.hsm_sign_many([(k, d) for _, k, d in todo])
        except SignerError as e:
            for job, _, _ in todo:
                errors[job.id] = e
            return
        for (job, key_id, digest), rs in zip(todo, results):
            job.fresh[(key_id, digest)] = rs

    def _commit(self, jobs: list[_Job], expired: list[Row]) -> list[_Job]:
        """One write transaction: each transfer still APPROVED, with the signatures we read,
        gets its new signatures and its result; the expired ones are closed. Returns the jobs
        written."""
        written = []
        with self.store.transaction() as tx:
            for job in jobs:
                row = tx.get_transfer(job.id, lock=True)
                if row["state"] != APPROVED:
                    continue  # another worker finished it; our signatures are discarded unseen
                have = {(s["key_id"], bytes.fromhex(s["digest"])) for s in tx.signatures(job.id)}
                if have != set(job.stored):
                    continue  # changed since our read: the next sign step redoes it
                for (key_id, digest), (r, s) in job.fresh.items():
                    tx.insert_signature(job.id, digest, key_id, r, s)
                self.service._fault("before_result_stored")
                signed = job.signed
                assert signed is not None
                # The nonce / outpoints stay held by the signed transfer: another transaction
                # for them needs an explicit, approved replacement (``replaces``).
                tx.update_transfer(job.id, state=TransferState.SIGNED.value,
                                   raw_tx=signed.raw_tx, psbt=signed.psbt, tx_hash=signed.tx_hash)
                keys = {k for k, _ in job.stored} | {k for k, _ in job.fresh}
                tx.append_audit("signerd", "transfer.signed", job.id, {
                    "tx_hash": signed.tx_hash, "complete": signed.complete,
                    "signatures": len(job.stored) + len(job.fresh), "key_ids": sorted(keys)})
                written.append(job)
            for old in expired:
                row = tx.get_transfer(old["id"], lock=True)
                if row["state"] == APPROVED:
                    self.service._finish(tx, row, TransferState.EXPIRED, "signerd",
                                         "approval window passed before signing")
        return written

    def _after_commit(self, done: list[_Job], notify: bool) -> None:
        if done:
            self.service._fault("after_result_stored")
        metrics = self.app.metrics
        now = time.time()
        for job in done:
            signed = job.signed
            assert signed is not None
            metrics.transfer_events.labels(job.row["chain"], "SIGNED").inc()
            metrics.signed_seconds.observe(now - float(job.row["created_at"]))
            metrics.quorum_to_signed_seconds.observe(max(0.0, now - job.last_approval))
            log.info("transfer state", extra={"transfer_id": job.id, "state": "SIGNED",
                                              "tx_hash": signed.tx_hash,
                                              "complete": signed.complete})
        if done or notify:
            self.app.notifier.notify()
