"""What ``transfer approve|reject`` and ``proposal approve|reject`` share: the checks made
before anything is fetched, and showing what is signed before asking to sign it."""
from __future__ import annotations

import sys
from typing import Any

from signerd.cli.context import Context, operator_principal
from signerd.cli.errors import CliError
from signerd.cli.inputs import can_confirm, confirm, load_operator_key
from signerd.core.model import Decision


def start_decision(ctx: Context, group: str) -> tuple[Decision, Any]:
    """The decision asked for and the operator's key, once the operator, the reason and the
    terminal are known to be there (``group``: the command group named in the message)."""
    a = ctx.args
    decision = Decision.APPROVE if a.decision == "approve" else Decision.REJECT
    operator_principal(ctx)
    if decision is Decision.REJECT and not a.reason.strip():
        raise CliError(f"{group} reject: --reason must not be empty")
    can_confirm(assume_yes=a.yes)  # without a terminal, refuse before fetching anything
    return decision, load_operator_key(a.key, a.passphrase_file)


def confirm_shown(ctx: Context, shown: str, decision: Decision) -> None:
    """Show what is about to be signed (on stderr under --json or -q, unless --yes) and ask."""
    if not ctx.machine_output:
        sys.stdout.write(shown)
        sys.stdout.flush()
    elif not ctx.args.yes:
        sys.stderr.write(shown)
    confirm("Sign this approval?" if decision is Decision.APPROVE else "Sign this rejection?",
            assume_yes=ctx.args.yes)
