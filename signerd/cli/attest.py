"""``signerctl attest``: proofs of control under quorum and the holdings statement.

``create`` asks signerd for an attestation of a category (or a case) with a challenge;
operators ``approve`` it with their own keys after signerctl checked the statement here (every
text in signerd's format, the document its own); once the quorum is met signerd signs each
wallet's text (for a multisig with outside cosigners, ``psbt`` writes the BIP-322 PSBT they sign
and ``combine`` brings it back) and ``export`` writes the holdings statement, which ``verify`` checks offline
and ``page`` renders as a static HTML page for publication.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from signerd.cli.args import CATEGORIES, Commands, command, decision_commands, group
from signerd.cli.context import Context
from signerd.cli.deciding import confirm_shown, start_decision
from signerd.cli.errors import CliError
from signerd.cli.inputs import read_file
from signerd.cli.page import read_balances, render_page
from signerd.cli.render import Output, safe, table
from signerd.core import approval, attest, canonical
from signerd.core.errors import SignerError
from signerd.core.model import Decision
from signerd.v1 import signerd_pb2 as pb
from signerd.v1 import signerd_pb2_grpc as rpc

MAX_STATEMENT = 64 << 20


def _stub(ctx: Context) -> rpc.AttestationStub:
    return rpc.AttestationStub(ctx.channel())


def _doc(resp: Any) -> Any:
    try:
        return json.loads(resp.json)
    except ValueError:
        raise CliError("the daemon's answer is not JSON") from None


def _text(v: dict[str, Any]) -> str:
    lines = [f"attestation {safe(v['id'])}: {safe(v['state'])}",
             f"  category {safe(v['category'] or '(all)')}, case {safe(v['case_ref'] or '(all)')},"
             f" requested by {safe(v['submitter'])}"]
    doc = v.get("document") or {}
    if doc:
        lines.append(f"  challenge {safe(doc['challenge'])}; issuer {safe(doc['issuer'])}")
        lines += [f"  proves {safe(e['address'])} ({safe(e['chain'])} {safe(e['network'])}, "
                  f"{safe(e['wallet_id'])})" for e in doc["wallets"]]
        lines += [f"  left out {safe(x['wallet_id'])} {safe(x['address'])}: {safe(x['reason'])}"
                  for x in doc["left_out"]]
    for c in v.get("cosigning") or ():
        lines.append(f"  waits for cosigners of {safe(c['wallet_id'])} {safe(c['address'])}: "
                     f"{c['signatures']} of {c['threshold']} signatures (attest psbt, then "
                     "attest combine)")
    if v.get("not_signerds"):
        lines.append(f"  NOT SIGNERD'S ATTESTATION: {safe(v['not_signerds'])}")
    if v.get("requirement"):
        lines.append(f"  needs: {safe(v['requirement'])}")
    if v["state"] == "PENDING_APPROVAL" and v.get("remaining"):
        lines.append(f"  remaining: {safe(v['remaining'])}")
    lines += [f"  {safe(a['decision'])} by {safe(a['operator_id'])}" for a in v["approvals"]]
    if v.get("failure"):
        lines.append(f"  {safe(v['failure'])}")
    return "\n".join(lines) + "\n"


def cmd_create(ctx: Context) -> Output:
    a = ctx.args
    v = _doc(ctx.call(_stub(ctx).CreateAttestation, pb.CreateAttestationRequest(
        category=CATEGORIES[a.category] if a.category else pb.CATEGORY_UNSPECIFIED,
        case_ref=a.case or "", challenge=a.challenge, issuer=a.issuer or "",
        since=a.since or 0)))
    return Output(v, lambda: _text(v))


def cmd_show(ctx: Context) -> Output:
    v = _doc(ctx.call(_stub(ctx).GetAttestation,
                      pb.GetAttestationRequest(attestation_id=ctx.args.id)))
    return Output(v, lambda: _text(v))


def cmd_list(ctx: Context) -> Output:
    v = _doc(ctx.call(_stub(ctx).ListAttestations, pb.ListAttestationsRequest(
        state=ctx.args.state or "", page=pb.Page(page_size=1000))))
    return Output(v, lambda: table(["ID", "STATE", "CATEGORY", "CASE", "BY"], [
        [x["id"], x["state"], x["category"], x["case_ref"], x["submitter"]]
        for x in v["attestations"]]))


def check_statement(statement: bytes, attestation_id: str, decision: Decision,
                    instance_id: str | None) -> dict[str, Any]:
    """The attestation a statement signerd handed out binds, once it is checked here: the tag,
    canonical JSON, this attestation and decision, every text in signerd's format and stating
    its wallet. CliError otherwise (nothing is signed)."""
    tag, nl, body = statement.partition(b"\n")
    if tag != attest.ATTESTATION_TAG or not nl:
        raise CliError("the statement is not an attestation statement")
    try:
        parsed = canonical.loads(body, "attestation statement")
        doc = parsed["attestation"]
        instance = instance_id or doc["instance_id"]
        attest.check_document(doc, instance)
    except (SignerError, KeyError, TypeError) as e:
        raise CliError(f"the attestation statement does not check out: {e}") from None
    if doc["id"] != attestation_id or parsed.get("decision") != decision.value:
        raise CliError("the statement is for another attestation or decision")
    if attest.statement(doc, decision) != statement:
        raise CliError("the statement is not in canonical form")
    return dict(doc)


def cmd_decide(ctx: Context) -> Output:
    a = ctx.args
    decision, key = start_decision(ctx, "attest")
    st = ctx.call(_stub(ctx).GetAttestationStatement, pb.GetAttestationStatementRequest(
        attestation_id=a.id, decision=pb.Decision.Value(decision.value)))
    instance = ctx.config.instance_id if ctx.config is not None else None
    try:
        doc = check_statement(bytes(st.statement), a.id, decision, instance)
    except CliError as e:
        raise CliError(f"{e}; refusing to sign") from None
    need = json.loads(st.json).get("requirement", "")
    confirm_shown(ctx, attest.render(doc, decision, need), decision)
    statement = bytes(st.statement)
    v = _doc(ctx.call(_stub(ctx).DecideAttestation, pb.DecideAttestationRequest(
        attestation_id=a.id, operator_id=ctx.principal,
        decision=pb.Decision.Value(decision.value),
        signature=key.sign_digest(approval.statement_digest(statement)),
        reason=a.reason or "",
        statement_sha256=approval.statement_digest(statement))))
    verb = "approved" if decision is Decision.APPROVE else "rejected"
    return Output(v, lambda: f"{verb} as {ctx.principal}; attestation {safe(v['id'])}: "
                  f"{v['state']}" + (f"; remaining: {safe(v['remaining'])}"
                                     if v["state"] == "PENDING_APPROVAL" and v.get("remaining")
                                     else "") + "\n")


def cmd_export(ctx: Context) -> Output:
    a = ctx.args
    resp = ctx.call(_stub(ctx).ExportAttestation,
                    pb.GetAttestationRequest(attestation_id=a.id))
    Path(a.file).write_text(resp.json)
    doc = json.loads(resp.json)
    n = len(doc.get("proofs", ()))
    return Output({"id": a.id, "file": a.file, "proofs": n},
                  f"wrote {safe(a.file)}: holdings statement {safe(a.id)}, {n} proofs\n")


def cmd_psbt(ctx: Context) -> Output:
    """The BIP-322 PSBT of a multisig wallet whose outside cosigners must sign: to_sign with
    to_spend as its previous output, the witness script and signerd's own signatures."""
    a = ctx.args
    v = _doc(ctx.call(_stub(ctx).GetAttestation,
                      pb.GetAttestationRequest(attestation_id=a.id)))
    waiting = v.get("cosigning") or []
    chosen = [c for c in waiting if not a.wallet or c["wallet_id"] == a.wallet]
    if not chosen:
        raise CliError(f"attestation {safe(a.id)} ({safe(v['state'])}) waits for no cosigner"
                       + (f" of wallet {safe(a.wallet)}" if a.wallet else ""))
    if len(chosen) > 1:
        raise CliError("several wallets wait for cosigners; name one with --wallet: "
                       + ", ".join(safe(c["wallet_id"]) for c in chosen))
    c = chosen[0]
    Path(a.out).write_text(c["psbt"] + "\n")
    doc = {"id": a.id, "wallet_id": c["wallet_id"], "address": c["address"], "file": a.out,
           "signatures": c["signatures"], "threshold": c["threshold"]}
    return Output(doc, f"wrote {safe(a.out)}: the BIP-322 PSBT of {safe(c['address'])} "
                  f"({c['signatures']} of {c['threshold']} signatures); cosigners sign it and "
                  f"it comes back with signerctl attest combine {safe(a.id)} --psbt FILE\n")


