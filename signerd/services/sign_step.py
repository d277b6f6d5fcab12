"""The sign step: APPROVED transfers signed exactly once, in group-committed batches.

Whoever asks for transfers to be signed (the approval that completed a quorum, the monitor
resuming a backlog) queues their ids and waits; one worker thread signs what is queued, in
batches of up to BATCH transfers and two batches at a time: while the HSM's sessions sign batch
k (PKCS#11 calls run without the GIL), the worker reads and decodes batch k+1, then assembles
batch k, writes it in one durable transaction (group commit) and answers its callers. Callers
do not compete with each other for the GIL and the store, a burst of quorum-making approvals
shares reads and commits, and a backlog drains with the HSM kept busy. With nothing else
queued, a transfer is signed at once in the worker's thread, so a lone approval waits no longer
than it must.

Invariants kept here (DEVELOPERS.md):
- No signature without quorum, and no quorum without authority: only transfers in state APPROVED
  are signed, and the state is not taken on trust. In the batch's read transaction, before the
  HSM is asked, each transfer is judged again (``engine.judge``): its payload decoded, its outputs
  classified against verified wallets, its statement rebuilt, every stored decision verified
  over it under the operator's key in the verified authority ledger, and the votes counted
  toward what the ledger's policy for the wallet demands, never below the floor. The judgement
  is repeated under the transfer's row lock in the write that would store the signature, with
  the ledger head share-locked so that no freeze commits in between. A transfer whose wallet,
  approvals or quorum do not trace to the genesis goes FAILED (audit event, metric); one whose
  quorum was lost legitimately (an approver suspended, a policy tightened) waits for approvals
  again.
- Digests come from the stored payload, decoded again here; the approvals bind them through the
  statement. Nothing a client sends is signed.
- Exactly one stored signature per (transfer, digest, key): signatures are made outside the store
  transaction, then stored in one write transaction that first locks every transfer of the
  batch (in id order, so replicas queue instead of deadlocking) and re-reads its state; a
  transfer another worker or replica finished meanwhile is skipped and our signatures for it are
  discarded unseen. A crash before the commit leaves the transfers APPROVED, and recovery signs
  the same digests again.
- One transfer's failure (frozen wallet, missing key, a payload that no longer decodes) is its
  own: the others of the batch go on. If the batch's write fails, each transfer is written alone.
"""
from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Protocol

from signerd.adapters.config import Limits
from signerd.adapters.store import Store, Tx
from signerd.core import engine as E
from signerd.core import events as EV
from signerd.core.approval import StatementContext
from signerd.core import safe_wallet as SW
from signerd.core.chain_registry import UnregisteredChain
from signerd.core.chains import (ChainAdapter, Decoded, Signed, TronAdapter,
                                 adapter_for_wallet)
from signerd.core.errors import (AuthorityViolation, FailedPrecondition, HsmUnavailable,
                                 NotFound, SignerError,
                                 WalletFrozen)
from signerd.core.model import Chain, Movement, TransferState, Wallet, WalletStatus
from signerd.core.movement_json import movement_from_json
from signerd.core.records import ApprovalRecord, TransferRecord
from signerd.core.tokens import token_from_json
from signerd.core.tron import signing as tron_signing
from . import ledger as L
from .runtime import Runtime


def ended_violation(object_id: str) -> AuthorityViolation:
    """An act the verified audit chain says ended, whose row someone set back to waiting."""
    return AuthorityViolation(
        f"{object_id} ended before (the verified audit chain records its end) and its row was "
        "set back to waiting by someone other than signerd", kind="ended")


