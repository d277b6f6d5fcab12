"""``signerctl report``: holdings and activity per category and case."""
from __future__ import annotations

import json
from typing import Any

from signerd.cli.args import CATEGORIES, Commands, command
from signerd.cli.context import Context
from signerd.cli.errors import CliError
from signerd.cli.render import Output, fmt_amount, fmt_time, generic_text, kv, safe, table
from signerd.core.chain_registry import format_native
from signerd.core.model import EvmChain
from signerd.v1 import signerd_pb2 as pb


def cmd_report(ctx: Context) -> Output:
    a = ctx.args
    cat = CATEGORIES[a.category] if a.category else pb.CATEGORY_UNSPECIFIED
    resp = ctx.call(ctx.audit().Report, pb.ReportRequest(category=cat, case_ref=a.case or ""))
    try:
        doc = json.loads(resp.json)
    except ValueError:
        raise CliError("the daemon's report is not JSON") from None
    return Output(doc, lambda: report_text(doc))


def _amount(amount: Any, asset: Any) -> str:
    try:
        return fmt_amount(int(amount), str(asset))
    except (TypeError, ValueError):
        return f"{safe(amount)} {safe(asset)}"


def _named_amount(row: dict[str, Any]) -> str:
    """A row of outflows_by_chain: a native coin with its decimals, anything else as _amount."""
    try:
        if isinstance(row.get("decimals"), int) and row.get("asset") != "ETH":
            return safe(format_native(int(row["amount"]), EvmChain(
                int(row.get("chain_id") or 0), "", str(row["asset"]), int(row["decimals"]))))
    except (TypeError, ValueError):
        pass
    return _amount(row.get("amount"), row.get("asset"))


def _outputs(t: dict[str, Any]) -> str:
    native = t.get("native") if isinstance(t.get("native"), dict) else {}

    def amount(value: Any, asset: Any) -> str:
        if native and asset == native.get("symbol"):
            return _named_amount({"amount": value, "asset": asset,
                                  "chain_id": native.get("chain_id"),
                                  "decimals": native.get("decimals")})
        return _amount(value, asset)

    sent = [f"{'change' if o.get('change') else 'send'} {amount(o['amount'], o['asset'])} to "
            f"{o['address'] or '(new contract)'}" for o in t.get("outputs") or ()]
    where = f"on {t['chain_name']}: " if t.get("chain_name") else ""
    return where + "; ".join(sent + [f"fee {amount(t['fee'], t['fee_asset'])}"])


def _transfers(title: str, transfers: list[dict[str, Any]]) -> str:
    if not transfers:
        return f"  {title}: none\n"
    out = f"  {title}:\n"
    for t in transfers:
        out += f"    {safe(t['id'])} from wallet {safe(t['wallet_id'])}, {safe(t['state'])} " \
               f"{fmt_time(t.get('updated_at'))}\n      {safe(_outputs(t))}\n"
        if t.get("category_change") not in (None, "", "none"):
            out += (f"      category change {safe(t['category_change'])}, legal basis "
                    f"{safe(t.get('legal_basis') or '(none)')}\n")
        if t.get("tx_hash"):
            out += f"      tx hash {safe(t['tx_hash'])}\n"
    return out


def _case_text(category: str, case_ref: str, c: dict[str, Any]) -> str:
    out = f"\n{safe(category)}, case {safe(case_ref)}\n"
    wallets = c.get("wallets") or []
    out += "  wallets:\n" + "".join("    " + line + "\n" for line in table(
        ["ID", "CHAIN", "NETWORK", "ADDRESS", "STATUS", "FROZEN BY", "ORIGIN"],
        [[w["id"], w["chain"],
          ", ".join(map(str, w.get("chains") or ())) or ",".join(
              map(str, w.get("chain_ids") or ())) or w["network"], w["address"],
          w["status"],
          # The order that froze it, shown only while it is frozen: an active wallet's row
          # keeps the order that lifted its last freeze.
          (w.get("freeze_order") or "-") if w["status"] == "FROZEN" else "-",
          w.get("origin", "")] for w in wallets]).splitlines())
    flows = c.get("signed_outflows") or {}
    sent = [_amount(v, k) for k, v in flows.items() if not k.startswith("fee:")]
    fees = [_amount(v, k.removeprefix("fee:")) for k, v in flows.items() if k.startswith("fee:")]
    out += f"  signed outflows: {', '.join(sent) or 'none'}; fees: {', '.join(fees) or 'none'}\n"
    by_chain = c.get("outflows_by_chain") or {}
    if by_chain:
        out += "  by chain and asset:\n" + "".join(
            f"    {safe(name)}: {_named_amount(row)}\n"
            for name, row in sorted(by_chain.items()))
    out += _transfers("signed transfers", c.get("signed_transfers") or [])
    out += _transfers("pending transfers", c.get("pending_transfers") or [])
    freezes = c.get("freezes") or []
    out += "  freezes:" + (" none\n" if not freezes else "\n" + "".join(
        "    " + line + "\n" for line in table(
            ["TIME", "ACTION", "WALLET", "ORDER", "AUDIT SEQ"],
            [[fmt_time(f.get("time")), f["action"], f["wallet_id"], f["order_ref"],
              f["audit_seq"]] for f in freezes]).splitlines()))
    return out


def report_text(doc: dict[str, Any]) -> str:
    """The report for people: times in UTC (ISO 8601), amounts with their unit and in base
    units; a document of another shape as it comes."""
    cats = doc.get("categories")
    if not isinstance(cats, dict):
        return generic_text(doc)
    f = doc.get("filter") or {}
    scope = ", ".join(f"{k.replace('_ref', '')} {safe(v)}" for k, v in f.items() if v)
    out = kv([("instance", doc.get("instance_id", "")),
              ("generated", fmt_time(doc.get("generated_at"))),
              ("for", scope or "every category and case"),
              ("signerd knows", doc.get("known", "")),
              ("it does not know", doc.get("not_known", ""))])
    for category, body in cats.items():
        for case_ref, c in (body.get("cases") or {}).items():
            out += _case_text(category, case_ref, c)
    if not cats:
        out += "\n(no wallets)\n"
    return out


def register(commands: Commands) -> None:
    sp = command(commands, "report", cmd_report, "holdings and activity per category and case",
                 "auditor", ids=False)
    sp.add_argument("--category", choices=list(CATEGORIES), help="only this category")
    sp.add_argument("--case", metavar="REF", help="only this case")
