"""PostgreSQL store (psycopg 3): several signerd replicas on one database.

Isolation: READ COMMITTED with explicit row locks, not SERIALIZABLE. Every check-then-act in
signerd starts by locking the row it decides on -- the transfer (``get_transfer(lock=True)``:
``SELECT ... FOR UPDATE``), the wallet for policy versions, the key share, a nonce or outpoint
lock -- and every write transaction ends by locking the audit head row. Under READ COMMITTED a
``SELECT ... FOR UPDATE`` that waited for another transaction returns the row as that transaction
committed it, and each later statement sees everything committed before it, so after the lock:

- the quorum check reads every approval committed for the transfer (approvals are only inserted
  by a transaction holding the transfer's lock), and exactly one transaction moves it from
  PENDING_APPROVAL to APPROVED;
- the sign step's storing transaction re-reads the state under the lock; the first replica to
  get it stores the signatures and moves the transfer to SIGNED, every other one sees SIGNED and
  discards its HSM result unseen (the primary key on signatures is a second fence);
- two submissions of the same nonce or outpoint meet on the ``transfer_locks`` primary key: the
  second waits for the first and then fails with a unique violation, mapped to ``Conflict``;
- audit appends queue on the head row, which exists from migration 3 on and is only updated.

SERIALIZABLE would also be correct, but its failures surface at any statement or at COMMIT and
must be handled by re-running the whole transaction body. ``Store.transaction()`` is a context
manager whose body runs once (and the sign step's body follows an HSM call), so retries would
have to move into every caller; row locks give the same guarantees here without retries. Lock
waits are bounded (``lock_timeout``) and deadlocks are detected by the server; both, and every
lost connection, surface as ``StoreUnavailable`` (gRPC UNAVAILABLE: safe to retry).

Connections: one per thread (no pool dependency), opened lazily, re-opened after a failure, all
closed by ``close()``. Connections of threads that ended are closed when the next one opens.
"""
from __future__ import annotations

import re
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Sequence

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict

from signerd.core.errors import (AlreadyExists, ConfigError, Conflict, InvalidArgument,
                                 StoreUnavailable)
from . import Tx
from .migrations import migrate

LOCK_TIMEOUT = "30s"  # as long as SQLite's busy_timeout
IDLE_IN_TRANSACTION_TIMEOUT = "300s"  # a stuck client never holds row locks for ever
CONNECT_TIMEOUT = 10

# Unique violations a caller can cause, by table: the same errors the SQLite paths raise.
_UNIQUE = {
    "approvals": (AlreadyExists, "this operator has already decided on this transfer"),
    "signatures": (AlreadyExists, "this signature is already stored"),
    "wallets": (AlreadyExists, "a wallet with this id or address already exists"),
    "keys": (AlreadyExists, "this key already serves another wallet; a key never serves two"),
    "key_shares": (AlreadyExists, "this key share already exists"),
    "operators": (AlreadyExists, "this operator already exists"),
    "policies": (AlreadyExists, "this policy version already exists"),
    "transfers": (AlreadyExists, "a transfer with this id already exists"),
    "proposals": (AlreadyExists, "a proposal with this id already exists"),
    "proposal_approvals": (AlreadyExists, "this operator has already decided on this proposal"),
    "authority_log": (StoreUnavailable, "another replica appended this authority ledger entry "
                                        "meanwhile; retry"),
    "audit_checkpoints": (StoreUnavailable, "another replica stored this audit checkpoint "
                                            "meanwhile; retry"),
}


def _describe(url: str) -> str:
    """host:port/dbname of a URL, never its password."""
    try:
        d = conninfo_to_dict(url)
    except psycopg.Error:
        return "postgresql"
    return f"{d.get('host', 'localhost')}:{d.get('port', '5432')}/{d.get('dbname', '')}"


class PgTx(Tx):
    """Tx whose statements map database errors to signerd errors."""

    def __init__(self, cur: Any, dialect: str, store: "PostgresStore"):
        super().__init__(cur, dialect)
        self._store = store

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        try:
            return self.cur.execute(self._sql(sql), tuple(params))
        except psycopg.Error as e:
            raise self._store.translate(e) from None


