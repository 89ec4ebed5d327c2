"""Runs, latest results, status history and per-run progress in the store (migration 0002).

Everything one patient's screening writes (its result per trial, history, errors, the run's
counters and the "done" mark) goes in one transaction, so a killed run loses at most the
patient in flight and a resumed run neither repeats nor skips anyone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connector.results import CANDIDATE, EXCLUDED, POSSIBLE, PatientResult
from connector.store import Store, format_timestamp, utc_now

RUNNING, DONE, PARTIAL, FAILED, ABANDONED = "running", "done", "partial", "failed", "abandoned"
SUCCEEDED = (DONE, PARTIAL)


@dataclass(frozen=True)
class RunRow:
    id: int
    trials: tuple[str, ...]
    source: str
    mode: str
    as_of: str
    since: str | None
    data_since: str | None
    started_at: str
    ended_at: str | None
    status: str
    planned: int | None
    screened: int
    candidates: int
    possible: int
    excluded: int
    errors: int
    new_count: int
    error: str | None
    plan: Any

    @classmethod
    def from_row(cls, store: Store, row: dict[str, Any]) -> "RunRow":
        values = dict(row)
        values["trials"] = tuple(values["trials"].split(","))
        values["plan"] = store.from_json(values["plan"]) if values["plan"] is not None else None
        return cls(**values)


@dataclass(frozen=True)
class TrialOutcome:
    """One patient's result for one trial, with what it was computed from."""

    trial: str
    result: PatientResult
    mapping_hash: str
    data_version: str | None
    as_of: str
    rescreen_on: str | None


_RUN_COLUMNS = ("id, trials, source, mode, as_of, since, data_since, started_at, ended_at, status, planned, screened,"
                " candidates, possible, excluded, errors, new_count, error, plan")


def start_run(store: Store, trials: list[str], source: str, mode: str, as_of: str, since: str | None,
              plan: Any) -> int:
    with store.transaction():
        row = store.fetchone(
            "INSERT INTO runs (trials, source, mode, as_of, since, started_at, status, plan, planned)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (",".join(trials), source, mode, as_of, since, utc_now(), RUNNING, store.json(plan),
             len(plan["ids"]) if isinstance(plan, dict) and plan.get("ids") is not None else None))
    assert row is not None
    return int(row["id"])


def get_run(store: Store, run_id: int) -> RunRow | None:
    row = store.fetchone(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,))
    return RunRow.from_row(store, row) if row else None


def interrupted_runs(store: Store) -> list[RunRow]:
    """Runs still marked running: with the run lock held, these were killed mid-way."""
    rows = store.fetchall(f"SELECT {_RUN_COLUMNS} FROM runs WHERE status = ? ORDER BY id", (RUNNING,))
    return [RunRow.from_row(store, r) for r in rows]


def last_successful_run(store: Store, source: str, trial: str) -> RunRow | None:
    """The newest finished run of `trial` on `source` (done, or done with per-patient errors)."""
    rows = store.fetchall(
        f"SELECT {_RUN_COLUMNS} FROM runs WHERE source = ? AND status IN (?, ?) ORDER BY id DESC",
        (source, *SUCCEEDED))
    for row in rows:
        if trial in row["trials"].split(","):
            return RunRow.from_row(store, row)
    return None


def last_population(store: Store, source: str, trials: list[str]) -> int:
    """How many patients the newest finished full run of any of `trials` on `source` read (0: none)."""
    rows = store.fetchall("SELECT trials, screened, errors, plan FROM runs WHERE source = ? AND mode = 'full'"
                          " AND status IN (?, ?) ORDER BY id DESC", (source, *SUCCEEDED))
    for row in rows:
        plan = store.from_json(row["plan"]) if row["plan"] is not None else {}
        if set(row["trials"].split(",")) & set(trials) and (plan or {}).get("ids") is None:
            return int(row["screened"]) + int(row["errors"])
    return 0


