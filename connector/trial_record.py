"""Which registry text a screening checks its mapping against.

A mapping names the sha256 of the eligibility text it was written from. When the trial has
been synced into the store (`registry sync`), its newest stored record is the reference (the
sync itself marks earlier pre-screens for re-screening when the text changes); otherwise a
record given by file, or the bundled `examples/ctgov/<NCT>.json`, is.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from connector.mapping import criteria_text_of, hash_mismatch_warning
from connector.mapping.loader import REPO_ROOT
from connector.mapping.model import Mapping
from connector.store import Store, is_postgres_url, open_store
from connector.store.connect import sqlite_path

log = logging.getLogger(__name__)


def bundled_trial_record(trial: str) -> Path | None:
    """The bundled registry record `examples/ctgov/<NCT>.json` (working directory, then repo)."""
    for base in (Path.cwd(), REPO_ROOT):
        candidate = base / "examples" / "ctgov" / f"{trial}.json"
        if candidate.is_file():
            return candidate
    return None


def stored_criteria_text(store: Store, trial: str) -> str | None:
    """The synced trial's current eligibility text, or None when it was never synced."""
    from connector.registry.versions import latest_trial_record

    record = latest_trial_record(store, trial)
    return record.get("eligibility_criteria") if record else None


def stored_criteria_text_at(store_url: str, trial: str) -> str | None:
    """As stored_criteria_text, for a command that has no store open.

    Never creates a store: screening a few patients must not leave a database behind.
    """
    if not is_postgres_url(store_url) and not Path(sqlite_path(store_url)).exists():
        return None
    store = open_store(store_url)
    try:
        return stored_criteria_text(store, trial)
    finally:
        store.close()


def file_criteria_text(record_path: Path) -> str | None:
    """The eligibility text of a saved CT.gov API v2 record; unreadable files are logged and skipped."""
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        log.warning("cannot read trial record %s (%s): criteria hash not checked", record_path, exc.__class__.__name__)
        return None
    return criteria_text_of(record) if isinstance(record, dict) else None


def criteria_hash_warning(mapping: Mapping, mapping_name: str, stored_text: str | None,
                          record_path: Path | None = None) -> str | None:
    """A one-line warning when the mapping was written from other text than the trial's current one:
    the text synced in the store when there is one, else the given or bundled record file."""
    text = stored_text
    where = "the registry record synced in the store"
    if text is None:
        record_path = record_path or bundled_trial_record(mapping.trial)
        if record_path is None:
            log.info("%s: no registry record to check the criteria hash against", mapping.trial)
            return None
        text, where = file_criteria_text(record_path), str(record_path)
        if text is None:
            return f"trial record {record_path} has no eligibilityCriteria; criteria hash not checked"
    return hash_mismatch_warning(mapping.criteria_hash, mapping_name, text, where)
