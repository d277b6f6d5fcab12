"""HSM-signed checkpoints of the audit chain and the v2 export (pure: a software key stands in
for the HSM's audit key): the digest, the links, verification against the events, and what a
store writer's edits look like to it."""
from __future__ import annotations

import dataclasses
import hashlib
import json

import coincurve
import pytest
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signerd.core import audit
from signerd.core.audit import GENESIS, AuditEvent, Checkpoint, new_event, verify_chain
from signerd.core.errors import InvalidArgument
from tests.support.audit import assert_one_byte_change_detected, edit_line, join, lines_of

INSTANCE = "signerd-test-0001"
T0 = 1_700_000_000_000_000
KEY = coincurve.PrivateKey(hashlib.sha256(b"signerd audit test key").digest())
PUB = KEY.public_key.format(compressed=True)
OTHER = coincurve.PrivateKey(hashlib.sha256(b"someone else's key").digest())
N = audit.SECP256K1_N
HEADS = (10, 20, 35, 50)  # the chain's head when each checkpoint was made


def make_chain(n: int = 50) -> list[AuditEvent]:
    events: list[AuditEvent] = []
    prev = None
    for i in range(1, n + 1):
        prev = new_event(prev, time=T0 + i, actor=["inv1", "cust1"][i % 2],
                         action="transfer.approve", object=f"transfer/{i:04d}",
                         details={"n": i, "note": f"event {i}"})
        events.append(prev)
    return events


def rs(digest: bytes, key: coincurve.PrivateKey = KEY) -> bytes:
    r, s = decode_dss_signature(key.sign(digest, hasher=None))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def sign(unsigned: audit.UnsignedCheckpoint, key: coincurve.PrivateKey = KEY) -> Checkpoint:
    """What the daemon does with the HSM: sign the digest, keep the low-S form."""
    return unsigned.signed(rs(unsigned.digest(INSTANCE), key), INSTANCE,
                           key.public_key.format(compressed=True))


def checkpoints(events: list[AuditEvent], heads=HEADS, key=KEY) -> list[Checkpoint]:
    out: list[Checkpoint] = []
    for n, head in enumerate(heads):
        unsigned = audit.next_checkpoint(out[-1] if out else None, INSTANCE, head_seq=head,
                                         head_hash=events[head - 1].hash, time=T0 + 1000 * n)
        out.append(sign(unsigned, key))
    return out


def verify(cps, events, **kw) -> audit.CheckpointResult:
    return audit.verify_checkpoints(cps, events, instance_id=INSTANCE, audit_public_key=PUB, **kw)


def rehash_from(events: list[AuditEvent], start: int) -> list[AuditEvent]:
    """What a careful store writer does after an edit: recompute every later hash."""
    out = list(events[:start])
    for e in events[start:]:
        out.append(new_event(out[-1] if out else None, time=e.time, actor=e.actor,
                             action=e.action, object=e.object, details=e.details))
    return out


def v2_export(events: list[AuditEvent], cps: list[Checkpoint], key=KEY) -> bytes:
    head_seq = events[-1].seq if events else 0
    head_hash = events[-1].hash if events else GENESIS
    sig = rs(audit.head_digest(INSTANCE, head_seq, head_hash), key)
    return audit.export_document(events, sig, key.public_key.format(), INSTANCE, cps)


@pytest.fixture(scope="module")
def chain() -> list[AuditEvent]:
    return make_chain()


@pytest.fixture(scope="module")
def cps(chain) -> list[Checkpoint]:
    return checkpoints(chain)


@pytest.fixture(scope="module")
def doc(chain, cps) -> bytes:
    return v2_export(chain, cps)


# --- building and signing ------------------------------------------------------------------


def test_digest_layout_is_fixed_and_domain_separated(chain, cps):
    cp = cps[1]
    message = (b"signerd-audit-checkpoint/v1" + INSTANCE.encode() + (2).to_bytes(8, "big")
               + (20).to_bytes(8, "big") + chain[19].hash + cps[0].digest(INSTANCE)
               + cp.time.to_bytes(8, "big") + cp.endings)
    assert cp.digest(INSTANCE) == hashlib.sha256(message).digest()
    assert cp.digest(INSTANCE) != cp.digest(INSTANCE + "x")
    assert cp.digest(INSTANCE) != audit.head_digest(INSTANCE, 20, chain[19].hash)


