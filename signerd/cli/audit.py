"""``signerctl audit``: the audit chain, exported and verified offline."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import coincurve
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from signerd.core import audit
from signerd.cli.args import Commands, command, group
from signerd.cli.context import Context
from signerd.cli.documents import to_dict
from signerd.cli.errors import CliError
from signerd.cli.inputs import read_file
from signerd.cli.render import Output, kv, safe
from signerd.core.errors import SignerError
from signerd.v1 import signerd_pb2 as pb


def head_signature_ok(head: pb.AuditHead) -> bool:
    try:
        sig = audit.normalize_head_signature(bytes(head.signature))
        digest = audit.head_digest(head.instance_id, head.seq, bytes(head.hash))
        key = coincurve.PublicKey(bytes(head.audit_public_key))
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"),
                                   int.from_bytes(sig[32:], "big"))
        return bool(key.verify(der, digest, hasher=None))
    except (SignerError, ValueError, TypeError):
        return False


def cmd_audit_head(ctx: Context) -> Output:
    head = ctx.call(ctx.audit().GetHead, pb.GetHeadRequest())
    doc = to_dict(head)
    doc["signature_valid"] = head_signature_ok(head)
    invalid = CliError("the audit head signature does not verify under the daemon's audit key")
    return Output(doc, lambda: head_text(doc), error=None if doc["signature_valid"] else invalid)


def head_text(doc: dict[str, Any]) -> str:
    return kv([("instance", doc["instance_id"]), ("head seq", doc["seq"]),
               ("head hash", doc["hash"]),
               ("audit key", doc["audit_public_key"]),
               ("signature", "valid" if doc["signature_valid"] else "INVALID")])


def _export_header(data: bytes) -> dict[str, Any]:
    try:
        header = json.loads(data[:data.find(b"\n")].decode("ascii"))
        return header if isinstance(header, dict) else {}
    except (UnicodeDecodeError, ValueError):
        return {}


def cmd_audit_export(ctx: Context) -> Output:
    dest = Path(ctx.args.file)
    if os.path.lexists(dest):
        raise CliError(f"refusing to overwrite {dest}")
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    size = 0
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
    except OSError as e:
        raise CliError(f"cannot write {dest}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in ctx.audit().Export(pb.ExportRequest()):
                f.write(chunk.data)
                size += len(chunk.data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, dest)  # never replaces a file that appeared meanwhile
        except FileExistsError:
            raise CliError(f"refusing to overwrite {dest}") from None
    finally:
        tmp.unlink(missing_ok=True)
    with open(dest, "rb") as f:
        header = _export_header(f.read(64 * 1024))
    doc = {"file": str(dest), "bytes": size, "count": header.get("count"),
           "head_seq": header.get("head_seq"), "head_hash": header.get("head_hash"),
           "instance_id": header.get("instance_id"), "checkpoints": header.get("checkpoints")}
    cps = "" if doc["checkpoints"] is None else f", {doc['checkpoints']} checkpoints"
    return Output(doc, f"wrote {dest}: {size} bytes, {doc['count']} events, head seq "
                       f"{doc['head_seq']} hash {doc['head_hash']}{cps}\n")


def _file_lines(path: str) -> Callable[[], Iterator[bytes]]:
    """Each call reads the file's lines again (an export is verified in two readings, in
    constant memory, whatever its size)."""
    def lines() -> Iterator[bytes]:
        try:
            with open(path, "rb") as f:
                yield from f
        except OSError as e:
            raise CliError(f"cannot read audit export {path}: {e.strerror}") from None
    return lines


def cmd_audit_verify(ctx: Context) -> Output:
    a = ctx.args
    lines = _file_lines(a.file)
    whole = read_file(a.file, "audit export", None) if a.earlier else b""  # --earlier compares
    try:
        with open(a.file, "rb") as f:
            first = f.read(64 * 1024)
    except OSError as e:
        raise CliError(f"cannot read audit export {a.file}: {e.strerror}") from None
    pinned_key = None
    if a.audit_key:
        try:
            pinned_key = bytes.fromhex(a.audit_key)
        except ValueError:
            raise CliError("--audit-key must be the hex of a compressed public key") from None
    try:
        result = audit.verify_export_lines(lines, audit_public_key=pinned_key,
                                           instance_id=a.instance_id)
    except SignerError as e:
        raise CliError(f"{a.file} is not a valid audit export: {e}",
                       doc={"ok": False, "file": a.file, "problem": str(e)}) from None
    header = _export_header(first)
    doc: dict[str, Any] = {"ok": result.ok, "file": a.file, "checked": result.checked,
                           "first_bad_seq": result.first_bad_seq, "problem": result.problem,
                           "count": header.get("count"), "head_seq": header.get("head_seq"),
                           "head_hash": header.get("head_hash"),
                           "instance_id": header.get("instance_id"),
                           "audit_public_key": header.get("audit_public_key"),
                           "key_pinned": pinned_key is not None,
                           "format": header.get("format"),
                           "checkpoints": result.checkpoints,
                           "bad_checkpoint": result.bad_checkpoint}
    v1 = header.get("format") == audit.EXPORT_FORMAT_V1
    extends = ""
    if result.ok and a.earlier:
        extends = _verify_extends(ctx, whole, pinned_key, doc)
    if result.ok:
        note = "" if pinned_key else " (pass --audit-key to pin the key)"
        cps = ("no checkpoints (a v1 export)" if v1 else
               f"{result.checkpoints} checkpoint{'s' if result.checkpoints != 1 else ''} "
               "verified, the last at the head" if result.checkpoints else "no checkpoints")
        return Output(doc, f"OK: {result.checked} events verified; head seq {doc['head_seq']} hash "
                           f"{doc['head_hash']}; instance {safe(doc['instance_id'])}; audit key "
                           f"{doc['audit_public_key']}; {cps}{extends}{note}\n")
    doc["event"] = None
    where = ""
    if result.first_bad_seq is not None:
        where = f"seq {result.first_bad_seq}"
        event = next((e for e in audit.read_lines(lines()) if isinstance(e, audit.AuditEvent)
                      and e.seq == result.first_bad_seq), None)
        if event is not None:
            where += f" ({safe(event.action)} {safe(event.object)} by {safe(event.actor)})"
            doc["event"] = {"seq": event.seq, "time": event.time, "actor": event.actor,
                            "action": event.action, "object": event.object}
    if result.bad_checkpoint is not None:
        n = result.bad_checkpoint
        problem = result.problem.removeprefix(f"checkpoint {n}: ")
        raise CliError(f"{a.file}: audit checkpoint {n} is NOT valid"
                       + (f", first bad event {where}" if where else "")
                       + f": {problem}; {result.checkpoints} checkpoint"
                       f"{'s' if result.checkpoints != 1 else ''} verified before it", doc=doc)
    if not where:
        raise CliError(f"{a.file}: audit export is NOT valid: {result.problem}", doc=doc)
    raise CliError(f"{a.file}: audit chain is NOT valid: first bad event {where}: "
                   f"{result.problem}; {result.checked} events verified before it", doc=doc)


def _verify_extends(ctx: Context, data: bytes, pinned_key: bytes | None,
                    doc: dict[str, Any]) -> str:
    """--earlier: the earlier export verifies on its own and this one extends it (no event of
    it rewritten or dropped, no checkpoint of it replaced or rolled back). Returns the words for
    the OK line; raises CliError naming the first difference."""
    a = ctx.args
    earlier = read_file(a.earlier, "earlier audit export", None)
    try:
        before = audit.verify_export(earlier, audit_public_key=pinned_key,
                                     instance_id=a.instance_id)
        found = audit.verify_extends(earlier, data) if before.ok else before
    except SignerError as e:
        raise CliError(f"{a.earlier} is not a valid audit export: {e}") from None
    if not before.ok:
        raise CliError(f"{a.earlier}: the earlier audit export is NOT valid: {before.problem}")
    doc["extends"] = {"file": a.earlier, "ok": found.ok, "checked": found.checked,
                      "first_bad_seq": found.first_bad_seq,
                      "bad_checkpoint": found.bad_checkpoint, "problem": found.problem}
    if found.ok:
        return (f"; extends {a.earlier} ({found.checked} events, {found.checkpoints} "
                "checkpoints unchanged)")
    where = ""
    if found.first_bad_seq is not None:
        where = f" at seq {found.first_bad_seq}"
        event = next((e for e in audit.parse_export(earlier)[1]
                      if e.seq == found.first_bad_seq), None)
        if event is not None:
            where += (f" ({safe(event.action)} {safe(event.object)} by {safe(event.actor)} in "
                      "the earlier export)")
    doc["ok"] = False
    raise CliError(f"{a.file}: audit export does NOT extend {a.earlier}{where}: "
                   f"{found.problem}; {found.checked} events matched before it", doc=doc)


def register(commands: Commands) -> None:
    g = group(commands, "audit", "the audit chain")
    sp = command(g, "export", cmd_audit_export, "export the audit chain to a file", "auditor",
                 ids=False)
    sp.add_argument("file", help="the file to write (never overwritten)")
    sp = command(g, "verify", cmd_audit_verify, "verify an export offline: the signed head, the "
                 "chain and every HSM-signed checkpoint", ids=False)
    sp.add_argument("file", help="an export written by audit export")
    sp.add_argument("--audit-key", metavar="HEX", help="the daemon's audit key, known out of band")
    sp.add_argument("--instance-id", metavar="ID",
                    help="the daemon's instance id the export must name")
    sp.add_argument("--earlier", metavar="FILE",
                    help="an export kept from before: check that this one extends it")
    command(g, "head", cmd_audit_head, "show the signed head of the chain", "auditor", ids=False)
