"""Registry tables: trials, their stored versions, id aliases, and incremental-sync state.

`trials.rescreen_after` is the marker scheduled runs read: any pre-screen result computed
before it is stale (set when a trial's eligibility text changes, or by `request_rescreen`).
"""

from __future__ import annotations

from connector.store.dialect import Dialect


def upgrade(d: Dialect) -> list[str]:
    return [
        d.ddl("""
        CREATE TABLE trials (
            nct_id               TEXT PRIMARY KEY,
            latest_version       INTEGER NOT NULL,
            content_sha256       TEXT NOT NULL,
            criteria_sha256      TEXT,
            criteria_version     INTEGER,
            criteria_changed_at  TEXT,
            changed_at           TEXT NOT NULL,
            rescreen_after       TEXT,
            last_update_posted   TEXT,
            last_checked_at      TEXT NOT NULL
        )"""),
        d.ddl("""
        CREATE TABLE trial_versions (
            id              {pk},
            nct_id          TEXT NOT NULL REFERENCES trials (nct_id),
            version         INTEGER NOT NULL,
            stored_at       TEXT NOT NULL,
            source          TEXT NOT NULL,
            content_sha256  TEXT NOT NULL,
            record          {json} NOT NULL,
            diff            {json},
            UNIQUE (nct_id, version)
        )"""),
        d.ddl("""
        CREATE TABLE trial_aliases (
            alias   TEXT PRIMARY KEY,
            nct_id  TEXT NOT NULL
        )"""),
        d.ddl("""
        CREATE TABLE registry_sync_state (
            sync_key         TEXT PRIMARY KEY,
            last_success_at  TEXT NOT NULL
        )"""),
    ]
