"""signerctl's entry: the top-level parser, to which each command group adds its own
subcommands, and ``main``, which runs the chosen command and prints what it hands back (text,
or with --json one JSON document) or its failure as one line, with the exit status."""
from __future__ import annotations

import json
import sys
import argparse
from types import ModuleType

from signerd.cli import (audit, backup, governance, health, key, operator, pki, policy,
                         proposal, report, template, token, transfer, wallet)
from signerd.cli import attest, chain
from signerd.cli.args import Parser, add_output_options, positive_float
from signerd.cli.context import Context
from signerd.cli.errors import FAILURES, PROG, CliError, UsageError, cli_error, one_line
from signerd.cli.render import emit

# In the order --help lists them; each has register(commands).
GROUPS: tuple[ModuleType, ...] = (wallet, operator, policy, token, chain, template, governance,
                                  proposal, transfer, key, audit, report, attest, pki, health,
                                  backup)


def build_parser() -> Parser:
    p = Parser(prog=PROG, description="Operate a signerd custody signing daemon.")
    p.add_argument("--config", metavar="FILE",
                   help="signerd.toml (default: $SIGNERD_CONFIG, else ./signerd-state/signerd.toml)")
    p.add_argument("--server", metavar="HOST:PORT", help="daemon address instead of the config's")
    p.add_argument("--tls-ca", "--ca", dest="tls_ca", metavar="FILE",
                   help="CA certificate of the daemon (default: STATE/pki/ca.pem)")
    p.add_argument("--tls-cert", "--cert", dest="tls_cert", metavar="FILE",
                   help="client certificate (default: STATE/pki/clients/PRINCIPAL.pem)")
    p.add_argument("--tls-key", dest="tls_key", metavar="FILE",
                   help="the client certificate's TLS private key (default: "
                        "STATE/pki/clients/PRINCIPAL.key); an operator's signing key is "
                        "approve's and reject's --key")
    # The TLS key's old name, which approve's --key (the operator's signing key) shadowed.
    p.add_argument("--key", dest="deprecated_tls_key", metavar="FILE", help=argparse.SUPPRESS)
    p.add_argument("--insecure", action="store_true", help="plaintext gRPC (test daemons only)")
    p.add_argument("--as", dest="as_principal", metavar="PRINCIPAL",
                   help="platform, admin, auditor or an operator id (default: the command's "
                        "own principal)")
    add_output_options(p, hidden=False)
    p.add_argument("--timeout", type=positive_float, default=30.0, metavar="SECONDS",
                   help="give up on a call to the daemon after this long (default: 30)")
    p.set_defaults(default_principal="platform")
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(commands)
    return p


def _deprecated_options(args: argparse.Namespace) -> None:
    """The global --key, the TLS key's old name: accepted, with a warning on stderr."""
    old = args.deprecated_tls_key
    if old is None:
        return
    if args.tls_key is not None and args.tls_key != old:
        raise UsageError(f"--key {old} and --tls-key {args.tls_key} name two TLS keys; give "
                         "--tls-key only")
    sys.stderr.write(f"{PROG}: warning: the global option --key is deprecated, use --tls-key "
                     "(the client certificate's TLS key; the --key of approve and reject, after "
                     "the command, is the operator's signing key)\n")
    args.tls_key = old


def _check_output_options(args: argparse.Namespace) -> None:
    """--json and -q/--id-only exclude each other wherever they are given (before or after the
    command), and -q is refused, before anything is done, by a command that prints no id."""
    if args.json and args.id_only:
        raise UsageError("--json and -q/--id-only: give one")
    if args.id_only and not args.prints_id:
        name = " ".join(w for w in (args.command, getattr(args, "sub", None)) if w)
        raise UsageError(f"-q/--id-only: signerctl {name} prints no id; leave -q out")


def main(argv: list[str] | None = None) -> int:
    args = None
    ctx = None
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as e:  # --help
            return e.code if isinstance(e.code, int) else 0
        _deprecated_options(args)
        _check_output_options(args)
        ctx = Context(args)
        out = args.func(ctx)
        emit(out, args.json, id_only=args.id_only)
        if out.error is None:
            return 0
        err: CliError = out.error
    except FAILURES as e:
        err = cli_error(e)
    finally:
        if ctx is not None:
            ctx.close()
    if args is not None and getattr(args, "json", False) and err.doc is not None:
        sys.stdout.write(json.dumps(err.doc, indent=2) + "\n")
    sys.stderr.write(f"{PROG}: {one_line(str(err))}\n")
    return err.status
