"""The tamper-evident audit chain, its checkpoints and its export format (pure: no store, no HSM,
no clock).

Each event's hash is ``SHA-256(prev_hash || canonical(event))`` with ``GENESIS`` before seq 1, so
an edited, deleted, inserted or reordered event breaks the chain at a point
:func:`verify_chain` names. Truncation and wholesale rewriting (every later hash recomputed) are
caught only against a head known from elsewhere: checkpoints. The daemon's secp256k1 audit key
(in the HSM) signs a :class:`Checkpoint` of the head, each linked to the one before, only after
verifying the chain since the previous checkpoint; :func:`verify_checkpoints` checks them
against the events with the public key alone. An export (``signerd-audit-export/v2``) carries
every event, every checkpoint up to its head, and the head signed by the same key (64-byte
low-S r||s over :func:`head_digest`); v1 exports (no checkpoints) are still read.

Canonical form is JSON with sorted keys, no whitespace and ASCII only. Detail values are
str, int (|v| < 2**256), bool, None, list or dict with str keys; floats are refused so the bytes
of an event have one spelling.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Union

import coincurve
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from signerd.core import canonical as canonical_json
from signerd.core.errors import InvalidArgument

GENESIS = b"\x00" * 32
EXPORT_FORMAT = "signerd-audit-export/v2"  # v1 plus the checkpoints
EXPORT_FORMAT_V1 = "signerd-audit-export/v1"
HEAD_TAG = b"signerd-audit-head/v1"
CHECKPOINT_TAG = b"signerd-audit-checkpoint/v1"
NO_CHECKPOINT = b"\x00" * 32  # the prev of checkpoint 1
NO_ENDINGS = b"\x00" * 32  # the endings digest before any transfer or proposal ended
ENDINGS_TAG = b"signerd-audit-endings/v1"
# Events that end a transfer, a proposal or an attestation for good. Each checkpoint commits to
# the running digest of these (:func:`endings_link`), so a store writer who deletes the event that
# ended one (a veto, a cancellation) and sets its row back to waiting is found: the daemon keeps
# the set of ended ids, checked against the latest checkpoint at start, and refuses to act on
# them.
# ``transfer.vetoed`` goes with the rejection a veto made: its object (:func:`veto_object`)
# names the wallet, the transaction, the vetoing role and the transfer, so the record of a veto
# is held to the checkpoints just as the rejection is.
# An attestation (a proof of control) ends the same way: signed, rejected, expired or failed,
# and a row set back to waiting or to approved signs nothing.
VETO_ACTION = "transfer.vetoed"
SIGNED_ACTION = "transfer.signed"
ENDING_ACTIONS = frozenset({
    "transfer.signed", "transfer.rejected", "transfer.expired", "transfer.cancelled",
    "transfer.failed", "proposal.applied", "proposal.rejected", "proposal.expired",
    "proposal.cancelled", "proposal.failed", VETO_ACTION, "attestation.signed",
    "attestation.rejected", "attestation.expired", "attestation.failed",
})
_VETO_OBJECT = re.compile(r"veto/([^/\s]+)/([0-9a-f]{64})/([^/\s]+)/([^/\s]+)")

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
MAX_SEQ = 2**63 - 1  # fits a signed 64-bit store column, and head_digest's 8 bytes
MAX_DETAIL_INT = 2**256
MAX_DETAIL_DEPTH = 32

Detail = Union[str, int, bool, None, list["Detail"], dict[str, "Detail"]]

_BODY_KEYS = ("action", "actor", "details", "object", "seq", "time")
_EVENT_KEYS = frozenset(_BODY_KEYS) | {"prev_hash", "hash"}
_HEADER_KEYS = frozenset(
    {
        "format", "instance_id", "count", "head_hash", "head_seq",
        "audit_public_key", "head_signature",
    }
)
_HEADER_KEYS_V2 = _HEADER_KEYS | {"checkpoints"}
_CHECKPOINT_KEYS = frozenset({"checkpoint", "head_seq", "head_hash", "prev", "time", "endings",
                              "signature"})
_HEX32 = re.compile(r"[0-9a-f]{64}")


_dumps = canonical_json.dumps  # the one canonical spelling


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_detail(value: object, path: str, depth: int) -> None:
    if depth > MAX_DETAIL_DEPTH:
        raise InvalidArgument(f"{path}: nested deeper than {MAX_DETAIL_DEPTH}")
    if value is None or isinstance(value, (str, bool)):
        return
    if _is_int(value):
        if not -MAX_DETAIL_INT < value < MAX_DETAIL_INT:  # type: ignore[operator]
            raise InvalidArgument(f"{path}: integer out of range (|v| < 2**256)")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_detail(item, f"{path}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidArgument(f"{path}: key {key!r} is not a string")
            _check_detail(item, f"{path}.{key}", depth + 1)
        return
    raise InvalidArgument(
        f"{path}: {type(value).__name__} is not allowed (str, int, bool, None, list, dict)"
    )


def _check_body(
    seq: object, time: object, actor: object, action: object, object_: object, details: object
) -> None:
    if not _is_int(seq) or not 1 <= seq <= MAX_SEQ:  # type: ignore[operator]
        raise InvalidArgument(f"seq: must be an integer in 1..2**63-1, got {seq!r}")
    if not _is_int(time) or not 0 <= time <= MAX_SEQ:  # type: ignore[operator]
        raise InvalidArgument(f"time: must be non-negative integer microseconds, got {time!r}")
    for name, value in (("actor", actor), ("action", action), ("object", object_)):
        if not isinstance(value, str):
            raise InvalidArgument(f"{name}: must be a string, got {type(value).__name__}")
    if not isinstance(details, dict):
        raise InvalidArgument(f"details: must be a dict, got {type(details).__name__}")
    _check_detail(details, "details", 0)


def _check_hash(name: str, value: object) -> None:
    if not isinstance(value, bytes) or len(value) != 32:
        raise InvalidArgument(f"{name}: must be 32 bytes")


@dataclass(frozen=True)
class AuditEvent:
    """One link of the chain. ``time`` is integer microseconds since the Unix epoch (UTC).

    Construction checks types only; whether ``hash`` and ``prev_hash`` are right is
    :func:`verify_chain`'s question, so a tampered event can still be represented. ``details``
    is a private deep copy; treat it as read-only.
    """

    seq: int
    time: int
    actor: str
    action: str
    object: str
    details: dict[str, Detail]
    prev_hash: bytes
    hash: bytes

    def __post_init__(self) -> None:
        _check_body(self.seq, self.time, self.actor, self.action, self.object, self.details)
        _check_hash("prev_hash", self.prev_hash)
        _check_hash("hash", self.hash)
        object.__setattr__(self, "details", json.loads(_dumps(self.details)))


def _body(
    seq: int, time: int, actor: str, action: str, object_: str, details: Mapping[str, Any]
) -> bytes:
    return _dumps(
        {
            "seq": seq, "time": time, "actor": actor, "action": action,
            "object": object_, "details": details,
        }
    )


def canonical(fields: AuditEvent | Mapping[str, Any]) -> bytes:
    """The hashed body of an event: seq, time, actor, action, object and details.

    ``fields`` is an event or a mapping with exactly those keys (``prev_hash`` and ``hash`` may
    be present and are left out).
    """
    if isinstance(fields, AuditEvent):
        e = fields
        return _body(e.seq, e.time, e.actor, e.action, e.object, e.details)
    keys = set(fields)
    missing = sorted(set(_BODY_KEYS) - keys)
    extra = sorted(keys - _EVENT_KEYS)
    if missing or extra:
        raise InvalidArgument(f"audit event fields: missing {missing}, unexpected {extra}")
    values = [fields[k] for k in ("seq", "time", "actor", "action", "object", "details")]
    _check_body(*values)
    return _body(*values)


def chain_hash(
    prev_hash: bytes,
    seq: int,
    time: int,
    actor: str,
    action: str,
    object: str,
    details: Mapping[str, Any],
) -> bytes:
    _check_hash("prev_hash", prev_hash)
    _check_body(seq, time, actor, action, object, details)
    return hashlib.sha256(prev_hash + _body(seq, time, actor, action, object, details)).digest()


def _event_hash(event: AuditEvent) -> bytes:
    return hashlib.sha256(event.prev_hash + canonical(event)).digest()


def new_event(
    prev: AuditEvent | None,
    *,
    time: int,
    actor: str,
    action: str,
    object: str,
    details: Mapping[str, Any],
) -> AuditEvent:
    """The event that follows ``prev`` (or the first event, seq 1, after GENESIS)."""
    seq = prev.seq + 1 if prev is not None else 1
    prev_hash = prev.hash if prev is not None else GENESIS
    digest = chain_hash(prev_hash, seq, time, actor, action, object, dict(details))
    return AuditEvent(seq, time, actor, action, object, dict(details), prev_hash, digest)


@dataclass(frozen=True)
class VerifyResult:
    """``checked`` counts the events that passed before the first problem. ``first_bad_seq`` is
    the lowest seq at which the chain is wrong, or None when the problem cannot be pinned to one
    event (a bad signature or header, or a consistent chain whose head is not the expected one).

    For an export with checkpoints, ``checkpoints`` counts the checkpoints that passed and
    ``bad_checkpoint`` names the first one that did not (then ``first_bad_seq`` is the event it
    contradicts, if any)."""

    ok: bool
    checked: int
    first_bad_seq: int | None
    problem: str
    bad_checkpoint: int | None = None
    checkpoints: int = 0


def verify_chain(
    events: Iterable[AuditEvent],
    *,
    expected_head: bytes | None = None,
    expected_count: int | None = None,
    after: tuple[int, bytes] = (0, GENESIS),
) -> VerifyResult:
    """Check a run of the chain, streaming; stops at the first problem.

    By default the run is the whole chain from seq 1 (linking to GENESIS). ``after`` is the
    ``(seq, hash)`` of the event just before the run, known good from elsewhere (a checkpoint):
    the run must then start at ``seq + 1`` and link to ``hash``. ``expected_count`` counts the
    events of the run, ``expected_head`` is the hash its last event must have.
    """
    start_seq, prev_hash = after
    _check_hash("after hash", prev_hash)
    checked = 0
    head_found_at: int | None = None

    def bad(seq: int | None, problem: str) -> VerifyResult:
        return VerifyResult(False, checked, seq, problem)

    for event in events:
        last = start_seq + checked
        expected_seq = last + 1
        if expected_count is not None and checked == expected_count:
            return bad(expected_seq, f"seq {event.seq} found after seq {last}, "
                                     "where the chain should end")
        if event.seq > expected_seq:
            return bad(expected_seq, f"seq {expected_seq} is missing or out of order: "
                                     f"seq {event.seq} follows seq {last}")
        if event.seq < expected_seq:
            return bad(event.seq, f"seq {event.seq} appears again after seq {last}: "
                                  "inserted or reordered event")
        if event.prev_hash != prev_hash:
            return bad(event.seq, f"seq {event.seq}: prev_hash does not match the hash of "
                                  f"seq {last} (broken link)")
        if event.hash != _event_hash(event):
            return bad(event.seq, f"seq {event.seq}: hash does not match its content "
                                  "(event altered)")
        prev_hash = event.hash
        checked += 1
        if expected_head is not None and event.hash == expected_head:
            head_found_at = event.seq

    last = start_seq + checked
    if expected_count is not None and checked < expected_count:
        since = f" after seq {start_seq}" if start_seq else ""
        return bad(last + 1, f"chain ends at seq {last} but {expected_count} events "
                             f"were expected{since} (truncated)")
    if expected_head is not None and prev_hash != expected_head:
        if head_found_at is not None:
            return bad(head_found_at + 1, f"events follow the expected head at seq {head_found_at}")
        return bad(None, f"head hash of seq {last} is not the expected head: "
                         "the chain was truncated or rewritten")
    return VerifyResult(True, checked, None, "")


# --- head signature --------------------------------------------------------------------------


def head_digest(instance_id: str, head_seq: int, head_hash: bytes) -> bytes:
    """What the audit key signs: SHA-256(tag || instance_id || head_seq u64 BE || head_hash)."""
    _check_hash("head_hash", head_hash)
    if not _is_int(head_seq) or not 0 <= head_seq <= MAX_SEQ:
        raise InvalidArgument(f"head_seq: out of range, got {head_seq!r}")
    message = HEAD_TAG + instance_id.encode() + head_seq.to_bytes(8, "big") + head_hash
    return hashlib.sha256(message).digest()


def _split_signature(signature: bytes) -> tuple[int, int]:
    if not isinstance(signature, bytes) or len(signature) != 64:
        raise InvalidArgument("head_signature: must be 64 bytes r||s")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    if not (0 < r < SECP256K1_N and 0 < s < SECP256K1_N):
        raise InvalidArgument("head_signature: r or s out of range")
    return r, s


def normalize_head_signature(signature: bytes) -> bytes:
    """The low-S form of a 64-byte r||s signature (an HSM returns either; exports hold low-S)."""
    r, s = _split_signature(signature)
    if s > SECP256K1_N // 2:
        s = SECP256K1_N - s
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _parse_public_key(public_key: bytes) -> coincurve.PublicKey:
    if not isinstance(public_key, bytes) or len(public_key) != 33 or public_key[0] not in (2, 3):
        raise InvalidArgument("audit_public_key: must be a 33-byte compressed secp256k1 key")
    try:
        return coincurve.PublicKey(public_key)
    except ValueError:
        raise InvalidArgument("audit_public_key: not a point on secp256k1") from None


def _signature_valid(public_key: bytes, signature: bytes, digest: bytes) -> bool:
    r, s = _split_signature(signature)
    return _parse_public_key(public_key).verify(encode_dss_signature(r, s), digest, hasher=None)


# --- checkpoints ----------------------------------------------------------------------------


@dataclass(frozen=True)
class UnsignedCheckpoint:
    """The statement an audit checkpoint signs: "the chain of this instance had ``head_hash`` at
    ``head_seq``". ``seq`` numbers checkpoints from 1; ``prev`` is the digest of checkpoint
    ``seq - 1`` (:data:`NO_CHECKPOINT` for the first), so a deleted, reordered or replaced
    checkpoint breaks the links after it; ``time`` is integer microseconds since the Unix epoch.

    Because each event's hash covers every event before it, a checkpoint commits to the whole
    chain up to ``head_seq``: rewriting any earlier event, however consistently the later hashes
    are recomputed, changes the hash at ``head_seq``. Construction checks types only.
    """

    seq: int
    head_seq: int
    head_hash: bytes
    prev: bytes
    time: int
    endings: bytes  # :func:`endings_link` folded over every ending event up to head_seq

    def __post_init__(self) -> None:
        for name in ("seq", "head_seq"):
            value = getattr(self, name)
            if not _is_int(value) or not 1 <= value <= MAX_SEQ:
                raise InvalidArgument(f"checkpoint {name}: must be an integer in 1..2**63-1, "
                                      f"got {value!r}")
        if not _is_int(self.time) or not 0 <= self.time <= MAX_SEQ:
            raise InvalidArgument(f"checkpoint time: must be non-negative integer microseconds, "
                                  f"got {self.time!r}")
        _check_hash("checkpoint head_hash", self.head_hash)
        _check_hash("checkpoint prev", self.prev)
        _check_hash("checkpoint endings", self.endings)

    def digest(self, instance_id: str) -> bytes:
        return checkpoint_digest(instance_id, self.seq, self.head_seq, self.head_hash, self.prev,
                                 self.time, self.endings)

    def signed(self, signature: bytes, instance_id: str, audit_public_key: bytes) -> "Checkpoint":
        """This checkpoint with ``signature`` (r||s as an HSM returns it, stored low-S). The
        signature must verify under ``audit_public_key``: a signature over the wrong digest fails
        here, not at the auditor's desk."""
        low_s = normalize_head_signature(signature)
        if not _signature_valid(audit_public_key, low_s, self.digest(instance_id)):
            raise InvalidArgument(f"the signature of checkpoint {self.seq} does not verify "
                                  "under the given audit key")
        return Checkpoint(self.seq, self.head_seq, self.head_hash, self.prev, self.time,
                          self.endings, low_s)