def test_signature_is_checkable_by_an_independent_library(cps):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

    cp = cps[2]
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), PUB)
    r, s = int.from_bytes(cp.signature[:32], "big"), int.from_bytes(cp.signature[32:], "big")
    pub.verify(encode_dss_signature(r, s), cp.digest(INSTANCE), ec.ECDSA(Prehashed(hashes.SHA256())))


def test_next_checkpoint_numbers_and_links(chain, cps):
    assert [c.seq for c in cps] == [1, 2, 3, 4]
    assert [c.head_seq for c in cps] == list(HEADS)
    assert cps[0].prev == audit.NO_CHECKPOINT == b"\x00" * 32
    for a, b in zip(cps, cps[1:]):
        assert b.prev == a.digest(INSTANCE) == audit.checkpoint_link(a, INSTANCE)
    assert cps[3].head_hash == chain[-1].hash
    with pytest.raises(InvalidArgument, match="does not advance"):
        audit.next_checkpoint(cps[3], INSTANCE, head_seq=50, head_hash=chain[-1].hash, time=T0)


def test_signed_keeps_low_s_and_refuses_a_wrong_signature(chain, cps):
    unsigned = cps[1].unsigned()
    sig = cps[1].signature
    high = sig[:32] + (N - int.from_bytes(sig[32:], "big")).to_bytes(32, "big")
    assert unsigned.signed(high, INSTANCE, PUB) == cps[1]
    with pytest.raises(InvalidArgument, match="does not verify"):
        unsigned.signed(cps[2].signature, INSTANCE, PUB)
    with pytest.raises(InvalidArgument, match="does not verify"):
        unsigned.signed(sig, INSTANCE, OTHER.public_key.format())


def test_checkpoint_field_types():
    with pytest.raises(InvalidArgument, match="seq"):
        Checkpoint(0, 1, b"\x00" * 32, b"\x00" * 32, 0, b"\x00" * 32, b"\x01" * 64)
    with pytest.raises(InvalidArgument, match="head_hash"):
        Checkpoint(1, 1, b"\x00" * 31, b"\x00" * 32, 0, b"\x00" * 32, b"\x01" * 64)
    with pytest.raises(InvalidArgument, match="time"):
        Checkpoint(1, 1, b"\x00" * 32, b"\x00" * 32, -1, b"\x00" * 32, b"\x01" * 64)
    with pytest.raises(InvalidArgument, match="endings"):
        Checkpoint(1, 1, b"\x00" * 32, b"\x00" * 32, 0, b"\x00" * 31, b"\x01" * 64)
    with pytest.raises(InvalidArgument, match="signature"):
        Checkpoint(1, 1, b"\x00" * 32, b"\x00" * 32, 0, b"\x00" * 32, b"\x01" * 63)


# --- verify_checkpoints ----------------------------------------------------------------------


def test_intact_checkpoints_verify(chain, cps):
    assert verify(cps, chain) == audit.CheckpointResult(True, 4, None, None, "")
    assert verify([], chain).ok
    # continuing a checkpoint verified before, with only the head events at hand
    heads = [e for e in chain if e.seq in (20, 35, 50)]
    assert verify(cps[2:], heads, after=cps[1]) == audit.CheckpointResult(True, 2, None, None, "")


def test_tampered_checkpoint_fails_its_signature(chain, cps):
    bad = list(cps)
    bad[1] = dataclasses.replace(cps[1], head_seq=21, head_hash=chain[20].hash)
    r = verify(bad, chain)
    assert (r.ok, r.checked, r.bad_checkpoint, r.first_bad_seq) == (False, 1, 2, None)
    assert "checkpoint 2: the signature does not verify" in r.problem
    bad[1] = dataclasses.replace(cps[1], time=cps[1].time + 1)
    assert verify(bad, chain).bad_checkpoint == 2