class PostgresStore:
    dialect = "postgresql"
    on_commit: Callable[[Tx], None] | None = None

    def __init__(self, url: str):
        self.url = url
        self.where = _describe(url)
        try:
            given = conninfo_to_dict(url)
        except psycopg.Error:  # its message may quote the URL, password included: not shown
            raise ConfigError("store.url is not a valid PostgreSQL connection URL") from None
        self._kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in given:
            self._kwargs["connect_timeout"] = CONNECT_TIMEOUT
        if "application_name" not in given:
            self._kwargs["application_name"] = "signerd"
        options = str(given.get("options") or "")
        if "lock_timeout" not in options:
            options += f" -c lock_timeout={LOCK_TIMEOUT}"
        if "idle_in_transaction_session_timeout" not in options:
            options += f" -c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_TIMEOUT}"
        self._kwargs["options"] = options.strip()
        for k, v in (("keepalives", 1), ("keepalives_idle", 10), ("keepalives_interval", 5),
                     ("keepalives_count", 3)):
            if k not in given:  # notice a dead server or network within ~25 s
                self._kwargs[k] = v
        self._local = threading.local()
        self._conns: dict[int, tuple[threading.Thread, psycopg.Connection[Any]]] = {}
        self._conns_lock = threading.Lock()
        with self.transaction() as tx:
            migrate(tx)

    # ---------------------------------------------------------------- connections
    def _conn(self) -> psycopg.Connection[Any]:
        c = getattr(self._local, "conn", None)
        if c is not None and not c.closed and not c.broken:
            return c
        if c is not None:
            self._drop()
        try:
            c = psycopg.connect(self.url, **self._kwargs)
        except psycopg.Error as e:
            raise StoreUnavailable(f"store {self.where} cannot be reached: "
                                   f"{_first_line(e)}") from None
        me = threading.current_thread()
        with self._conns_lock:
            for ident, (thread, old) in list(self._conns.items()):
                if not thread.is_alive():
                    del self._conns[ident]
                    _quiet_close(old)
            self._conns[me.ident or 0] = (me, c)
        self._local.conn = c
        return c

    def _drop(self) -> None:
        c = getattr(self._local, "conn", None)
        self._local.conn = None
        if c is None:
            return
        with self._conns_lock:
            ident = threading.get_ident()
            if ident in self._conns and self._conns[ident][1] is c:
                del self._conns[ident]
        _quiet_close(c)

    def translate(self, e: psycopg.Error) -> Exception:
        """A signerd error for a database error (raised inside a transaction)."""
        if isinstance(e, pg_errors.UniqueViolation):
            table = e.diag.table_name or ""
            if table == "transfer_locks":  # the same words as Tx.insert_transfer's check
                m = re.search(r"\(lock_key\)=\((.*)\) already exists", e.diag.message_detail or "")
                what = m.group(1) if m else "a nonce or outpoint of this transfer"
                return Conflict(f"{what} is already held by another live transfer")
            cls, message = _UNIQUE.get(table, (AlreadyExists, "this record already exists"))
            return cls(message)
        if isinstance(e, psycopg.DataError):
            # e.g. a NUL byte in a text field, which PostgreSQL cannot store (SQLite can)
            return InvalidArgument(f"a value cannot be stored: {_first_line(e)}")
        if isinstance(e, (psycopg.OperationalError, psycopg.InterfaceError)):
            c = getattr(self._local, "conn", None)
            if c is not None and (c.closed or c.broken):
                self._drop()
            if isinstance(e, pg_errors.LockNotAvailable):
                return StoreUnavailable(f"store {self.where}: a row stayed locked longer than "
                                        f"{LOCK_TIMEOUT}; retry")
            if isinstance(e, pg_errors.DeadlockDetected):
                return StoreUnavailable(f"store {self.where}: deadlock with another writer; retry")
            return StoreUnavailable(f"store {self.where} is unavailable: {_first_line(e)}")
        return e  # a programming error (bad SQL, constraint bug): let it show as such

    def _begin(self) -> psycopg.Connection[Any]:
        if getattr(self._local, "depth", 0):
            raise RuntimeError("nested store transactions on one thread are not supported")
        for attempt in (1, 2):
            c = self._conn()
            try:
                if c.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    c.execute("ROLLBACK")
                c.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
                return c
            except psycopg.Error as e:
                # nothing ran yet: a connection that died while idle is re-opened once
                self._drop()
                if attempt == 2:
                    raise StoreUnavailable(f"store {self.where} is unavailable: "
                                           f"{_first_line(e)}") from None
        raise AssertionError("unreachable")

    @contextmanager
    def _tx(self) -> Iterator[Tx]:
        c = self._begin()
        self._local.depth = 1
        tx = PgTx(c.cursor(), self.dialect, self)
        try:
            try:
                yield tx
            except BaseException:
                try:
                    c.execute("ROLLBACK")
                except psycopg.Error:
                    self._drop()
                raise
            try:
                c.execute("COMMIT")
            except psycopg.Error as e:
                err = self.translate(e)
                try:
                    c.execute("ROLLBACK")
                except psycopg.Error:
                    self._drop()
                if isinstance(err, StoreUnavailable):
                    err = StoreUnavailable(f"store commit failed (outcome unknown if the "
                                           f"connection was lost): {err.message}")
                raise err from None
        finally:
            self._local.depth = 0
        if self.on_commit is not None and (tx.appended or tx.authority_appended or tx.events):
            self.on_commit(tx)

    def transaction(self) -> Any:
        """A write transaction at READ COMMITTED; callers lock what they decide on."""
        return self._tx()

    def read(self) -> Any:
        """A read transaction (READ COMMITTED, not READ ONLY). What a read decides on is
        checked again under row locks in the write that acts on it (the sign step re-reads
        state and quorum under ``SELECT ... FOR UPDATE``)."""
        return self._tx()

    def ping(self) -> bool:
        """True when the server answers; a connection that died while idle (server restart,
        failover) is replaced once before the store is called down."""
        for _ in (1, 2):
            try:
                c = self._conn()
                c.execute("SELECT 1").fetchone()
                return True
            except (psycopg.Error, StoreUnavailable):
                self._drop()
        return False

    def close(self) -> None:
        with self._conns_lock:
            conns = [c for _, c in self._conns.values()]
            self._conns.clear()
        for c in conns:
            _quiet_close(c)
        self._local.conn = None


def _first_line(e: BaseException) -> str:
    text = " ".join(line.strip() for line in str(e).strip().splitlines())
    return text[:300] if text else type(e).__name__


def _quiet_close(c: psycopg.Connection[Any]) -> None:
    try:
        c.close()
    except Exception:  # closing a broken connection must not mask the original error
        pass


__all__ = ["PostgresStore", "PgTx"]