@dataclass(frozen=True)
class Checkpoint(UnsignedCheckpoint):
    """A checkpoint with the audit key's 64-byte low-S r||s over :meth:`digest`. Construction
    checks types only; whether the signature verifies is :func:`verify_checkpoints`' question."""

    signature: bytes

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.signature, bytes) or len(self.signature) != 64:
            raise InvalidArgument("checkpoint signature: must be 64 bytes r||s")

    def unsigned(self) -> UnsignedCheckpoint:
        return UnsignedCheckpoint(self.seq, self.head_seq, self.head_hash, self.prev, self.time,
                                  self.endings)


def checkpoint_digest(instance_id: str, seq: int, head_seq: int, head_hash: bytes, prev: bytes,
                      time: int, endings: bytes = NO_ENDINGS) -> bytes:
    """What the audit key signs for a checkpoint: SHA-256(tag || instance_id || seq u64 BE ||
    head_seq u64 BE || head_hash || prev || time u64 BE || endings).

    Every field after the instance id has a fixed width, so the message has one reading; the
    tag differs from the head's (``signerd-audit-head/v1``) and the seal's
    (``signerd-seal/v1``) within their common length, so no digest of one kind is a digest of
    another, although the same key signs all three."""
    if not isinstance(instance_id, str) or not instance_id:
        raise InvalidArgument("instance_id: must be a non-empty string")
    _check_hash("head_hash", head_hash)
    _check_hash("prev", prev)
    _check_hash("endings", endings)
    for name, value in (("seq", seq), ("head_seq", head_seq), ("time", time)):
        if not _is_int(value) or not 0 <= value <= MAX_SEQ:
            raise InvalidArgument(f"checkpoint {name}: out of range, got {value!r}")
    message = (CHECKPOINT_TAG + instance_id.encode() + seq.to_bytes(8, "big")
               + head_seq.to_bytes(8, "big") + head_hash + prev + time.to_bytes(8, "big")
               + endings)
    return hashlib.sha256(message).digest()