def latest_run_of_trial(store: Store, trial: str) -> RunRow | None:
    """The newest run (of any source) that screened `trial` and finished."""
    for row in store.fetchall(f"SELECT {_RUN_COLUMNS} FROM runs WHERE status IN (?, ?) ORDER BY id DESC",
                              SUCCEEDED):
        if trial in row["trials"].split(","):
            return RunRow.from_row(store, row)
    return None


def set_data_since(store: Store, run_id: int, data_since: str) -> None:
    """Record the source's clock at the start of reading (kept if already set: resumed runs)."""
    data_since = format_timestamp(datetime.fromisoformat(data_since.replace("Z", "+00:00")))
    with store.transaction():
        store.execute("UPDATE runs SET data_since = ? WHERE id = ? AND data_since IS NULL", (data_since, run_id))


def set_planned(store: Store, run_id: int, planned: int) -> None:
    with store.transaction():
        store.execute("UPDATE runs SET planned = ? WHERE id = ?", (planned, run_id))


def finish_run(store: Store, run_id: int, status: str, error: str | None = None) -> RunRow:
    with store.transaction():
        store.execute("UPDATE runs SET status = ?, ended_at = ?, error = ? WHERE id = ?",
                      (status, utc_now(), error, run_id))
    run = get_run(store, run_id)
    assert run is not None
    return run


def done_patients(store: Store, run_id: int) -> set[str]:
    return {r["patient_id"] for r in store.fetchall("SELECT patient_id FROM run_progress WHERE run_id = ?", (run_id,))}


def save_patient(store: Store, run_id: int, patient_id: str, outcomes: list[TrialOutcome]) -> int:
    """Store one patient's results for every trial of the run; returns how many are new
    (first result, or a status other than the last one)."""
    new = 0
    counts = {CANDIDATE: 0, POSSIBLE: 0, EXCLUDED: 0}
    now = utc_now()
    with store.transaction():
        for outcome in outcomes:
            previous = store.scalar("SELECT status FROM patient_results WHERE trial = ? AND patient_id = ?",
                                    (outcome.trial, patient_id))
            status = outcome.result.status
            counts[status] = counts.get(status, 0) + 1
            new += int(previous != status)
            store.execute(store.dialect.upsert(
                "patient_results",
                ["trial", "patient_id", "status", "result", "mapping_hash", "data_version", "as_of", "rescreen_on",
                 "run_id", "screened_at"], ["trial", "patient_id"]),
                (outcome.trial, patient_id, status, store.json(outcome.result.to_json()), outcome.mapping_hash,
                 outcome.data_version, outcome.as_of, outcome.rescreen_on, run_id, now))
            store.execute(store.dialect.upsert(
                "status_history", ["trial", "patient_id", "run_id", "status", "previous_status", "recorded_at"],
                ["trial", "patient_id", "run_id"], update=["status", "recorded_at"]),
                (outcome.trial, patient_id, run_id, status, previous, now))
            store.execute("DELETE FROM patient_errors WHERE trial = ? AND patient_id = ?", (outcome.trial, patient_id))
        _mark_done(store, run_id, patient_id)
        store.execute(
            "UPDATE runs SET screened = screened + 1, candidates = candidates + ?, possible = possible + ?,"
            " excluded = excluded + ?, new_count = new_count + ? WHERE id = ?",
            (counts[CANDIDATE], counts[POSSIBLE], counts[EXCLUDED], new, run_id))
    return new


def save_patient_error(store: Store, run_id: int, patient_id: str, trials: list[str], message: str) -> None:
    """Record why a patient could not be screened; its previous results stay as they were."""
    with store.transaction():
        for trial in trials:
            store.execute(store.dialect.upsert("patient_errors", ["trial", "patient_id", "run_id", "message"],
                                               ["trial", "patient_id"]), (trial, patient_id, run_id, message))
        _mark_done(store, run_id, patient_id)
        store.execute("UPDATE runs SET errors = errors + 1 WHERE id = ?", (run_id,))


