"""Text for people: tables, key-value lists, wallets, transfers, movements and proposals, every
value from the daemon made safe to print; and ``Output``, what a command hands back to be
printed as text or as JSON."""
from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TextIO

from signerd.core import approval
from signerd.core.approval import format_amount, safe_text
from signerd.cli.errors import CliError
from signerd.cli.documents import proposal_json
from signerd.core.model import EvmChain
from signerd.core.model import Output as OutputValue
from signerd.core.model import Token
from signerd.core.tokens import lookup as lookup_token
from signerd.core.tokens import token_from_json
from signerd.v1 import signerd_pb2 as pb

LABEL_WIDTH = 18


@dataclass(frozen=True)
class Output:
    """What a command hands back: ``doc``, the JSON document printed with --json, else
    ``text`` (a function is called only then). ``error``, when set, is reported after the
    output, as the command's failure."""

    doc: Any
    text: str | Callable[[], str] = ""
    error: CliError | None = None
    quiet: str | None = None  # what -q prints instead of the ids in ``doc``

    def ids(self) -> list[str]:
        """What -q/--id-only prints: ``quiet``, else the document's id, else the ids of the
        one listing it holds (``{"wallets": [...]}``)."""
        if self.quiet is not None:
            return [self.quiet]
        doc = self.doc
        if isinstance(doc, dict) and isinstance(doc.get("id"), str):
            return [doc["id"]]
        if isinstance(doc, dict) and len(doc) == 1:
            (items,) = doc.values()
            if isinstance(items, list) and all(isinstance(i, dict) and "id" in i
                                               for i in items):
                return [str(i["id"]) for i in items]
        raise CliError("-q/--id-only: this command's answer has no id; leave -q out")


def emit(out: Output, as_json: bool, stdout: TextIO | None = None, *,
         id_only: bool = False) -> None:
    """Print what a command handed back: one JSON document (ending in a newline), its ids one a
    line, or its text."""
    stream = sys.stdout if stdout is None else stdout
    if as_json:
        stream.write(json.dumps(out.doc, indent=2) + "\n")
    elif id_only:
        stream.write("".join(f"{safe(i)}\n" for i in out.ids()))
    else:
        stream.write(out.text() if callable(out.text) else out.text)


# ---------------------------------------------------------------- text

safe = safe_text


def safe_block(text: str) -> str:
    return "".join(c if c.isprintable() or c in "\n\t" else ascii(c)[1:-1] for c in text)