def endings_link(prev: bytes, seq: int, action: str, object_: str) -> bytes:
    """The endings digest after event ``seq``: unchanged unless ``action`` ends a transfer or a
    proposal (:data:`ENDING_ACTIONS`), else SHA-256(tag || prev || seq u64 BE || action || LF ||
    object). A hash chain over the ending events alone, so it can be checked by reading just
    those (an index serves them) against the value a checkpoint signed."""
    if action not in ENDING_ACTIONS:
        return prev
    return hashlib.sha256(ENDINGS_TAG + prev + seq.to_bytes(8, "big") + action.encode() + b"\n"
                          + object_.encode()).digest()


def veto_object(wallet_id: str, transaction: str, role: str, transfer_id: str) -> str:
    """The object of a ``transfer.vetoed`` event: ``veto/WALLET/TRANSACTION/ROLE/TRANSFER``,
    where TRANSACTION is the hex key of the vetoed transaction (what it would have signed);
    everything a later submission of that transaction is held to is in the object, which the
    checkpoints' endings digest commits to."""
    obj = f"veto/{wallet_id}/{transaction}/{role}/{transfer_id}"
    if parse_veto_object(obj) is None:
        raise InvalidArgument(f"cannot name a veto by {wallet_id!r}, {transaction!r}, {role!r}, "
                              f"{transfer_id!r}")
    return obj


