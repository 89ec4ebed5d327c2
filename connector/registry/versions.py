"""Trial versions in the store: a new version only when the study itself changed.

"Changed" means its `protocolSection` or its results presence differ (a sha256 over both);
`derivedSection` (MeSH browse data) and `versionHolder` drift on every registry refresh and are
ignored, so a nightly refresh of an unchanged trial stores nothing new.

For scheduled pre-screens (issue 4) each `trials` row carries the markers a run reads:
- `latest_version`, `changed_at`: the newest stored version and when it was stored;
- `criteria_sha256`, `criteria_version`, `criteria_changed_at`: the current eligibility text's
  hash, and the version/time at which that text first appeared;
- `rescreen_after`: any pre-screen result computed before this timestamp is stale and the
  patient must be re-screened. Set automatically when a new version changes the eligibility
  text, and by `request_rescreen` (e.g. when a mapping's criteria_hash no longer matches).
Read them with `trial_state(store, nct_id)`; timestamps are ISO-8601 UTC text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connector.jsontext import canonical
from connector.registry.diff import record_diff
from connector.registry.ids import InvalidNctId, normalise_nct_id
from connector.store import Store, utc_now


@dataclass
class SaveOutcome:
    nct_id: str
    status: str  # "new" | "changed" | "unchanged"
    version: int
    diff: list[dict[str, Any]] = field(default_factory=list)
    criteria_changed: bool = False


@dataclass
class TrialVersion:
    nct_id: str
    version: int
    stored_at: str
    source: str
    record: dict[str, Any]
    diff: list[dict[str, Any]]


@dataclass
class TrialState:
    nct_id: str
    latest_version: int
    changed_at: str
    criteria_sha256: str | None
    criteria_version: int | None
    criteria_changed_at: str | None
    rescreen_after: str | None
    last_update_posted: str | None
    last_checked_at: str


def content_sha256(record: Mapping[str, Any]) -> str:
    """What a version is: the raw protocolSection plus whether results are posted."""
    payload = {"protocolSection": record.get("protocol_section") or {}, "hasResults": bool(record.get("has_results"))}
    text = canonical(payload)  # orjson, same bytes as json.dumps(sort_keys=True): hashes stored before still match
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def save_study(store: Store, study: Mapping[str, Any], *, source: str, aliases: Iterable[str] = (),
               now: str | None = None) -> SaveOutcome:
    """Normalise + validate an API study (raises InvalidStudy) and store it if it changed."""
    from connector.registry.normalise import normalise_study  # here: jsonschema (~40 ms) only to save studies

    return save_record(store, normalise_study(study), source=source, aliases=aliases, now=now)


def save_record(store: Store, record: dict[str, Any], *, source: str, aliases: Iterable[str] = (),
                now: str | None = None) -> SaveOutcome:
    """Store `record` as a new version unless its content equals the latest stored one."""
    now = now or utc_now()
    nct_id = record["nct_id"]
    digest = content_sha256(record)
    criteria = record.get("eligibility_criteria_sha256")
    with store.transaction():
        _lock_trial(store, nct_id)
        state = store.fetchone(
            "SELECT latest_version, content_sha256, criteria_sha256 FROM trials WHERE nct_id = ?", (nct_id,))
        _save_aliases(store, nct_id, [*record.get("nct_id_aliases", []), *aliases])
        if state is not None and state["content_sha256"] == digest:
            store.execute("UPDATE trials SET last_checked_at = ? WHERE nct_id = ?", (now, nct_id))
            return SaveOutcome(nct_id, "unchanged", state["latest_version"])
        if state is None:
            version, diff, criteria_changed = 1, [], False
        else:
            previous = latest_trial_record(store, nct_id)
            version = state["latest_version"] + 1
            diff = record_diff(previous or {}, record)
            criteria_changed = state["criteria_sha256"] != criteria
        _upsert_trial(store, record, version, digest, now, first=state is None, criteria_changed=criteria_changed)
        store.execute(
            "INSERT INTO trial_versions (nct_id, version, stored_at, source, content_sha256, record, diff)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (nct_id, version, now, source, digest, store.json(record), store.json(diff)),
        )
    return SaveOutcome(nct_id, "new" if state is None else "changed", version, diff, criteria_changed)


def _lock_trial(store: Store, nct_id: str) -> None:
    """Two syncs storing the same trial take turns (SQLite: BEGIN IMMEDIATE already does)."""
    if store.dialect.name == "postgresql":
        store.execute("SELECT pg_advisory_xact_lock(hashtext('trial-connector:trial:' || ?))", (nct_id,))


def _upsert_trial(store: Store, record: dict[str, Any], version: int, digest: str, now: str, *, first: bool,
                  criteria_changed: bool) -> None:
    nct_id = record["nct_id"]
    criteria = record.get("eligibility_criteria_sha256")
    posted = record.get("last_update_posted")
    if first:
        store.execute(
            "INSERT INTO trials (nct_id, latest_version, content_sha256, criteria_sha256, criteria_version,"
            " criteria_changed_at, changed_at, rescreen_after, last_update_posted, last_checked_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
            (nct_id, version, digest, criteria, version, now, now, posted, now),
        )
        return
    store.execute(
        "UPDATE trials SET latest_version = ?, content_sha256 = ?, changed_at = ?, last_update_posted = ?,"
        " last_checked_at = ? WHERE nct_id = ?",
        (version, digest, now, posted, now, nct_id),
    )
    if criteria_changed:
        store.execute(
            "UPDATE trials SET criteria_sha256 = ?, criteria_version = ?, criteria_changed_at = ?,"
            " rescreen_after = ? WHERE nct_id = ?",
            (criteria, version, now, now, nct_id),
        )


def _save_aliases(store: Store, nct_id: str, aliases: Iterable[str]) -> None:
    sql = store.dialect.upsert("trial_aliases", ["alias", "nct_id"], key=["alias"])
    for alias in aliases:
        try:
            alias = normalise_nct_id(alias)
        except InvalidNctId:
            continue
        if alias != nct_id:
            store.execute(sql, (alias, nct_id))


# -- reading ----------------------------------------------------------------------------------


def resolve_nct_id(store: Store, nct_id: str) -> str:
    """The stored trial an id means: itself, or the study an alias id redirects to."""
    nct_id = normalise_nct_id(nct_id)
    target = store.scalar("SELECT nct_id FROM trial_aliases WHERE alias = ?", (nct_id,))
    return target or nct_id


def latest_trial_record(store: Store, nct_id: str) -> dict[str, Any] | None:
    """The newest stored record (schemas/trial.schema.json) of a trial, or None if never synced.

    The criteria engine compares `record["eligibility_criteria_sha256"]` with a mapping's
    `criteria_hash` to warn when the registry text moved on.
    """
    row = store.fetchone(
        "SELECT v.record FROM trial_versions v JOIN trials t ON t.nct_id = v.nct_id AND t.latest_version = v.version"
        " WHERE t.nct_id = ?",
        (resolve_nct_id(store, nct_id),),
    )
    return store.from_json(row["record"]) if row else None


def trial_versions(store: Store, nct_id: str, since: str | None = None) -> list[TrialVersion]:
    """Stored versions, oldest first; `since` (a date or timestamp) keeps those stored from then on."""
    nct_id = resolve_nct_id(store, nct_id)
    sql = "SELECT nct_id, version, stored_at, source, record, diff FROM trial_versions WHERE nct_id = ?"
    params: list[Any] = [nct_id]
    if since:
        sql += " AND stored_at >= ?"
        params.append(since)
    rows = store.fetchall(sql + " ORDER BY version", params)
    return [
        TrialVersion(r["nct_id"], r["version"], r["stored_at"], r["source"], store.from_json(r["record"]),
                     store.from_json(r["diff"]) or [])
        for r in rows
    ]


def trial_state(store: Store, nct_id: str) -> TrialState | None:
    """The change markers of a trial (see the module docstring), or None if never synced."""
    row = store.fetchone(
        "SELECT nct_id, latest_version, changed_at, criteria_sha256, criteria_version, criteria_changed_at,"
        " rescreen_after, last_update_posted, last_checked_at FROM trials WHERE nct_id = ?",
        (resolve_nct_id(store, nct_id),),
    )
    return TrialState(**row) if row else None


def known_trial_ids(store: Store) -> list[str]:
    return [r["nct_id"] for r in store.fetchall("SELECT nct_id FROM trials ORDER BY nct_id")]


def request_rescreen(store: Store, nct_id: str, at: str | None = None) -> bool:
    """Mark every pre-screen of this trial computed before `at` (default now) as stale.

    Returns False when the trial was never synced (nothing to mark). Never moves the marker back.
    """
    at = at or utc_now()
    with store.transaction():
        cursor = store.execute(
            "UPDATE trials SET rescreen_after = ? WHERE nct_id = ? AND (rescreen_after IS NULL OR rescreen_after < ?)",
            (at, resolve_nct_id(store, nct_id), at),
        )
        updated = cursor.rowcount
    return bool(updated) or trial_state(store, nct_id) is not None
