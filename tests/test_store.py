"""The store foundation on SQLite and PostgreSQL: migrations, transactions, dialect, file mode."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from connector.commands.options import db_option, store_url as resolve_url
from connector.config import Config
from connector.errors import SourceError, StoreError
from connector.store import open_store, redact_url
from connector.store.migrate import migrate
from connector.store.migrations import Migration, discover


def test_open_applies_every_migration_once(store_url):
    with open_store(store_url) as first:
        versions = [r["version"] for r in first.fetchall("SELECT version FROM schema_version ORDER BY version")]
        assert versions == [m.version for m in discover()]
        assert first.fetchall("SELECT nct_id FROM trials") == []
    with open_store(store_url) as again:  # re-opening is a no-op
        assert again.scalar("SELECT COUNT(*) AS n FROM schema_version") == len(versions)
        assert migrate(again) == []


def _open_and_report(url: str, queue: "multiprocessing.Queue[str]") -> None:
    try:
        with open_store(url) as store:
            queue.put(f"ok {store.schema_version()}")
    except Exception as exc:  # reported to the parent test
        queue.put(f"error {exc}")


def test_concurrent_opens_migrate_once(store_url):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_open_and_report, args=(store_url, queue)) for _ in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    outcomes = sorted(queue.get(timeout=5) for _ in procs)
    latest = discover()[-1].version
    assert outcomes == [f"ok {latest}"] * 4
    with open_store(store_url) as store:
        rows = store.fetchall("SELECT version FROM schema_version")
        assert sorted(r["version"] for r in rows) == list(range(1, latest + 1))


def test_failed_migration_rolls_back_and_is_not_recorded(store_url):
    def good(d):
        return [d.ddl("CREATE TABLE extra_a (id {pk}, doc {json})")]

    def bad(d):
        return ["CREATE TABLE extra_b (id INTEGER)", "THIS IS NOT SQL"]

    with open_store(store_url) as store:
        base = discover()
        n = len(base)
        with pytest.raises(StoreError):
            migrate(store, base + [Migration(n + 1, "a", good), Migration(n + 2, "b", bad)])
        assert store.schema_version() == n + 1
        store.fetchall("SELECT * FROM extra_a")  # the good one stays
        with pytest.raises(StoreError):
            store.fetchall("SELECT * FROM extra_b")  # the bad one left nothing behind


def test_newer_store_schema_is_refused(store_url):
    with open_store(store_url) as store:
        with store.transaction():
            store.execute("INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                          (999, "future", "2030-01-01T00:00:00.000000+00:00"))
    with pytest.raises(StoreError, match="schema version 999"):
        open_store(store_url)


def test_transaction_commits_rolls_back_and_nests(store):
    store.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
    with store.transaction():
        store.execute("INSERT INTO t (k, v) VALUES (?, ?)", ("a", 1))
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.execute("INSERT INTO t (k, v) VALUES (?, ?)", ("b", 2))
            raise RuntimeError("boom")
    with store.transaction():
        store.execute("INSERT INTO t (k, v) VALUES (?, ?)", ("c", 3))
        with pytest.raises(RuntimeError):
            with store.transaction():
                store.execute("INSERT INTO t (k, v) VALUES (?, ?)", ("d", 4))
                raise RuntimeError("inner")
        assert store.in_transaction
    assert [r["k"] for r in store.fetchall("SELECT k FROM t ORDER BY k")] == ["a", "c"]
    assert not store.in_transaction


def test_upsert_json_and_literal_placeholders(store):
    d = store.dialect
    store.execute(d.ddl("CREATE TABLE docs (id {pk}, name TEXT UNIQUE, doc {json}, note TEXT)"))
    sql = d.upsert("docs", ["name", "doc", "note"], key=["name"])
    with store.transaction():
        store.execute(sql, ("x", store.json({"a": [1, 2], "é": None}), "50% done?"))
        store.execute(sql, ("x", store.json({"a": [3]}), "100% done?"))
        store.execute(sql, ("y", store.json(None), "?"))
    rows = store.fetchall("SELECT name, doc, note FROM docs WHERE note LIKE '%done?' ORDER BY name")
    assert [(r["name"], store.from_json(r["doc"]), r["note"]) for r in rows] == [("x", {"a": [3]}, "100% done?")]
    assert store.fetchone("SELECT doc FROM docs WHERE name = ?", ("y",))["doc"] is None
    ids = store.fetchall("SELECT id FROM docs ORDER BY id")
    assert len(ids) == 2 and ids[0]["id"] < ids[1]["id"]
    new_id = store.scalar("INSERT INTO docs (name) VALUES (?) RETURNING id", ("z",))
    assert new_id > ids[1]["id"]


def test_sql_errors_become_store_errors_naming_the_store(store):
    with pytest.raises(StoreError, match="store .*no_such_table|store .*does not exist"):
        store.fetchall("SELECT * FROM no_such_table")


def test_sqlite_file_is_private_and_one_file(tmp_path: Path):
    path = tmp_path / "results.db"
    old_umask = os.umask(0o022)
    try:
        store = open_store(str(path))
    finally:
        os.umask(old_umask)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert store.fetchone("PRAGMA journal_mode")["journal_mode"] == "wal"
        with store.transaction():
            store.execute("CREATE TABLE t (x INTEGER)")
        for side in ("results.db-wal", "results.db-shm"):
            side_path = tmp_path / side
            if side_path.exists():
                assert stat.S_IMODE(side_path.stat().st_mode) == 0o600, side
    finally:
        store.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.db"]


def test_sqlite_missing_directory_is_a_clear_error(tmp_path: Path):
    with pytest.raises(StoreError, match="does not exist"):
        open_store(str(tmp_path / "nope" / "x.db"))


def test_unreachable_postgres_names_url_without_password():
    url = "postgresql://alice:s3cret@127.0.0.1:1/test"
    with pytest.raises(SourceError) as caught:
        open_store(url)
    assert "s3cret" not in str(caught.value)
    assert "alice:***@127.0.0.1:1" in str(caught.value)
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"


def test_db_option_location_rule(monkeypatch, tmp_path):
    seen: list[str] = []

    @click.command()
    @db_option
    @click.pass_context
    def probe(ctx: click.Context, db: str | None) -> None:
        seen.append(resolve_url(ctx, db))

    class Obj:
        config = Config(store_url=str(tmp_path / "from-config.db"))

    runner = CliRunner()
    monkeypatch.delenv("TRIAL_CONNECTOR_DB", raising=False)
    runner.invoke(probe, [], obj=Obj())
    monkeypatch.setenv("TRIAL_CONNECTOR_DB", "env.db")
    runner.invoke(probe, [], obj=Obj())
    runner.invoke(probe, ["--db", "flag.db"], obj=Obj())
    monkeypatch.delenv("TRIAL_CONNECTOR_DB")
    Obj.config = Config()
    runner.invoke(probe, [], obj=Obj())
    assert seen == [str(tmp_path / "from-config.db"), "env.db", "flag.db", "trial-connector.db"]
