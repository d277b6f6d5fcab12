"""Monotonic anchors in the HSM: how far this instance's governance ledger and audit checkpoints
have got, kept where a store writer cannot reach them.

**The threat.** signerd verifies its governance ledger from the pinned genesis and its audit
chain against HSM-signed checkpoints, and while a daemon runs it remembers how far it verified,
so a store that goes backwards is a violation. A restarted process remembers nothing: an older
copy of the database (a restored backup), or one whose ledger and audit tails were cut
consistently, still verifies from the genesis. Serving it would erase a court-ordered freeze,
a suspension or revocation, a policy tightening, a veto or the ending of a transfer: a
loosening by whoever writes to the store, alone.

**The anchor.** After each commit that advances the ledger head, and after each audit
checkpoint is stored, signerd records in the HSM token the ledger head (entry seq and hash) and
the checkpoint (its seq and the audit head it signed: event seq and hash). Each record is a
private token data object (seen and written only by a session logged in with the user PIN,
which only signerd's host holds) labelled :data:`LEDGER_LABEL` or :data:`AUDIT_LABEL`, whose
value never changes (CKA_MODIFIABLE false; SoftHSM refuses to change a data object's value
anyway). Moving an anchor forward creates a new object, and the anchor is the highest seq among
the objects of its label: it only ever moves forward, in whatever order the replicas that share
one HSM write, with no lock between them (a late write adds a lower object, which changes
nothing). Within a process the read-compare-write is serialised, so nothing lower than the
token holds is written at all. Objects below the one just written are then destroyed; an object
at the highest seq never is, so the highest is never lost. (SoftHSM's file store shows another
process's creations and deletions late and in no fixed order: the HSM layer searches again when
an object vanishes under it, and the start check reads each label twice and reads an empty one
again before it counts as missing.)

**When.** Only after the store commit (``App._committed`` for ledger appends, the checkpoint
writer once its transaction committed), never inside it: a crash between the commit and the
anchor write leaves the anchor behind the store, which is fine (it is brought forward at the
next start and by the health monitor); an anchor ahead of the store would be a false alarm.
Nothing is written per transfer: one object per ledger act and per checkpoint. Anchors are
written only by a process whose start check (below) passed. A daemon stopping on SIGTERM
checkpoints the audit chain and anchors it before it exits, so an orderly restart leaves no
ending (a veto, a cancellation) outside the anchors; after a crash, the events since the last
checkpoint are defended by the hash chain alone.

**The check** (:func:`check`). At start, and when the HSM was down at start and answers later
(``App.check_hsm_anchor``; until it passes, the HSM signs nothing), the anchors are read first,
then the store: the store's verified ledger must reach the anchored entry with the anchored
hash in its chain, and the store must hold the anchored checkpoint (same head seq and hash)
and an audit chain that reaches that head. Otherwise the daemon refuses to start, with one line
naming what is behind. Reading the anchors before the store matters with replicas: another
replica may move both forward meanwhile, and its anchor never gets ahead of the store. A
checkpoint or event that is present but rewritten is not the anchors' question: the checkpoint
signatures find those, as before (AuditChainViolation, nothing signed).

**Missing anchors.** ``signerd init`` anchors the genesis (ledger entry 1). A token that holds
no ledger anchor is accepted only while the ledger holds the genesis alone (a crash inside
``signerd init``); once the ledger has more entries a missing anchor is a violation: it was
destroyed (which takes the token's user PIN) or the state folder predates anchors (make a new
one). No audit anchor means that no checkpoint was anchored yet (before the first, or a crash
before its anchor was written), which requires nothing.

**Restoring the store from a backup (the runbook).** signerd never lowers an anchor and has no
command that does: accepting an older store is the very loosening the anchor prevents, and the
quorum that might approve it could only be judged from the store that is behind (whose
operators may include some that a lost entry revoked). A restore must bring back at least the
anchored state, which the refusal names (the ledger entry and the checkpoint). With PostgreSQL
that is point-in-time recovery to the latest commit, or a promoted synchronous standby; with
SQLite, a copy of the database taken after the last governance act and the last checkpoint
(``sqlite3 signerd.db ".backup copy.db"``). If no copy reaches the anchor, the daemon stays
refused: the store counts as lost (README, "Restoring the store").
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Union

from . import authority as AU
from . import canonical
from .audit import Checkpoint
from .authority import AuthorityState
from .errors import AuditChainViolation, AuthorityViolation, InvalidArgument, SignerError

GENESIS_LABEL = "signerd-genesis"  # the HSM data object that pins the genesis digest

log = logging.getLogger("signerd.anchor")

LEDGER_LABEL = "signerd-anchor-ledger"  # the token data objects that anchor the ledger head
AUDIT_LABEL = "signerd-anchor-audit"  # ... and the latest audit checkpoint
TAG = b"signerd-anchor/v1\n"
RUNBOOK = "restore it or see the runbook (README: Restoring the store)"
PAGE = 1000
EMPTY_READS = 3  # how often a label without objects is read before it counts as missing


class Token(Protocol):
    """The HSM calls the anchors need (signerd.adapters.hsm.Keystore)."""

    def create_data(self, label: str, value: bytes, *, destroyable: bool = False) -> None: ...
    def read_data(self, label: str) -> list[bytes]: ...
    def destroy_data(self, label: str, values: Callable[[bytes], bool]) -> int: ...


class StoreView(Protocol):
    """The store reads the check needs (signerd.adapters.store.Tx)."""

    def authority_entries(self, after_seq: int = 0, limit: int = 1000) -> list[AU.Entry]: ...
    def latest_audit_checkpoint(self, *, lock: bool = False) -> Checkpoint | None: ...
    def audit_checkpoint(self, seq: int) -> Checkpoint | None: ...
    def audit_head(self) -> tuple[int, bytes]: ...
    def audit_events_at(self, seqs: Any) -> list[Any]: ...


@dataclass(frozen=True)
class LedgerMark:
    """Ledger entry ``seq`` has hash ``hash``."""

    seq: int
    hash: bytes


@dataclass(frozen=True)
class CheckpointMark:
    """Audit checkpoint ``seq`` signed the audit head ``head_seq`` with hash ``head_hash``."""

    seq: int
    head_seq: int
    head_hash: bytes


Mark = Union[LedgerMark, CheckpointMark]


@dataclass(frozen=True)
class Marks:
    """What the token's anchors record (None: no anchor of that kind)."""

    ledger: LedgerMark | None
    checkpoint: CheckpointMark | None


