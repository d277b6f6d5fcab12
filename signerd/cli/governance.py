"""``signerctl governance``: the governance policy and the chain of authority."""
from __future__ import annotations

from typing import Any

from signerd.cli.args import Commands, command, group
from signerd.cli.context import Context
from signerd.cli.documents import operator_json, to_dict
from signerd.cli.inputs import read_text
from signerd.cli.render import Output, kv, proposal_output, safe, safe_block
from signerd.v1 import signerd_pb2 as pb


def cmd_governance_show(ctx: Context) -> Output:
    au = ctx.call(ctx.governance().GetAuthority, pb.GetAuthorityRequest())
    doc = to_dict(au)
    doc["operators"] = [operator_json(o) for o in au.operators]
    return Output(doc, lambda: authority_text(doc))


def authority_text(doc: dict[str, Any]) -> str:
    return (kv([("instance", doc["instance_id"]), ("genesis", doc["genesis"]),
                ("ledger head", f"entry {doc['seq']} ({doc['head']})"),
                ("audit key", doc["audit_public_key"])])
            + "governance policy:\n" + safe_block(doc["governance_toml"])
            + "templates: " + ", ".join(f"{safe(t['name'])} v{t['version']}"
                                        for t in doc["templates"]) + "\n"
            + "frozen wallets: " + (", ".join(f"{safe(f['wallet_id'])} ({safe(f['order_ref'])})"
                                              for f in doc["frozen"]) or "none") + "\n")


def cmd_governance_set(ctx: Context) -> Output:
    return proposal_output(ctx.call(ctx.admin().SetGovernance, pb.SetGovernanceRequest(
        toml=read_text(ctx.args.file, "governance policy file"))))


def register(commands: Commands) -> None:
    g = group(commands, "governance", "the governance policy and the chain of authority")
    command(g, "show", cmd_governance_show, "genesis, ledger head, governance policy", "admin",
            ids=False)
    sp = command(g, "set", cmd_governance_set, "propose a new governance policy", "admin")
    sp.add_argument("file", help="the governance policy TOML")