def test_checkpoint_signed_by_another_key_fails(chain):
    forged = checkpoints(chain, key=OTHER)
    r = verify(forged, chain)
    assert (r.ok, r.bad_checkpoint) == (False, 1) and "signature" in r.problem
    r = audit.verify_checkpoints(forged, chain, instance_id=INSTANCE,
                                 audit_public_key=OTHER.public_key.format())
    assert r.ok
    r = audit.verify_checkpoints(forged, chain, instance_id="another", audit_public_key=PUB)
    assert not r.ok


def test_missing_checkpoint_in_the_middle(chain, cps):
    r = verify(cps[:1] + cps[2:], chain)
    assert (r.ok, r.checked, r.bad_checkpoint) == (False, 1, 2)
    assert "checkpoint 2 is missing: checkpoint 3 follows checkpoint 1" in r.problem
    r = verify(cps[1:], chain)
    assert (r.ok, r.bad_checkpoint) == (False, 1) and "checkpoint 1 is missing" in r.problem


def test_reordered_and_repeated_checkpoints(chain, cps):
    r = verify([cps[0], cps[2], cps[1], cps[3]], chain)
    assert (r.ok, r.bad_checkpoint) == (False, 2)
    r = verify(cps[:2] + cps[1:], chain)
    assert (r.ok, r.bad_checkpoint) == (False, 2) and "appears again" in r.problem


def test_replaced_checkpoint_breaks_the_next_link(chain, cps):
    """Even re-signed by the key (a store writer cannot, but say a second daemon did), another
    checkpoint 2 does not fit between 1 and 3."""
    other2 = sign(audit.next_checkpoint(cps[0], INSTANCE, head_seq=19, head_hash=chain[18].hash,
                                        time=T0 + 7))
    r = verify([cps[0], other2, cps[2], cps[3]], chain)
    assert (r.ok, r.checked, r.bad_checkpoint) == (False, 2, 3)
    assert "checkpoint 3 does not link to checkpoint 2" in r.problem


def test_head_that_does_not_advance(chain, cps):
    stuck = sign(audit.UnsignedCheckpoint(3, 20, chain[19].hash, cps[1].digest(INSTANCE), T0,
                                          audit.NO_ENDINGS))
    r = verify(cps[:2] + [stuck], chain)
    assert (r.ok, r.bad_checkpoint) == (False, 3) and "does not advance past seq 20" in r.problem


def test_checkpoint_over_a_rewritten_event(chain, cps):
    """Event 15 edited and every later hash recomputed: the chain is consistent again, but
    checkpoint 2 (head 20) signed another hash, and the span names where to look."""
    edited = list(chain)
    edited[14] = dataclasses.replace(chain[14], details={"n": 15, "note": "nothing happened"})
    rewritten = rehash_from(edited[:14], 0) + rehash_from(edited, 14)[14:]
    assert verify_chain(rewritten).ok
    r = verify(cps, rewritten)
    assert (r.ok, r.checked, r.bad_checkpoint, r.first_bad_seq) == (False, 1, 2, 20)
    assert "an event in seq 11..20 was rewritten" in r.problem
    # with checkpoint 1 already verified, the same
    r = verify(cps[1:], rewritten, after=cps[0])
    assert (r.ok, r.bad_checkpoint, r.first_bad_seq) == (False, 2, 20)


def test_rewrite_before_an_earlier_checkpoint_shows_at_it(chain, cps):
    rewritten = rehash_from(chain[:3] + [dataclasses.replace(chain[3], actor="judge1")] + chain[4:], 3)
    r = verify(cps, rewritten)
    assert (r.bad_checkpoint, r.first_bad_seq) == (1, 10)
    assert "an event in seq 10 or before it was rewritten" in r.problem


def test_event_at_a_checkpoint_head_altered_or_deleted(chain, cps):
    altered = list(chain)
    altered[34] = dataclasses.replace(chain[34], object="transfer/other")  # hash kept
    r = verify(cps, altered)
    assert (r.ok, r.bad_checkpoint, r.first_bad_seq) == (False, 3, 35)
    assert "hash does not match its content" in r.problem
    r = verify(cps, chain[:34] + chain[35:])
    assert (r.ok, r.bad_checkpoint, r.first_bad_seq) == (False, 3, 35)
    assert "event seq 35, which the checkpoint signed, is missing" in r.problem


