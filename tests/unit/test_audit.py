from __future__ import annotations

import dataclasses
import hashlib
import json

import coincurve
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signerd.core import audit
from signerd.core.audit import GENESIS, AuditEvent, new_event, verify_chain
from signerd.core.errors import InvalidArgument
from tests.support.audit import assert_one_byte_change_detected, edit_line, join, lines_of

N_EVENTS = 50
INSTANCE = "signerd-test-0001"
T0 = 1_700_000_000_000_000
AUDIT_KEY = coincurve.PrivateKey(hashlib.sha256(b"signerd audit test key").digest())
AUDIT_PUB = AUDIT_KEY.public_key.format(compressed=True)
N = audit.SECP256K1_N


def make_chain(n: int = N_EVENTS) -> list[AuditEvent]:
    events: list[AuditEvent] = []
    prev = None
    for i in range(1, n + 1):
        prev = new_event(
            prev,
            time=T0 + i * 1_000,
            actor=["platform", "inv1", "cust1", "admin1"][i % 4],
            action=["transfer.submit", "transfer.approve", "policy.set", "wallet.freeze"][i % 4],
            object=f"transfer/{i:04d}",
            details={
                "amount": 10**18 + i,
                "note": f"événement {i}",  # non-ASCII survives as \\u escapes
                "flags": [True, False, i],
                "nested": {"wallet": f"w{i % 3}", "ok": i % 2 == 0},
            },
        )
        events.append(prev)
    return events


def sign_head(instance_id: str, head_seq: int, head_hash: bytes, key=AUDIT_KEY) -> bytes:
    """The daemon's side, as a software key: r||s over head_digest (coincurve gives low-S DER)."""
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    der = key.sign(audit.head_digest(instance_id, head_seq, head_hash), hasher=None)
    r, s = decode_dss_signature(der)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def export(events: list[AuditEvent], key=AUDIT_KEY) -> bytes:
    head_seq = events[-1].seq if events else 0
    head_hash = events[-1].hash if events else GENESIS
    sig = sign_head(INSTANCE, head_seq, head_hash, key)
    return audit.export_document(events, sig, key.public_key.format(), INSTANCE)


@pytest.fixture(scope="module")
def chain() -> list[AuditEvent]:
    return make_chain()


@pytest.fixture(scope="module")
def doc(chain) -> bytes:
    return export(chain)


def forge(prev: AuditEvent, seq: int, **fields) -> AuditEvent:
    """An event whose link and hash are correct: what an attacker without the audit key can do."""
    body = dict(
        time=prev.time + 1, actor="admin1", action="wallet.unfreeze", object="wallet/w1", details={}
    )
    body.update(fields)
    digest = audit.chain_hash(prev.hash, seq, **body)
    return AuditEvent(seq=seq, prev_hash=prev.hash, hash=digest, **body)


def rehash_from(events: list[AuditEvent], start: int) -> list[AuditEvent]:
    """Renumber and rehash events[start:] so the chain is internally consistent again."""
    out = list(events[:start])
    for e in events[start:]:
        prev = out[-1] if out else None
        out.append(
            new_event(
                prev, time=e.time, actor=e.actor, action=e.action, object=e.object, details=e.details
            )
        )
    return out


# --- building ------------------------------------------------------------------------------


def test_new_event_links(chain):
    assert chain[0].seq == 1 and chain[0].prev_hash == GENESIS
    for a, b in zip(chain, chain[1:]):
        assert b.seq == a.seq + 1 and b.prev_hash == a.hash
    e = chain[7]
    assert e.hash == hashlib.sha256(e.prev_hash + audit.canonical(e)).digest()
    assert e.hash == audit.chain_hash(e.prev_hash, e.seq, e.time, e.actor, e.action, e.object, e.details)


def test_canonical_is_sorted_compact_ascii(chain):
    e = new_event(
        None, time=5, actor="inv1", action="a.b", object="o/1",
        details={"z": [1, True], "é": {"b": "x y", "a": -2}},
    )
    assert audit.canonical(e) == (
        b'{"action":"a.b","actor":"inv1","details":{"z":[1,true],"\\u00e9":{"a":-2,"b":"x y"}},'
        b'"object":"o/1","seq":1,"time":5}'
    )
    assert e.hash == hashlib.sha256(GENESIS + audit.canonical(e)).digest()
    body = audit.canonical(chain[0])
    as_mapping = {f.name: getattr(chain[0], f.name) for f in dataclasses.fields(AuditEvent)}
    assert audit.canonical(as_mapping) == body


def test_canonical_independent_of_dict_order():
    common = dict(time=1, actor="a", action="b", object="c")
    a = new_event(None, **common, details={"x": 1, "y": {"b": 2, "a": 1}})
    b = new_event(None, **common, details={"y": {"a": 1, "b": 2}, "x": 1})
    assert a.hash == b.hash


