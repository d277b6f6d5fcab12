"""Argument parsing: the parser that reports usage errors as one line, the value types, and the
helpers with which each command group's ``register`` adds its subcommands."""
from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NoReturn

from signerd.cli.context import Context
from signerd.cli.errors import PROG, UsageError
from signerd.cli.render import Output
from signerd.core.model import BitcoinNetwork
from signerd.core.tron import address as tron_address
from signerd.v1 import signerd_pb2 as pb

Handler = Callable[[Context], Output]
Commands = argparse._SubParsersAction

CHAINS = {"bitcoin": pb.BITCOIN, "ethereum": pb.ETHEREUM, "tron": pb.TRON}
CATEGORIES = {"seized": pb.SEIZED, "confiscated": pb.CONFISCATED, "strategic": pb.STRATEGIC}
SCRIPT_TYPES = {"p2wpkh": pb.P2WPKH, "p2sh-p2wpkh": pb.P2SH_P2WPKH,
                "p2wsh-sortedmulti": pb.P2WSH_SORTEDMULTI, "eoa": pb.EOA}
BITCOIN_NETWORKS = [n.value for n in BitcoinNetwork]
TRON_NETWORKS = list(tron_address.NETWORKS)
NETWORKS = sorted(set(BITCOIN_NETWORKS) | set(TRON_NETWORKS))
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

ID_ONLY_HELP = ("print only the id of what the command made, changed or shows, one line (a "
                "listing: one id a line; transfer result: the signed transaction), for shell "
                "variables: ID=$(signerctl -q ...)")


def add_output_options(p: argparse.ArgumentParser, *, hidden: bool) -> None:
    """--json and -q/--id-only, before the command (listed in --help) or after it (``hidden``:
    accepted, not listed again)."""
    default: Any = argparse.SUPPRESS if hidden else False
    # Hidden options stay out of a mutually exclusive group (argparse cannot lay out the usage
    # of one with suppressed members); main refuses the two together wherever they are given.
    out = p if hidden else p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", default=default,
                     help=argparse.SUPPRESS if hidden else "print one JSON document")
    out.add_argument("-q", "--id-only", dest="id_only", action="store_true", default=default,
                     help=argparse.SUPPRESS if hidden else ID_ONLY_HELP)


def group(commands: Commands, name: str, help: str) -> Commands:
    """A command group (``signerctl wallet ...``): its subcommands are added to what it returns."""
    sub = commands.add_parser(name, help=help)
    return sub.add_subparsers(dest="sub", required=True, metavar="SUBCOMMAND")


def command(parent: Commands, name: str, func: Handler, help: str,
            principal: str = "platform", ids: bool = True) -> Parser:
    """A command run by ``func``, as ``principal`` unless --as names another; ``ids``: whether
    what it prints has an id for -q/--id-only."""
    sp = parent.add_parser(name, help=help, description=help)
    add_output_options(sp, hidden=True)
    sp.set_defaults(func=func, default_principal=principal, prints_id=ids)
    return sp


def decision_commands(parent: Commands, what: str, func: Handler) -> list[Parser]:
    """``approve`` and ``reject`` of an act, signed with the operator's own key."""
    out = []
    for name in ("approve", "reject"):
        sp = command(parent, name, func, f"{name} a {what} with your operator key", "platform")
        sp.add_argument("id", help=f"the {what}'s id")
        sp.add_argument("--key", required=True, metavar="FILE|URI",
                        help="your operator private key: the .key file (not the .pub beside "
                             "it, not a TLS key), or a key on a token or smartcard named by a "
                             "PKCS#11 URI, 'pkcs11:token=LABEL;object=LABEL' (PIN asked on "
                             "the terminal, or read from the file of "
                             "'?pin-source=file:PATH'); the operator is the file's name (the "
                             "URI's object) unless --as names one")
        sp.add_argument("--passphrase-file", metavar="FILE",
                        help="the key file's passphrase (asked on the terminal when the key "
                             "is encrypted and this is not given)")
        sp.add_argument("--pkcs11-module", metavar="FILE",
                        help="the PKCS#11 module of the token in --key (default: the URI's "
                             "module-path, else the config's [signerctl] pkcs11_module)")
        sp.add_argument("--reason", required=name == "reject", default="", metavar="TEXT",
                        help="why (required to reject)" if name == "reject"
                        else "a note kept with the decision")
        sp.add_argument("--yes", action="store_true",
                        help=f"answer yes to the question asked after the {what} is shown "
                             f"(\"Sign this {'approval' if name == 'approve' else 'rejection'}?"
                             " [y/N]\"); without a terminal, signerctl refuses unless given")
        sp.set_defaults(decision=name)
        out.append(sp)
    return out
