"""A real signerd daemon from a state folder made by `signerd init`: the state folder, its
configuration, the daemon subprocess and its mTLS channels.

Shared by the tests and the benchmarks (bench/common.py). It imports no signerd module at module
level: bench/authority.py imports it before it chooses which checkout signerd comes from."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import grpc

if TYPE_CHECKING:
    from signerd.v1 import signerd_pb2_grpc as rpc

LISTEN_RE = re.compile(r"listening on (\S+):(\d+) .*metrics on http://(\S+):(\d+)/metrics")


def signerd_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "signerd.daemon", *args]


def signerctl_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "signerd.cli", *args]


def init_state(path: Path, *extra: str, cwd: Path | None = None, timeout: float = 120) -> Path:
    """A state folder made by ``signerd init`` (its own SoftHSM token, PKI, operators and their
    keys, SQLite unless ``extra`` names another store), listening on free ports; returns its
    config file. ``cwd``: the folder ``signerd`` runs in (``python -m`` imports signerd from
    there first; bench/authority.py points it at the checkout under test)."""
    r = subprocess.run(signerd_cmd("init", str(path), "--listen", "127.0.0.1:0", "--metrics",
                                   "127.0.0.1:0", *extra), capture_output=True, text=True,
                       timeout=timeout, cwd=cwd)
    assert r.returncode == 0, r.stderr
    return path / "signerd.toml"


def operator_keys(state: Path) -> dict[str, Any]:
    """The operators' Ed25519 private keys that ``signerd init`` wrote (STATE/operators/*.key),
    by operator id."""
    from signerd.adapters.key_files import load_private

    return {p.stem: load_private(p) for p in sorted((state / "operators").glob("*.key"))}


def dev_ca(state: Path) -> tuple[Any, Any]:
    """The development CA of a state folder: its private key, which `signerd init` wrote
    beside the folder (STATE.ca/ca.key), and its certificate (STATE/pki/ca.pem)."""
    from signerd.adapters import pki

    cert = pki.load_cert(state / "pki" / "ca.pem")
    return pki.load_ca_key(pki.dev_ca_key_path(state), cert), cert


def _toml_literal(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_literal(x) for x in v) + "]"
    return repr(v)


def edit_config(cfg: Path, section: str, **values: Any) -> None:
    """Set keys in one [section] of the TOML config (a textual edit scoped to that section)."""
    out: list[str] = []
    current = ""
    done = False
    for line in cfg.read_text().splitlines():
        header = re.match(r"^\[([^\]]+)\]\s*$", line)
        if header:
            if current == section and not done:
                out.extend(f"{k} = {_toml_literal(v)}" for k, v in values.items())
                done = True
            current = header.group(1)
        elif current == section and re.match(r"^(\w+)\s*=", line) and \
                line.split("=", 1)[0].strip() in values:
            continue
        out.append(line)
    if current == section and not done:
        out.extend(f"{k} = {_toml_literal(v)}" for k, v in values.items())
        done = True
    if not done:
        out += ["", f"[{section}]"] + [f"{k} = {_toml_literal(v)}" for k, v in values.items()]
    text = "\n".join(out) + "\n"
    tomllib.loads(text)  # still valid TOML
    cfg.write_text(text)


@dataclass
class Daemon:
    """``signerd run`` as a subprocess on a state folder, with an mTLS channel per principal.
    ``cwd``: the folder it runs in (see :func:`init_state`); ``channel_options``: more gRPC
    options of the client channels (the benchmarks take larger messages)."""

    config: Path
    proc: subprocess.Popen[str] | None = None
    port: int = 0
    metrics_port: int = 0
    log_path: Path | None = None
    channels: dict[str, grpc.Channel] = field(default_factory=dict)
    cwd: Path | None = None
    channel_options: ClassVar[tuple[tuple[str, Any], ...]] = ()

    @property
    def state(self) -> Path:
        return self.config.parent

    def command(self, *args: str) -> list[str]:
        """The command line of ``signerd *args`` (the benchmarks run it another way)."""
        return signerd_cmd(*args)

    def start(self, timeout: float = 60) -> "Daemon":
        self.log_path = self.state / f"daemon-{int(time.time() * 1000)}.log"
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.command("run", "--config", str(self.config)),
                                     stdout=subprocess.PIPE, stderr=log, text=True, cwd=self.cwd,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"))
        deadline = time.time() + timeout
        assert self.proc.stdout is not None
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"daemon exited {self.proc.returncode}: "
                                       f"{self.log_path.read_text()[-2000:]}")
                continue
            m = LISTEN_RE.search(line)
            if m:
                self.port, self.metrics_port = int(m.group(2)), int(m.group(4))
                return self
        raise RuntimeError("daemon did not start in time")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        for ch in self.channels.values():
            ch.close()
        self.channels.clear()
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc = None
        return rc

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def channel(self, principal: str = "platform") -> grpc.Channel:
        if principal not in self.channels:
            pki = self.state / "pki"
            creds = grpc.ssl_channel_credentials(
                root_certificates=(pki / "ca.pem").read_bytes(),
                private_key=(pki / "clients" / f"{principal}.key").read_bytes(),
                certificate_chain=(pki / "clients" / f"{principal}.pem").read_bytes())
            self.channels[principal] = grpc.secure_channel(
                f"127.0.0.1:{self.port}", creds,
                options=[("grpc.ssl_target_name_override", "localhost"),
                         *self.channel_options])
        return self.channels[principal]

    def custody(self, principal: str = "platform") -> rpc.CustodyStub:
        from signerd.v1 import signerd_pb2_grpc as rpc

        return rpc.CustodyStub(self.channel(principal))

    def approval(self, principal: str) -> rpc.ApprovalStub:
        from signerd.v1 import signerd_pb2_grpc as rpc

        return rpc.ApprovalStub(self.channel(principal))

    def admin(self, principal: str = "admin") -> rpc.AdminStub:
        from signerd.v1 import signerd_pb2_grpc as rpc

        return rpc.AdminStub(self.channel(principal))

    def audit(self, principal: str = "auditor") -> rpc.AuditStub:
        from signerd.v1 import signerd_pb2_grpc as rpc

        return rpc.AuditStub(self.channel(principal))

    def governance(self, principal: str = "admin") -> rpc.GovernanceStub:
        from signerd.v1 import signerd_pb2_grpc as rpc

        return rpc.GovernanceStub(self.channel(principal))

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=10) as r:
            return r.read().decode()


# ---------------------------------------------------------------- from test_postgres.py

def replica_config(cfg: Path, name: str) -> Path:
    """Another replica of the same instance: the same file (instance id, HSM token and PIN,
    PKI, store URL), in the same folder so its relative paths name the same files. Both listen
    on port 0, so each gets its own free gRPC and metrics port."""
    other = cfg.with_name(f"signerd-{name}.toml")
    shutil.copyfile(cfg, other)
    return other