@pytest.mark.parametrize(
    "details",
    [{"f": 1.5}, {"n": float("nan")}, {"t": (1, 2)}, {1: "x"}, {"b": b"x"}, {"big": 2**256}, {"s": {1}}],
    ids=["float", "nan", "tuple", "int-key", "bytes", "int-too-big", "set"],
)
def test_details_types_refused(details):
    with pytest.raises(InvalidArgument, match="details"):
        new_event(None, time=1, actor="a", action="b", object="c", details=details)


def test_details_types_accepted():
    details = {"s": "x", "i": -(2**256) + 1, "b": False, "n": None, "l": [[[]]], "d": {"e": {}}}
    e = new_event(None, time=1, actor="a", action="b", object="c", details=details)
    assert e.details == details
    assert audit.parse_export(export([e]))[1] == [e]


def test_details_too_deep():
    deep: list = []
    for _ in range(40):
        deep = [deep]
    with pytest.raises(InvalidArgument, match="nested deeper"):
        new_event(None, time=1, actor="a", action="b", object="c", details={"d": deep})


def test_event_field_types():
    with pytest.raises(InvalidArgument, match="time"):
        new_event(None, time=1.5, actor="a", action="b", object="c", details={})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="time"):
        new_event(None, time=True, actor="a", action="b", object="c", details={})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="actor"):
        new_event(None, time=1, actor=None, action="b", object="c", details={})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="prev_hash"):
        AuditEvent(1, 1, "a", "b", "c", {}, b"\x00" * 31, b"\x00" * 32)


def test_details_are_copied():
    details = {"list": [1]}
    e = new_event(None, time=1, actor="a", action="b", object="c", details=details)
    details["list"].append(2)
    assert e.details == {"list": [1]}
    assert verify_chain([e]).ok


# --- verify_chain: every kind of tampering, with the first bad seq -------------------------


def test_intact_chain_verifies(chain):
    r = verify_chain(chain, expected_head=chain[-1].hash, expected_count=N_EVENTS)
    assert r == audit.VerifyResult(True, N_EVENTS, None, "")
    assert verify_chain([]).ok
    assert verify_chain([], expected_head=GENESIS, expected_count=0).ok


def test_edit_details(chain):
    bad = list(chain)
    bad[16] = dataclasses.replace(bad[16], details={**bad[16].details, "amount": 1})
    r = verify_chain(bad)
    assert (r.ok, r.first_bad_seq, r.checked) == (False, 17, 16)
    assert "altered" in r.problem


def test_edit_actor(chain):
    bad = list(chain)
    bad[29] = dataclasses.replace(bad[29], actor="judge1")
    r = verify_chain(bad)
    assert (r.ok, r.first_bad_seq) == (False, 30)
    assert "seq 30" in r.problem and "altered" in r.problem


def test_edit_with_rehash_breaks_next_link(chain):
    bad = list(chain)
    bad[29] = forge(chain[28], 30, actor="judge1")
    r = verify_chain(bad)
    assert (r.ok, r.first_bad_seq) == (False, 31)
    assert "broken link" in r.problem


def test_delete_middle_event(chain):
    bad = chain[:24] + chain[25:]
    r = verify_chain(bad)
    assert (r.ok, r.first_bad_seq, r.checked) == (False, 25, 24)
    assert "seq 25 is missing" in r.problem


def test_delete_last_event_caught_by_head_and_count(chain):
    bad = chain[:-1]
    assert verify_chain(bad).ok  # nothing to compare against: undetectable without a head
    r = verify_chain(bad, expected_head=chain[-1].hash, expected_count=N_EVENTS)
    assert (r.ok, r.first_bad_seq, r.checked) == (False, 50, 49)
    assert "truncated" in r.problem
    r = verify_chain(bad, expected_head=chain[-1].hash)
    assert (r.ok, r.first_bad_seq) == (False, None)
    assert "truncated or rewritten" in r.problem


def test_events_beyond_head(chain):
    extra = chain + [forge(chain[-1], 51)]
    r = verify_chain(extra, expected_head=chain[-1].hash)
    assert (r.ok, r.first_bad_seq) == (False, 51)
    r = verify_chain(extra, expected_count=N_EVENTS)
    assert (r.ok, r.first_bad_seq, r.checked) == (False, 51, 50)


def test_swap_two_events(chain):
    bad = list(chain)
    bad[9], bad[10] = bad[10], bad[9]
    r = verify_chain(bad)
    assert (r.ok, r.first_bad_seq) == (False, 10)
    assert "out of order" in r.problem


