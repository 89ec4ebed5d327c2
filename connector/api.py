"""The Python API, for notebooks and services; the command line is built on it.

    from connector import api

    trial = api.load_mapping("NCT05773274")                 # bundled, or mappings_dirs=[...] / file=...
    result = api.screen_patient(bundle, trial, as_of=date(2026, 11, 16))
    result.status                                           # "candidate" | "possible" | "excluded"
    [(c.id, c.outcome, c.reason) for c in result.criteria]  # met / not_met / unknown, with evidence

    report = api.screen_source("examples/patients", trial)  # a folder/file, server URL or configured name
    stored = api.read_results("NCT05773274", db="trial-connector.db")

Everything here takes and returns plain data: FHIR resources as dicts (a Bundle, a list of
resources, or one Patient resource), results as connector.results dataclasses whose `to_json()`
matches schemas/result.schema.json. Errors are ConnectorError subclasses with one-line messages.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from connector.config import Config, load_config
from connector.errors import ConnectorError, MappingError, ResourceError, ServerUnreachable
from connector.evaluation import evaluate_patient
from connector.mapping.catalog import MappingEntry, MappingSources, load_resolved, mapping_entry
from connector.mapping.model import Mapping
from connector.mapping.needs import data_needs
from connector.parse import facts_from_resources
from connector.registry.ids import normalise_nct_id
from connector.results import PatientResult, ScreenReport

__all__ = ["ScreenOutcome", "TrialMapping", "load_mapping", "read_results", "screen_patient", "screen_resources",
           "screen_source"]


@dataclass(frozen=True)
class TrialMapping:
    """A validated mapping and the file it came from (name, source kind, SHA-256 of its bytes)."""

    entry: MappingEntry
    mapping: Mapping

    @property
    def trial(self) -> str:
        return self.mapping.trial

    @property
    def file(self) -> str:
        return self.entry.name

    @property
    def sha256(self) -> str:
        return self.entry.sha256

    def new_report(self, as_of: date) -> ScreenReport:
        return ScreenReport(self.trial, self.file, self.mapping.criteria_hash, as_of, mapping_sha256=self.sha256,
                            mapping_status=self.mapping.status)


@dataclass
class ScreenOutcome:
    """A screening of many patients: the report, plus what could not be screened (never raised)."""

    report: ScreenReport
    patient_errors: list[tuple[str, str]] = field(default_factory=list)  # (patient id, message)
    source_errors: list[str] = field(default_factory=list)  # unreadable files, resources without a patient
    source_name: str = "the resources given"  # e.g. "files under examples/patients", "FHIR server hospital"


def load_mapping(trial: str | None = None, *, file: str | Path | None = None,
                 mappings_dirs: Iterable[str | Path] = (), config: Config | None = None,
                 sources: MappingSources | None = None) -> TrialMapping:
    """The mapping that screens `trial` (see connector.mapping.catalog for the search order), or
    the mapping in `file` when no trial is given."""
    if sources is None:
        sources = MappingSources.of([file] if file else [], mappings_dirs, config)
    if trial is None:
        if file is None:
            raise ConnectorError("give a trial id or a mapping file")
        entry = mapping_entry(Path(file))
        if entry.problem or entry.trial is None:  # mapping_entry names the problem whenever it finds no trial
            raise MappingError(entry.problem or f"{file}: no trial id")
        trial = entry.trial
    entry, mapping = load_resolved(normalise_nct_id(trial), sources)
    return TrialMapping(entry, mapping)


def screen_patient(data: dict[str, Any] | list[dict[str, Any]], trial: TrialMapping, *,
                   as_of: date | None = None, site_country: str = "US") -> PatientResult:
    """Screen the one patient in `data`: a Bundle, a list of resources, or a bare Patient resource.

    Raises ResourceError when `data` holds no patient or several (use screen_resources then).
    """
    resources = _resources(data)
    patients, _ = facts_from_resources(resources)
    if len(patients) != 1:
        raise ResourceError(f"expected one patient's resources, found {len(patients)} patients")
    return evaluate_patient(trial.mapping, patients[0], as_of or date.today(), site_country.upper())


def screen_resources(data: dict[str, Any] | list[dict[str, Any]], trial: TrialMapping, *,
                     as_of: date | None = None, site_country: str = "US") -> ScreenOutcome:
    """Screen every patient in a Bundle or list of resources."""
    screening_date = as_of or date.today()
    patients, errors = facts_from_resources(_resources(data))
    outcome = ScreenOutcome(trial.new_report(screening_date), source_errors=errors)
    for facts in sorted(patients, key=lambda f: f.patient_id):
        outcome.report.patients.append(evaluate_patient(trial.mapping, facts, screening_date, site_country.upper()))
    return outcome


def screen_source(source: str | Path, trial: TrialMapping, *, patient_ids: Iterable[str] | None = None,
                  as_of: date | None = None, site_country: str = "US", config: Config | None = None) -> ScreenOutcome:
    """Screen patients from local FHIR files (a folder or file), a FHIR base URL or a configured
    server name (a server needs `patient_ids`). One unreadable patient is recorded, not raised."""
    from connector.sources import open_source  # the source layer pulls in HTTP only when needed

    screening_date = as_of or date.today()
    opened = open_source(str(source), config or load_config(None))
    ids = list(patient_ids or [])
    if not opened.is_local and not ids:
        raise ConnectorError(f"{opened.describe()}: give patient ids (whole server populations are screened "
                             "by the scheduled run, not by screen)")
    outcome = ScreenOutcome(trial.new_report(screening_date), source_errors=opened.errors,
                            source_name=opened.describe())
    try:
        connect = getattr(opened, "connect", None)
        if connect is not None:
            connect()  # a server that does not answer fails here, once (exit 2)
        for patient_id, item in opened.iter_facts(data_needs(trial.mapping, screening_date), ids or None):
            if isinstance(item, ServerUnreachable):
                raise item  # every further patient would fail the same way
            if isinstance(item, ConnectorError):
                outcome.patient_errors.append((patient_id, str(item)))
                continue
            try:
                outcome.report.patients.append(
                    evaluate_patient(trial.mapping, item, screening_date, site_country.upper()))
            except Exception as exc:  # noqa: BLE001 - one patient's data never sinks the others
                reason = str(exc) if isinstance(exc, ConnectorError) else f"unexpected {exc.__class__.__name__}"
                outcome.patient_errors.append((patient_id, reason))
    finally:
        close = getattr(opened, "close", None)
        if close is not None:
            close()
    return outcome


def read_results(trial: str, *, db: str | None = None, status: str | None = None,
                 config: Config | None = None) -> list[PatientResult]:
    """The latest stored result per patient for a trial (`db`: SQLite path or postgresql:// URL;
    default as on the command line). Raises StoreError when the store does not exist."""
    from connector.config import resolve_store_url
    from connector.scheduled import records
    from connector.store import open_existing_store

    with open_existing_store(resolve_store_url(db, config or load_config(None))) as store:
        rows = records.latest_results(store, normalise_nct_id(trial), status)
    return [PatientResult.from_json(r["result"]) for r in rows]


def _resources(data: dict[str, Any] | list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and data.get("resourceType") == "Bundle":
        return [e["resource"] for e in data.get("entry") or [] if isinstance(e, dict) and isinstance(
            e.get("resource"), dict)]
    if isinstance(data, dict):
        return [data]
    raise ResourceError(f"expected a FHIR Bundle, a resource or a list of resources, got {type(data).__name__}")
