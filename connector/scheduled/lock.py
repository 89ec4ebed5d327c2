"""The run lock: one scheduled run writes to a store at a time.

Both kinds are released by the operating system or the database when the process dies
(kill -9 included), so a crashed run never blocks the next one:
- SQLite: an exclusive `flock` on `<store file>.lock` (mode 0600) next to the store file the
  path resolves to, so a symlink or another relative spelling of the same store is the same lock;
- PostgreSQL: a session advisory lock keyed by the database and schema the connection really
  uses (not the URL that named them).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager

from connector.errors import LockedError
from connector.store import Store

_PG_KEY = "hashtext('trial-connector:run:' || current_database() || '/' || current_schema())"


@contextmanager
def run_lock(store: Store) -> Iterator[None]:
    """Hold the store's run lock for the block; LockedError (exit 4) when another run has it."""
    if store.dialect.name == "postgresql":
        with _pg_lock(store):
            yield
        return
    if store.location == ":memory:":
        yield
        return
    with _file_lock(os.path.realpath(store.location) + ".lock", store.location):
        yield


@contextmanager
def _file_lock(path: str, where: str) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            raise LockedError(f"another run is writing to store {where} (process {holder}); "
                              "try again when it has finished") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def _pg_lock(store: Store) -> Iterator[None]:
    if not store.scalar(f"SELECT pg_try_advisory_lock({_PG_KEY}) AS locked"):
        raise LockedError(f"another run is writing to store {store.location}; try again when it has finished")
    try:
        yield
    finally:
        store.scalar(f"SELECT pg_advisory_unlock({_PG_KEY}) AS unlocked")
