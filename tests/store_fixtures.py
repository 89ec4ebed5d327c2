"""pytest fixtures for store tests on both backends (exposed through tests/conftest.py).

- `store_url`: a fresh, empty store location per test, parametrized `sqlite` (a file in
  tmp_path) and `postgresql` (a new random schema in database `test` on 127.0.0.1:5432,
  selected through the connection's `options=-csearch_path=...`, dropped after the test).
- `store`: that location opened with `open_store` (migrated), closed after the test.

When no PostgreSQL answers, the `postgresql` params are skipped with the reason shown by
`pytest -ra`; with env TRIAL_CONNECTOR_REQUIRE_PG=1 (CI) they fail instead.
Override the server with env TRIAL_CONNECTOR_TEST_PG (a URL without search_path).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from functools import lru_cache
from urllib.parse import quote

import pytest

from connector.store import Store, open_store

PG_CANDIDATES = (
    "postgresql://postgres@127.0.0.1:5432/test",
    "postgresql://root@127.0.0.1:5432/test",
)
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@lru_cache(maxsize=1)
def pg_base_url() -> tuple[str | None, str]:
    """The first PostgreSQL URL that answers, or None and why none did."""
    import psycopg

    candidates = [os.environ["TRIAL_CONNECTOR_TEST_PG"]] if os.environ.get("TRIAL_CONNECTOR_TEST_PG") else PG_CANDIDATES
    reasons = []
    for url in candidates:
        try:
            with psycopg.connect(url, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            return url, ""
        except psycopg.Error as exc:
            reasons.append(f"{url}: {' '.join(str(exc).split())[:200]}")
    return None, "; ".join(reasons)


def require_pg() -> str:
    """The PostgreSQL base URL, or skip (fail when TRIAL_CONNECTOR_REQUIRE_PG=1)."""
    url, reason = pg_base_url()
    if url is None:
        message = f"no PostgreSQL answers ({reason})"
        if os.environ.get("TRIAL_CONNECTOR_REQUIRE_PG") == "1":
            pytest.fail(message + " and TRIAL_CONNECTOR_REQUIRE_PG=1")
        pytest.skip(message)
    return url


def pg_schema_url(base: str, schema: str) -> str:
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}options={quote(f'-csearch_path={schema}', safe='')}"


def create_pg_schema(base: str) -> str:
    import psycopg

    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return schema


def drop_pg_schema(base: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "store.db")
        return
    base = require_pg()
    schema = create_pg_schema(base)
    try:
        yield pg_schema_url(base, schema)
    finally:
        drop_pg_schema(base, schema)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.close()
