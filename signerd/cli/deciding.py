"""What ``transfer approve|reject`` and ``proposal approve|reject`` share: the checks made
before anything is fetched, and showing what is signed before asking to sign it."""
from __future__ import annotations

import sys

from signerd.cli.context import Context, operator_principal
from signerd.cli.errors import CliError
from signerd.cli.inputs import can_confirm, confirm, open_operator_key
from signerd.core import operator_keys
from signerd.core.errors import InvalidKey
from signerd.core.model import Decision
from signerd.core.operator_keys import Signer
from signerd.v1 import signerd_pb2 as pb


def start_decision(ctx: Context, group: str) -> tuple[Decision, Signer]:
    """The decision asked for and the operator's key, once the operator, the reason and the
    terminal are known to be there (``group``: the command group named in the message), and
    the key is known to be the operator's registered key."""
    a = ctx.args
    decision = Decision.APPROVE if a.decision == "approve" else Decision.REJECT
    operator_principal(ctx)
    if decision is Decision.REJECT and not a.reason.strip():
        raise CliError(f"{group} reject: --reason must not be empty")
    can_confirm(assume_yes=a.yes)  # without a terminal, refuse before fetching anything
    signer = open_operator_key(a.key, a.passphrase_file, module=a.pkcs11_module,
                               configured_module=ctx.operator_pkcs11_module
                               if a.key.startswith("pkcs11:") else lambda: None)
    ctx.on_close(signer.close)
    check_registered_key(ctx, signer)
    return decision, signer


def check_registered_key(ctx: Context, signer: Signer) -> None:
    """Refuse, before anything is signed, a key that is not the operator's registered key as
    the daemon shows it (the authority ledger's): first its type, then the key itself. (A
    daemon that lied here could only make signerctl refuse: the signature is checked against
    the ledger's key by every daemon.)"""
    auth = ctx.call(ctx.governance().GetAuthority, pb.GetAuthorityRequest())
    who = ctx.principal
    op = next((o for o in auth.operators if o.id == who), None)
    if op is None:
        raise CliError(f"operator {who} is not registered in the daemon's authority ledger; "
                       "nothing was signed")
    try:
        registered = operator_keys.load_public_pem(bytes(op.public_key_pem))
    except InvalidKey as e:
        raise CliError(f"the daemon shows a registered key for {who} that is no operator key "
                       f"({e}); nothing was signed") from None
    want = operator_keys.key_type(registered)
    fp = operator_keys.fingerprint(registered)
    if signer.key_type is not want:
        raise CliError(f"{signer.where} is {signer.key_type.a_key}, but operator {who} "
                       f"registered {want.a_key} (fingerprint {fp}); a signature of one type "
                       "never counts for the other: nothing was signed")
    if operator_keys.spki_digest(signer.public_key) != operator_keys.spki_digest(registered):
        raise CliError(f"{signer.where} (fingerprint "
                       f"{operator_keys.fingerprint(signer.public_key)}) is not operator {who}'s "
                       f"registered key (fingerprint {fp}); nothing was signed")


def confirm_shown(ctx: Context, shown: str, decision: Decision) -> None:
    """Show what is about to be signed (on stderr under --json or -q, unless --yes) and ask."""
    if not ctx.machine_output:
        sys.stdout.write(shown)
        sys.stdout.flush()
    elif not ctx.args.yes:
        sys.stderr.write(shown)
    confirm("Sign this approval?" if decision is Decision.APPROVE else "Sign this rejection?",
            assume_yes=ctx.args.yes)
