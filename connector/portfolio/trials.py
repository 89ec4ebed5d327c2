"""The site's portfolio: every available mapping is a trial it screens, minus those it should not.

A trial is skipped with a note when its registry record (synced into the store, else the
record bundled with the mapping) says it is not recruiting, or when its mapping is a draft,
unless the user asks for them. A trial with no registry record at all is screened (and says so).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connector.errors import ConnectorError
from connector.mapping.catalog import MappingEntry, MappingSources, available_mappings
from connector.mapping.loader import load_mapping
from connector.mapping.model import Mapping
from connector.resources import bundled_record
from connector.store import is_postgres_url, open_store
from connector.store.connect import sqlite_path

log = logging.getLogger(__name__)

RECRUITING = frozenset({"RECRUITING", "ENROLLING_BY_INVITATION"})


@dataclass(frozen=True)
class PortfolioTrial:
    entry: MappingEntry
    mapping: Mapping
    record: dict[str, Any] | None  # normalised registry record (schemas/trial.schema.json), if any

    @property
    def trial(self) -> str:
        return self.mapping.trial

    @property
    def registry_status(self) -> str | None:
        return self.record.get("overall_status") if self.record else None


@dataclass(frozen=True)
class Skipped:
    trial: str
    note: str

    def to_json(self) -> dict[str, str]:
        return {"trial": self.trial, "note": self.note}


def select_trials(sources: MappingSources, store_url: str | None, include_not_recruiting: bool = False,
                  allow_draft: bool = False) -> tuple[list[PortfolioTrial], list[Skipped]]:
    """(trials to screen in trial-id order, trials skipped with why)."""
    chosen: dict[str, PortfolioTrial] = {}
    skipped: list[Skipped] = []
    records = _StoredRecords(store_url)
    try:
        seen: set[str] = set()
        for entry in available_mappings(sources):
            if entry.trial is None:
                skipped.append(Skipped(entry.name, entry.problem or "no trial id"))
                continue
            if entry.trial in seen:
                continue  # shadowed by the same trial in an earlier source
            seen.add(entry.trial)
            if entry.problem:
                skipped.append(Skipped(entry.trial, entry.problem))
                continue
            try:
                mapping = load_mapping(entry.path)
            except ConnectorError as exc:
                skipped.append(Skipped(entry.trial, str(exc)))
                continue
            if getattr(mapping, "status", None) == "draft" and not allow_draft:
                skipped.append(Skipped(entry.trial, f"{entry.name} is a draft mapping (--allow-draft screens it)"))
                continue
            record = records.get(entry.trial)
            status = record.get("overall_status") if record else None
            if status is not None and status not in RECRUITING and not include_not_recruiting:
                skipped.append(Skipped(entry.trial, f"registry status {status} (--include-not-recruiting screens it)"))
                continue
            chosen[entry.trial] = PortfolioTrial(entry, mapping, record)
    finally:
        records.close()
    return [chosen[t] for t in sorted(chosen)], skipped


class _StoredRecords:
    """Registry records: synced in the store (never creating one), else bundled with trial-connector."""

    def __init__(self, store_url: str | None):
        self.store = None
        if store_url and (is_postgres_url(store_url) or Path(sqlite_path(store_url)).exists()):
            self.store = open_store(store_url)

    def get(self, trial: str) -> dict[str, Any] | None:
        if self.store is not None:
            from connector.registry.versions import latest_trial_record

            record = latest_trial_record(self.store, trial)
            if record:
                return record
        path = bundled_record(trial)
        if path is None:
            return None
        from connector.registry.normalise import normalise_study

        try:
            return normalise_study(json.loads(path.read_text(encoding="utf-8")), validate=False)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("bundled record of %s unreadable (%s): recruitment status unknown", trial, type(exc).__name__)
            return None

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
