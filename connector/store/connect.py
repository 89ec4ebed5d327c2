"""Open a store from its location: a SQLite file path (the embedded default) or a PostgreSQL URL.

SQLite files are created with mode 0600 before SQLite touches them (its -wal/-shm side files
inherit that mode), because the store holds pre-screen results, which are PHI.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from connector.errors import SourceError, StoreError
from connector.store.dialect import POSTGRESQL, SQLITE
from connector.store.migrate import migrate
from connector.store.store import Store

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_S = 30.0
PG_CONNECT_TIMEOUT_S = 10


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def redact_url(url: str) -> str:
    """The URL with any password replaced, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def open_store(url: str, *, migrate_schema: bool = True) -> Store:
    """Connect and bring the schema up to date (see connector.store.migrations)."""
    store = _open_postgres(url) if is_postgres_url(url) else _open_sqlite(url)
    if migrate_schema:
        try:
            migrate(store)
        except BaseException:
            store.close()
            raise
    return store


def sqlite_path(url: str) -> str:
    """`sqlite:///abs/path`, `sqlite:relative` or a bare path -> the file path."""
    if url.startswith("sqlite:///"):
        return "/" + url[len("sqlite:///"):]
    if url.startswith("sqlite:"):
        return url[len("sqlite:"):]
    return url


def _open_sqlite(url: str) -> Store:
    path = sqlite_path(url)
    if path != ":memory:":
        _create_private(Path(path))
    try:
        connection = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_S, isolation_level=None)
        connection.row_factory = sqlite3.Row
        if path != ":memory:":
            connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a killed process loses nothing committed
        connection.execute("PRAGMA foreign_keys=ON")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open SQLite store {path}: {exc}") from None
    return Store(connection, SQLITE, location=path)


def _create_private(path: Path) -> None:
    if path.exists():
        if path.is_dir():
            raise StoreError(f"store path {path} is a directory; give a file path")
        tighten_modes(path)
        return
    if not path.parent.exists():
        raise StoreError(f"cannot create store {path}: directory {path.parent} does not exist")
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    except FileExistsError:  # another process created it a moment ago
        return
    except OSError as exc:
        raise StoreError(f"cannot create store {path}: {exc.strerror}") from None
    os.close(fd)
    os.chmod(path, 0o600)  # the umask may have removed bits, never added: make it exact


def tighten_modes(path: Path) -> None:
    """An existing store (and its -wal/-shm files) readable by others is made owner-only, with a
    warning: it holds PHI, and an older version or a copy may have left it 0644."""
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = file.stat().st_mode & 0o777
            if mode & 0o077 and file.stat().st_uid == os.getuid():
                os.chmod(file, mode & 0o700)
                log.warning("store file %s was readable by others (mode %o); made owner-only (%o)", file, mode,
                            mode & 0o700)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("cannot tighten the mode of store file %s: %s", file, exc.strerror)


def _open_postgres(url: str) -> Store:
    import psycopg
    from psycopg.rows import dict_row

    shown = redact_url(url)
    try:
        connection = psycopg.connect(
            url, autocommit=True, row_factory=dict_row, connect_timeout=PG_CONNECT_TIMEOUT_S,
            application_name="trial-connector",
        )
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split())[:300] or "connection failed"  # libpq text: host, port, user; no password
        raise SourceError(f"cannot connect to PostgreSQL store {shown}: {reason}") from None
    except psycopg.ProgrammingError as exc:
        raise StoreError(f"invalid PostgreSQL store URL {shown}: {exc}") from None
    from connector.store.pgtext import install

    install(connection)  # NUL-safe text both ways
    return Store(connection, POSTGRESQL, location=shown)
