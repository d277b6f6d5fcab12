"""What a command runs in: the parsed command line, the config (when one is needed), the
principal it acts as, and the TLS channel to the daemon with the calls over it."""
from __future__ import annotations

import argparse
import ipaddress
import os
import urllib.parse
from collections.abc import Callable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message

from signerd.adapters import config as config_mod
from signerd.cli.errors import CliError
from signerd.cli.inputs import read_file
from signerd.adapters.config import Config, Limits
from signerd.adapters.pki import is_valid_principal
from signerd.v1 import signerd_pb2 as pb
from signerd.v1 import signerd_pb2_grpc as rpc

DEFAULT_CONFIG = Path("signerd-state") / "signerd.toml"
SERVICE_PRINCIPALS = frozenset({"platform", "admin", "auditor"})
MAX_RECEIVE_BYTES = 256 * 1024 * 1024
MAX_PAGES = 100_000


# ---------------------------------------------------------------- connection

def _host_of(target: str) -> str:
    if target.startswith("["):
        return target[1:target.find("]")]
    return target.rsplit(":", 1)[0] if target.count(":") == 1 else target


def _dial_target(listen: str) -> str:
    """Where to connect for a listen address (a wildcard bind is reached on loopback)."""
    host = _host_of(listen)
    port = listen.rsplit(":", 1)[1] if ":" in listen else ""
    if host in ("0.0.0.0", ""):
        return f"127.0.0.1:{port}"
    if host == "::":
        return f"[::1]:{port}"
    return listen


def _is_loopback_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Context:
    """The parsed command line, the config (when one is needed) and the gRPC channel."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self._channel: grpc.Channel | None = None
        self._closers: list[Callable[[], None]] = []

    def on_close(self, close: Callable[[], None]) -> None:
        """Run ``close`` when the command ends (an operator's token session, say)."""
        self._closers.append(close)

    @cached_property
    def config(self) -> Config | None:
        a = self.args
        path = a.config or os.environ.get("SIGNERD_CONFIG") or None
        if path is None:
            if a.server and not DEFAULT_CONFIG.exists():
                return None
            path = str(DEFAULT_CONFIG)
        return config_mod.load(path)

    def operator_pkcs11_module(self) -> str | None:
        """The config's [signerctl] pkcs11_module, when a config is named or in its default
        place (keygen and approvals with a token key need no config otherwise)."""
        a = self.args
        if not (a.config or os.environ.get("SIGNERD_CONFIG") or DEFAULT_CONFIG.exists()):
            return None
        cfg = self.config
        module = cfg.operator_pkcs11_module if cfg is not None else None
        return str(module) if module is not None else None

    @property
    def principal(self) -> str:
        who = self.args.as_principal or self.args.default_principal
        if not is_valid_principal(who):
            raise CliError(f"--as: {who!r} is not a principal name")
        return who

    @property
    def machine_output(self) -> bool:
        """Whether stdout is for a program (--json or -q): no progress, no statement shown."""
        return bool(self.args.json or self.args.id_only)

    @property
    def is_operator(self) -> bool:
        return self.principal not in SERVICE_PRINCIPALS

    @property
    def limits(self) -> Limits:
        return self.config.limits if self.config is not None else Limits()

    def _tls_files(self) -> tuple[str, str, str]:
        a = self.args
        if bool(a.tls_cert) != bool(a.tls_key):
            raise CliError("--tls-cert and --tls-key go together (the client certificate and "
                           "its TLS key)")
        pki = self.config.base / "pki" if self.config is not None else None
        ca = a.tls_ca or (str(pki / "ca.pem") if pki is not None else None)
        if a.tls_cert and ca:
            return ca, a.tls_cert, a.tls_key
        if pki is None or ca is None:
            raise CliError("--server without a state folder needs --tls-ca, --tls-cert and "
                           "--tls-key (or --insecure for a plaintext daemon)")
        cert = pki / "clients" / f"{self.principal}.pem"
        key = pki / "clients" / f"{self.principal}.key"
        if not cert.exists() or not key.exists():
            raise CliError(f"no client certificate for principal {self.principal!r} at {cert} "
                           f"(issue one: signerctl pki issue {self.principal} --ca-key CA_KEY; "
                           "or pick another with --as, or pass --tls-cert and --tls-key)")
        return ca, str(cert), str(key)

    def channel(self) -> grpc.Channel:
        if self._channel is not None:
            return self._channel
        a = self.args
        if a.server:
            target, insecure = a.server, a.insecure
        else:
            assert self.config is not None
            target = _dial_target(self.config.server.listen)
            insecure = a.insecure or self.config.server.insecure
        options: list[tuple[str, Any]] = [("grpc.max_receive_message_length", MAX_RECEIVE_BYTES)]
        if insecure:
            self._channel = grpc.insecure_channel(target, options=options)
            return self._channel
        ca, cert, key = self._tls_files()
        creds = grpc.ssl_channel_credentials(
            root_certificates=read_file(ca, "CA certificate"),
            private_key=read_file(key, "client key"),
            certificate_chain=read_file(cert, "client certificate"))
        if _is_loopback_ip(_host_of(target)):
            options.append(("grpc.ssl_target_name_override", "localhost"))
        self._channel = grpc.secure_channel(target, creds, options=options)
        return self._channel

    def close(self) -> None:
        while self._closers:
            self._closers.pop()()
        if self._channel is not None:
            self._channel.close()

    def custody(self) -> rpc.CustodyStub:
        return rpc.CustodyStub(self.channel())

    def approval(self) -> rpc.ApprovalStub:
        return rpc.ApprovalStub(self.channel())

    def admin(self) -> rpc.AdminStub:
        return rpc.AdminStub(self.channel())

    def audit(self) -> rpc.AuditStub:
        return rpc.AuditStub(self.channel())

    def governance(self) -> rpc.GovernanceStub:
        return rpc.GovernanceStub(self.channel())

    def call(self, method: Callable[..., Any], request: Message) -> Any:
        return method(request, timeout=self.args.timeout)

    def pages(self, method: Callable[..., Any], make: Callable[[pb.Page], Message],
              field: str) -> Iterator[Any]:
        token = ""
        for _ in range(MAX_PAGES):
            resp = self.call(method, make(pb.Page(page_size=1000, page_token=token)))
            yield from getattr(resp, field)
            if not resp.next_page_token or resp.next_page_token == token:
                return
            token = resp.next_page_token
        raise CliError("the daemon's listing did not end")


def operator_principal(ctx: Context) -> None:
    """The operator who decides: --as, else the stem of the key file's name (a key on a token:
    its object label, when that is an operator id)."""
    if ctx.args.as_principal is None:
        key = ctx.args.key
        if key.startswith("pkcs11:"):
            label = next((urllib.parse.unquote(p.partition("=")[2]) for p in
                          key[len("pkcs11:"):].split("?", 1)[0].split(";")
                          if p.startswith("object=")), "")
            if not is_valid_principal(label) or label in SERVICE_PRINCIPALS:
                raise CliError("cannot tell the operator id from the key's URI (its object= is "
                               "not an operator id); pass --as ID")
            ctx.args.default_principal = label
        else:
            stem = Path(key).stem
            if not is_valid_principal(stem):
                raise CliError(f"cannot tell the operator id from key file {key}; pass "
                               "--as ID")
            ctx.args.default_principal = stem
    if not ctx.is_operator:
        raise CliError(f"--as {ctx.principal}: approvals are made by operators, "
                       "pass --as OPERATOR_ID")