def parse_veto_object(obj: str) -> tuple[str, str, str, str] | None:
    """(wallet, transaction, role, transfer) of a ``transfer.vetoed`` event's object, or None."""
    m = _VETO_OBJECT.fullmatch(obj)
    return None if m is None else (m.group(1), m.group(2), m.group(3), m.group(4))


def fold_endings(prev: bytes, events: Iterable[AuditEvent]) -> bytes:
    for e in events:
        prev = endings_link(prev, e.seq, e.action, e.object)
    return prev


def checkpoint_link(previous: UnsignedCheckpoint | None, instance_id: str) -> bytes:
    """The ``prev`` of the checkpoint after ``previous``."""
    return NO_CHECKPOINT if previous is None else previous.digest(instance_id)


def next_checkpoint(previous: UnsignedCheckpoint | None, instance_id: str, *, head_seq: int,
                    head_hash: bytes, time: int, endings: bytes = NO_ENDINGS
                    ) -> UnsignedCheckpoint:
    """The checkpoint after ``previous`` (the first when None) over the head ``(head_seq,
    head_hash)``, which must lie past ``previous``'s head: a checkpoint always advances."""
    if previous is not None and head_seq <= previous.head_seq:
        raise InvalidArgument(f"head seq {head_seq} does not advance past checkpoint "
                              f"{previous.seq} at seq {previous.head_seq}")
    return UnsignedCheckpoint(previous.seq + 1 if previous is not None else 1, head_seq,
                              head_hash, checkpoint_link(previous, instance_id), time, endings)


def checkpoint_signature_valid(cp: Checkpoint, instance_id: str, audit_public_key: bytes) -> bool:
    """Whether ``cp`` carries the audit key's low-S signature over its digest."""
    try:
        if normalize_head_signature(cp.signature) != cp.signature:
            return False
        return _signature_valid(audit_public_key, cp.signature, cp.digest(instance_id))
    except InvalidArgument:
        return False


@dataclass(frozen=True)
class CheckpointResult:
    """``checked`` counts the checkpoints that passed before the first problem;
    ``bad_checkpoint`` is the seq of the first that did not (None when the problem is the list's
    start), ``first_bad_seq`` the event seq the problem shows at, when one does."""

    ok: bool
    checked: int
    bad_checkpoint: int | None
    first_bad_seq: int | None
    problem: str


