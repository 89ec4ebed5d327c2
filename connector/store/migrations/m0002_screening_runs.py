"""Scheduled pre-screen tables: runs, each patient's latest result per trial, status history,
and per-run progress (which patients a run has finished, so a killed run resumes exactly).

`patient_results.rescreen_on` is the first date on which the result may change with no new
data (a lab leaving its window, a birthday crossing an age limit): runs re-screen those.
"""

from __future__ import annotations

from connector.store.dialect import Dialect


def upgrade(d: Dialect) -> list[str]:
    return [
        d.ddl("""
        CREATE TABLE runs (
            id            {pk},
            trials        TEXT NOT NULL,
            source        TEXT NOT NULL,
            mode          TEXT NOT NULL,
            as_of         TEXT NOT NULL,
            since         TEXT,
            data_since    TEXT,
            started_at    TEXT NOT NULL,
            ended_at      TEXT,
            status        TEXT NOT NULL,
            planned       INTEGER,
            screened      INTEGER NOT NULL DEFAULT 0,
            candidates    INTEGER NOT NULL DEFAULT 0,
            possible      INTEGER NOT NULL DEFAULT 0,
            excluded      INTEGER NOT NULL DEFAULT 0,
            errors        INTEGER NOT NULL DEFAULT 0,
            new_count     INTEGER NOT NULL DEFAULT 0,
            error         TEXT,
            plan          {json}
        )"""),
        "CREATE INDEX runs_source_status ON runs (source, status)",
        d.ddl("""
        CREATE TABLE patient_results (
            trial          TEXT NOT NULL,
            patient_id     TEXT NOT NULL,
            status         TEXT NOT NULL,
            result         {json} NOT NULL,
            mapping_hash   TEXT NOT NULL,
            data_version   TEXT,
            as_of          TEXT NOT NULL,
            rescreen_on    TEXT,
            run_id         INTEGER NOT NULL REFERENCES runs (id),
            screened_at    TEXT NOT NULL,
            PRIMARY KEY (trial, patient_id)
        )"""),
        "CREATE INDEX patient_results_rescreen ON patient_results (trial, rescreen_on)",
        d.ddl("""
        CREATE TABLE status_history (
            id               {pk},
            trial            TEXT NOT NULL,
            patient_id       TEXT NOT NULL,
            run_id           INTEGER NOT NULL REFERENCES runs (id),
            status           TEXT NOT NULL,
            previous_status  TEXT,
            recorded_at      TEXT NOT NULL,
            UNIQUE (trial, patient_id, run_id)
        )"""),
        "CREATE INDEX status_history_run ON status_history (run_id, trial)",
        d.ddl("""
        CREATE TABLE patient_errors (
            trial       TEXT NOT NULL,
            patient_id  TEXT NOT NULL,
            run_id      INTEGER NOT NULL REFERENCES runs (id),
            message     TEXT NOT NULL,
            PRIMARY KEY (trial, patient_id)
        )"""),
        d.ddl("""
        CREATE TABLE run_progress (
            run_id      INTEGER NOT NULL REFERENCES runs (id),
            patient_id  TEXT NOT NULL,
            PRIMARY KEY (run_id, patient_id)
        )"""),
    ]
