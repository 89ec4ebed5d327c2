"""One open store: a DB-API connection plus its dialect, with transactions as context managers.

Connections run in autocommit mode and every write goes through `transaction()`, so a reader
never holds a snapshot open and a killed process leaves either the whole transaction or none
of it. Nested `transaction()` blocks become savepoints.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from connector.errors import StoreError
from connector.store.dialect import Dialect

log = logging.getLogger(__name__)

Params = Sequence[Any]


class Store:
    """Thin wrapper: `execute`/`fetchall`/`fetchone` take SQL with `?` placeholders on every backend.

    One Store is one connection: use it from one thread at a time (open one per worker thread
    or process; SQLite's WAL lets readers run beside the single writer).
    """

    def __init__(self, connection: Any, dialect: Dialect, location: str):
        self.connection = connection
        self.dialect = dialect
        self.location = location  # for messages: a file path or a URL without password
        self._depth = 0

    # -- transactions -------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator["Store"]:
        """Commit on success, roll back on any exception; nested blocks are savepoints.

        SQLite starts with BEGIN IMMEDIATE so two writers queue on the busy timeout instead of
        failing half-way with "database is locked" when upgrading a read lock.
        """
        if self.dialect.name == "postgresql":
            with self.connection.transaction():
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
            return
        savepoint = f"sp{self._depth}"
        self._raw("BEGIN IMMEDIATE" if self._depth == 0 else f"SAVEPOINT {savepoint}")
        self._depth += 1
        try:
            yield self
        except BaseException:
            self._depth -= 1
            self._raw("ROLLBACK" if self._depth == 0 else f"ROLLBACK TO {savepoint}")
            if self._depth:
                self._raw(f"RELEASE {savepoint}")
            raise
        self._depth -= 1
        self._raw("COMMIT" if self._depth == 0 else f"RELEASE {savepoint}")

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    # -- statements ---------------------------------------------------------------------------

    def _raw(self, sql: str) -> None:
        try:
            self.connection.execute(sql)
        except Exception as exc:  # e.g. "database is locked" after the busy timeout
            raise StoreError(f"store {self.location}: {sql.split()[0]} failed: {_first_line(exc)}") from exc

    def execute(self, sql: str, params: Params = ()) -> Any:
        """Run one statement; returns the driver cursor (use `fetchall`/`fetchone` to read rows)."""
        try:
            return self.connection.execute(self.dialect.sql(sql), tuple(params))
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"store {self.location}: {type(exc).__name__}: {_first_line(exc)}") from exc

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        try:
            cursor = self.connection.cursor()
            cursor.executemany(self.dialect.sql(sql), [tuple(r) for r in rows])
        except Exception as exc:
            raise StoreError(f"store {self.location}: {type(exc).__name__}: {_first_line(exc)}") from exc

    def fetchall(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        """Rows as plain dicts (column name -> value) on both backends."""
        cursor = self.execute(sql, params)
        return [dict(row) for row in cursor.fetchall()]

    def fetchone(self, sql: str, params: Params = ()) -> dict[str, Any] | None:
        cursor = self.execute(sql, params)
        row = cursor.fetchone()
        return dict(row) if row is not None else None

    def scalar(self, sql: str, params: Params = ()) -> Any:
        row = self.fetchone(sql, params)
        return None if row is None else next(iter(row.values()))

    def json(self, value: Any) -> Any:
        """Bind a Python value into a JSON column."""
        return self.dialect.json_param(value)

    def from_json(self, value: Any) -> Any:
        """Decode a JSON column."""
        return self.dialect.json_value(value)

    def schema_version(self) -> int:
        """The highest migration applied (0 for an empty store)."""
        return int(self.scalar("SELECT COALESCE(MAX(version), 0) AS v FROM schema_version") or 0)

    def close(self) -> None:
        try:
            self.connection.close()
        except Exception:  # pragma: no cover - closing twice or after a dropped connection
            log.debug("closing store %s failed", self.location, exc_info=True)

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
