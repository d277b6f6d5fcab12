"""signerctl against a running daemon, as an operator runs it."""
from __future__ import annotations

import os
import subprocess

from tests.support.daemon import Daemon, signerctl_cmd


def ctl(d: Daemon, *args: str, ok: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
    # The config names port 0; point signerctl at the port the daemon printed.
    r = subprocess.run(
        signerctl_cmd("--config", str(d.config), "--server", f"127.0.0.1:{d.port}", *args),
        capture_output=True, text=True, timeout=60, input=stdin, cwd=d.state.parent,
        env=dict(os.environ))
    if ok:
        assert r.returncode == 0, r.stderr
    return r


def key(d: Daemon, op: str) -> str:
    """The path of operator ``op``'s private key file in the daemon's state folder (--key)."""
    return str(d.state / "operators" / f"{op}.key")