def test_the_checkpoint_continued_is_checked_against_its_head_event(chain, cps):
    rewritten = rehash_from(chain, 5)[:5] + rehash_from(
        chain[:5] + [dataclasses.replace(chain[5], actor="x")] + chain[6:], 5)[5:]
    r = verify(cps[2:], rewritten, after=cps[1])
    assert (r.ok, r.checked, r.bad_checkpoint, r.first_bad_seq) == (False, 0, 2, 20)


def test_structural_problem_after_an_event_problem_reports_the_earlier(chain, cps):
    rewritten = rehash_from(chain[:11] + [dataclasses.replace(chain[11], actor="x")] + chain[12:], 11)
    bad = cps[:3] + [dataclasses.replace(cps[3], time=1)]
    r = verify(bad, rewritten)
    assert r.bad_checkpoint == 2


def test_bad_public_key_fails_every_signature(chain, cps):
    r = audit.verify_checkpoints(cps, chain, instance_id=INSTANCE, audit_public_key=b"\x02" * 33)
    assert (r.ok, r.bad_checkpoint) == (False, 1)


# --- verify_chain on a run after a checkpoint ------------------------------------------------


def test_verify_chain_after_a_known_event(chain):
    head = chain[-1]
    r = verify_chain(chain[20:], after=(20, chain[19].hash), expected_head=head.hash,
                     expected_count=30)
    assert r == audit.VerifyResult(True, 30, None, "")
    r = verify_chain(chain[20:], after=(20, chain[18].hash))
    assert (r.ok, r.first_bad_seq) == (False, 21) and "hash of seq 20 (broken link)" in r.problem
    r = verify_chain(chain[21:], after=(20, chain[19].hash))
    assert (r.ok, r.first_bad_seq) == (False, 21) and "seq 21 is missing" in r.problem
    r = verify_chain(chain[20:-2], after=(20, chain[19].hash), expected_count=30)
    assert (r.ok, r.first_bad_seq) == (False, 49)
    assert "chain ends at seq 48 but 30 events were expected after seq 20" in r.problem


# --- the v2 export -----------------------------------------------------------------------------


def test_v2_export_roundtrip(chain, cps, doc):
    parsed = audit.read_export(doc)
    assert parsed.events == chain and parsed.checkpoints == cps
    assert parsed.header.format == "signerd-audit-export/v2" and parsed.header.checkpoints == 4
    header = json.loads(lines_of(doc)[0])
    assert header["format"] == "signerd-audit-export/v2" and header["checkpoints"] == 4
    last = json.loads(lines_of(doc)[-1])
    assert set(last) == {"checkpoint", "head_seq", "head_hash", "prev", "time", "endings",
                         "signature"}
    assert (last["checkpoint"], last["head_seq"]) == (4, 50)
    assert audit.parse_export(doc) == (parsed.header, chain)
    r = audit.verify_export(doc, audit_public_key=PUB, instance_id=INSTANCE)
    assert r == audit.VerifyResult(True, 50, None, "", None, 4)


def test_v1_exports_still_verify(chain):
    sig = rs(audit.head_digest(INSTANCE, 50, chain[-1].hash))
    v1 = audit.export_document(chain, sig, PUB, INSTANCE)
    assert json.loads(lines_of(v1)[0])["format"] == "signerd-audit-export/v1"
    assert audit.read_export(v1).checkpoints == []
    assert audit.verify_export(v1, audit_public_key=PUB) == audit.VerifyResult(True, 50, None, "")


def test_empty_v2_export_verifies():
    assert audit.verify_export(v2_export([], [])).ok


def test_v2_head_must_be_at_the_last_checkpoint(chain, cps):
    r = audit.verify_export(v2_export(chain, cps[:3]))
    assert (r.ok, r.bad_checkpoint, r.checkpoints) == (False, 4, 3)
    assert "head (seq 50) is not covered by a checkpoint (checkpoint 3 is at seq 35)" in r.problem
    r = audit.verify_export(v2_export(chain, []))
    assert (r.ok, r.bad_checkpoint) == (False, 1) and "there is none" in r.problem