def fmt_time(unix: int | None) -> str:
    if not unix:
        return "-"
    return datetime.fromtimestamp(unix, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def fmt_amount(amount: int | str, asset: str, token: Token | None = None, *,
               native: EvmChain | None = None) -> str:
    return format_amount(int(amount), asset, token, native=native)


def kv(pairs: list[tuple[str, object]], width: int = 0) -> str:
    width = width or max((len(k) for k, _ in pairs), default=0) + 2
    return "".join(f"{k + ':':<{width}}{safe(v)}\n" for k, v in pairs)


def table(header: list[str], rows: list[list[object]]) -> str:
    if not rows:
        return "(none)\n"
    cells = [header] + [[safe(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() + "\n"
                   for r in cells)


def wallet_text(w: dict[str, Any]) -> str:
    where = (f"chain ids {', '.join(map(str, w['chain_ids']))}" if w["chain"] == "ethereum"
             else w["network"])
    pairs: list[tuple[str, object]] = [
        ("id", w["id"]), ("chain", f"{w['chain']} ({where})"), ("address", w["address"]),
        ("script type", w["script_type"]), ("category", w["category"]),
        ("status", w["status"]), ("case", w["case_ref"]),
    ]
    if w["legal_basis"]:
        pairs.append(("legal basis", w["legal_basis"]))
    if w["freeze_order"]:
        pairs.append(("freeze order", w["freeze_order"]))
    if w["descriptor"]:
        pairs.append(("descriptor", w["descriptor"]))
    if w["threshold"] > 1 or len(w["keys"]) > 1:
        pairs.append(("multisig", f"{w['threshold']} of {len(w['keys'])}"))
    if w.get("template"):
        pairs.append(("template", w["template"]))
    if w.get("proposal_id"):
        pairs.append(("proposal", w["proposal_id"]))
    for k in w["keys"]:
        pairs.append(("key", f"{k['public_key']} ({'HSM' if k['hsm_held'] else 'cosigner'})"))
    if w.get("safe_owners"):
        pairs.append(("safe", f"{w['threshold']} of {len(w['safe_owners'])} owners"))
        pairs += [("safe owner", o) for o in w["safe_owners"]]
    pairs += [("policy version", w["policy_version"]), ("created", fmt_time(w["created_at"]))]
    return kv(pairs)


def movement_text(mv: dict[str, Any], from_address: str = "") -> str:
    lines = []
    if from_address:
        lines.append(f"from:             {safe(from_address)}")
    net = (f"{mv['network']}, chain id {mv['chain_id']}" if mv["chain_id"] else mv["network"])
    native = None
    if mv.get("native"):
        n = mv["native"]
        native = EvmChain(int(n["chain_id"]), str(n["name"]), str(n["symbol"]),
                          int(n["decimals"]))
        net = (f"{n['name']}, chain id {n['chain_id']}, native coin {n['symbol']}, "
               f"{n['decimals']} decimals")
    lines.append(f"chain:            {safe(mv['chain'])} ({safe(net)})")
    lines.append("outputs:")
    tokens = [token_from_json(t) for t in mv.get("tokens", [])]
    for i, o in enumerate(mv["outputs"], 1):
        verb = "change" if o["is_change"] else "send"
        to = safe(o["address"]) if o["address"] else "(new contract)"
        ours = (f" {safe(o['category'])} wallet {safe(o['wallet_id'])}"
                if o.get("wallet_id") and not o["is_change"] else "")
        mark = f"[{safe(o['destination_class'])}{ours}{', CHANGE' if o['is_change'] else ''}]"
        token = lookup_token(tokens, o["asset"], int(mv["chain_id"] or 0))
        special = approval.describe_token_output(_token_output(o), token, to, mark)
        lines.append(f"  {i}. {special}" if special is not None else
                     f"  {i}. {verb} {fmt_amount(o['amount'], o['asset'], token, native=native)} "
                     f"to {to} {mark}")
    if not mv["outputs"]:
        lines.append("  (none)")
    lines += approval.token_warnings(_token_output(o) for o in mv["outputs"])
    label = {"ethereum": "max fee:", "tron": "fee limit:"}.get(mv["chain"], "fee:")
    lines.append(f"{label:<18}"
                 f"{fmt_amount(mv['fee'] or 0, mv['fee_asset'] or 'BTC', native=native)}"
                 + (f", {mv['vsize']} vB" if mv["vsize"] else ""))
    for label, key in (("nonce:", "nonce"), ("gas limit:", "gas_limit")):
        if mv[key] is not None:
            lines.append(f"{label:<18}{mv[key]}")
    for label, key in (("max fee/gas:", "max_fee_per_gas"),
                       ("priority fee/gas:", "max_priority_fee_per_gas")):
        if mv[key]:
            lines.append(f"{label:<18}{safe(mv[key])} wei")
    for t in tokens:
        lines.append(f"token:            {safe(t.symbol)} = {safe(t.standard).upper()} contract "
                     f"{safe(t.address)} on chain {t.chain_id}, {t.decimals} decimals")
    lines += [line[:17] + " " + line[17:]  # this page's labels are one wider
              for line in approval.extra_lines(sorted((mv.get("extra") or {}).items()))]
    if mv.get("safe"):  # [[name, value], ...] decoded here, or [{name, value}] from the daemon
        pairs = [(f["name"], f["value"]) if isinstance(f, dict) else (f[0], f[1])
                 for f in mv["safe"]]
        lines += approval.safe_lines(pairs)
    if mv["contract_call"]:
        lines.append(f"contract call:    {safe(mv['contract_call'])} (NOT decoded)")
    if mv["outpoints"]:
        lines.append("spends:           " + ", ".join(safe(p) for p in mv["outpoints"]))
    if mv.get("sighash"):
        lines.append("sighash:          " + approval.sighash_summary(mv["sighash"]))
        lines += approval.sighash_warnings(mv["sighash"], len(mv["outputs"]))
    return "\n".join(lines) + "\n"


def _token_output(o: dict[str, Any]) -> OutputValue:
    """An output of a movement document (the daemon's or ``movement_dict``) as a model output,
    for what its token fields say (token id, source, grant)."""
    token_id = str(o.get("token_id") or "")
    amount = str(o.get("amount") or "0")
    return OutputValue(address=str(o["address"]), amount=int(amount) if amount.isdigit() else 0,
                       asset=str(o["asset"]),
                       token_id=int(token_id) if token_id.isdigit() else None,
                       source=str(o.get("source") or ""), grant=o.get("grant") is True)


def transfer_text(t: dict[str, Any], from_address: str = "") -> str:
    head = kv([("transfer", t["id"]), ("wallet", t["wallet_id"]), ("state", t["state"])],
              LABEL_WIDTH)
    body = movement_text(t["movement"], from_address) if t["movement"] else "(not decoded)\n"
    pairs: list[tuple[str, object]] = [
        ("expires", fmt_time(t["expires_at"])), ("requirement", t["requirement"] or "-"),
        ("remaining", t["remaining"] or "-"), ("policy version", t["policy_version"]),
    ]
    for label, key in (("category change", "category_change"), ("legal basis", "legal_basis")):
        if t[key] and t[key] != "none":
            pairs.append((label, t[key]))
    if t["replaces"]:
        pairs.append(("replaces", replacement_text(t)))
    for label, key in (("tx hash", "tx_hash"), ("failure", "failure")):
        if t[key]:
            pairs.append((label, t[key]))
    pairs += [("submitter", t["submitter"]), ("created", fmt_time(t["created_at"]))]
    text = head + body + kv(pairs, LABEL_WIDTH) + "".join(
        line + "\n" for line in approval.veto_warnings(
            (v["role"], v["transfer_id"]) for v in t.get("vetoed") or ()))
    return text + decisions_text("approvals", t["approvals"])


def decisions_text(title: str, approvals: list[dict[str, Any]]) -> str:
    """The operators' decisions on a transfer or a proposal, one a line; nothing when none."""
    if not approvals:
        return ""
    return f"{title}:\n" + "".join(
        f"  {safe(a['operator_id'])} {a['decision']}"
        f"{' (counted)' if a['counted'] else ''} {fmt_time(a['created_at'])}"
        f"{' ' + safe(a['reason']) if a['reason'] else ''}\n" for a in approvals)


def replacement_text(t: dict[str, Any]) -> str:
    """``t_... (SIGNED), fee +4,500 sat``, as the daemon's rendering of the statement has it."""
    asset = (t["movement"] or {}).get("fee_asset") or "BTC"
    try:
        delta = int(t["replaces_fee_delta"] or 0)
    except ValueError:
        return f"{t['replaces']} ({t['replaces_state']}), fee change {t['replaces_fee_delta']}"
    return approval.replacement_summary(t["replaces"], t["replaces_state"], delta, asset)


def generic_text(value: Any, indent: str = "") -> str:
    """A report of unknown shape: lists of flat objects as tables, objects as sections."""
    if isinstance(value, dict):
        out = ""
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                out += f"{indent}{safe(k)}:\n" + generic_text(v, indent + "  ")
            else:
                out += f"{indent}{safe(k)}: {safe(v)}\n"
        return out
    if isinstance(value, list):
        if value and all(isinstance(r, dict) for r in value):
            cols = list(dict.fromkeys(k for r in value for k in r))
            if all(not isinstance(r.get(c), (dict, list)) for r in value for c in cols):
                rows = [["" if r.get(c) is None else r.get(c) for c in cols] for r in value]
                return "".join(indent + line + "\n"
                               for line in table(cols, rows).splitlines())
        return "".join(indent + "- " + generic_text(v, indent + "  ").lstrip() for v in value)
    return f"{indent}{safe(value)}\n"


def proposal_text(p: dict[str, Any]) -> str:
    pairs: list[tuple[str, object]] = [
        ("proposal", p["id"]), ("state", p["state"]), ("kind", p["kind"]),
        ("change", p["summary"]), ("submitter", p["submitter"]),
        ("needs", p["requirement"] or "-")]
    if p["state"] == "PENDING_APPROVAL":
        pairs.append(("remaining", p["remaining"] or "-"))
    pairs += [("expires", fmt_time(p["expires_at"])), ("created", fmt_time(p["created_at"]))]
    if p["applied_seq"]:
        pairs.append(("ledger entry", p["applied_seq"]))
    if p["failure"]:
        pairs.append(("failure", p["failure"]))
    text = kv(pairs, LABEL_WIDTH)
    return text + decisions_text("decisions", p["approvals"])


def proposal_output(p: pb.Proposal) -> Output:
    """What every act that needs the governance quorum prints: the proposal it created."""
    doc = proposal_json(p)
    return Output(doc, lambda: proposal_text(doc) + (
        f"it takes effect once the governance quorum approves it: signerctl --as OPERATOR "
        f"proposal approve {safe(doc['id'])} --key OPERATOR.key\n"
        if doc["state"] == "PENDING_APPROVAL" else ""))