def verify_checkpoints(
    checkpoints: Iterable[Checkpoint],
    events: Iterable[AuditEvent],
    *,
    instance_id: str,
    audit_public_key: bytes,
    after: Checkpoint | None = None,
) -> CheckpointResult:
    """Check checkpoints against the chain: each is signed by the audit key over its digest, the
    list is consecutive and each links to the one before, each head lies past the one before,
    and the event at each ``head_seq`` is there, has exactly ``head_hash`` and hashes to it.

    The list starts at checkpoint 1 (linking to :data:`NO_CHECKPOINT`), or continues ``after``,
    a checkpoint verified before (not checked again, except that its head event must still carry
    its head hash). ``events`` is ascending by seq and must include every checkpoint's head
    event; other events are skipped, and whether they link is :func:`verify_chain`'s question
    (a checkpoint commits to them through the hash at its head). Checkpoints are judged in
    order and the first problem is reported; a rewritten event shows at the first checkpoint
    whose head lies at or after it.
    """
    cps = list(checkpoints)
    key_ok = True
    try:
        _parse_public_key(audit_public_key)
    except InvalidArgument:
        key_ok = False
    # The structural checks need no events: find the first checkpoint that fails one.
    structural: tuple[int, int, str] | None = None  # (index, checkpoint seq, problem)
    expected = after.seq + 1 if after is not None else 1
    link = checkpoint_link(after, instance_id)
    last_head = after.head_seq if after is not None else 0
    for i, cp in enumerate(cps):
        name = f"checkpoint {cp.seq}"
        problem = ""
        if cp.seq != expected:
            what = (f"checkpoint {expected} is missing: checkpoint {cp.seq} follows"
                    if cp.seq > expected else f"checkpoint {cp.seq} appears again after")
            problem = (f"{what} checkpoint {expected - 1} (a checkpoint was deleted, inserted "
                       "or reordered)")
        elif cp.prev != link:
            problem = (f"{name} does not link to checkpoint {cp.seq - 1} (its prev differs: "
                       f"checkpoint {cp.seq - 1} was altered or replaced)")
        elif not key_ok or not checkpoint_signature_valid(cp, instance_id, audit_public_key):
            problem = (f"{name}: the signature does not verify under the audit key (forged or "
                       "altered checkpoint)")
        elif cp.head_seq <= last_head:
            problem = (f"{name}: head seq {cp.head_seq} does not advance past seq {last_head} "
                       "of the checkpoint before it")
        if problem:
            structural = (i, min(expected, cp.seq), problem)
            break
        expected, link, last_head = cp.seq + 1, cp.digest(instance_id), cp.head_seq
    good = cps if structural is None else cps[:structural[0]]
    heads = [after] if after is not None else []
    heads += good
    wanted = {cp.head_seq for cp in heads}
    found: dict[int, AuditEvent] = {}
    for event in events:
        if event.seq in wanted and event.seq not in found:
            found[event.seq] = event
    checked = 0
    previous_head = 0
    for cp in heads:
        at_head = found.get(cp.head_seq)
        span = (f"seq {previous_head + 1}..{cp.head_seq}" if previous_head
                else f"seq {cp.head_seq} or before it")
        trouble = ""
        if at_head is None:
            trouble = (f"event seq {cp.head_seq}, which the checkpoint signed, is missing "
                       "(events were deleted)")
        elif at_head.hash != cp.head_hash:
            trouble = (f"event seq {cp.head_seq} has hash {at_head.hash.hex()[:16]}..., the "
                       f"checkpoint signed {cp.head_hash.hex()[:16]}...: an event in {span} was "
                       "rewritten after the checkpoint")
        elif _event_hash(at_head) != at_head.hash:
            trouble = (f"event seq {cp.head_seq}: hash does not match its content (event "
                       "altered after the checkpoint)")
        if trouble:
            return CheckpointResult(False, checked, cp.seq, cp.head_seq,
                                    f"checkpoint {cp.seq}: {trouble}")
        previous_head = cp.head_seq
        if cp is not after:
            checked += 1
    if structural is not None:
        return CheckpointResult(False, checked, structural[1], None, structural[2])
    return CheckpointResult(True, checked, None, None, "")


# --- export ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportHeader:
    """Line 1 of an export. ``checkpoints`` (v2 only, None in v1) is the number of checkpoint
    lines after the events."""

    instance_id: str
    count: int
    head_hash: bytes
    head_seq: int
    audit_public_key: bytes
    head_signature: bytes
    format: str = EXPORT_FORMAT_V1
    checkpoints: int | None = None


@dataclass(frozen=True)
class Export:
    """A parsed export: its header, its events and (v2) its checkpoints."""

    header: ExportHeader
    events: list[AuditEvent]
    checkpoints: list[Checkpoint]


def _header_json(h: ExportHeader) -> bytes:
    fields: dict[str, Any] = {
        "format": h.format,
        "instance_id": h.instance_id,
        "count": h.count,
        "head_hash": h.head_hash.hex(),
        "head_seq": h.head_seq,
        "audit_public_key": h.audit_public_key.hex(),
        "head_signature": h.head_signature.hex(),
    }
    if h.format != EXPORT_FORMAT_V1:
        fields["checkpoints"] = h.checkpoints
    return _dumps(fields)


def _checkpoint_json(cp: Checkpoint) -> bytes:
    return _dumps(
        {
            "checkpoint": cp.seq,
            "head_seq": cp.head_seq,
            "head_hash": cp.head_hash.hex(),
            "prev": cp.prev.hex(),
            "time": cp.time,
            "endings": cp.endings.hex(),
            "signature": cp.signature.hex(),
        }
    )


def _event_json(e: AuditEvent) -> bytes:
    return _dumps(
        {
            "seq": e.seq,
            "time": e.time,
            "actor": e.actor,
            "action": e.action,
            "object": e.object,
            "details": e.details,
            "prev_hash": e.prev_hash.hex(),
            "hash": e.hash.hex(),
        }
    )


