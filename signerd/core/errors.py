"""One exception tree for signerd, mapped once to gRPC status codes at the edge.

Every error carries a machine-readable ``reason`` (UPPER_SNAKE) and a human message that names
the problem. Messages never contain secrets (PINs, key material).
"""
from __future__ import annotations

from enum import Enum

ECHO_CHARS = 80  # how much of a request's input an error message shows
MAX_MESSAGE_CHARS = 2000  # no error message is longer, whatever it quotes


def echo(value: object, *, quote: bool = True, limit: int = ECHO_CHARS) -> str:
    """Input from outside as an error message shows it: its ``repr`` (the text itself with
    ``quote=False``), cut after its first ``limit`` characters with an ellipsis and its full
    length, so that no message grows with its input. Short input reads as ``{value!r}`` (or
    ``{value}``) did: ``echo("w" * 100)`` is ``'wwww...w'... (100 characters)``."""
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value) if quote else value
        head = value[:limit]
        return f"{head!r}... ({len(value)} characters)" if quote else \
            f"{head}... ({len(value)} characters)"
    text = repr(value) if quote else str(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"



class Status(Enum):
    """The gRPC status a SignerError maps to (kept free of grpc imports)."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    NOT_FOUND = "NOT_FOUND"
    UNAVAILABLE = "UNAVAILABLE"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    INTERNAL = "INTERNAL"


class SignerError(Exception):
    status: Status = Status.INTERNAL
    reason: str = "INTERNAL"

    def __init__(self, message: str, *, reason: str | None = None):
        if len(message) > MAX_MESSAGE_CHARS:  # a last bound, for input quoted without echo()
            message = f"{message[:MAX_MESSAGE_CHARS]}... (message of {len(message)} characters)"
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason

    def __str__(self) -> str:
        return self.message


class InvalidArgument(SignerError):
    status = Status.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"


class InvalidPsbt(InvalidArgument):
    reason = "INVALID_PSBT"


class InvalidTransaction(InvalidArgument):
    """A Bitcoin or Ethereum transaction (or one of its fields) is malformed or out of range."""

    reason = "INVALID_TRANSACTION"


class InvalidApproval(InvalidArgument):
    reason = "INVALID_APPROVAL"


class InvalidPolicy(InvalidArgument):
    reason = "INVALID_POLICY"


class InvalidKey(InvalidArgument):
    reason = "INVALID_KEY"


class FailedPrecondition(SignerError):
    status = Status.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"


class PolicyDenied(FailedPrecondition):
    reason = "POLICY_DENIED"


class WalletFrozen(FailedPrecondition):
    reason = "WALLET_FROZEN"


class AuthorityViolation(FailedPrecondition):
    """Something counted toward a signature does not trace back to the pinned genesis through
    approved governance proposals: a row signerd did not write. ``kind`` is a closed-set label
    (for the metric): genesis, ledger, approval, operator, wallet, policy, quorum, ended (an
    act the verified audit chain says ended, set back to waiting in the store), veto, transfer
    (a transfer row without signerd's seal over what was submitted), proposal (a proposal row
    without signerd's seal)."""

    reason = "AUTHORITY_VIOLATION"

    def __init__(self, message: str, *, kind: str = "ledger"):
        super().__init__(message)
        self.kind = kind


class AuditChainViolation(FailedPrecondition):
    """The audit chain in the store does not match what the HSM signed: an event or a checkpoint
    was changed, deleted or rolled back by someone who writes to the store. Nothing is signed
    over such a chain. ``kind`` is a closed-set label (for the metric): ``event`` (an event
    since, or at, a checkpoint) or ``checkpoint`` (a checkpoint row itself)."""

    reason = "AUDIT_CHAIN_VIOLATION"

    def __init__(self, message: str, *, kind: str = "event"):
        super().__init__(message)
        self.kind = kind


class Conflict(FailedPrecondition):
    """A nonce or outpoint is already held by another live transfer."""

    reason = "CONFLICT"


class NotFound(SignerError):
    status = Status.NOT_FOUND
    reason = "NOT_FOUND"


class AlreadyExists(SignerError):
    status = Status.ALREADY_EXISTS
    reason = "ALREADY_EXISTS"


class PermissionDenied(SignerError):
    status = Status.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


class Unauthenticated(SignerError):
    status = Status.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class Unavailable(SignerError):
    status = Status.UNAVAILABLE
    reason = "UNAVAILABLE"


class HsmUnavailable(Unavailable):
    reason = "HSM_UNAVAILABLE"


class StoreUnavailable(Unavailable):
    reason = "STORE_UNAVAILABLE"


class ResourceExhausted(SignerError):
    status = Status.RESOURCE_EXHAUSTED
    reason = "RESOURCE_EXHAUSTED"


class ConfigError(SignerError):
    """Raised at start-up for a bad configuration; the daemon exits with its message."""

    status = Status.FAILED_PRECONDITION
    reason = "CONFIG"
