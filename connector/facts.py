"""The small internal model of the clinical facts that eligibility criteria read.

Sources (FHIR REST, Bulk NDJSON, local files) turn raw resources into these facts once;
the criteria engine reads only these. Keeping them small and plain (no full FHIR model)
is what makes screening a large population cheap: only what the criteria need is kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connector.needs import DataNeeds


@dataclass(frozen=True)
class Coding:
    """One code from a CodeableConcept (system may be absent in local EHR codes)."""

    system: str | None
    code: str | None
    display: str | None = None


@dataclass(frozen=True)
class Quantity:
    """A measured amount; `unit` is the UCUM code when the resource gave one, else its text unit."""

    value: float
    unit: str | None
    is_ucum: bool = False
    comparator: str | None = None  # "<", "<=", ">=", ">" as sent for values beyond a lab's range


@dataclass(frozen=True)
class Moment:
    """When something happened, as the span of UTC instants its FHIR value allows.

    `2026-11-10T08:15:00+01:00` is one instant (earliest == latest); a date without a time
    (`2026-11-10`) is the whole day, so it can be compared with a timed value on that day
    without pretending to know which came first.
    """

    earliest: datetime
    latest: datetime


@dataclass(frozen=True)
class ReferenceRange:
    """One Observation.referenceRange: bounds plus whom it applies to (sex, age in years)."""

    low: Quantity | None = None
    high: Quantity | None = None
    type_codes: tuple["Coding", ...] = ()
    applies_to: tuple["Coding", ...] = ()
    age_low: float | None = None  # years
    age_high: float | None = None  # years


@dataclass(frozen=True)
class SourceRef:
    """Where a fact came from: the evidence reference shown to reviewers."""

    resource_type: str
    id: str
    version: str | None = None

    @property
    def reference(self) -> str:
        base = f"{self.resource_type}/{self.id}"
        return f"{base}/_history/{self.version}" if self.version else base


@dataclass(frozen=True)
class ObservationFact:
    source: SourceRef
    status: str | None
    codes: tuple[Coding, ...]
    effective: date | None
    quantity: Quantity | None = None
    value_codes: tuple[Coding, ...] = ()
    value_text: str | None = None
    reference_high: Quantity | None = None  # of the first range (reference_ranges has them all)
    reference_low: Quantity | None = None
    moment: Moment | None = None  # the instant(s) `effective` stands for, to find the latest result
    interpretation: tuple[Coding, ...] = ()
    reference_ranges: tuple[ReferenceRange, ...] = ()


@dataclass(frozen=True)
class ConditionFact:
    source: SourceRef
    codes: tuple[Coding, ...]
    clinical_status: str | None
    verification_status: str | None
    onset: date | None
    recorded: date | None
    text: str | None = None
    body_sites: tuple[Coding, ...] = ()


@dataclass(frozen=True)
class MedicationFact:
    """One medication event from MedicationStatement, MedicationRequest or MedicationAdministration.

    `kind` says which: the engine counts administrations from MedicationAdministration (or
    statements/requests when that is all an EHR offers).
    """

    source: SourceRef
    kind: str  # "statement" | "request" | "administration"
    status: str | None
    codes: tuple[Coding, ...]
    names: tuple[str, ...]  # text and displays, for case-insensitive name matching
    effective: date | None
    dose: Quantity | None = None


@dataclass
class PatientFacts:
    """Everything known about one patient that the criteria can read.

    `errors` lists resources that could not be read (reference and reason, never PHI values);
    they are reported with the patient's result and the rest of the data still counts.
    """

    patient_id: str
    birth_date: date | None = None  # the earliest day a partial birthDate ("1960", "1960-05") allows
    birth_date_latest: date | None = None  # the latest such day (None: same as birth_date)
    gender: str | None = None
    source: SourceRef | None = None
    observations: list[ObservationFact] = field(default_factory=list)
    conditions: list[ConditionFact] = field(default_factory=list)
    medications: list[MedicationFact] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    deceased: bool = False
    deceased_on: date | None = None  # deceasedDateTime's date as recorded, when given
    last_updated: str | None = None  # newest meta.lastUpdated seen
    # Digest of what the patient's record holds (ids + versions, or file content): equal digests
    # mean the record did not change, so an incremental run may keep the stored result.
    data_version: str | None = None
    # "Type/id" of resources that came in conflicting copies (connector.versions), and of
    # records that point to such a Medication: criteria they decide are unknown / conflict
    conflicted: set[str] = field(default_factory=set)
    # Errors about one record: message -> the records it concerns (their type and code only). One
    # pull for several trials reads records only some of them need; `seen_by` keeps each trial's
    # errors to the records it reads. Errors not listed here (a patient-level problem) concern all.
    error_records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def reference(self) -> str:
        return f"Patient/{self.patient_id}"

    @property
    def birth_span(self) -> tuple[date, date] | None:
        """(earliest, latest) possible birth day; None when the record gives no birthDate."""
        if self.birth_date is None:
            return None
        return self.birth_date, self.birth_date_latest or self.birth_date

    def note_error(self, message: str, records: Iterable[Any] = ()) -> None:
        """Add an error, tied to the records (raw resources) it is about, when it is about some."""
        self.errors.append(message)
        self.tie_errors([message], records)

    def tie_errors(self, messages: Iterable[str], records: Iterable[Any]) -> None:
        """Tie errors already added to the records they are about (see `error_records`)."""
        scope = [{k: r[k] for k in ("resourceType", "code") if k in r} for r in records
                 if isinstance(r, dict) and isinstance(r.get("resourceType"), str)]
        if scope:
            for message in messages:
                self.error_records.setdefault(message, []).extend(scope)

    def seen_by(self, needs: DataNeeds) -> "PatientFacts":
        """These facts as a screen that fetched only `needs` sees them: without the errors about
        records it would not have read (the facts themselves are the same: its criteria read only
        the records it needs)."""
        errors = [e for e in self.errors
                  if e not in self.error_records or any(needs.reads(r) for r in self.error_records[e])]
        return self if len(errors) == len(self.errors) else replace(self, errors=errors)

    def deceased_by(self, day: date) -> bool:
        """Dead on or before `day`: deceasedBoolean true, or a deceasedDateTime not after it."""
        if self.deceased_on is not None:
            return self.deceased_on <= day
        return self.deceased
