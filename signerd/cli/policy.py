"""``signerctl policy``: wallet policies."""
from __future__ import annotations

from typing import Any

from signerd.cli.args import Commands, command, group
from signerd.cli.context import Context
from signerd.cli.documents import to_dict
from signerd.cli.errors import CliError
from signerd.cli.inputs import read_text
from signerd.cli.render import Output, fmt_time, proposal_output, safe, safe_block, table
from signerd.v1 import signerd_pb2 as pb


def policy_text(p: dict[str, Any]) -> str:
    return (f"# wallet {safe(p['wallet_id'])}, policy version {p['version']}, set by "
            f"{safe(p['actor'])} at {fmt_time(p['created_at'])}\n" + safe_block(p["toml"])
            + ("" if p["toml"].endswith("\n") else "\n"))


def cmd_policy_set(ctx: Context) -> Output:
    a = ctx.args
    if bool(a.file) == bool(a.template):
        raise CliError("policy set: give a policy FILE or --template NAME")
    text = read_text(a.file, "policy file") if a.file else ""
    return proposal_output(ctx.call(ctx.admin().SetPolicy, pb.SetPolicyRequest(
        wallet_id=a.wallet, toml=text, template=a.template or "")))


def cmd_policy_show(ctx: Context) -> Output:
    p = to_dict(ctx.call(ctx.admin().GetPolicy, pb.GetPolicyRequest(wallet_id=ctx.args.wallet)))
    return Output(p, lambda: policy_text(p))


def cmd_policy_history(ctx: Context) -> Output:
    resp = ctx.call(ctx.admin().PolicyHistory, pb.GetPolicyRequest(wallet_id=ctx.args.wallet))
    versions = [to_dict(v) for v in resp.versions]
    return Output({"versions": versions}, lambda: table(
        ["VERSION", "ACTOR", "CREATED"],
        [[v["version"], v["actor"], fmt_time(v["created_at"])] for v in versions]))


def register(commands: Commands) -> None:
    g = group(commands, "policy", "wallet policies")
    sp = command(g, "set", cmd_policy_set,
                 "propose a wallet's next policy: a TOML file, or a template", "admin")
    sp.add_argument("wallet", help="the wallet's id (w_...)")
    sp.add_argument("file", nargs="?", help="the policy TOML (omit with --template)")
    sp.add_argument("--template", metavar="NAME", help="a governance-approved template")
    for name, func, help in (("show", cmd_policy_show, "show a wallet's current policy"),
                             ("history", cmd_policy_history, "list a wallet's policy versions")):
        sp = command(g, name, func, help, "admin", ids=False)
        sp.add_argument("wallet", help="the wallet's id (w_...)")