def cmd_combine(ctx: Context) -> Output:
    a = ctx.args
    data = read_file(a.psbt, "PSBT file")
    v = _doc(ctx.call(_stub(ctx).CombineAttestation, pb.CombineAttestationRequest(
        attestation_id=a.id, psbt=data)))
    return Output(v, lambda: _text(v))


def _audit_key(text: str | None) -> bytes | None:
    if not text:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise CliError("--audit-key must be the hex of a compressed public key") from None


def load_statement(path: str, audit_key: str | None) -> tuple[dict[str, Any], list[str]]:
    """A holdings statement file, verified offline: the audit key's seal (with ``audit_key``),
    every approval and every proof. CliError naming what failed."""
    data = read_file(path, "holdings statement", MAX_STATEMENT)
    try:
        doc = json.loads(data)
        return doc, attest.verify_export(doc, _audit_key(audit_key))
    except (ValueError, KeyError, TypeError) as e:
        raise CliError(f"{path} is not a holdings statement ({type(e).__name__}: {e})",
                       doc={"ok": False, "file": path, "problem": str(e)}) from None
    except SignerError as e:
        raise CliError(f"{path} does NOT verify: {e.message}",
                       doc={"ok": False, "file": path, "problem": e.message}) from None


def cmd_verify(ctx: Context) -> Output:
    a = ctx.args
    doc, lines = load_statement(a.file, a.audit_key)
    note = "" if a.audit_key else "\n(pass --audit-key to check the audit key's seal)"
    return Output({"ok": True, "file": a.file, "checks": lines,
                   "attestation": doc["attestation"]["id"], "key_pinned": bool(a.audit_key)},
                  "\n".join(lines) + f"\nOK: {len(doc['proofs'])} proofs of control verify"
                  + note + "\n")


