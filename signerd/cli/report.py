"""``signerctl report``: holdings and activity per category and case."""
from __future__ import annotations

import json

from signerd.cli.args import CATEGORIES, Commands, command
from signerd.cli.context import Context
from signerd.cli.errors import CliError
from signerd.cli.render import Output, generic_text
from signerd.v1 import signerd_pb2 as pb


def cmd_report(ctx: Context) -> Output:
    a = ctx.args
    cat = CATEGORIES[a.category] if a.category else pb.CATEGORY_UNSPECIFIED
    resp = ctx.call(ctx.audit().Report, pb.ReportRequest(category=cat, case_ref=a.case or ""))
    try:
        doc = json.loads(resp.json)
    except ValueError:
        raise CliError("the daemon's report is not JSON") from None
    return Output(doc, lambda: generic_text(doc))


def register(commands: Commands) -> None:
    sp = command(commands, "report", cmd_report, "holdings and activity per category and case",
                 "auditor", ids=False)
    sp.add_argument("--category", choices=list(CATEGORIES), help="only this category")
    sp.add_argument("--case", metavar="REF", help="only this case")
