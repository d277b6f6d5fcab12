"""What a command reads besides its arguments: files (bounded), passphrases, operator keys, and
a person's confirmation on the terminal."""
from __future__ import annotations

import getpass
import os
import sys
from typing import Any, Callable, TextIO

from signerd.adapters import key_files, operator_token
from signerd.core import operator_keys
from signerd.core.operator_keys import Signer
from signerd.cli.errors import CliError

MAX_INPUT_FILE = 64 * 1024 * 1024


def read_file(path: str, what: str, limit: int | None = MAX_INPUT_FILE) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read() if limit is None else f.read(limit + 1)
    except OSError as e:
        raise CliError(f"cannot read {what} {path}: {e.strerror}") from None
    if limit is not None and len(data) > limit:
        raise CliError(f"{what} {path} is larger than {limit} bytes")
    return data


def read_text(path: str, what: str) -> str:
    try:
        return read_file(path, what).decode("utf-8")
    except UnicodeDecodeError:
        raise CliError(f"{what} {path} is not UTF-8 text") from None


def read_passphrase(path: str) -> bytes:
    secret = read_file(path, "passphrase file", 64 * 1024)
    secret = secret[:-1] if secret.endswith(b"\n") else secret
    secret = secret[:-1] if secret.endswith(b"\r") else secret
    if not secret:
        raise CliError(f"passphrase file {path} is empty")
    return secret


def can_confirm(*, assume_yes: bool, stdin: TextIO | None = None) -> TextIO | None:
    """The terminal to ask on (None with --yes); refuses, rather than waits, without one."""
    if assume_yes:
        return None
    stdin = sys.stdin if stdin is None else stdin
    if stdin is None or not stdin.isatty():
        raise CliError("refusing to ask for confirmation without a terminal; pass --yes")
    return stdin


def confirm(question: str, *, assume_yes: bool, stdin: TextIO | None = None,
            prompt_to: TextIO | None = None) -> None:
    """Ask on the terminal; anything but y or yes is a no."""
    stdin = can_confirm(assume_yes=assume_yes, stdin=stdin)
    if stdin is None:
        return
    out = sys.stderr if prompt_to is None else prompt_to
    out.write(f"{question} [y/N] ")
    out.flush()
    answer = stdin.readline()
    if answer.strip().lower() not in ("y", "yes"):
        raise CliError("not confirmed; nothing was signed")


def open_operator_key(key: str, passphrase_file: str | None, *, module: str | None,
                      configured_module: Callable[[], str | None],
                      stdin: TextIO | None = None) -> Signer:
    """The operator's key named by ``--key``: a ``pkcs11:`` URI (a key on a token, logged in
    once; the module from ``module``, the URI's module-path or ``configured_module()``, the
    config's [signerctl] pkcs11_module) or a private key file."""
    if operator_token.is_uri(key):
        if passphrase_file:
            raise CliError("--passphrase-file is for a key file; a token's PIN comes from "
                           "pin-source=file:PATH in the URI or is asked on the terminal")
        uri = operator_token.parse_key_uri(key)
        configured = None if (module or uri.module_path) else configured_module()
        path = operator_token.module_for(uri, module, configured)
        return operator_token.open_key(uri, path,
                                       pin_for=lambda p: operator_token.ask_pin(p, stdin))
    if module:
        raise CliError("--pkcs11-module goes with a pkcs11: URI in --key, not a key file")
    return key_files.FileKey(key, load_operator_key(key, passphrase_file, stdin))


def load_operator_key(path: str, passphrase_file: str | None,
                      stdin: TextIO | None = None) -> Any:
    head = read_file(path, "key file", operator_keys.MAX_KEY_FILE)[:64]
    if b"PUBLIC KEY-----" in head:  # a public key is no secret: say so before its mode
        raise CliError(f"{path} is a public key; --key needs the operator's private key file"
                       f"{private_beside(path)}")
    passphrase = read_passphrase(passphrase_file) if passphrase_file else None
    if passphrase is None:
        stdin = sys.stdin if stdin is None else stdin
        if b"ENCRYPTED PRIVATE KEY" in head and stdin is not None and stdin.isatty():
            passphrase = getpass.getpass(f"Passphrase for {path}: ").encode() or None
    return key_files.load_private(path, passphrase)


def private_beside(pub_path: str) -> str:
    """Where the private key of a public key file is, as operator keygen names the pair
    (NAME.key and NAME.pub, or FILE and FILE.pub), when that file is there."""
    if pub_path.endswith(".pub"):
        for candidate in (pub_path.removesuffix(".pub") + ".key", pub_path.removesuffix(".pub")):
            if os.path.isfile(candidate):
                return f" (the one beside it: {candidate})"
    return " (the one operator keygen wrote beside it)"
