"""`signerctl audit verify` on v2 exports, offline: the checkpoints are checked and a failure
names the checkpoint and the first bad event in one line."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import coincurve
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from signerd.core import audit
from signerd import cli
from tests.support.audit import approvals_chain

INSTANCE = "signerd-cli-test"
KEY = coincurve.PrivateKey(hashlib.sha256(b"signerctl checkpoint test key").digest())
PUB = KEY.public_key.format()


def run(capsys, argv: list[str]) -> tuple[int, str, str]:
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_failure(rc: int, err: str) -> str:
    assert rc != 0
    assert err.count("\n") == 1 and err.startswith("signerctl: "), err
    return err.strip()


def rs(digest: bytes) -> bytes:
    r, s = decode_dss_signature(KEY.sign(digest, hasher=None))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def chain(n: int = 12) -> list[audit.AuditEvent]:
    return approvals_chain(n)


def make_export(events: list[audit.AuditEvent], heads=(4, 8, 12),
                checkpoints_of: list[audit.AuditEvent] | None = None) -> bytes:
    signed_over = checkpoints_of or events
    cps: list[audit.Checkpoint] = []
    for head in heads:
        u = audit.next_checkpoint(cps[-1] if cps else None, INSTANCE, head_seq=head,
                                  head_hash=signed_over[head - 1].hash, time=head)
        cps.append(u.signed(rs(u.digest(INSTANCE)), INSTANCE, PUB))
    sig = rs(audit.head_digest(INSTANCE, events[-1].seq, events[-1].hash))
    return audit.export_document(events, sig, PUB, INSTANCE, cps)


def test_v2_export_verifies_with_its_checkpoints(capsys, tmp_path: Path) -> None:
    f = tmp_path / "ok.jsonl"
    f.write_bytes(make_export(chain()))
    rc, out, err = run(capsys, ["audit", "verify", str(f), "--audit-key", PUB.hex()])
    assert (rc, err) == (0, "")
    assert out.startswith("OK: 12 events verified; head seq 12 hash ")
    assert out.rstrip().endswith("; 3 checkpoints verified, the last at the head")
    rc, out, _ = run(capsys, ["--json", "audit", "verify", str(f)])
    doc = json.loads(out)
    assert rc == 0 and doc["ok"] and doc["checkpoints"] == 3 and doc["bad_checkpoint"] is None
    assert doc["format"] == "signerd-audit-export/v2"


def test_a_rewritten_event_is_named_with_its_checkpoint(capsys, tmp_path: Path) -> None:
    original = chain()
    edited = original[:5] + [dataclasses.replace(original[5], actor="mallory")]
    rewritten = list(edited[:5])
    for e in edited[5:] + original[6:]:
        rewritten.append(audit.new_event(rewritten[-1], time=e.time, actor=e.actor,
                                         action=e.action, object=e.object, details=e.details))
    f = tmp_path / "rewritten.jsonl"
    f.write_bytes(make_export(rewritten, checkpoints_of=original))
    rc, out, err = run(capsys, ["audit", "verify", str(f)])
    line = one_line_failure(rc, err)
    assert line.startswith(f"signerctl: {f}: audit checkpoint 2 is NOT valid, first bad event "
                           "seq 8 (transfer.approve transfer/t_8 by inv1): event seq 8 has hash ")
    assert line.endswith("an event in seq 5..8 was rewritten after the checkpoint; "
                         "1 checkpoint verified before it")
    rc, out, _ = run(capsys, ["--json", "audit", "verify", str(f)])
    doc = json.loads(out)
    assert rc == 1 and doc["bad_checkpoint"] == 2 and doc["first_bad_seq"] == 8
    assert doc["checkpoints"] == 1 and doc["event"]["seq"] == 8


def test_a_missing_or_forged_checkpoint_is_named(capsys, tmp_path: Path) -> None:
    lines = make_export(chain()).split(b"\n")[:-1]
    header = json.loads(lines[0])
    header["checkpoints"] = 2
    lines[0] = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    f = tmp_path / "missing.jsonl"
    f.write_bytes(b"\n".join(lines[:14] + lines[15:]) + b"\n")  # line 15: checkpoint 2
    line = one_line_failure(*run(capsys, ["audit", "verify", str(f)])[::2])
    assert line == (f"signerctl: {f}: audit checkpoint 2 is NOT valid: checkpoint 2 is missing: "
                    "checkpoint 3 follows checkpoint 1 (a checkpoint was deleted, inserted or "
                    "reordered); 1 checkpoint verified before it")
    cp = json.loads(lines[-1])
    cp["time"] += 1
    lines[-1] = json.dumps(cp, sort_keys=True, separators=(",", ":")).encode()
    f.write_bytes(b"\n".join(make_export(chain()).split(b"\n")[:-2] + [lines[-1]]) + b"\n")
    line = one_line_failure(*run(capsys, ["audit", "verify", str(f)])[::2])
    assert "audit checkpoint 3 is NOT valid: the signature does not verify" in line
    assert line.endswith("; 2 checkpoints verified before it")


def test_a_head_past_the_last_checkpoint_is_refused(capsys, tmp_path: Path) -> None:
    f = tmp_path / "uncovered.jsonl"
    f.write_bytes(make_export(chain(), heads=(4, 8)))
    line = one_line_failure(*run(capsys, ["audit", "verify", str(f)])[::2])
    assert line == (f"signerctl: {f}: audit checkpoint 3 is NOT valid: the head (seq 12) is not "
                    "covered by a checkpoint (checkpoint 2 is at seq 8): the daemon signs a head "
                    "only after checkpointing it; 2 checkpoints verified before it")


def test_a_v1_export_says_it_has_no_checkpoints(capsys, tmp_path: Path) -> None:
    events = chain()
    sig = rs(audit.head_digest(INSTANCE, 12, events[-1].hash))
    f = tmp_path / "v1.jsonl"
    f.write_bytes(audit.export_document(events, sig, PUB, INSTANCE))
    rc, out, _ = run(capsys, ["audit", "verify", str(f)])
    assert rc == 0 and "; no checkpoints (a v1 export) (pass --audit-key" in out


def test_earlier_export_extended_or_not(capsys, tmp_path: Path) -> None:
    events = chain()
    earlier = tmp_path / "earlier.jsonl"
    earlier.write_bytes(make_export(events[:8], heads=(4, 8)))
    later = tmp_path / "later.jsonl"
    later.write_bytes(make_export(events))
    rc, out, err = run(capsys, ["audit", "verify", str(later), "--earlier", str(earlier),
                                "--audit-key", PUB.hex()])
    assert (rc, err) == (0, "")
    assert f"; extends {earlier} (8 events, 2 checkpoints unchanged)" in out
    rewritten = list(events[:2])
    for e in [dataclasses.replace(events[2], actor="mallory")] + events[3:]:
        rewritten.append(audit.new_event(rewritten[-1], time=e.time, actor=e.actor,
                                         action=e.action, object=e.object, details=e.details))
    fork = tmp_path / "fork.jsonl"
    fork.write_bytes(make_export(rewritten))  # checkpoints signed afresh over the rewrite
    rc, out, err = run(capsys, ["audit", "verify", str(fork)])
    assert rc == 0  # consistent on its own
    line = one_line_failure(*run(capsys, ["audit", "verify", str(fork), "--earlier",
                                          str(earlier)])[::2])
    assert line == (f"signerctl: {fork}: audit export does NOT extend {earlier} at seq 3 "
                    "(transfer.approve transfer/t_3 by inv1 in the earlier export): seq 3 "
                    "differs from the earlier export's: rewritten since; 2 events matched "
                    "before it")
    rc, out, _ = run(capsys, ["--json", "audit", "verify", str(fork), "--earlier", str(earlier)])
    doc = json.loads(out)
    assert rc == 1 and doc["ok"] is False and doc["extends"]["first_bad_seq"] == 3
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(earlier.read_bytes().replace(b'"n":2', b'"n":9'))
    line = one_line_failure(*run(capsys, ["audit", "verify", str(later), "--earlier",
                                          str(bad)])[::2])
    assert line.startswith(f"signerctl: {bad}: the earlier audit export is NOT valid: seq 2")
