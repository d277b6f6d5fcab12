"""How signerctl fails: ``CliError`` (one line on stderr, an exit status, and with --json a
document on stdout), and the mapping of every failure a command raises to one."""
from __future__ import annotations

from typing import Any

import grpc

from signerd.core.errors import SignerError

PROG = "signerctl"


class CliError(Exception):
    """A failure to report as one line; ``status`` is the process exit status."""

    def __init__(self, message: str, status: int = 1, doc: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.doc = doc


class UsageError(CliError):
    def __init__(self, message: str):
        super().__init__(message, status=2)


def one_line(text: str) -> str:
    return " ".join(text.split()) or "failed"


def _rpc_error(e: grpc.RpcError) -> CliError:
    code = e.code() if hasattr(e, "code") else None
    name = code.name if code is not None else "UNKNOWN"
    details = (e.details() if hasattr(e, "details") else None) or ""
    reason = ""
    for key, value in (e.trailing_metadata() or ()) if hasattr(e, "trailing_metadata") else ():
        if key == "signerd-reason":
            reason = value if isinstance(value, str) else value.decode("ascii", "replace")
    doc = {"error": {"code": name, "reason": reason, "message": details}}
    return CliError(f"{name}: {details}" if details else name, doc=doc)


def cli_error(e: BaseException) -> CliError:
    """The failure to report for what a command raised (one of ``FAILURES``)."""
    if isinstance(e, grpc.RpcError):
        return _rpc_error(e)
    if isinstance(e, CliError):
        return e
    if isinstance(e, SignerError):
        return CliError(str(e), doc={"error": {"code": e.status.value, "reason": e.reason,
                                               "message": str(e)}})
    if isinstance(e, OSError):
        name = f" {e.filename}" if e.filename else ""
        return CliError(f"{e.strerror or e}{':' if name else ''}{name}")
    if isinstance(e, KeyboardInterrupt):
        return CliError("interrupted", status=130)
    raise TypeError(f"not a failure signerctl reports: {type(e).__name__}")


FAILURES = (grpc.RpcError, CliError, SignerError, OSError, KeyboardInterrupt)