def _short(h: bytes) -> str:
    return h.hex()[:16] + "..."


def encode(instance_id: str, mark: Mark) -> bytes:
    """The value of an anchor object: a tag and canonical JSON naming the instance."""
    if isinstance(mark, LedgerMark):
        doc: dict[str, Any] = {"kind": "ledger", "seq": mark.seq, "hash": mark.hash.hex()}
    else:
        doc = {"kind": "checkpoint", "seq": mark.seq, "head_seq": mark.head_seq,
               "head_hash": mark.head_hash.hex()}
    doc["instance_id"] = instance_id
    return TAG + canonical.dumps(doc)


def _violation(label: str, message: str) -> SignerError:
    if label == LEDGER_LABEL:
        return AuthorityViolation(message, kind="ledger")
    return AuditChainViolation(message, kind="checkpoint")


def decode(label: str, instance_id: str, value: bytes) -> Mark:
    """An anchor object's value; anything signerd did not write for this instance, under this
    label, is a violation (AuthorityViolation for the ledger, AuditChainViolation for the
    audit)."""
    bad = _violation(label, f"the HSM token holds a {label} object that signerd did not write "
                            f"for instance {instance_id}: refusing to trust its anchors")
    if not value.startswith(TAG):
        raise bad
    try:
        doc = canonical.loads(value[len(TAG):], label)
    except InvalidArgument:
        raise bad from None
    try:
        if not isinstance(doc, dict) or doc.get("instance_id") != instance_id:
            raise bad
        seq = doc["seq"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise bad
        if label == LEDGER_LABEL and set(doc) == {"kind", "seq", "hash", "instance_id"} \
                and doc["kind"] == "ledger":
            h = bytes.fromhex(doc["hash"])
            if len(h) == 32:
                return LedgerMark(seq, h)
        if label == AUDIT_LABEL and set(doc) == {"kind", "seq", "head_seq", "head_hash",
                                                 "instance_id"} and doc["kind"] == "checkpoint":
            head_seq, h = doc["head_seq"], bytes.fromhex(doc["head_hash"])
            if isinstance(head_seq, int) and not isinstance(head_seq, bool) and head_seq >= 1 \
                    and len(h) == 32:
                return CheckpointMark(seq, head_seq, h)
    except (KeyError, TypeError, ValueError):
        pass
    raise bad


def highest(label: str, instance_id: str, values: list[bytes]) -> Mark | None:
    """The anchor among the objects of one label: the highest seq. Two objects that disagree
    at the highest seq (two stores were anchored, a fork) are a violation."""
    marks = [decode(label, instance_id, v) for v in values]
    if not marks:
        return None
    top = max(m.seq for m in marks)
    tops = {m for m in marks if m.seq == top}
    if len(tops) > 1:
        what = "ledger entry" if label == LEDGER_LABEL else "audit checkpoint"
        raise _violation(label, f"the HSM token's anchors disagree about {what} {top}: two "
                                f"different stores were served by this instance; {RUNBOOK}")
    return tops.pop()


# --------------------------------------------------------------------------- the check


def check(tx: StoreView, state: AuthorityState, marks: Marks) -> None:
    """The store (read in ``tx``, after ``marks`` were read from the token), whose ledger verified
    to ``state``, holds everything the anchors record. Raises AuthorityViolation (kind ledger)
    when its ledger is behind or another history, AuditChainViolation when its checkpoints or
    its audit chain are behind; each message is one line naming what is behind."""
    check_ledger(tx, state, marks.ledger)
    check_checkpoint(tx, marks.checkpoint)


def check_ledger(tx: StoreView, state: AuthorityState, mark: LedgerMark | None) -> None:
    if mark is None:
        if state.seq > 1:
            raise AuthorityViolation(
                f"the HSM token holds no anchor of the governance ledger, but the store's ledger "
                f"has {state.seq} entries: the anchor was destroyed (that takes the token's "
                f"user PIN) or this state folder predates anchors; {RUNBOOK}", kind="ledger")
        return
    if state.seq < mark.seq:
        raise AuthorityViolation(
            f"the store's governance ledger ends at entry {state.seq} but the HSM anchor "
            f"records entry {mark.seq} (hash {_short(mark.hash)}): the store was rolled back or "
            f"truncated; {RUNBOOK}", kind="ledger")
    if not _in_chain(tx, state, mark):
        raise AuthorityViolation(
            f"the store's governance ledger is not the one the HSM anchor records: its entry "
            f"{mark.seq} is not {_short(mark.hash)} (the store was replaced by another history, "
            f"or rolled back and written to since); {RUNBOOK}", kind="ledger")


def _in_chain(tx: StoreView, state: AuthorityState, mark: LedgerMark) -> bool:
    """Whether entry ``mark.seq`` of the verified ledger (head ``state``) has ``mark.hash``:
    the entries from it to the head are read, each hash recomputed and each link followed to
    the verified head (cheap: the anchor is normally at the head or one entry behind)."""
    if state.seq == mark.seq:
        return state.head == mark.hash
    after, prev = mark.seq - 1, b""
    while after < state.seq:
        entries = [e for e in tx.authority_entries(after, PAGE) if e.seq <= state.seq]
        if not entries:
            return False
        for e in entries:
            if e.seq != after + 1 or e.hash != AU.entry_hash(e.prev_hash, e.seq, e.kind, e.body,
                                                             e.decisions):
                return False
            if (e.hash != mark.hash) if not prev else (e.prev_hash != prev):
                return False
            after, prev = e.seq, e.hash
    return prev == state.head


def check_checkpoint(tx: StoreView, mark: CheckpointMark | None) -> None:
    if mark is None:
        return
    at = f"checkpoint {mark.seq} (audit head seq {mark.head_seq}, hash {_short(mark.head_hash)})"
    latest = tx.latest_audit_checkpoint()
    if latest is None or latest.seq < mark.seq:
        ends = f"checkpoint {latest.seq}" if latest is not None else "no checkpoint"
        raise AuditChainViolation(
            f"the store's audit checkpoints end at {ends} but the HSM anchor records {at}: the "
            f"store was rolled back or truncated; {RUNBOOK}", kind="checkpoint")
    cp = tx.audit_checkpoint(mark.seq)
    if cp is None or (cp.head_seq, cp.head_hash) != (mark.head_seq, mark.head_hash):
        raise AuditChainViolation(
            f"the store's audit checkpoint {mark.seq} is "
            f"{'missing' if cp is None else 'another'}: the HSM anchor records {at} (the store "
            f"was rolled back and checkpointed since, or replaced); {RUNBOOK}", kind="checkpoint")
    head_seq, _ = tx.audit_head()
    if head_seq < mark.head_seq:
        raise AuditChainViolation(
            f"the store's audit chain ends at event {head_seq} but the HSM anchor records {at}: "
            f"the store was rolled back or truncated; {RUNBOOK}", kind="event")
    try:
        present = bool(tx.audit_events_at([mark.head_seq]))
    except (InvalidArgument, ValueError, TypeError):
        present = True  # there, but malformed: the checkpoint signatures report it
    if not present:
        raise AuditChainViolation(
            f"the store's audit chain has no event {mark.head_seq}, the head of the {at} the "
            f"HSM anchor records: the store was truncated; {RUNBOOK}", kind="event")


# --------------------------------------------------------------------------- the anchors


class Anchors:
    """The anchors of one instance in one HSM token: read, and moved forward only."""

    def __init__(self, token: Token, instance_id: str):
        self.token = token
        self.instance_id = instance_id
        self._lock = threading.Lock()
        # The highest mark of each label this process read or wrote: nothing at or below it
        # is written again (the token never holds less).
        self._known: dict[str, Mark] = {}

    def read(self) -> Marks:
        """The token's anchors, read now (raises a violation for objects signerd did not
        write, or that disagree)."""
        with self._lock:
            ledger = self._read(LEDGER_LABEL, twice=True)
            cp = self._read(AUDIT_LABEL, twice=True)
        return Marks(ledger if isinstance(ledger, LedgerMark) else None,
                     cp if isinstance(cp, CheckpointMark) else None)

    @property
    def known(self) -> Marks:
        """The highest marks this process read or wrote (no HSM call)."""
        ledger, cp = self._known.get(LEDGER_LABEL), self._known.get(AUDIT_LABEL)
        return Marks(ledger if isinstance(ledger, LedgerMark) else None,
                     cp if isinstance(cp, CheckpointMark) else None)

    def advance_ledger(self, seq: int, head: bytes) -> bool:
        """Anchor ledger entry ``seq`` (committed, verified) unless the token is there already.
        Whether an object was written."""
        return self._advance(LEDGER_LABEL, LedgerMark(seq, head))

    def advance_checkpoint(self, cp: Checkpoint) -> bool:
        """Anchor audit checkpoint ``cp`` (committed, signed or verified)."""
        return self._advance(AUDIT_LABEL, CheckpointMark(cp.seq, cp.head_seq, cp.head_hash))

    def _read(self, label: str, *, twice: bool = False) -> Mark | None:
        """The highest mark of ``label`` in the token. A process that shares a file-backed token
        (SoftHSM) with other writers may see its object list mid-change (a newer object not yet
        there, an older one already gone): ``twice`` takes the higher of two reads, and a label
        without objects is read again before it counts as missing."""
        values = self.token.read_data(label)
        if twice:
            values += self.token.read_data(label)
        for attempt in range(EMPTY_READS - 1):
            if values:
                break
            time.sleep(0.02 * (attempt + 1))
            values = self.token.read_data(label)
        top = highest(label, self.instance_id, values)
        known = self._known.get(label)
        if top is not None and (known is None or top.seq > known.seq):
            self._known[label] = top
        return top

    def _advance(self, label: str, mark: Mark) -> bool:
        with self._lock:
            known = self._known.get(label)
            if known is not None and known.seq >= mark.seq:
                return False
            current = self._read(label)  # another replica may be further: write nothing lower
            if current is not None and current.seq >= mark.seq:
                if current.seq == mark.seq and current != mark:
                    log.error("the HSM anchor records %s at seq %d, this process committed "
                              "another: two stores are being served", label, mark.seq)
                return False
            self.token.create_data(label, encode(self.instance_id, mark), destroyable=True)
            self._known[label] = mark

        def superseded(value: bytes) -> bool:
            try:
                return decode(label, self.instance_id, value).seq < mark.seq
            except SignerError:
                return False  # not ours to destroy; read() reports it

        try:
            self.token.destroy_data(label, superseded)
        except SignerError as e:  # the anchor is written; the old objects go next time
            log.warning("superseded HSM anchors not destroyed: %s", e.message)
        return True