def test_insert_forged_event(chain):
    bad = chain[:20] + [forge(chain[19], 21)] + chain[20:]
    r = verify_chain(bad)
    assert (r.ok, r.first_bad_seq, r.checked) == (False, 21, 21)
    assert "appears again" in r.problem


def test_insert_forged_event_with_full_rehash_caught_only_by_head(chain):
    bad = rehash_from(chain[:20] + [forge(chain[19], 21)] + chain[20:], 21)
    assert verify_chain(bad).ok
    r = verify_chain(bad, expected_head=chain[-1].hash, expected_count=N_EVENTS)
    assert (r.ok, r.first_bad_seq) == (False, 51)
    replaced = rehash_from(chain[:20] + [forge(chain[19], 21)] + chain[21:], 21)
    r = verify_chain(replaced, expected_head=chain[-1].hash, expected_count=N_EVENTS)
    assert (r.ok, r.first_bad_seq) == (False, None)
    assert "rewritten" in r.problem


def test_edit_prev_hash_and_first_event(chain):
    bad = list(chain)
    bad[0] = dataclasses.replace(bad[0], prev_hash=b"\x01" * 32)
    r = verify_chain(bad)
    assert (r.ok, r.first_bad_seq) == (False, 1)
    assert "broken link" in r.problem
    r = verify_chain(chain[1:])
    assert (r.ok, r.first_bad_seq) == (False, 1)


# --- export --------------------------------------------------------------------------------


def test_export_roundtrip(chain, doc):
    header, events = audit.parse_export(doc)
    assert events == chain
    assert header.count == header.head_seq == N_EVENTS
    assert header.head_hash == chain[-1].hash
    assert header.audit_public_key == AUDIT_PUB
    assert header.instance_id == INSTANCE
    first = json.loads(lines_of(doc)[0])
    assert first["format"] == "signerd-audit-export/v1"
    assert len(bytes.fromhex(first["head_signature"])) == 64
    assert audit.export_document(events, header.head_signature, AUDIT_PUB, INSTANCE) == doc
    r = audit.verify_export(doc, audit_public_key=AUDIT_PUB, instance_id=INSTANCE)
    assert r == audit.VerifyResult(True, N_EVENTS, None, "")


