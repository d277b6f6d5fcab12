"""A holdings statement as a static HTML page for publication: one self-contained file (no
script, no font, no image or style loaded from elsewhere; a Content-Security-Policy that
forbids them), every address as text with how to check its proof with common tools, an inline
SVG chart of totals per category and chain. Balances are the chain's, not signerd's: the page
says so, and shows those the platform supplies (``read_balances``) with their block heights.
Every value from the statement or the balances file is HTML-escaped."""
from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timezone
from html import escape
from importlib import resources
from string import Template
from typing import Any

from signerd.cli.errors import CliError
from signerd.cli.inputs import read_file
from signerd.core import attest

BALANCES_FORMAT = "signerd-balances/v1"
DECIMALS = {"BTC": 8, "ETH": 18}
COLOURS = {"seized": "#b45309", "confiscated": "#1d4ed8", "strategic": "#047857"}


def read_balances(path: str, statement: dict[str, Any]) -> dict[str, Any]:
    """A balances file: ``{"format": "signerd-balances/v1", "source": TEXT, "balances":
    [{"address", "asset", "amount" (base units, decimal string), "block_height",
    "block_hash"?}]}``, each address one of the statement's. CliError naming the entry."""
    try:
        doc = json.loads(read_file(path, "balances file"))
    except ValueError as e:
        raise CliError(f"balances file {path} is not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != BALANCES_FORMAT:
        raise CliError(f"balances file {path}: format must be {BALANCES_FORMAT!r}")
    known = {e["address"] for e in statement["attestation"]["wallets"]}
    out = []
    for i, b in enumerate(doc.get("balances") or []):
        try:
            amount = b["amount"]
            if not isinstance(amount, str) or not amount.isdigit():
                raise ValueError("amount: base units as a decimal string")
            height = b["block_height"]
            if isinstance(height, bool) or not isinstance(height, int) or height < 0:
                raise ValueError("block_height: a non-negative integer")
            if b["address"] not in known:
                raise ValueError(f"address {b['address']} is not in the statement")
            if b["asset"] not in DECIMALS:
                raise ValueError("asset: BTC or ETH")
        except (KeyError, TypeError, ValueError) as e:
            raise CliError(f"balances file {path}: entry {i}: {e}") from None
        out.append({"address": b["address"], "asset": b["asset"], "amount": int(amount),
                    "block_height": height, "block_hash": str(b.get("block_hash", ""))})
    return {"source": str(doc.get("source", "")), "balances": out}


def units(amount: int, asset: str) -> str:
    d = DECIMALS.get(asset, 0)
    if not d:
        return f"{amount} {asset}"
    whole, frac = divmod(amount, 10**d)
    return f"{whole:,}.{frac:0{d}d}".rstrip("0").rstrip(".") + f" {asset}"


def _utc(seconds: Any) -> str:
    return datetime.fromtimestamp(int(seconds), timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


HOW = {
    "eip191": ("EIP-191 <code>personal_sign</code> by the address's key. Check it with any "
               "Ethereum wallet's or block explorer's &ldquo;verify signature&rdquo;, or in "
               "Python with eth-account: <code>Account.recover_message(encode_defunct("
               "text=MESSAGE), signature=SIGNATURE)</code> returns the address."),
    "bip322-simple": ("BIP-322 simple signature (a witness stack). Check it with any BIP-322 "
                      "verifier, e.g. Sparrow Wallet (Tools, Sign/Verify Message) or bip322-js: "
                      "<code>Verifier.verifySignature(ADDRESS, MESSAGE, SIGNATURE)</code>."),
    "bip322-full": ("BIP-322 full signature: the signed <code>to_sign</code> transaction, a "
                    "multisig spend of an output that exists on no chain. Check it with a "
                    "script interpreter over BIP-322's <code>to_spend</code> and "
                    "<code>to_sign</code> (e.g. python-bitcointx's VerifyScript), or with "
                    "<code>signerctl attest verify</code>."),
}


def _chart(totals: dict[tuple[str, str], int], by_count: bool) -> str:
    """Horizontal bars, one per (category, chain asset), scaled within each asset."""
    if not totals:
        return "<p>(nothing to chart)</p>"
    rows = sorted(totals.items())
    peak: dict[str, int] = defaultdict(int)
    for (cat, asset), v in rows:
        peak[asset] = max(peak[asset], v)
    bar_h, gap, label_w, width = 26, 10, 230, 720
    height = len(rows) * (bar_h + gap) + gap
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" aria-label="totals per '
             f'category and chain">']
    for i, ((cat, asset), v) in enumerate(rows):
        y = gap + i * (bar_h + gap)
        w = 0 if not peak[asset] else max(2, int((width - label_w - 170) * v / peak[asset]))
        value = f"{v} address{'es' if v != 1 else ''}" if by_count else units(v, asset)
        parts.append(
            f'<text x="0" y="{y + 18}" font-size="14">{escape(cat)} &#183; {escape(asset)}'
            f'</text><rect x="{label_w}" y="{y}" width="{w}" height="{bar_h}" '
            f'fill="{COLOURS.get(cat, "#6b7280")}"/>'
            f'<text x="{label_w + w + 8}" y="{y + 18}" font-size="14">{escape(value)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_page(statement: dict[str, Any], balances: dict[str, Any] | None) -> str:
    """The page for a statement that verified (``attest.verify_export``)."""
    att = statement["attestation"]
    proofs = {p["wallet_id"]: p for p in statement["proofs"]}
    held = {b["address"]: b for b in (balances or {}).get("balances", [])}
    totals: dict[tuple[str, str], int] = defaultdict(int)
    cards = []
    for e in att["wallets"]:
        p = proofs[e["wallet_id"]]
        asset = "ETH" if e["chain"] == "ethereum" else "BTC"
        b = held.get(e["address"])
        if balances is None:
            totals[(e["category"], asset)] += 1
            bal = "not supplied (signerd watches no chain)"
        elif b is None:
            bal = "not supplied for this address"
        else:
            totals[(e["category"], b["asset"])] += b["amount"]
            bal = (f"{units(b['amount'], b['asset'])} at block {b['block_height']}"
                   + (f" ({b['block_hash']})" if b["block_hash"] else ""))
        network = (f"chain id {e['chain_id']}" if e["chain"] == "ethereum" else e["network"])
        cards.append(f"""<section class="wallet">
<h3><span class="addr">{escape(e['address'])}</span></h3>
<table class="kv">
<tr><th>chain</th><td>{escape(e['chain'])} ({escape(network)})</td></tr>
<tr><th>category</th><td>{escape(e['category'])}</td></tr>
<tr><th>case</th><td>{escape(e['case_ref'])}</td></tr>
<tr><th>wallet</th><td>{escape(e['wallet_id'])} ({escape(e['script_type'])})</td></tr>
<tr><th>balance</th><td>{escape(bal)}</td></tr>
<tr><th>proof</th><td>{escape(attest.METHODS[p['method']])}</td></tr>
</table>
<p>Message signed (exactly these bytes, lines separated by a line feed, no final newline):</p>
<pre class="msg">{escape(e['text'])}</pre>
<p>Signature:</p>
<pre class="sig">{escape(p['signature'])}</pre>
<p class="how">How to check it: {HOW[p['method']]}</p>
</section>""")
    left = "".join(f"<li><span class=\"addr\">{escape(x.get('address', ''))}</span> "
                   f"({escape(x.get('wallet_id', ''))}): {escape(x.get('reason', ''))}</li>"
                   for x in att["left_out"]) or "<li>none</li>"
    approvals = "".join(
        f"<li>{escape(a['decision'])} by {escape(a['operator_id'])}"
        + "".join(f" ({escape(', '.join(o['roles']))})" for o in statement["approvers"]
                  if o["operator_id"] == a["operator_id"]) + "</li>"
        for a in statement["approvals"])
    transfers = "".join(
        f"<tr><td>{escape(_utc(t['signed_at']))}</td><td>{escape(t['wallet_id'])}</td>"
        f"<td>{escape('; '.join(units(int(o['amount']), o['asset']) + ' to ' + o['address'] for o in t['outputs'] if not o['change']))}</td>"
        f"<td class=\"addr\">{escape(t['tx_hash'])}</td></tr>"
        for t in statement["transfers"]["items"]) or "<tr><td colspan=\"4\">none</td></tr>"
    if balances is None:
        balance_note = ("No balances were supplied with this page: the chart counts addresses. "
                        "Look each address up on the chain itself.")
    else:
        balance_note = (f"Balances below were read from the chain by "
                        f"{escape(balances['source'] or 'the custody platform')}, each at the "
                        "block height shown; signerd did not produce them. Check them against "
                        "the chain itself.")
    scope = att["category"] or "every category"
    if att["case_ref"]:
        scope += f", case {att['case_ref']}"
    template = Template(resources.files("signerd").joinpath("templates/attest-page.html")
                        .read_text(encoding="utf-8"))
    return template.substitute(
        issuer=escape(att["issuer"]), scope=escape(scope), date=escape(att["date"]),
        challenge=escape(att["challenge"]), statement_id=escape(att["id"]),
        signed_at=escape(_utc(statement["signed_at"])),
        instance=escape(statement["instance_id"]),
        audit_key=escape(statement["audit_public_key"]), seal=escape(statement["seal"]),
        count=len(att["wallets"]), chart=_chart(dict(totals), balances is None),
        chart_title="Addresses per category and chain" if balances is None
        else "Balances per category and chain (from the chain)",
        balance_note=balance_note, wallets="\n".join(cards), left_out=left,
        approvals=approvals, requirement=escape(statement["requirement"]),
        transfers=transfers, period_from=escape(_utc(statement["transfers"]["from"])),
        period_to=escape(_utc(statement["transfers"]["to"])))
