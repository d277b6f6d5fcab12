"""signerctl: the command line through which people and scripts drive signerd
(docs/ARCHITECTURE.md).

A client of the gRPC API only. Every command takes ``--json`` (one JSON document on stdout)
and fails with exit status 1 (2 for a usage error) and one line ``signerctl: <reason>`` on
stderr. Approve and reject never trust the daemon's description of a transfer: they decode the
raw transaction here, rebuild the approval statement from it and the transfer's metadata, refuse
when the daemon's statement differs, show the person the rebuilt statement and sign only that.
Secrets (operator keys, seized keys, mnemonics, passphrases) are read from files, never from
the command line, and never printed.

Its modules: ``parser`` (the top-level parser and ``main``, which runs a command), ``context``
(config, TLS channel, calls), ``errors`` (one-line failures and exit statuses), ``inputs``
(files, passphrases, keys, confirmation), ``documents`` (the daemon's answers as JSON),
``render`` (text for people, and ``Output``), ``verify`` (the independent check of what is
signed), and one module per command group, each with ``register(commands)``: ``wallet``,
``operator``, ``policy``, ``token``, ``template``, ``governance``, ``proposal``, ``transfer``,
``key``, ``audit``, ``report``, ``pki`` and ``health``. A command returns an ``Output`` (its
document and how to show it as text); ``main`` prints it as text or JSON.
"""
from signerd.cli.parser import main

__all__ = ["main"]