def export_document(
    events: Iterable[AuditEvent],
    head_signature: bytes,
    audit_pubkey: bytes,
    instance_id: str,
    checkpoints: Iterable[Checkpoint] | None = None,
) -> bytes:
    """JSON lines: a header, then one event per line, then (v2) one checkpoint per line, each
    line ending in ``\\n``.

    The head is the last event (seq 0 and GENESIS for an empty chain). ``head_signature`` is the
    audit key's r||s over :func:`head_digest` of that head; it is stored low-S and must verify,
    so a signature over the wrong head fails here, not at the auditor's desk. The events and
    checkpoints are written as they are, even if the chain or the checkpoints are broken: an
    export is evidence. With ``checkpoints`` the document is :data:`EXPORT_FORMAT` (v2), which
    :func:`verify_export` accepts only when the last checkpoint is at the head; without, it is
    the v1 format of exports made before checkpoints existed.
    """
    events = list(events)
    cps = None if checkpoints is None else list(checkpoints)
    header = export_header(
        head_seq=events[-1].seq if events else 0, head_hash=events[-1].hash if events else GENESIS,
        count=len(events), head_signature=head_signature, audit_pubkey=audit_pubkey,
        instance_id=instance_id, checkpoints=None if cps is None else len(cps))
    return b"".join(export_lines(header, events, cps or ()))


def export_header(*, head_seq: int, head_hash: bytes, count: int, head_signature: bytes,
                  audit_pubkey: bytes, instance_id: str, checkpoints: int | None) -> ExportHeader:
    """The header of an export whose head is ``head_seq``/``head_hash`` with ``count`` events
    and (v2) ``checkpoints`` checkpoint lines; ``head_signature`` must verify over that head
    (it is stored low-S)."""
    if not isinstance(instance_id, str) or not instance_id:
        raise InvalidArgument("instance_id: must be a non-empty string")
    signature = normalize_head_signature(head_signature)
    if not _signature_valid(audit_pubkey, signature, head_digest(instance_id, head_seq, head_hash)):
        raise InvalidArgument(
            f"head_signature does not verify for seq {head_seq} under the given audit key"
        )
    if checkpoints is None:
        return ExportHeader(instance_id, count, head_hash, head_seq, audit_pubkey, signature)
    return ExportHeader(instance_id, count, head_hash, head_seq, audit_pubkey, signature,
                        EXPORT_FORMAT, checkpoints)


def export_lines(header: ExportHeader, events: Iterable[AuditEvent],
                 checkpoints: Iterable[Checkpoint] = ()) -> Iterator[bytes]:
    """The lines of an export, each ending in ``\\n``, as they are written: a document of any
    length is produced in constant memory."""
    yield _header_json(header) + b"\n"
    for e in events:
        yield _event_json(e) + b"\n"
    for cp in checkpoints:
        yield _checkpoint_json(cp) + b"\n"


def _load_line(text: str, where: str) -> dict[str, Any]:
    try:
        value = canonical_json.parse_strict(text)
    except RecursionError:
        raise InvalidArgument(f"{where}: nested too deeply") from None
    except ValueError as exc:
        raise InvalidArgument(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"{where}: not a JSON object")
    return value


def _keys(obj: dict[str, Any], expected: frozenset[str], where: str) -> None:
    missing = sorted(expected - obj.keys())
    extra = sorted(obj.keys() - expected)
    if missing or extra:
        raise InvalidArgument(f"{where}: missing keys {missing}, unexpected keys {extra}")


def _hex32(obj: dict[str, Any], key: str, where: str) -> bytes:
    value = obj[key]
    if not isinstance(value, str) or not _HEX32.fullmatch(value):
        raise InvalidArgument(f"{where}: {key} must be 64 lowercase hex digits")
    return bytes.fromhex(value)


def _parse_header(obj: dict[str, Any], where: str) -> ExportHeader:
    if "format" in obj and obj["format"] not in (EXPORT_FORMAT, EXPORT_FORMAT_V1):
        raise InvalidArgument(f"{where}: format must be {EXPORT_FORMAT!r} or "
                              f"{EXPORT_FORMAT_V1!r}, got {obj['format']!r}")
    v2 = obj.get("format") == EXPORT_FORMAT
    _keys(obj, _HEADER_KEYS_V2 if v2 else _HEADER_KEYS, where)
    instance_id = obj["instance_id"]
    if not isinstance(instance_id, str) or not instance_id:
        raise InvalidArgument(f"{where}: instance_id must be a non-empty string")
    for key in ("count", "head_seq", "checkpoints") if v2 else ("count", "head_seq"):
        if not _is_int(obj[key]) or not 0 <= obj[key] <= MAX_SEQ:
            raise InvalidArgument(f"{where}: {key} must be an integer in 0..2**63-1")
    public_key = obj["audit_public_key"]
    signature = obj["head_signature"]
    if not isinstance(public_key, str) or not re.fullmatch(r"0[23][0-9a-f]{64}", public_key):
        raise InvalidArgument(
            f"{where}: audit_public_key must be 66 lowercase hex digits (compressed key)"
        )
    if not isinstance(signature, str) or not re.fullmatch(r"[0-9a-f]{128}", signature):
        raise InvalidArgument(f"{where}: head_signature must be 128 lowercase hex digits (r||s)")
    try:
        key_bytes = bytes.fromhex(public_key)
        _parse_public_key(key_bytes)
        sig_bytes = bytes.fromhex(signature)
        if normalize_head_signature(sig_bytes) != sig_bytes:
            raise InvalidArgument("head_signature: s must be in the lower half (low-S)")
    except InvalidArgument as exc:
        raise InvalidArgument(f"{where}: {exc}") from None
    return ExportHeader(
        instance_id, obj["count"], _hex32(obj, "head_hash", where), obj["head_seq"],
        key_bytes, sig_bytes, obj["format"], obj["checkpoints"] if v2 else None,
    )


