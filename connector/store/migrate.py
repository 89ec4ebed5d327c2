"""Bring a store's schema up to date: apply pending migrations in order, once, under a lock."""

from __future__ import annotations

import logging

from connector.errors import StoreError
from connector.store.migrations import Migration, discover
from connector.store.store import Store
from connector.store.time import utc_now

log = logging.getLogger(__name__)

_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version     INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    applied_at  TEXT NOT NULL
)"""


def migrate(store: Store, migrations: list[Migration] | None = None) -> list[int]:
    """Apply the migrations the store lacks; returns the versions applied (empty when current).

    Each migration runs in its own transaction with its `schema_version` row, after taking the
    migration lock and re-reading the version, so a second process that opened the store at
    the same moment finds the work done instead of repeating it.
    """
    migrations = discover() if migrations is None else migrations
    latest = migrations[-1].version if migrations else 0
    applied: list[int] = []
    with store.transaction():
        _lock(store)
        store.execute(_VERSION_TABLE)
    while True:
        with store.transaction():
            _lock(store)
            current = store.schema_version()
            if current > latest:
                raise StoreError(
                    f"store {store.location} has schema version {current}, newer than this "
                    f"trial-connector knows ({latest}); upgrade trial-connector"
                )
            pending = [m for m in migrations if m.version == current + 1]
            if not pending:
                return applied
            migration = pending[0]
            for statement in migration.upgrade(store.dialect):
                store.execute(statement)
            store.execute(
                "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, utc_now()),
            )
            log.info("store %s: applied migration %04d_%s", store.location, migration.version, migration.name)
            applied.append(migration.version)


def _lock(store: Store) -> None:
    """Serialise migrators. SQLite's BEGIN IMMEDIATE already holds the write lock."""
    if store.dialect.name == "postgresql":
        store.execute("SELECT pg_advisory_xact_lock(hashtext('trial-connector:migrate:' || current_schema()))")