def tron_expired(row: TransferRecord, chain: Chain, now: float, limits: Limits) -> bool:
    """Whether ``row`` is a transfer of a Tron wallet (``chain``: its verified wallet's, not the
    row's word) whose transaction expired (its ``expiration``, from the payload itself): it is
    never signed, and ends EXPIRED. A payload that does not decode is left to the decoding in
    ``_job`` to refuse with its reason (parsed under the same ``limits`` as there)."""
    if chain is not Chain.TRON:
        return False
    try:
        tx = TronAdapter.parse(row.payload, limits)
    except SignerError:
        return False
    if tron_signing.expiration_problem(tx.expiration, now):
        log.warning("transfer %s: its Tron transaction expired at %s; not signed", row.id,
                    tron_signing.utc_ms(tx.expiration))
        return True
    return False


class AwaitingGovernance(FailedPrecondition):
    """An APPROVED Safe transfer that changes its own Safe, waiting for the governance
    quorum's ``safe.owners`` approval of its exact SafeTx hash (it stays APPROVED)."""

    reason = "AWAITING_GOVERNANCE"


def check_safe_nonce(tx: Tx, row: TransferRecord, movement: Movement,
                     signed_ids: Callable[[list[str]], set[str]],
                     audit_public_key: bytes) -> None:
    """signerd never signs two SafeTx hashes for one Safe and nonce. The lock key
    ``safe:<address>:<chain id>:<nonce>`` refuses a second submission while the first holds
    it (for good once signed); this is the sign step's own check, so a lock deleted by a store
    writer still signs nothing twice. It reads every transfer of the wallet signed by its row's
    state or by the verified audit chain (``signed_ids``: their ``transfer.signed`` events),
    whatever the row's state says now (not under its seal), and the nonce and hash of each from
    its sealed movement: a row whose seal does not verify signs nothing (AuthorityViolation)."""
    others = [o for o in tx.list_transfers(wallet_id=row.wallet_id, limit=1_000_000)
              if o.id != row.id]
    proven = signed_ids([o.id for o in others])
    for other in others:
        if other.state is not TransferState.SIGNED and other.id not in proven:
            continue
        safe, nonce, digests = _sealed_safe_nonce(audit_public_key, other)
        if safe and nonce == movement.nonce and digests != movement.digests:
            raise AuthorityViolation(
                f"transfer {row.id}: Safe nonce {movement.nonce} was signed already for another "
                f"SafeTx by transfer {other.id}; signerd signs one SafeTx per Safe nonce",
                kind="transfer")


# What check_safe_nonce read from a transfer row whose seal verified, keyed by the SHA-256 of
# (audit key, id, seal, movement): the same bytes give the same answer without the seal's
# record digest and the movement's parse again (a Safe wallet's every signed transfer is read at
# each of its signatures). A row whose id, seal or movement changed is a new key, verified
# afresh; the answer uses only the movement, which the seal covers with the id.
_SEALED_NONCES: dict[bytes, tuple[bool, int | None, tuple[bytes, ...]]] = {}
_SEALED_NONCES_MAX = 100_000
_SEALED_NONCES_LOCK = threading.Lock()


def _sealed_safe_nonce(audit_public_key: bytes, row: TransferRecord
                       ) -> tuple[bool, int | None, tuple[bytes, ...]]:
    """(whether it is a SafeTx, its nonce, its digests) of ``row``'s sealed movement;
    AuthorityViolation when its seal does not verify."""
    key = hashlib.sha256(b"\0".join((audit_public_key, row.id.encode(), row.seal.encode(),
                                      row.movement.encode()))).digest()
    with _SEALED_NONCES_LOCK:
        hit = _SEALED_NONCES.get(key)
    if hit is not None:
        return hit
    E.check_transfer_seal(audit_public_key, row)
    m = movement_from_json(row.movement)
    hit = (bool(m.safe), m.nonce, m.digests)
    with _SEALED_NONCES_LOCK:
        if len(_SEALED_NONCES) >= _SEALED_NONCES_MAX:
            del _SEALED_NONCES[next(iter(_SEALED_NONCES))]
        _SEALED_NONCES[key] = hit
    return hit