def _parse_event(obj: dict[str, Any], where: str) -> AuditEvent:
    _keys(obj, _EVENT_KEYS, where)
    prev_hash = _hex32(obj, "prev_hash", where)
    digest = _hex32(obj, "hash", where)
    try:
        return AuditEvent(
            obj["seq"], obj["time"], obj["actor"], obj["action"], obj["object"], obj["details"],
            prev_hash, digest,
        )
    except InvalidArgument as exc:
        raise InvalidArgument(f"{where}: {exc}") from None


def _parse_checkpoint(obj: dict[str, Any], where: str) -> Checkpoint:
    _keys(obj, _CHECKPOINT_KEYS, where)
    signature = obj["signature"]
    if not isinstance(signature, str) or not re.fullmatch(r"[0-9a-f]{128}", signature):
        raise InvalidArgument(f"{where}: signature must be 128 lowercase hex digits (r||s)")
    try:
        return Checkpoint(obj["checkpoint"], obj["head_seq"], _hex32(obj, "head_hash", where),
                          _hex32(obj, "prev", where), obj["time"],
                          _hex32(obj, "endings", where), bytes.fromhex(signature))
    except InvalidArgument as exc:
        raise InvalidArgument(f"{where}: {exc}") from None


Item = Union[ExportHeader, AuditEvent, Checkpoint]


def _lines_of(data: bytes) -> Iterator[bytes]:
    """The lines of ``data``, split at ``\\n`` only, each with its ``\\n`` (the last may lack it)."""
    data = bytes(data)
    start = 0
    while start < len(data):
        end = data.find(b"\n", start)
        if end < 0:
            yield data[start:]
            return
        yield data[start:end + 1]
        start = end + 1


def read_lines(lines: Iterable[bytes]) -> Iterator[Item]:
    """Parse an export line by line, strictly (see :func:`read_export`): yields its header, then
    each event, then (v2) each checkpoint, as it reads them, so a document of any length is
    parsed in constant memory. Each line is given with its ``\n`` (as a binary file iterates)."""
    header: ExportHeader | None = None
    in_checkpoints = False
    offset = 0
    number = 0
    for number, raw in enumerate(lines, start=1):
        where = f"line {number}"
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise InvalidArgument(f"{where}: non-ASCII byte at offset {offset + exc.start}"
                                  ) from None
        offset += len(raw)
        if not text.endswith("\n"):
            raise InvalidArgument(f"{where}: last line does not end with a newline")
        line = text[:-1]
        obj = _load_line(line, where)
        item: Item
        if header is None:
            item = header = _parse_header(obj, where)
            again = _header_json(header)
        elif header.format == EXPORT_FORMAT and "checkpoint" in obj:
            item = _parse_checkpoint(obj, where)
            again = _checkpoint_json(item)
            in_checkpoints = True
        elif in_checkpoints:
            raise InvalidArgument(f"{where}: an event line after the checkpoint lines")
        else:
            item = _parse_event(obj, where)
            again = _event_json(item)
        if again != line.encode("ascii"):
            raise InvalidArgument(
                f"{where}: not in canonical form (sorted keys, no spaces, lowercase hex)"
            )
        yield item
    if number == 0:
        raise InvalidArgument("line 1: empty document, header missing")


def read_export(data: bytes) -> Export:
    """Parse an export strictly: ASCII, ``\\n``-terminated lines, each in canonical form (so every
    document has exactly one spelling), exact key sets, typed values; in v2, the checkpoint lines
    (those with a ``checkpoint`` key) come after every event line. Raises InvalidArgument naming
    the 1-based line (the header is line 1). Says nothing about hashes or signatures."""
    items = read_lines(_lines_of(data))
    header = next(items)
    assert isinstance(header, ExportHeader)
    events: list[AuditEvent] = []
    checkpoints: list[Checkpoint] = []
    for item in items:
        (checkpoints if isinstance(item, Checkpoint) else events).append(item)  # type: ignore[arg-type]
    return Export(header, events, checkpoints)


def parse_export(data: bytes) -> tuple[ExportHeader, list[AuditEvent]]:
    """The header and events of an export (see :func:`read_export`, which also gives the
    checkpoints of a v2 export)."""
    doc = read_export(data)
    return doc.header, doc.events


def verify_export(
    data: bytes,
    *,
    audit_public_key: bytes | None = None,
    instance_id: str | None = None,
) -> VerifyResult:
    """Verify an export held in memory (see :func:`verify_export_lines`)."""
    return verify_export_lines(lambda: _lines_of(data), audit_public_key=audit_public_key,
                               instance_id=instance_id)


