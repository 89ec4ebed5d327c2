"""Screening results: plain dataclasses with a stable JSON form (`schemas/result.schema.json`).

Kept free of engine internals so stores (SQLite/PostgreSQL), exporters (CSV, FHIR
ResearchSubject) and the report can all read and write them; `to_json`/`from_json` round-trip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

MET, NOT_MET, UNKNOWN = "met", "not_met", "unknown"
OUTCOMES = (MET, NOT_MET, UNKNOWN)
CANDIDATE, POSSIBLE, EXCLUDED = "candidate", "possible", "excluded"
STATUSES = (CANDIDATE, POSSIBLE, EXCLUDED)

# Why a criterion came out as it did. The first group decides met/not_met, the second explains unknown.
REASONS = {
    "value": "a measured or derived value was compared with the threshold",
    "record": "a matching record decided it",
    "no-record": "no matching record in the patient's history",
    "count": "the number of administrations decided it",
    "dose": "the cumulative dose decided it",
    "demographics": "age or sex from the Patient resource",
    "site": "the screening site's country",
    "manual": "a person must decide (not decidable from data, or deferred for review)",
    "stale": "the only values are older than the criterion's window",
    "no-data": "no value at all",
    "unit": "a value's unit cannot be converted to the criterion's unit",
    "no-reference-range": "a x ULN test on an Observation without referenceRange.high",
    "censored": "a value reported as <x or >x cannot be compared with the threshold",
    "error": "the criterion could not be evaluated (see errors)",
}


@dataclass(frozen=True)
class Evidence:
    """One fact behind an outcome: the resource reference and the value as recorded there."""

    reference: str
    value: float | int | str | None = None
    unit: str | None = None
    date: str | None = None  # YYYY-MM-DD

    def to_json(self) -> dict[str, Any]:
        return {"reference": self.reference, "value": self.value, "unit": self.unit, "date": self.date}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Evidence":
        return cls(data["reference"], data.get("value"), data.get("unit"), data.get("date"))


@dataclass(frozen=True)
class CriterionResult:
    id: str
    outcome: str
    reason: str
    evidence: tuple[Evidence, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "outcome": self.outcome, "reason": self.reason,
                "evidence": [e.to_json() for e in self.evidence]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "CriterionResult":
        return cls(data["id"], data["outcome"], data["reason"],
                   tuple(Evidence.from_json(e) for e in data.get("evidence", [])))


@dataclass(frozen=True)
class ExcludedOption:
    option: str
    why: str

    def to_json(self) -> dict[str, Any]:
        return {"option": self.option, "why": self.why}


@dataclass(frozen=True)
class ArmResult:
    label: str
    options: tuple[str, ...] = ()
    excluded_options: tuple[ExcludedOption, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "options": list(self.options),
                "excluded_options": [e.to_json() for e in self.excluded_options]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ArmResult":
        return cls(data["label"], tuple(data.get("options", [])),
                   tuple(ExcludedOption(e["option"], e["why"]) for e in data.get("excluded_options", [])))


@dataclass(frozen=True)
class PatientResult:
    patient: str  # "Patient/ID"
    status: str
    criteria: tuple[CriterionResult, ...] = ()
    arms: tuple[ArmResult, ...] = ()
    errors: tuple[str, ...] = ()

    @property
    def patient_id(self) -> str:
        return self.patient.split("/", 1)[1] if "/" in self.patient else self.patient

    def criterion(self, criterion_id: str) -> CriterionResult:
        """The result of one criterion by id (KeyError if the mapping has no such criterion)."""
        for result in self.criteria:
            if result.id == criterion_id:
                return result
        raise KeyError(criterion_id)

    def for_review(self) -> tuple[CriterionResult, ...]:
        """Outcomes a person must decide: every `unknown` with reason `manual`."""
        return tuple(c for c in self.criteria if c.outcome == UNKNOWN and c.reason == "manual")

    def to_json(self) -> dict[str, Any]:
        return {"patient": self.patient, "status": self.status,
                "criteria": [c.to_json() for c in self.criteria],
                "arms": [a.to_json() for a in self.arms],
                "errors": list(self.errors)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "PatientResult":
        return cls(data["patient"], data["status"],
                   tuple(CriterionResult.from_json(c) for c in data.get("criteria", [])),
                   tuple(ArmResult.from_json(a) for a in data.get("arms", [])),
                   tuple(data.get("errors", [])))


@dataclass
class ScreenReport:
    """One screening run of one trial mapping over some patients, as of one date."""

    trial: str
    mapping_file: str
    criteria_hash: str
    as_of: date
    patients: list[PatientResult] = field(default_factory=list)
    mapping_sha256: str | None = None  # of the mapping file's bytes: which exact mapping screened

    def to_json(self) -> dict[str, Any]:
        mapping = {"file": self.mapping_file, "criteria_hash": self.criteria_hash}
        if self.mapping_sha256:
            mapping["sha256"] = self.mapping_sha256
        return {"trial": self.trial,
                "mapping": mapping,
                "as_of": self.as_of.isoformat(),
                "patients": [p.to_json() for p in self.patients]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ScreenReport":
        return cls(data["trial"], data["mapping"]["file"], data["mapping"]["criteria_hash"],
                   date.fromisoformat(data["as_of"]),
                   [PatientResult.from_json(p) for p in data.get("patients", [])], data["mapping"].get("sha256"))


def overall_status(criteria: tuple[CriterionResult, ...] | list[CriterionResult]) -> str:
    """excluded if any not_met; candidate if all met or deferred to a person; else possible."""
    if any(c.outcome == NOT_MET for c in criteria):
        return EXCLUDED
    if all(c.outcome == MET or (c.outcome == UNKNOWN and c.reason == "manual") for c in criteria):
        return CANDIDATE
    return POSSIBLE