def check_safe_governance(state: Any, row: TransferRecord, movement: Movement) -> None:
    """A Safe transaction that changes its own Safe (owners, threshold, guard, modules,
    fallback handler) is signed only when the authority ledger holds a ``safe.owners``
    approval of this transfer and this SafeTx hash: the wallet's approvers alone, or one
    admin, cannot change who controls the Safe."""
    change = SW.owner_change_of(movement)
    if not change:
        return
    digest = movement.digests[0].hex()
    approved = state.safe_owner_changes.get(row.id)
    if approved != digest:
        raise AwaitingGovernance(
            f"transfer {row.id} changes its Safe ({change}); it is signed once the governance "
            f"quorum approves a safe.owners proposal for this transfer and SafeTx hash 0x{digest}"
            " (signerctl transfer safe-owners " + row.id + ")")


def submitted_tokens(row: TransferRecord) -> tuple[Any, ...]:
    """The token registry entries the transfer's movement used at submission."""
    try:
        stored = json.loads(row.movement).get("tokens", ())
        return tuple(token_from_json(t) for t in stored)
    except (ValueError, TypeError, AttributeError, SignerError):
        return (None,)  # unreadable: never equal to what decodes


class SignHost(Protocol):
    """What the sign step uses of the service that owns it (the transfer service): the
    daemon, the store and ledger, how a transfer's statement context and outputs are made, and
    how a transfer is ended."""

    app: Runtime
    store: Store
    limits: Limits

    @property
    def ledger(self) -> L.Ledger: ...

    def context(self, row: TransferRecord) -> StatementContext: ...

    def classify(self, tx: Tx, state: Any, wallet: Wallet, decoded: Decoded,
                 policy: Any) -> Any: ...

    def reclassifier(self, tx: Tx, state: Any, wallet: Wallet, movement: Any
                     ) -> E.Reclassify: ...

    def violated(self, tx: Tx, row: TransferRecord, e: AuthorityViolation) -> None: ...

    def _finish(self, tx: Tx, row: TransferRecord, state: TransferState, actor: str,
                why: str) -> None: ...

    def _fault(self, point: str) -> None: ...

log = logging.getLogger("signerd.transfers")

APPROVED = TransferState.APPROVED
BATCH = 64  # transfers per batch: one read, one HSM fan-out, one write
STOPPING = "signerd is stopping; the transfer stays APPROVED and is signed after the restart"

Signatures = dict[tuple[str, bytes], tuple[int, int]]


@dataclass
class _Ticket:
    """One queued transfer id; every caller asking for it waits on the same ticket."""

    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


@dataclass
class _Job:
    """One transfer of a batch, from load to commit."""

    row: TransferRecord
    wallet: Wallet
    adapter: ChainAdapter
    decoded: Decoded
    movement: Any
    stored: Signatures
    last_approval: float
    fresh: Signatures = field(default_factory=dict)
    signed: Signed | None = None

    @property
    def id(self) -> str:
        return self.row.id


@dataclass
class _Batch:
    """Up to BATCH transfers on their way through the pipeline."""

    ids: list[str]
    jobs: list[_Job] = field(default_factory=list)
    expired: list[TransferRecord] = field(default_factory=list)
    ends: list[tuple[TransferRecord, E.Verdict | AuthorityViolation]] = field(default_factory=list)
    errors: dict[str, BaseException] = field(default_factory=dict)
    todo: list[tuple[_Job, str, bytes]] = field(default_factory=list)
    signatures: Callable[[], list[tuple[int, int] | SignerError]] | None = None

    def fail(self, e: BaseException) -> None:
        for tid in self.ids:
            self.errors.setdefault(tid, e)