def cmd_page(ctx: Context) -> Output:
    a = ctx.args
    doc, _ = load_statement(a.file, a.audit_key)
    balances = read_balances(a.balances, doc) if a.balances else None
    Path(a.out).write_text(render_page(doc, balances), encoding="utf-8")
    return Output({"file": a.out, "attestation": doc["attestation"]["id"]},
                  f"wrote {safe(a.out)}: the holdings statement as a static page\n")


def register(commands: Commands) -> None:
    g = group(commands, "attest", "proofs of control under quorum, holdings statements")
    sp = command(g, "create", cmd_create,
                 "ask for proofs of control of a category's (or a case's) wallets", "auditor")
    sp.add_argument("--category", choices=list(CATEGORIES), help="the category to attest")
    sp.add_argument("--case", metavar="REF", help="only this case")
    sp.add_argument("--challenge", required=True, metavar="TEXT",
                    help="a recent block hash or an auditor's nonce (printable ASCII, 8-128 "
                         "characters), written into every text signed")
    sp.add_argument("--issuer", metavar="TEXT", help="who issues the statement")
    sp.add_argument("--since", type=int, metavar="UNIX_SECONDS",
                    help="list the transfers signed since then (default: all)")
    sp = command(g, "show", cmd_show, "show an attestation", "auditor")
    sp.add_argument("id", help="the attestation's id (a_...)")
    sp = command(g, "list", cmd_list, "list attestations", "auditor")
    sp.add_argument("--state", type=str.upper, metavar="STATE", help="only this state")
    decision_commands(g, "attestation", cmd_decide)
    sp = command(g, "export", cmd_export, "write the holdings statement once approved",
                 "auditor")
    sp.add_argument("id", help="the attestation's id (a_...)")
    sp.add_argument("file", help="where to write the statement (JSON)")
    sp = command(g, "psbt", cmd_psbt,
                 "write the BIP-322 PSBT a multisig wallet's outside cosigners sign", "auditor")
    sp.add_argument("id", help="the attestation's id (a_...)")
    sp.add_argument("--wallet", metavar="ID", help="the wallet (when several wait)")
    sp.add_argument("--out", required=True, metavar="FILE", help="where to write it (base64)")
    sp = command(g, "combine", cmd_combine,
                 "add outside cosigners' signatures from a BIP-322 PSBT", "auditor")
    sp.add_argument("id", help="the attestation's id (a_...)")
    sp.add_argument("--psbt", required=True, metavar="FILE",
                    help="the PSBT with the cosigners' signatures, binary or base64")
    sp = command(g, "verify", cmd_verify,
                 "check a holdings statement offline: seal, approvals, every proof", "auditor",
                 ids=False)
    sp.add_argument("file", help="the statement (JSON)")
    sp.add_argument("--audit-key", metavar="HEX", help="the daemon's audit key, known out of band")
    sp = command(g, "page", cmd_page, "render a verified statement as a static HTML page",
                 "auditor", ids=False)
    sp.add_argument("file", help="the statement (JSON)")
    sp.add_argument("--out", required=True, metavar="FILE", help="the page to write (HTML)")
    sp.add_argument("--balances", metavar="FILE",
                    help="balances the platform read from the chain, with their block heights "
                         "(JSON)")
    sp.add_argument("--audit-key", metavar="HEX", help="the daemon's audit key, known out of band")