def test_signature_is_checkable_by_independent_library(doc):
    """The r||s in the header verifies with `cryptography`'s ECDSA over the prehashed digest."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
    from cryptography.hazmat.primitives import hashes

    header, _ = audit.parse_export(doc)
    digest = hashlib.sha256(
        b"signerd-audit-head/v1" + INSTANCE.encode() + N_EVENTS.to_bytes(8, "big") + header.head_hash
    ).digest()
    assert digest == audit.head_digest(INSTANCE, N_EVENTS, header.head_hash)
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), header.audit_public_key)
    r = int.from_bytes(header.head_signature[:32], "big")
    s = int.from_bytes(header.head_signature[32:], "big")
    pub.verify(encode_dss_signature(r, s), digest, ec.ECDSA(Prehashed(hashes.SHA256())))


def test_empty_export_verifies():
    doc = export([])
    assert audit.verify_export(doc).ok


def test_export_normalizes_high_s(chain):
    sig = sign_head(INSTANCE, N_EVENTS, chain[-1].hash)
    high = sig[:32] + (N - int.from_bytes(sig[32:], "big")).to_bytes(32, "big")
    assert audit.export_document(chain, high, AUDIT_PUB, INSTANCE) == export(chain)


def test_export_refuses_signature_over_other_head(chain):
    sig = sign_head(INSTANCE, N_EVENTS - 1, chain[-2].hash)
    with pytest.raises(InvalidArgument, match="does not verify"):
        audit.export_document(chain, sig, AUDIT_PUB, INSTANCE)


def test_export_delete_middle_line(doc):
    lines = lines_of(doc)
    r = audit.verify_export(join(lines[:11] + lines[12:]))  # line 12 holds seq 11
    assert (r.ok, r.first_bad_seq) == (False, 11)


def test_export_delete_last_line_caught_by_signed_head(doc):
    r = audit.verify_export(join(lines_of(doc)[:-1]))
    assert (r.ok, r.first_bad_seq) == (False, 50)
    assert "truncated" in r.problem


def test_export_edit_details(doc):
    r = audit.verify_export(edit_line(doc, 8, details={"amount": 1}))
    assert (r.ok, r.first_bad_seq) == (False, 7)


def test_export_swap_lines(doc):
    lines = lines_of(doc)
    lines[5], lines[6] = lines[6], lines[5]
    r = audit.verify_export(join(lines))
    assert (r.ok, r.first_bad_seq) == (False, 5)


def test_export_bad_head_signature(doc):
    header = json.loads(lines_of(doc)[0])
    sig = bytearray(bytes.fromhex(header["head_signature"]))
    sig[5] ^= 0x01
    r = audit.verify_export(edit_line(doc, 1, head_signature=sig.hex()))
    assert (r.ok, r.first_bad_seq, r.checked) == (False, None, 0)
    assert "signature" in r.problem


def test_export_signed_by_other_key(chain):
    other = coincurve.PrivateKey(hashlib.sha256(b"attacker").digest())
    doc = export(chain, key=other)
    assert audit.verify_export(doc).ok  # consistent with the key it names...
    r = audit.verify_export(doc, audit_public_key=AUDIT_PUB)  # ...but not the daemon's key
    assert not r.ok and "another audit key" in r.problem
    r = audit.verify_export(doc, instance_id="another-instance")
    assert not r.ok and "instance" in r.problem


def test_export_rewritten_head_without_key(chain, doc):
    """Truncate, and claim the shorter head in the header: the signature no longer matches."""
    d = join(lines_of(doc)[:-1])
    d = edit_line(d, 1, head_seq=49, count=49, head_hash=chain[-2].hash.hex())
    r = audit.verify_export(d)
    assert not r.ok and "signature" in r.problem


@pytest.mark.parametrize("count", [49, 51, 0])
def test_export_header_count_mismatch(doc, count):
    r = audit.verify_export(edit_line(doc, 1, count=count))
    assert (r.ok, r.first_bad_seq, r.checked) == (False, None, N_EVENTS)
    assert f"header count {count}" in r.problem


# --- strict parsing -----------------------------------------------------------------------


def test_parse_errors_name_the_line(doc):
    lines = lines_of(doc)
    cases = {
        "line 1": [b"{}"] + lines[1:],
        "line 4": lines[:3] + [lines[3] + b" "] + lines[4:],
        "line 5": lines[:4] + [lines[4].replace(b'"seq":4', b'"seq":4.0')] + lines[5:],
        "line 6": lines[:5] + [lines[5].replace(b'{"action"', b'{"x":1,"action"')] + lines[6:],
        "line 7": lines[:6] + [lines[6].replace(b'"hash":"', b'"hash":"A', 1)[:-2] + b'"}'] + lines[7:],
        "line 9": lines[:8] + [b""] + lines[8:],
    }
    for where, bad in cases.items():
        with pytest.raises(InvalidArgument, match=f"^{where}:"):
            audit.parse_export(join(bad))


@pytest.mark.parametrize(
    "data, where",
    [
        (b"", "line 1"),
        (b"\xff\n", "line 1"),
        (b"{}", "line 1"),  # no trailing newline
        (b"[]\n", "line 1"),
    ],
)
def test_parse_errors_small(data, where):
    with pytest.raises(InvalidArgument, match=f"^{where}:"):
        audit.parse_export(data)


def test_parse_rejects_missing_final_newline(doc):
    with pytest.raises(InvalidArgument, match="newline"):
        audit.parse_export(doc[:-1])


def test_parse_rejects_duplicate_keys(doc):
    lines = lines_of(doc)
    lines[2] = lines[2].replace(b'{"action"', b'{"actor":"x","action"', 1)
    with pytest.raises(InvalidArgument, match="^line 3:.*duplicate"):
        audit.parse_export(join(lines))


def test_parse_rejects_noncanonical_escape(doc):
    lines = lines_of(doc)
    assert b"\\u00e9" in lines[1]
    lines[1] = lines[1].replace(b"\\u00e9", b"\\u00E9")  # same string, other spelling
    with pytest.raises(InvalidArgument, match="^line 2: not in canonical form"):
        audit.parse_export(join(lines))


def test_parse_rejects_high_s(doc):
    header = json.loads(lines_of(doc)[0])
    sig = bytes.fromhex(header["head_signature"])
    high = sig[:32] + (N - int.from_bytes(sig[32:], "big")).to_bytes(32, "big")
    with pytest.raises(InvalidArgument, match="^line 1:.*low-S"):
        audit.parse_export(edit_line(doc, 1, head_signature=high.hex()))


def test_parse_rejects_bad_public_key(doc):
    with pytest.raises(InvalidArgument, match="^line 1:.*audit_public_key"):
        audit.parse_export(edit_line(doc, 1, audit_public_key="02" + "ff" * 32))
    with pytest.raises(InvalidArgument, match="^line 1:.*audit_public_key"):
        audit.parse_export(edit_line(doc, 1, audit_public_key="04" + "11" * 32))


# --- property: any single-byte change is caught ---------------------------------------------


@pytest.fixture(scope="module")
def small_doc() -> bytes:
    return export(make_chain(12))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_single_byte_change_is_detected(small_doc, data):
    assert_one_byte_change_detected(small_doc, data)
