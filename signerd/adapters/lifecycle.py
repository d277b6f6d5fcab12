"""One daemon per state: the state folder lock, listening errors that name the address, SIGHUP.

* **The state folder lock.** A SQLite store is one process's: ``signerd run`` takes an exclusive
  ``fcntl.flock`` on ``signerd.lock`` in the database's folder (the state folder ``signerd init``
  made, or systemd's ``StateDirectory``) before it opens the HSM or the store, holds it for the
  life of the process (the kernel releases it when the process ends, however it ends) and writes
  its PID into the file. A second daemon on the same folder exits 2 with one line naming the
  holder's PID. A PostgreSQL store takes no lock: several replicas of one instance sharing a
  database, an HSM token and even one config are the supported way to run it (README, "Several
  replicas"); each must listen on its own address.
* **Listening.** The gRPC server binds without ``SO_REUSEPORT`` (``grpc.so_reuseport = 0``), so
  a second process cannot share its port; a failed bind, of the gRPC or the metrics address,
  stops the daemon with the address and the reason.
* **SIGHUP** reloads nothing: the daemon logs that a changed configuration needs a restart and
  keeps serving (the systemd unit has no ``ExecReload``).
"""
from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
from pathlib import Path
from typing import Any

from signerd.core.errors import FailedPrecondition

log = logging.getLogger("signerd")

LOCK_NAME = "signerd.lock"


class StateInUse(FailedPrecondition):
    reason = "STATE_IN_USE"


class ListenError(FailedPrecondition):
    reason = "LISTEN"


class StateLock:
    """An exclusive lock on a state folder, held while this object's file stays open."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def state_folder(store_url: str) -> Path | None:
    """The folder one daemon owns: a SQLite store's; None for PostgreSQL (replicas share it)."""
    if store_url.startswith("sqlite:///"):
        return Path(store_url[len("sqlite:///"):]).parent
    return None


def lock_state(folder: Path) -> StateLock:
    """Take the state folder's lock or raise StateInUse naming the process that holds it."""
    path = folder / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        hint = ""
        if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            hint = ("; signerd writes its store and this lock there, so the folder must be "
                    "writable by it (under systemd /etc is read-only: give [store] url an "
                    "absolute path in the unit's StateDirectory, /var/lib/signerd)")
        raise StateInUse(f"cannot open the state folder lock {path}: {e.strerror}{hint}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = _holder(fd)
        os.close(fd)
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise StateInUse(f"cannot lock the state folder {folder} ({path}): "
                             f"{e.strerror}") from None
        raise StateInUse(f"state folder {folder} is in use by another signerd (pid {holder}, "
                         f"lock file {path}); stop it first") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return StateLock(path, fd)


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return text if text.isdigit() else "unknown"


def bind_error(what: str, address: str, err: OSError | None = None) -> ListenError:
    """The error for an address that could not be bound, naming it and (when the system says)
    why: grpcio reports only that binding failed, so the address is tried once more here."""
    why = err.strerror if err is not None and err.strerror else _why(address)
    return ListenError(f"cannot listen on {address} ({what}): {why}")


def _split(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{address!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _why(address: str) -> str:
    try:
        host, port = _split(address)
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except ValueError as e:
        return str(e)
    except socket.gaierror as e:
        return f"cannot resolve the host ({e.strerror})"
    for family, kind, proto, _, sockaddr in infos:
        try:
            with socket.socket(family, kind, proto) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(sockaddr)
        except OSError as e:
            return e.strerror or str(e)
    return "the address could not be bound"


def start_metrics(address: str, registry: Any) -> Any:
    """Serve Prometheus metrics on ``address``; the HTTP server, or ListenError."""
    from prometheus_client import start_http_server

    try:
        host, port = _split(address)
    except ValueError as e:
        raise ListenError(f"cannot listen on {address} (metrics): {e}") from None
    try:
        server, _ = start_http_server(port, addr=host, registry=registry)
    except OSError as e:
        raise bind_error("metrics", address, e) from None
    return server


def on_sighup(_signum: int, _frame: object) -> None:
    log.warning("SIGHUP: signerd reloads nothing while running; restart it to apply a changed "
                "configuration or certificate (still serving)")
