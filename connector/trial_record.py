"""Which registry text a screening checks its mapping against.

A mapping names the sha256 of the eligibility text it was written from. When the trial has
been synced into the store (`registry sync`), its newest stored record is the reference (the
sync itself marks earlier pre-screens for re-screening when the text changes); otherwise a
record given by file, or the one shipped with the bundled mappings (`examples/ctgov/<NCT>.json`
in the repository), is.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from connector.mapping import criteria_text_of, hash_mismatch_warning
from connector.mapping.coverage import mapping_coverage
from connector.mapping.model import Mapping
from connector.resources import bundled_record
from connector.store import Store, is_postgres_url, open_store
from connector.store.connect import sqlite_path

log = logging.getLogger(__name__)


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
    except (OSError, ValueError) as exc:
        log.warning("cannot read trial record %s (%s): criteria hash not checked", record_path, exc.__class__.__name__)
        return None
    return criteria_text_of(record) if isinstance(record, dict) else None


@dataclass(frozen=True)
class ReferenceText:
    """The registry eligibility text a mapping is checked against, and where it came from."""

    text: str | None  # None: that record has no eligibilityCriteria
    where: str


def reference_text(trial: str, stored_text: str | None, record_path: Path | None = None) -> ReferenceText | None:
    """The text synced in the store when there is one, else the given or bundled record file;
    None when there is nothing to check against."""
    if stored_text is not None:
        return ReferenceText(stored_text, "the registry record synced in the store")
    record_path = record_path or bundled_record(trial)
    if record_path is None:
        log.info("%s: no registry record to check the mapping against", trial)
        return None
    return ReferenceText(file_criteria_text(record_path), str(record_path))


def criteria_hash_warning(mapping: Mapping, mapping_name: str, stored_text: str | None,
                          record_path: Path | None = None) -> str | None:
    """A one-line warning when the mapping was written from other text than the trial's current one
    (see reference_text), else None."""
    reference = reference_text(mapping.trial, stored_text, record_path)
    if reference is None:
        return None
    if reference.text is None:
        return f"trial record {reference.where} has no eligibilityCriteria; criteria hash not checked"
    return hash_mismatch_warning(mapping.criteria_hash, mapping_name, reference.text, reference.where)


def coverage_warning(mapping: Mapping, mapping_name: str, reference: ReferenceText | None) -> str | None:
    """A one-line warning when the mapping leaves registry bullets unaccounted for, else None."""
    if reference is None or reference.text is None:
        return None
    coverage = mapping_coverage(mapping, reference.text)
    if coverage.complete:
        return None
    return (f"mapping {mapping_name} is partial: {coverage.summary()} in {reference.where}; the others are not "
            f"screened (trial-connector mappings check {mapping_name} lists them)")