class SignStep:
    def __init__(self, service: SignHost):
        self.service = service
        self.app = service.app
        self.store = service.store
        # One lock guards the queue, the tickets and the worker. A transfer id is queued or
        # taken (in a batch of the worker) at most once; a request for a taken id gets a
        # follow-up ticket, queued when the batch holding the id is done.
        self._cond = threading.Condition()
        self._queue: list[str] = []
        self._tickets: dict[str, _Ticket] = {}
        self._taken: set[str] = set()
        self._followups: dict[str, _Ticket] = {}
        self._worker: threading.Thread | None = None
        self._closed = False

    # ---------------------------------------------------------------- entry points
    def sign(self, transfer_id: str, *, timeout: float | None = None,
             urgent: bool = False) -> None:
        """Run the sign step for one transfer; raises what kept it from being signed. See
        :meth:`sign_many` for ``timeout`` and ``urgent``."""
        error = self.sign_many([transfer_id], timeout=timeout, urgent=urgent).get(transfer_id)
        if error is not None:
            raise error

    def sign_many(self, transfer_ids: list[str], *, timeout: float | None = None,
                  urgent: bool = False) -> dict[str, BaseException]:
        """Run the sign step for these transfers and wait for it (at most ``timeout`` seconds:
        what is not done by then goes on in the worker); returns, by id, the error that kept a
        finished transfer from being signed. A transfer that is not APPROVED (already signed,
        expired, ...) is no error: there is nothing to do. A transfer already queued is not
        queued twice: its callers share the outcome. ``urgent`` transfers go to the front of
        the queue (an approval that just completed a quorum does not wait behind a backlog).

        Never call this from the worker's own thread or inside a store transaction: the
        worker needs the store to answer."""
        mine: dict[str, _Ticket] = {}
        with self._cond:
            if self._closed:
                raise HsmUnavailable(STOPPING)
            front: list[str] = []
            for tid in dict.fromkeys(transfer_ids):
                if tid in self._taken:  # in a batch now, which may have read it already
                    ticket = self._followups.get(tid)
                    if ticket is None:
                        ticket = self._followups[tid] = _Ticket()
                    mine[tid] = ticket
                    continue
                ticket = self._tickets.get(tid)
                if ticket is None:
                    ticket = self._tickets[tid] = _Ticket()
                    (front if urgent else self._queue).append(tid)
                elif urgent:
                    self._queue.remove(tid)
                    front.append(tid)
                mine[tid] = ticket
            self._queue[:0] = front
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="sign-step",
                                                 daemon=True)
                self._worker.start()
            self._cond.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        for ticket in mine.values():
            if not ticket.done.wait(None if deadline is None
                                    else max(0.0, deadline - time.monotonic())):
                break
        return {tid: t.error for tid, t in mine.items()
                if t.done.is_set() and t.error is not None}

    def close(self) -> None:
        """Stop: transfers queued but not yet taken are answered UNAVAILABLE (they stay
        APPROVED and are signed after the restart); the batches in flight are finished."""
        with self._cond:
            self._closed = True
            stopping = HsmUnavailable(STOPPING)
            for tid in self._queue:
                ticket = self._tickets.pop(tid)
                ticket.error = stopping
                ticket.done.set()
            self._queue.clear()
            for ticket in self._followups.values():
                ticket.error = stopping
                ticket.done.set()
            self._followups.clear()
            self._cond.notify_all()
            worker = self._worker
        if worker is not None:
            worker.join(30)

    # ---------------------------------------------------------------- the worker
    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
            try:
                self._pipeline()
            except BaseException:  # every batch settles its own tickets; keep serving
                log.exception("sign step: the worker's pipeline failed")

    def _take(self) -> tuple[list[str], bool]:
        """The next batch of queued ids, and whether more are queued after it."""
        with self._cond:
            batch = self._queue[:BATCH]
            del self._queue[:BATCH]
            self._taken.update(batch)
            return batch, bool(self._queue)

    def _pipeline(self) -> None:
        """Batches until the queue is empty, two at a time: batch k+1 is read and decoded, and
        its signing started, while the HSM signs batch k; then batch k is assembled and
        written, and its callers answered."""
        prev: _Batch | None = None
        try:
            while True:
                ids, more = self._take()
                cur = self._start(ids, background=more or prev is not None) if ids else None
                if prev is not None:
                    self._finish(prev)
                prev = cur
                if cur is None:
                    return
        finally:
            if prev is not None:
                self._finish(prev)

    def _start(self, ids: list[str], *, background: bool) -> _Batch:
        """Read, check the quorum, decode, and start signing the digests no stored signature
        covers (in the HSM's sessions while this thread goes on when ``background``)."""
        batch = _Batch(ids)
        try:
            batch.jobs, batch.expired, batch.ends = self._load(sorted(ids), batch.errors)
            for job in batch.jobs:
                seen: set[tuple[str, bytes]] = set()
                for key_id, digest in job.adapter.digests_to_sign(job.wallet, job.decoded):
                    if (key_id, digest) in job.stored or (key_id, digest) in seen:
                        continue
                    seen.add((key_id, digest))
                    batch.todo.append((job, key_id, digest))
            if batch.todo:
                batch.signatures = self.app.hsm_sign_start(
                    [(k, d) for _, k, d in batch.todo], background=background)
        except BaseException as e:
            if not isinstance(e, SignerError):
                log.exception("sign step: preparing a batch of %d transfers failed", len(ids))
            batch.fail(e)
        return batch

    def _finish(self, batch: _Batch) -> None:
        """Collect the signatures, assemble, write, and answer every caller of the batch."""
        written: list[_Job] = []
        try:
            if batch.signatures is not None:
                for (job, key_id, digest), result in zip(batch.todo, batch.signatures()):
                    if isinstance(result, SignerError):  # this job's own failure
                        batch.errors.setdefault(job.id, result)
                    else:
                        job.fresh[(key_id, digest)] = result
            ready = []
            for job in batch.jobs:
                if job.id in batch.errors:
                    continue
                try:
                    job.signed = job.adapter.assemble(job.wallet, job.decoded,
                                                      {**job.stored, **job.fresh})
                except SignerError as e:
                    batch.errors[job.id] = e
                    continue
                ready.append(job)
            self.service._fault("after_hsm_signed")
            if ready or batch.expired or batch.ends:
                written = self._write(ready, batch.expired, batch.ends, batch.errors)
                self._after_commit(written, bool(batch.expired or batch.ends))
        except BaseException as e:
            if not isinstance(e, SignerError):
                log.exception("sign step: finishing a batch of %d transfers failed",
                              len(batch.ids))
            done = {j.id for j in written}
            for tid in batch.ids:
                if tid not in done:
                    batch.errors.setdefault(tid, e)
        finally:
            with self._cond:
                for tid in batch.ids:
                    ticket = self._tickets.pop(tid)
                    ticket.error = batch.errors.get(tid)
                    ticket.done.set()
                    self._taken.discard(tid)
                    followup = self._followups.pop(tid, None)
                    if followup is not None:  # asked for again meanwhile: one more pass
                        self._tickets[tid] = followup
                        self._queue.append(tid)
                self._cond.notify_all()

    def _write(self, jobs: list[_Job], expired: list[TransferRecord],
               ends: list[tuple[TransferRecord, Any]],
               errors: dict[str, BaseException]) -> list[_Job]:
        """One transaction for the batch; if it fails, one per transfer, so that one
        transfer's failed write is its own."""
        try:
            return self._commit(jobs, expired, ends)
        except SignerError as e:
            if len(jobs) + len(expired) + len(ends) == 1:
                one = jobs[0].id if jobs else (expired[0] if expired else ends[0][0]).id
                errors[one] = e
                return []
        written: list[_Job] = []
        for job in jobs:
            try:
                written += self._commit([job], [], [])
            except SignerError as e1:
                errors[job.id] = e1
        for row in expired:
            try:
                self._commit([], [row], [])
            except SignerError as e1:
                errors[row.id] = e1
        for end in ends:
            try:
                self._commit([], [], [end])
            except SignerError as e1:
                errors[end[0].id] = e1
        return written

    def _load(self, ids: list[str], errors: dict[str, BaseException]
              ) -> tuple[list[_Job], list[TransferRecord], list[tuple[TransferRecord, Any]]]:
        """One read transaction: the APPROVED transfers among ``ids`` whose quorum holds,
        judged from the verified authority state and decoded again, with the signatures
        already stored for them; the expired ones; and those that end otherwise (an authority
        violation: FAILED; a quorum lost: back to PENDING_APPROVAL)."""
        jobs: list[_Job] = []
        expired: list[TransferRecord] = []
        ends: list[tuple[TransferRecord, Any]] = []
        now = time.time()
        ended = self.app.ended(ids)  # by the audit chain, verified to its head first
        with self.store.read() as tx:
            state = self.service.ledger.state(tx)
            try:
                approvals: dict[str, list[ApprovalRecord] | AuthorityViolation] = {
                    **tx.approvals_for(ids)}
            except AuthorityViolation:  # a malformed decision: its transfer alone ends FAILED
                approvals = {}
                for tid in ids:
                    try:
                        approvals[tid] = tx.approvals(tid)
                    except AuthorityViolation as e:
                        approvals[tid] = e
            wallets: dict[str, Wallet | AuthorityViolation] = {}
            for tid in ids:
                try:
                    row = tx.get_transfer(tid)
                except NotFound as e:
                    errors[tid] = e
                    continue
                if row.state is not APPROVED:
                    continue
                if tid in ended:
                    ends.append((row, ended_violation(tid)))
                    continue
                wid = row.wallet_id
                if wid not in wallets:
                    try:
                        wallets[wid] = L.load_wallet(tx, state, wid)
                    except AuthorityViolation as e:
                        wallets[wid] = e
                wallet = wallets[wid]
                if isinstance(wallet, AuthorityViolation):
                    ends.append((row, wallet))
                    continue
                if wallet.status is not WalletStatus.ACTIVE:
                    errors[tid] = WalletFrozen(
                        f"wallet {wallet.id} is {wallet.status.value}; signing waits")
                    continue
                if now >= row.expires_at or tron_expired(row, wallet.chain, now,
                                                         self.service.limits):
                    expired.append(row)
                    continue
                decisions = approvals[tid]
                if isinstance(decisions, AuthorityViolation):
                    ends.append((row, decisions))
                    continue
                try:
                    job, verdict = self._job(tx, state, row, wallet, decisions)
                except AuthorityViolation as e:
                    ends.append((row, e))
                    continue
                except SignerError as e:
                    errors[tid] = e
                    continue
                if verdict.outcome == E.SIGN:
                    jobs.append(job)
                else:
                    ends.append((row, verdict))
        return jobs, expired, ends

    def _job(self, tx: Tx, state: Any, row: TransferRecord, wallet: Wallet,
             approvals: list[ApprovalRecord]
             ) -> tuple[_Job, E.Verdict]:
        """Decode the stored payload, classify its outputs against verified wallets, rebuild
        the statement and judge the stored decisions (raises AuthorityViolation when the
        movement no longer fits its category change: the approvals cannot stand for it)."""
        adapter = adapter_for_wallet(wallet)
        policy, _ = E.policy_of(state, wallet, row.policy_version)
        try:
            decoded = adapter.decode(wallet, row.payload, self.service.limits,
                                     allowed_sighash=policy.sighash_types, tokens=state.tokens,
                                     chains=state.chains)
        except UnregisteredChain as e:
            # Approved on a chain the registry in force does not name: nothing stands.
            raise AuthorityViolation(f"transfer {row.id}: {e.message}; the approvals do not "
                                     "stand for it", kind="policy") from None
        except SignerError as e:
            e.message = f"transfer {row.id}: {e.message}"
            raise
        if decoded.movement.tokens != submitted_tokens(row):
            raise AuthorityViolation(
                f"transfer {row.id}: the token registry decodes its call differently than "
                "when it was approved; the approvals do not stand for it", kind="policy")
        ctx = self.service.context(row)  # the row's seal verifies, or AuthorityViolation
        movement = movement_from_json(row.movement)  # sealed: what the approvals bind
        if movement.native is None:
            # Submitted before the chain registry: its assets, decoded now under the registry's
            # symbol, must still be the ones approved (ETH), which same_transaction checks.
            decoded = replace(decoded, movement=replace(decoded.movement, native=None))
        elif decoded.movement.native != movement.native:
            raise AuthorityViolation(
                f"transfer {row.id}: the chain registry names chain {decoded.movement.chain_id} "
                "otherwise than when it was approved; the approvals do not stand for it",
                kind="policy")
        fresh = self.service.classify(tx, state, wallet, decoded, policy)
        if not E.same_transaction(movement, fresh):
            raise AuthorityViolation(f"transfer {row.id}: its payload decodes to another "
                                     "movement than the one submitted and approved",
                                     kind="transfer")
        try:
            E.check_category_change(wallet, fresh, row.category_change,
                                    row.legal_basis)
        except SignerError as e:
            raise AuthorityViolation(f"transfer {row.id}: {e.message}", kind="policy") from None
        verdict = E.judge(state, wallet, ctx, movement,
                          E.approvals_of(approvals), approved=True,
                          verified_vetoes=self.app.vetoes(
                              wallet.id, E.transaction_key(movement), verify=False),
                          reclassify=lambda p: fresh if p is policy else
                          self.service.reclassifier(tx, state, wallet, movement)(p))
        if verdict.outcome == E.SIGN and movement.safe:
            check_safe_nonce(tx, row, movement, self.app.signed, self.app.audit_public_key)
            check_safe_governance(state, row, movement)
        stored = tx.signatures(row.id)
        last = max((a.created_at for a in approvals), default=time.time())
        return _Job(row, wallet, adapter, decoded, movement, stored, last), verdict

    def _commit(self, jobs: list[_Job], expired: list[TransferRecord],
                ends: list[tuple[TransferRecord, Any]]) -> list[_Job]:
        """One write transaction. Every transfer of the batch is locked first, in id order
        (replicas writing overlapping batches queue instead of deadlocking), then the ledger
        head is share-locked (a freeze or a governance act commits before or after this write,
        never in between; the audit head is locked after them). Each transfer still APPROVED,
        whose wallet is still active and whose quorum still holds under those locks, judged
        from the ledger again, and whose stored signatures are those we read, gets its new
        signatures and its result; the expired ones are closed; the ones that end otherwise
        are written as such. Returns the jobs written."""
        svc = self.service
        written = []
        with self.store.transaction() as tx:
            ids = sorted({j.id for j in jobs} | {r.id for r in expired}
                         | {r.id for r, _ in ends})
            rows = {tid: tx.get_transfer(tid, lock=True) for tid in ids}
            tx.authority_head(share=True)
            state = svc.ledger.state(tx)
            approvals = tx.approvals_for([j.id for j in jobs]) if jobs else {}
            for job in jobs:
                row = rows[job.id]
                if row.state is not APPROVED:
                    continue  # another worker finished it; our signatures are discarded unseen
                try:
                    wallet = L.load_wallet(tx, state, job.wallet.id)
                    verdict = E.judge(state, wallet, svc.context(row), job.movement,
                                      E.approvals_of(approvals[job.id]), approved=True,
                                      verified_vetoes=self.app.vetoes(
                                          wallet.id, E.transaction_key(job.movement),
                                          verify=False),
                                      reclassify=svc.reclassifier(tx, state, wallet,
                                                                  job.movement))
                except AuthorityViolation as e:
                    svc.violated(tx, row, e)
                    continue
                if wallet.status is not WalletStatus.ACTIVE:
                    log.warning("transfer %s: wallet %s became %s before its signature was "
                                "stored; not signed", job.id, wallet.id, wallet.status.value)
                    continue
                if verdict.outcome != E.SIGN:
                    self._end(tx, row, verdict)
                    continue
                if job.movement.safe:
                    try:  # again in this write: another job of the batch may hold the nonce
                        check_safe_nonce(tx, row, job.movement, self.app.signed,
                                         self.app.audit_public_key)
                    except AuthorityViolation as e:
                        svc.violated(tx, row, e)
                        continue
                try:  # under the share-locked ledger head: as the quorum, checked again
                    check_safe_governance(state, row, job.movement)
                except AwaitingGovernance as e:
                    log.warning("transfer %s: %s", job.id, e.message)
                    continue
                if set(tx.signatures(job.id)) != set(job.stored):
                    log.warning("transfer %s: its stored signatures changed since they were "
                                "read; the next sign step redoes it", job.id)
                    continue
                for (key_id, digest), (r, s) in job.fresh.items():
                    tx.insert_signature(job.id, digest, key_id, r, s)
                self.service._fault("before_result_stored")
                signed = job.signed
                assert signed is not None
                # The nonce / outpoints stay held by the signed transfer: another transaction
                # for them needs an explicit, approved replacement (``replaces``).
                tx.update_transfer(job.id, state=TransferState.SIGNED,
                                   raw_tx=signed.raw_tx, psbt=signed.psbt, tx_hash=signed.tx_hash)
                keys = {k for k, _ in job.stored} | {k for k, _ in job.fresh}
                tx.append_audit("signerd", "transfer.signed", job.id, {
                    "tx_hash": signed.tx_hash, "complete": signed.complete,
                    "signatures": len(job.stored) + len(job.fresh), "key_ids": sorted(keys),
                    "counted": list(verdict.quorum.counted)})
                tx.emit(EV.TransferEntered(
                    job.id, row.chain, TransferState.SIGNED, submitted_at=row.created_at,
                    quorum_at=job.last_approval, tx_hash=signed.tx_hash,
                    complete=signed.complete))
                written.append(job)
            for old in expired:
                row = rows[old.id]
                if row.state is APPROVED:
                    # Inside its window, only its Tron transaction's expiration put it here.
                    svc._finish(tx, row, TransferState.EXPIRED, "signerd",
                                "the Tron transaction's expiration passed before signing"
                                if time.time() < row.expires_at else
                                "approval window passed before signing")
            for old, outcome in ends:
                row = rows[old.id]
                if row.state is APPROVED:
                    self._end(tx, row, outcome)
        return written

    def _end(self, tx: Tx, row: TransferRecord, outcome: Any) -> None:
        """An APPROVED transfer that is not signed: a violation goes FAILED; a quorum lost
        legitimately goes back to PENDING_APPROVAL (or EXPIRED, past its window)."""
        violation = outcome if isinstance(outcome, AuthorityViolation) else outcome.violation
        if violation is not None:
            self.service.violated(tx, row, violation)
            return
        if outcome.outcome == E.DENIED:  # the policy in force allows it no more
            self.service._finish(tx, row, TransferState.CANCELLED, "signerd", outcome.reason)
            return
        why = f"its quorum no longer holds ({outcome.quorum.reason})"
        if time.time() >= row.expires_at:
            self.service._finish(tx, row, TransferState.EXPIRED, "signerd",
                                 f"approval window passed; {why}")
            return
        tx.update_transfer(row.id, state=TransferState.PENDING_APPROVAL)
        tx.append_audit("signerd", "transfer.quorum_lost", row.id, {"reason": why})
        tx.emit(EV.TransferEntered(row.id, row.chain, TransferState.PENDING_APPROVAL,
                                   reason=why))

    def _after_commit(self, done: list[_Job], notify: bool) -> None:
        """The batch's write committed (its facts are reported by then: App._committed)."""
        if done:
            self.service._fault("after_result_stored")
        if done or notify:
            self.app.notifier.notify()