def test_v2_checkpoint_beyond_the_head(chain, cps):
    r = audit.verify_export(v2_export(chain[:40], cps))
    assert (r.ok, r.bad_checkpoint, r.first_bad_seq) == (False, 4, 50)


def test_v2_tampered_checkpoint_line(doc):
    lines = lines_of(doc)
    r = audit.verify_export(edit_line(doc, len(lines) - 1, time=1))  # checkpoint 3
    assert (r.ok, r.checked, r.bad_checkpoint, r.checkpoints) == (False, 50, 3, 2)
    assert "signature" in r.problem


def test_v2_missing_checkpoint_line(doc):
    lines = lines_of(doc)
    d = edit_line(join(lines[:52] + lines[53:]), 1, checkpoints=3)  # line 53 is checkpoint 2
    r = audit.verify_export(d)
    assert (r.ok, r.bad_checkpoint) == (False, 2) and "checkpoint 2 is missing" in r.problem
    r = audit.verify_export(join(lines[:52] + lines[53:]))
    assert not r.ok and "header checkpoints 4 does not match the 3" in r.problem


def test_v2_export_of_a_rewritten_chain_fails_at_the_checkpoint(chain, cps):
    """A daemon that signed the new head without checking (or a stolen key for the head only):
    the chain and head verify, the checkpoint names the rewrite."""
    rewritten = rehash_from(chain[:29] + [dataclasses.replace(chain[29], actor="judge1")]
                            + chain[30:], 29)
    r = audit.verify_export(v2_export(rewritten, cps))
    assert (r.ok, r.checked, r.bad_checkpoint, r.first_bad_seq) == (False, 50, 3, 35)
    assert "an event in seq 21..35 was rewritten" in r.problem


def test_v2_chain_problems_come_first(doc):
    r = audit.verify_export(edit_line(doc, 8, details={"n": 0}))
    assert (r.ok, r.first_bad_seq, r.bad_checkpoint) == (False, 7, None)


def test_v2_parse_errors(doc):
    lines = lines_of(doc)
    with pytest.raises(InvalidArgument, match="^line 52: an event line after the checkpoint"):
        audit.read_export(join(lines[:50] + [lines[51], lines[50]] + lines[52:]))
    with pytest.raises(InvalidArgument, match="^line 52: not in canonical form"):
        audit.read_export(join(lines[:51] + [lines[51].replace(b'{"checkpoint"', b'{ "checkpoint"')]
                               + lines[52:]))
    with pytest.raises(InvalidArgument, match="^line 52: missing keys"):
        audit.read_export(edit_line(doc, 52, extra=1))
    with pytest.raises(InvalidArgument, match="^line 52: signature must be 128"):
        audit.read_export(edit_line(doc, 52, signature="00"))
    with pytest.raises(InvalidArgument, match="^line 1: missing keys"):
        audit.read_export(edit_line(doc, 1, format="signerd-audit-export/v1"))
    with pytest.raises(InvalidArgument, match="^line 1: format must be"):
        audit.read_export(edit_line(doc, 1, format="signerd-audit-export/v3"))


def test_v1_header_with_checkpoint_lines_is_refused(chain, cps):
    sig = rs(audit.head_digest(INSTANCE, 50, chain[-1].hash))
    v1 = audit.export_document(chain, sig, PUB, INSTANCE)
    with pytest.raises(InvalidArgument, match="^line 52: missing keys"):
        audit.read_export(v1 + lines_of(v2_export(chain, cps))[-1] + b"\n")


@pytest.fixture(scope="module")
def small_doc() -> bytes:
    events = make_chain(8)
    return v2_export(events, checkpoints(events, heads=(3, 8)))


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_single_byte_change_of_a_v2_export_is_detected(small_doc, data):
    assert_one_byte_change_detected(small_doc, data)


# --- a later export against an earlier one -----------------------------------------------------


def test_a_later_export_extends_the_earlier_one(chain, cps):
    earlier = v2_export(chain[:35], cps[:3])
    later = v2_export(chain, cps)
    assert audit.verify_extends(earlier, later) == audit.VerifyResult(True, 35, None, "", None, 3)
    assert audit.verify_extends(later, later).ok
    sig = rs(audit.head_digest(INSTANCE, 20, chain[19].hash))
    assert audit.verify_extends(audit.export_document(chain[:20], sig, PUB, INSTANCE), later).ok


