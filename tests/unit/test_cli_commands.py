"""signerctl's shape: each command group module registers its own subcommands and binds its own
handlers, the parser knows every command the README shows, and the CLI loads no daemon
service (it is a client of the API and of the core only)."""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from signerd.cli import parser as cli_parser
from signerd.cli.args import Parser

README = Path(__file__).resolve().parents[2] / "README.md"
# Global options that take a value, as the README may put them before the command.
VALUED_OPTIONS = {"--as", "--config", "--server", "--ca", "--cert", "--key", "--tls-ca",
                  "--tls-cert", "--tls-key", "--timeout"}
SERVICES = {"transfers", "wallets", "admin", "proposals", "sign_step", "ledger", "report",
            "runtime", "app", "daemon", "api", "store", "hsm"}


def subcommands(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def readme_commands() -> set[tuple[str, ...]]:
    """(command, subcommand) of every signerctl line in the README's code: inline code spans
    and fenced blocks (comments dropped), global options skipped."""
    text = README.read_text(encoding="utf-8")
    found: list[str] = re.findall(r"`signerctl ([^`]+)`", text)
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S):
        for line in block.splitlines():
            code = re.sub(r"(^|\s)#.*", "", line)
            found += re.findall(r"(?:^|&&\s*|\$\(|;\s*)signerctl ([^&)|;]+)", code)
    out = set()
    for line in found:
        words = line.split()
        while words and words[0].startswith("-"):
            words = words[2:] if words[0] in VALUED_OPTIONS else words[1:]
        if words:
            out.add(tuple(words[:2]))
    return out


def test_the_parser_knows_every_command_the_readme_shows():
    commands = subcommands(cli_parser.build_parser())
    shown = readme_commands()
    assert len(shown) >= 20, shown  # the README's walkthrough was read
    for words in sorted(shown):
        assert words[0] in commands, f"signerctl {' '.join(words)}: no command {words[0]}"
        subs = subcommands(commands[words[0]])
        if subs:
            assert len(words) > 1 and words[1] in subs, \
                f"signerctl {' '.join(words)}: {words[0]} has no such subcommand"


@pytest.mark.parametrize("group", cli_parser.GROUPS, ids=lambda m: m.__name__.rsplit(".", 1)[1])
def test_each_group_module_registers_its_own_commands(group):
    name = group.__name__.rsplit(".", 1)[1]
    p = Parser(prog="signerctl")
    commands = p.add_subparsers(dest="command", required=True)
    group.register(commands)
    assert list(commands.choices) == [name]
    added = commands.choices[name]
    subs = subcommands(added) or {name: added}
    for sub, sp in subs.items():
        func = sp.get_default("func")
        assert callable(func), f"{name} {sub} binds no handler"
        assert func.__module__ == group.__name__, f"{name} {sub} runs {func.__qualname__}"


def test_every_command_of_the_parser_comes_from_a_group_module():
    commands = subcommands(cli_parser.build_parser())
    assert list(commands) == [g.__name__.rsplit(".", 1)[1] for g in cli_parser.GROUPS]


def test_the_cli_loads_no_daemon_service():
    code = ("import json, sys, signerd.cli; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('signerd.'))))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, check=True)
    loaded = {m.split(".")[1] for m in json.loads(r.stdout)}
    assert not loaded & SERVICES, sorted(loaded & SERVICES)


def parsers(p: argparse.ArgumentParser, path: tuple[str, ...] = ()
            ) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser of the tree: signerctl's own, then each command's, depth first."""
    out = [(path, p)]
    for name, sp in subcommands(p).items():
        out += parsers(sp, path + (name,))
    return out


def test_every_option_has_help_that_names_its_allowed_values(monkeypatch):
    """``signerctl ... --help`` explains every option and argument, and one whose values are
    fixed lists them (argparse shows {a,b} itself unless a metavar hides them)."""
    monkeypatch.setenv("COLUMNS", "80")  # the width --help wraps at on a terminal
    found: list[str] = []
    for path, p in parsers(cli_parser.build_parser()):
        where = " ".join(("signerctl",) + path)
        assert p.format_help(), where  # what --help prints is laid out
        for action in p._actions:
            if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
                continue
            name = "/".join(action.option_strings) or action.dest
            if isinstance(action, argparse._SubParsersAction):
                found += [f"{where} {c.dest}: no help" for c in action._choices_actions
                          if not c.help]
                continue
            if not (action.help or "").strip():
                found.append(f"{where} {name}: no help")
            elif action.choices and action.metavar is not None:
                hidden = [c for c in action.choices if str(c) not in action.help]
                if hidden:
                    found.append(f"{where} {name}: help does not list {hidden}")
    assert not found, "\n".join(found)


def test_the_tls_key_and_the_operator_key_have_different_names(capsys):
    """--tls-key is the client certificate's key; approve's --key the operator's signing key.
    The old global --key still works, with a warning on stderr."""
    p = cli_parser.build_parser()
    args = p.parse_args(["--tls-key", "c.key", "--as", "inv1", "transfer", "approve", "t_1",
                         "--key", "inv1.key"])
    assert (args.tls_key, args.key) == ("c.key", "inv1.key")
    old = p.parse_args(["--key", "c.key", "health"])
    cli_parser._deprecated_options(old)
    assert old.tls_key == "c.key"
    assert "the global option --key is deprecated, use --tls-key" in capsys.readouterr().err

