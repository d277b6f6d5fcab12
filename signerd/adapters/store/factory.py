"""Opening the store a URL names: SQLite (``sqlite:///path``) or PostgreSQL
(``postgresql://...``). Apart from the package (``Store``, ``Tx``) so that the backends, which
build on the package, are imported by none of it."""
from __future__ import annotations

from signerd.core.errors import StoreUnavailable

from . import Store
from .sqlite import SqliteStore


def open_store(url: str) -> Store:
    if url.startswith("sqlite:///"):
        return SqliteStore(url[len("sqlite:///"):])
    if url.startswith(("postgresql://", "postgres://")):
        # Deliberately late: psycopg (a C library) is loaded only by a daemon that uses
        # PostgreSQL. No cycle: postgres imports the package and migrations, never this module.
        from .postgres import PostgresStore

        return PostgresStore(url)
    raise StoreUnavailable(f"unsupported store URL scheme in {url.split(':', 1)[0]!r}")