def test_a_rollback_or_rewrite_since_the_earlier_export_is_pinned(chain, cps):
    earlier = v2_export(chain[:35], cps[:3])
    # the store rolled back to checkpoint 2 and the daemon went on from there (a fork)
    forked = rehash_from(chain[:20] + [dataclasses.replace(chain[20], actor="mallory")]
                         + chain[21:], 20)
    fork_cps = list(cps[:2])
    for head in (35, 50):
        fork_cps.append(sign(audit.next_checkpoint(fork_cps[-1], INSTANCE, head_seq=head,
                                                   head_hash=forked[head - 1].hash, time=T0)))
    later = v2_export(forked, fork_cps)
    assert audit.verify_export(later).ok  # consistent on its own
    r = audit.verify_extends(earlier, later)
    assert (r.ok, r.checked, r.first_bad_seq) == (False, 20, 21)
    assert "seq 21 differs from the earlier export's: rewritten since" in r.problem
    # checkpoints rolled back (and the head with them)
    r = audit.verify_extends(earlier, v2_export(chain[:20], cps[:2]))
    assert (r.ok, r.first_bad_seq) == (False, 21) and "truncated" in r.problem
    r = audit.verify_extends(v2_export(chain, cps), v2_export(chain, cps[:3] + [
        sign(audit.next_checkpoint(cps[2], INSTANCE, head_seq=50, head_hash=chain[-1].hash,
                                   time=T0 + 1))]))
    assert (r.ok, r.bad_checkpoint) == (False, 4) and "replaced since" in r.problem
    r = audit.verify_extends(v2_export(chain, cps), v2_export(chain, cps[:3]))
    assert (r.ok, r.bad_checkpoint) == (False, 4) and "rolled back" in r.problem
    other = v2_export(chain, checkpoints(chain, key=OTHER), key=OTHER)
    assert "different instances or audit keys" in audit.verify_extends(earlier, other).problem


# --- the events that ended transfers and proposals ------------------------------------------


def chain_with_endings(n: int = 50) -> list[AuditEvent]:
    """Every seventh event ends a transfer (rejected), the rest approve."""
    events: list[AuditEvent] = []
    prev = None
    for i in range(1, n + 1):
        action = "transfer.rejected" if i % 7 == 0 else "transfer.approve"
        prev = new_event(prev, time=T0 + i, actor="signerd", action=action,
                         object=f"t_{i:020x}", details={"n": i})
        events.append(prev)
    return events


def checkpoints_with_endings(events: list[AuditEvent], heads=HEADS) -> list[Checkpoint]:
    out: list[Checkpoint] = []
    for n, head in enumerate(heads):
        unsigned = audit.next_checkpoint(
            out[-1] if out else None, INSTANCE, head_seq=head, head_hash=events[head - 1].hash,
            time=T0 + 1000 * n, endings=audit.fold_endings(audit.NO_ENDINGS, events[:head]))
        out.append(sign(unsigned))
    return out


def test_checkpoints_commit_to_the_events_that_ended_transfers():
    events = chain_with_endings()
    cps = checkpoints_with_endings(events)
    assert len({cp.endings for cp in cps}) == 4 and cps[0].endings != audit.NO_ENDINGS
    assert audit.verify_export(v2_export(events, cps), audit_public_key=PUB).ok
    # The endings digest is a chain over the ending events alone: folding just those gives it.
    only = [e for e in events[:35] if e.action in audit.ENDING_ACTIONS]
    assert audit.fold_endings(audit.NO_ENDINGS, only) == cps[2].endings
    # A checkpoint that signed another record of endings fails offline, named.
    forged = cps[:3] + [sign(audit.next_checkpoint(cps[2], INSTANCE, head_seq=50,
                                                  head_hash=events[49].hash, time=T0,
                                                  endings=cps[2].endings))]
    r = audit.verify_export(v2_export(events, forged), audit_public_key=PUB)
    assert not r.ok and "ended transfers and proposals up to seq 50" in r.problem
    assert r.bad_checkpoint == 4


