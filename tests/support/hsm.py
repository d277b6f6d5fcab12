"""The daemon's health service and the SoftHSM token under it: the token folder taken away and
given back, the PIN file rewritten."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.daemon import Daemon

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def health(d: Daemon) -> int:
    return health_pb2_grpc.HealthStub(d.channel()).Check(
        health_pb2.HealthCheckRequest(service="signerd.v1.Custody"), timeout=10).status


def wait_for(what: str, pred: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")


def remove_token(d: Daemon) -> None:
    (d.state / "hsm" / "tokens").rename(d.state / "hsm" / "tokens.away")


def return_token(d: Daemon) -> None:
    (d.state / "hsm" / "tokens.away").rename(d.state / "hsm" / "tokens")


def write_pin(path: Path, text: str, mode: int = 0o600) -> None:
    tmp = path.with_name("pin.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
