"""Where results and registry versions live: SQLite (one file, the default) or PostgreSQL.

    from connector.store import open_store
    with open_store(url) as store:            # schema migrated on open
        with store.transaction():
            store.execute("INSERT INTO t (a) VALUES (?)", (1,))
        rows = store.fetchall("SELECT a FROM t")

SQL is written once with `?` placeholders; `store.dialect` supplies column types and upserts
(connector.store.dialect). Schema changes are numbered migrations: see
connector.store.migrations for how to add one. Timestamps are ISO-8601 UTC text (`utc_now`).
"""

from connector.store.connect import is_postgres_url, open_existing_store, open_store, redact_url
from connector.store.dialect import Dialect
from connector.store.store import Store
from connector.store.time import format_timestamp, utc_now

__all__ = ["Dialect", "Store", "format_timestamp", "is_postgres_url", "open_existing_store", "open_store", "redact_url", "utc_now"]
