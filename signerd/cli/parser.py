"""signerctl's entry: the top-level parser, to which each command group adds its own
subcommands, and ``main``, which runs the chosen command and prints what it hands back (text,
or with --json one JSON document) or its failure as one line, with the exit status."""
from __future__ import annotations

import json
import sys
from types import ModuleType

from signerd.cli import (audit, backup, governance, health, key, operator, pki, policy,
                         proposal, report, template, token, transfer, wallet)
from signerd.cli.args import Parser, positive_float
from signerd.cli.context import Context
from signerd.cli.errors import FAILURES, PROG, CliError, cli_error, one_line
from signerd.cli.render import emit

# In the order --help lists them; each has register(commands).
GROUPS: tuple[ModuleType, ...] = (wallet, operator, policy, token, template, governance,
                                  proposal, transfer, key, audit, report, pki, health, backup)


def build_parser() -> Parser:
    p = Parser(prog=PROG, description="Operate a signerd custody signing daemon.")
    p.add_argument("--config", help="signerd.toml (default: $SIGNERD_CONFIG, else "
                                    "./signerd-state/signerd.toml)")
    p.add_argument("--server", metavar="HOST:PORT", help="daemon address instead of the config's")
    p.add_argument("--ca", dest="tls_ca", metavar="FILE",
                   help="CA certificate (default: STATE/pki/ca.pem)")
    p.add_argument("--cert", dest="tls_cert", metavar="FILE", help="client certificate")
    p.add_argument("--key", dest="tls_key", metavar="FILE", help="client private key")
    p.add_argument("--insecure", action="store_true", help="plaintext gRPC (test daemons only)")
    p.add_argument("--as", dest="as_principal", metavar="PRINCIPAL",
                   help="platform, admin, auditor or an operator id (default: the command's "
                        "own principal)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--timeout", type=positive_float, default=30.0, metavar="SECONDS")
    p.set_defaults(default_principal="platform")
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(commands)
    return p


def main(argv: list[str] | None = None) -> int:
    args = None
    ctx = None
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as e:  # --help
            return e.code if isinstance(e.code, int) else 0
        ctx = Context(args)
        out = args.func(ctx)
        emit(out, args.json)
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
