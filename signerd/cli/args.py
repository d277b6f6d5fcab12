"""Argument parsing: the parser that reports usage errors as one line, the value types, and the
helpers with which each command group's ``register`` adds its subcommands."""
from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NoReturn

from signerd.cli.context import Context
from signerd.cli.errors import PROG, UsageError
from signerd.cli.render import Output
from signerd.v1 import signerd_pb2 as pb

Handler = Callable[[Context], Output]
Commands = argparse._SubParsersAction

CHAINS = {"bitcoin": pb.BITCOIN, "ethereum": pb.ETHEREUM}
CATEGORIES = {"seized": pb.SEIZED, "confiscated": pb.CONFISCATED, "strategic": pb.STRATEGIC}
SCRIPT_TYPES = {"p2wpkh": pb.P2WPKH, "p2sh-p2wpkh": pb.P2SH_P2WPKH,
                "p2wsh-sortedmulti": pb.P2WSH_SORTEDMULTI, "eoa": pb.EOA}
STATES = [n for n in pb.TransferState.keys() if not n.endswith("UNSPECIFIED")]


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        where = self.prog.removeprefix(PROG).strip()
        raise UsageError(f"{where}: {message}" if where else message)


def uint(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def transfer_state(text: str) -> str:
    name = text.upper().replace("-", "_")
    if name not in STATES:
        raise argparse.ArgumentTypeError(f"unknown state {text!r} ({', '.join(STATES)})")
    return name


# ---------------------------------------------------------------- registering commands

def group(commands: Commands, name: str, help: str) -> Commands:
    """A command group (``signerctl wallet ...``): its subcommands are added to what it returns."""
    sub = commands.add_parser(name, help=help)
    return sub.add_subparsers(dest="sub", required=True, metavar="SUBCOMMAND")


def command(parent: Commands, name: str, func: Handler, help: str,
            principal: str = "platform") -> Parser:
    """A command run by ``func``, as ``principal`` unless --as names another."""
    sp = parent.add_parser(name, help=help)
    sp.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                    help=argparse.SUPPRESS)
    sp.set_defaults(func=func, default_principal=principal)
    return sp


def decision_commands(parent: Commands, what: str, func: Handler) -> list[Parser]:
    """``approve`` and ``reject`` of an act, signed with the operator's own key."""
    out = []
    for name in ("approve", "reject"):
        sp = command(parent, name, func, f"{name} a {what} with your operator key", "platform")
        sp.add_argument("id")
        sp.add_argument("--key", required=True, metavar="FILE", help="operator private key")
        sp.add_argument("--passphrase-file", metavar="FILE")
        sp.add_argument("--reason", required=name == "reject", default="", metavar="TEXT")
        sp.add_argument("--yes", action="store_true", help="sign without asking")
        sp.set_defaults(decision=name)
        out.append(sp)
    return out
