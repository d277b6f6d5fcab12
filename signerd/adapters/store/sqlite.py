"""SQLite store: WAL mode, synchronous=FULL, one connection per thread, BEGIN IMMEDIATE writes."""
from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
import time
from contextlib import contextmanager
from typing import Callable, Generator, Iterator

from signerd.core.errors import AlreadyExists, StoreUnavailable
from . import Tx
from .migrations import migrate


_WRITERS: dict[str, threading.RLock] = {}


class SqliteStore:
    dialect = "sqlite"
    on_commit: Callable[[Tx], None] | None = None

    def __init__(self, path: str):
        self.path = path
        self._local = threading.local()
        self._writer = _WRITERS.setdefault(str(Path(path).resolve()), threading.RLock())
        with self.transaction() as tx:
            migrate(tx)

    def _conn(self) -> sqlite3.Connection:
        c = getattr(self._local, "conn", None)
        if c is None:
            try:
                c = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                    check_same_thread=False)
                c.execute("PRAGMA journal_mode=WAL")
                c.execute("PRAGMA synchronous=FULL")
                c.execute("PRAGMA foreign_keys=ON")
                c.execute("PRAGMA busy_timeout=30000")
            except sqlite3.Error as e:
                raise StoreUnavailable(f"store {self.path} cannot be opened: {e}") from None
            self._local.conn = c
        return c

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """A write transaction: the write lock is taken up front, so check-then-act is atomic.

        Writers of this process queue on one lock per database instead of polling SQLite's
        busy lock, which keeps the latency tail short under concurrent clients."""
        with self._writer:
            tx = yield from self._write(self._conn())
        # After the write lock is released, as on PostgreSQL: what runs on commit takes the
        # daemon's own locks (the ended set under the checkpoint lock, HSM anchors), and a
        # thread holding one of those may be waiting for this write lock (the audit checkpoint).
        if self.on_commit is not None and (tx.appended or tx.authority_appended or tx.events):
            self.on_commit(tx)

    def _write(self, c: sqlite3.Connection) -> Generator[Tx, None, Tx]:
        for attempt in range(50):
            try:
                c.execute("BEGIN IMMEDIATE")
                break
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or attempt == 49:
                    raise StoreUnavailable(f"store is unavailable: {e}") from None
                time.sleep(0.05)
        cur = c.cursor()
        tx = Tx(cur, self.dialect)
        try:
            yield tx
        except sqlite3.IntegrityError as e:
            c.execute("ROLLBACK")
            raise AlreadyExists(f"the store refused a duplicate ({str(e).split(':')[0]})") from None
        except sqlite3.Error as e:
            c.execute("ROLLBACK")
            raise StoreUnavailable(f"store error: {e}") from None
        except BaseException:
            c.execute("ROLLBACK")
            raise
        try:
            c.execute("COMMIT")
        except sqlite3.Error as e:
            c.execute("ROLLBACK")
            raise StoreUnavailable(f"store commit failed: {e}") from None
        return tx

    @contextmanager
    def read(self) -> Iterator[Tx]:
        c = self._conn()
        c.execute("BEGIN")
        try:
            yield Tx(c.cursor(), self.dialect)
        finally:
            c.execute("COMMIT")

    def ping(self) -> bool:
        try:
            self._conn().execute("SELECT 1").fetchone()
            return True
        except sqlite3.Error:
            return False

    def close(self) -> None:
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            self._local.conn = None

