"""``signerctl template``: governance-approved policy templates."""
from __future__ import annotations

from signerd.cli.args import Commands, command, group
from signerd.cli.context import Context
from signerd.cli.documents import to_dict
from signerd.cli.errors import CliError
from signerd.cli.inputs import read_text
from signerd.cli.render import Output, proposal_output, safe, safe_block, table
from signerd.v1 import signerd_pb2 as pb


def cmd_template_list(ctx: Context) -> Output:
    resp = ctx.call(ctx.admin().ListTemplates, pb.ListTemplatesRequest())
    ts = [to_dict(t) for t in resp.templates]
    if ctx.args.name:
        t = next((t for t in ts if t["name"] == ctx.args.name), None)
        if t is None:
            raise CliError(f"no template {safe(ctx.args.name)} (known: "
                           f"{', '.join(safe(x['name']) for x in ts)})")
        return Output(t, lambda: f"# template {safe(t['name'])}, version {t['version']}, sha256 "
                                 f"{t['sha256']}\n" + safe_block(t["toml"]))
    return Output({"templates": ts}, lambda: table(
        ["NAME", "VERSION", "SHA256"], [[t["name"], t["version"], t["sha256"]] for t in ts]))


def cmd_template_set(ctx: Context) -> Output:
    return proposal_output(ctx.call(ctx.admin().SetTemplate, pb.SetTemplateRequest(
        name=ctx.args.name, toml=read_text(ctx.args.file, "template file"))))


def register(commands: Commands) -> None:
    g = group(commands, "template", "governance-approved policy templates")
    sp = command(g, "list", cmd_template_list, "list the templates", "admin", ids=False)
    sp.set_defaults(name="")
    sp = command(g, "show", cmd_template_list, "show a template's text", "admin", ids=False)
    sp.add_argument("name", help="the template's name (signerctl template list)")
    sp = command(g, "set", cmd_template_set, "propose a new or changed template", "admin")
    sp.add_argument("name", help="the template's name")
    sp.add_argument("file", help="the template's policy TOML")