def _mark_done(store: Store, run_id: int, patient_id: str) -> None:
    store.execute(store.dialect.upsert("run_progress", ["run_id", "patient_id"], ["run_id", "patient_id"], update=[]),
                  (run_id, patient_id))


def run_errors(store: Store, run_id: int, limit: int = 20) -> list[tuple[str, str]]:
    rows = store.fetchall("SELECT DISTINCT patient_id, message FROM patient_errors WHERE run_id = ?"
                          " ORDER BY patient_id LIMIT ?", (run_id, limit))
    return [(r["patient_id"], r["message"]) for r in rows]


def errored_patients(store: Store, trial: str, source: str | None = None) -> set[str]:
    """Patients whose last attempt failed (on `source`, when given)."""
    sql = "SELECT e.patient_id FROM patient_errors e JOIN runs r ON r.id = e.run_id WHERE e.trial = ?"
    rows = store.fetchall(sql + " AND r.source = ?", (trial, source)) if source else store.fetchall(sql, (trial,))
    return {r["patient_id"] for r in rows}


def due_patients(store: Store, trial: str, as_of: str, source: str | None = None) -> set[str]:
    """Patients whose stored result may have changed by `as_of` with no new data (time windows)."""
    sql = ("SELECT p.patient_id FROM patient_results p JOIN runs r ON r.id = p.run_id"
           " WHERE p.trial = ? AND p.rescreen_on <= ?")
    params: tuple[str, ...] = (trial, as_of)
    if source:
        sql += " AND r.source = ?"
        params += (source,)
    return {r["patient_id"] for r in store.fetchall(sql, params)}


def stale_mapping(store: Store, trial: str, mapping_hash: str) -> bool:
    """Whether any stored result of `trial` was computed with another mapping."""
    return store.fetchone("SELECT 1 AS x FROM patient_results WHERE trial = ? AND mapping_hash <> ? LIMIT 1",
                          (trial, mapping_hash)) is not None


def stored_versions(store: Store, trial: str) -> dict[str, tuple[str | None, str, str | None]]:
    """patient id -> (data version, mapping hash, rescreen_on) of the stored results."""
    rows = store.fetchall("SELECT patient_id, data_version, mapping_hash, rescreen_on FROM patient_results"
                          " WHERE trial = ?", (trial,))
    return {r["patient_id"]: (r["data_version"], r["mapping_hash"], r["rescreen_on"]) for r in rows}


def latest_results(store: Store, trial: str, status: str | None = None,
                   patient_ids: set[str] | None = None) -> list[dict[str, Any]]:
    """The latest stored result rows of a trial (ordered by patient id), optionally filtered."""
    sql = ("SELECT patient_id, status, result, mapping_hash, data_version, as_of, run_id, screened_at"
           " FROM patient_results WHERE trial = ?")
    params: list[Any] = [trial]
    if status:
        sql += " AND status = ?"
        params.append(status)
    rows = store.fetchall(sql + " ORDER BY patient_id", params)
    if patient_ids is not None:
        rows = [r for r in rows if r["patient_id"] in patient_ids]
    for row in rows:
        row["result"] = store.from_json(row["result"])
    return rows


def changed_in_run(store: Store, trial: str, run_id: int) -> set[str]:
    """Patients whose status for `trial` first appeared or changed in run `run_id`."""
    rows = store.fetchall(
        "SELECT patient_id FROM status_history WHERE trial = ? AND run_id = ?"
        " AND (previous_status IS NULL OR previous_status <> status)", (trial, run_id))
    return {r["patient_id"] for r in rows}


def patient_history(store: Store, trial: str, patient_id: str) -> list[dict[str, Any]]:
    return store.fetchall(
        "SELECT h.run_id, h.status, h.previous_status, h.recorded_at, r.as_of, r.mode FROM status_history h"
        " JOIN runs r ON r.id = h.run_id WHERE h.trial = ? AND h.patient_id = ? ORDER BY h.run_id",
        (trial, patient_id))