def verify_export_lines(
    open_lines: Callable[[], Iterable[bytes]],
    *,
    audit_public_key: bytes | None = None,
    instance_id: str | None = None,
) -> VerifyResult:
    """Verify an export offline: signed head, then the chain against it, then the header count;
    for v2, then every checkpoint (:func:`verify_checkpoints`: signature, links, the event at
    its head) and that the last checkpoint is at the export's head, so the head was signed
    only after the daemon verified the chain since the checkpoint before.

    The export names its own audit key, so on its own this proves only that the document is
    consistent with *some* key; pass the key (and instance id) known out of band to prove it
    came from that daemon. A v1 export (no checkpoints) is checked as before. Raises
    InvalidArgument if the document does not parse.

    ``open_lines`` gives the document's lines (each with its ``\\n``, as a binary file
    iterates) every time it is called; it is called at most twice, and no more than the
    checkpoints and the events at their heads are held, so an export of any length is verified
    in constant memory: the first reading parses every line strictly (:func:`read_lines`) and
    verifies the chain as it goes; the second, for a v2 export, reads the events at the
    checkpoints' heads and the endings each checkpoint signed.
    """
    items = read_lines(open_lines())
    header = next(items)
    assert isinstance(header, ExportHeader)
    checkpoints: list[Checkpoint] = []
    counted = 0

    def events() -> Iterator[AuditEvent]:
        nonlocal counted
        for item in items:
            if isinstance(item, Checkpoint):
                checkpoints.append(item)
            elif isinstance(item, AuditEvent):
                counted += 1
                yield item

    chain = verify_chain(events(), expected_head=header.head_hash, expected_count=header.head_seq)
    for _ in events():  # the rest of the document parses too, whatever the chain said
        pass
    if audit_public_key is not None and audit_public_key != header.audit_public_key:
        return VerifyResult(False, 0, None, "export is signed by another audit key than expected")
    if instance_id is not None and instance_id != header.instance_id:
        return VerifyResult(
            False, 0, None, f"export is from instance {header.instance_id!r}, not {instance_id!r}"
        )
    digest = head_digest(header.instance_id, header.head_seq, header.head_hash)
    if not _signature_valid(header.audit_public_key, header.head_signature, digest):
        return VerifyResult(False, 0, None, "head signature does not verify under the export's key")
    if not chain.ok:
        return chain
    if header.count != counted:
        return VerifyResult(
            False, chain.checked, None,
            f"header count {header.count} does not match the {counted} events present",
        )
    if header.format == EXPORT_FORMAT_V1:
        return chain
    cps = checkpoints
    if header.checkpoints != len(cps):
        return VerifyResult(
            False, chain.checked, None,
            f"header checkpoints {header.checkpoints} does not match the {len(cps)} checkpoint "
            "lines present",
        )
    at = {cp.head_seq: cp for cp in cps}
    heads, endings_at = _at_heads(open_lines(), set(at))
    found = verify_checkpoints(cps, heads, instance_id=header.instance_id,
                               audit_public_key=header.audit_public_key)
    if not found.ok:
        return VerifyResult(False, chain.checked, found.first_bad_seq, found.problem,
                            found.bad_checkpoint, found.checked)
    for seq in sorted(endings_at):
        cp = at[seq]
        if cp.endings != endings_at[seq]:
            return VerifyResult(
                False, chain.checked, None,
                f"checkpoint {cp.seq}: the events that ended transfers and proposals up to seq "
                f"{cp.head_seq} are not those it signed", cp.seq, cp.seq - 1)
    last = cps[-1] if cps else None
    if header.head_seq > 0 and (last is None or last.head_seq != header.head_seq):
        where = f"checkpoint {last.seq} is at seq {last.head_seq}" if last else "there is none"
        return VerifyResult(
            False, chain.checked, None,
            f"the head (seq {header.head_seq}) is not covered by a checkpoint ({where}): the "
            "daemon signs a head only after checkpointing it", last.seq + 1 if last else 1,
            found.checked,
        )
    return VerifyResult(True, chain.checked, None, "", None, found.checked)


def _at_heads(lines: Iterable[bytes], wanted: set[int]
              ) -> tuple[list[AuditEvent], dict[int, bytes]]:
    """From an export that parsed strictly once already: the events at the ``wanted`` seqs (in
    order), and the endings digest folded up to each of them (:func:`fold_endings`). The event
    lines are read as plain JSON this time; an event at a wanted seq is parsed strictly again."""
    heads: list[AuditEvent] = []
    endings_at: dict[int, bytes] = {}
    endings = NO_ENDINGS
    it = iter(lines)
    next(it, None)  # the header
    for number, raw in enumerate(it, start=2):
        obj = json.loads(raw)
        if "checkpoint" in obj:
            break
        seq = obj["seq"]
        endings = endings_link(endings, seq, obj["action"], obj["object"])
        if seq in wanted and seq not in endings_at:
            heads.append(_parse_event(obj, f"line {number}"))
            endings_at[seq] = endings
    return heads, endings_at


def verify_extends(earlier: bytes, later: bytes) -> VerifyResult:
    """Whether the export ``later`` extends ``earlier``, an export of the same instance kept from
    before: every event of ``earlier`` is in ``later`` with the same hash, and every checkpoint
    of ``earlier`` is in ``later`` unchanged. Each export must have passed :func:`verify_export`
    on its own; then, since an event's hash commits to every event before it, the first seq
    whose hash differs is the first event rewritten since (``first_bad_seq``), and a checkpoint
    that is missing or differs was rolled back or replaced (``bad_checkpoint``). This finds
    what no checkpoint can: a store rolled back (events and checkpoints) while no daemon that
    had seen the newer state was running. Raises InvalidArgument if either does not parse."""
    old, new = read_export(earlier), read_export(later)
    if (old.header.instance_id, old.header.audit_public_key) != (
            new.header.instance_id, new.header.audit_public_key):
        return VerifyResult(False, 0, None, "the exports are of different instances or audit keys")
    hashes = {e.seq: e.hash for e in new.events}
    checked = 0
    for event in old.events:
        found = hashes.get(event.seq)
        if found is None:
            return VerifyResult(False, checked, event.seq,
                                f"seq {event.seq} of the earlier export is missing (this export "
                                f"ends at seq {new.header.head_seq}): the chain was truncated")
        if found != event.hash:
            return VerifyResult(False, checked, event.seq,
                                f"seq {event.seq} differs from the earlier export's: rewritten "
                                "since")
        checked += 1
    for n, cp in enumerate(old.checkpoints):
        if n >= len(new.checkpoints):
            return VerifyResult(False, checked, None,
                                f"checkpoint {cp.seq} of the earlier export is missing: "
                                "checkpoints were rolled back", cp.seq, n)
        if new.checkpoints[n] != cp:
            return VerifyResult(False, checked, None,
                                f"checkpoint {cp.seq} differs from the earlier export's: "
                                "replaced since", cp.seq, n)
    return VerifyResult(True, checked, None, "", None, len(old.checkpoints))