def test_endings_link_ignores_other_events_and_binds_position():
    d = audit.endings_link(audit.NO_ENDINGS, 7, "transfer.approve", "t_1")
    assert d == audit.NO_ENDINGS
    a = audit.endings_link(audit.NO_ENDINGS, 7, "transfer.rejected", "t_1")
    assert a != audit.NO_ENDINGS
    assert a != audit.endings_link(audit.NO_ENDINGS, 8, "transfer.rejected", "t_1")
    assert a != audit.endings_link(audit.NO_ENDINGS, 7, "transfer.cancelled", "t_1")
    assert a != audit.endings_link(audit.NO_ENDINGS, 7, "transfer.rejected", "t_2")


def test_a_veto_record_is_an_ending_event_whose_object_names_it() -> None:
    from signerd.adapters.store import migrations

    assert audit.VETO_ACTION in audit.ENDING_ACTIONS
    assert set(migrations.ENDING_ACTIONS_16) == audit.ENDING_ACTIONS  # the index covers them
    obj = audit.veto_object("w_1", "ab" * 32, "judge", "t_9")
    assert obj == f"veto/w_1/{'ab' * 32}/judge/t_9"
    assert audit.parse_veto_object(obj) == ("w_1", "ab" * 32, "judge", "t_9")
    for bad in ("t_9", f"veto/w_1/{'ab' * 31}/judge/t_9", f"veto/w/1/{'ab' * 32}/judge/t_9",
                f"veto/w_1/{'AB' * 32}/judge/t_9", f"veto/w_1/{'ab' * 32}/judge/t 9"):
        assert audit.parse_veto_object(bad) is None, bad
    with pytest.raises(InvalidArgument):
        audit.veto_object("w/1", "ab" * 32, "judge", "t_9")


def _streamed_export(n: int, every: int = 1000) -> tuple[list[bytes], int]:
    """The lines of a v2 export of ``n`` events with a checkpoint every ``every`` events and at
    the head, made as the daemon makes them (export_header, export_lines)."""
    events = make_chain(n)
    heads = sorted({*range(every, n + 1, every), n})
    cps = checkpoints(events, heads=heads)
    header = audit.export_header(
        head_seq=n, head_hash=events[-1].hash, count=n,
        head_signature=rs(audit.head_digest(INSTANCE, n, events[-1].hash)), audit_pubkey=PUB,
        instance_id=INSTANCE, checkpoints=len(cps))
    return list(audit.export_lines(header, events, cps)), len(cps)


def test_a_streamed_export_verifies_in_two_readings_and_constant_memory() -> None:
    """The daemon writes an export line by line and signerctl verifies it from a file in two
    readings, holding only the checkpoints and the events at their heads: ten times the events
    cost no more memory than the lines one reading holds at once."""
    import tracemalloc

    peaks = {}
    for n in (2_000, 20_000):
        lines, ncps = _streamed_export(n)
        assert b"".join(lines) == v2_export(make_chain(n), checkpoints(
            make_chain(n), heads=sorted({*range(1000, n + 1, 1000), n})))
        readings = []

        def open_lines(lines=lines, readings=readings):
            readings.append(1)
            return iter(lines)

        tracemalloc.start()
        result = audit.verify_export_lines(open_lines, audit_public_key=PUB, instance_id=INSTANCE)
        peaks[n] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert result.ok and result.checked == n and result.checkpoints == ncps, result
        assert len(readings) == 2
    # Holding the events (as a list of AuditEvent) costs about 1 KiB each: 18 MiB more here.
    assert peaks[20_000] - peaks[2_000] < 2 << 20, peaks


def test_a_streamed_export_with_a_changed_event_fails_at_that_event() -> None:
    lines, _ = _streamed_export(3_000)
    doc = json.loads(lines[1500])
    doc["actor"] = "mallory"
    lines[1500] = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    result = audit.verify_export_lines(lambda: iter(lines), audit_public_key=PUB)
    assert not result.ok and result.first_bad_seq == 1500 and result.checked == 1499, result
    # A line that does not parse is refused as before, wherever the chain broke.
    lines[2500] = b"{not json}\n"
    with pytest.raises(InvalidArgument, match="line 2501"):
        audit.verify_export_lines(lambda: iter(lines))
