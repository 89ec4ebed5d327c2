"""Small builders of PatientFacts for criteria-engine tests (no FHIR parsing involved)."""

from __future__ import annotations

from datetime import date, timedelta

from connector.codes import ICD10CM, LOINC, SNOMED
from connector.facts import (
    Coding,
    ConditionFact,
    MedicationFact,
    ObservationFact,
    PatientFacts,
    Quantity,
    SourceRef,
)

AS_OF = date(2026, 11, 16)


def ago(days: int) -> date:
    return AS_OF - timedelta(days=days)


def patient(gender: str | None = "female", birth: date | None = date(1960, 5, 17), pid: str = "p1") -> PatientFacts:
    return PatientFacts(patient_id=pid, birth_date=birth, gender=gender)


def obs(oid: str, loinc: str, days: int | None, value: float | None = None, unit: str | None = None, *,
        high: float | None = None, high_unit: str | None = None, comparator: str | None = None,
        answer: tuple[str, str] | None = None, text: str | None = None) -> ObservationFact:
    return ObservationFact(
        source=SourceRef("Observation", oid),
        status="final",
        codes=(Coding(LOINC, loinc),),
        effective=None if days is None else ago(days),
        quantity=None if value is None else Quantity(value, unit, unit is not None, comparator),
        value_codes=(Coding(answer[0], answer[1], answer[1]),) if answer else (),
        value_text=text,
        reference_high=None if high is None else Quantity(high, high_unit if high_unit is not None else unit, True),
    )


def condition(cid: str, code: str, system: str = ICD10CM, *, days: int = 400, status: str | None = "active",
              sites: tuple[str, ...] = ()) -> ConditionFact:
    return ConditionFact(
        source=SourceRef("Condition", cid), codes=(Coding(system, code),), clinical_status=status,
        verification_status="confirmed", onset=ago(days), recorded=ago(days),
        body_sites=tuple(Coding(SNOMED, s) for s in sites),
    )


def med(mid: str, name: str | None, days: int | None, *, kind: str = "administration", status: str = "completed",
        code: tuple[str, str] | None = None, dose: tuple[float, str] | None = None) -> MedicationFact:
    rtype = {"administration": "MedicationAdministration", "statement": "MedicationStatement",
             "request": "MedicationRequest"}[kind]
    return MedicationFact(
        source=SourceRef(rtype, mid), kind=kind, status=status,
        codes=(Coding(code[0], code[1]),) if code else (),
        names=(name,) if name else (),
        effective=None if days is None else ago(days),
        dose=Quantity(dose[0], dose[1], True) if dose else None,
    )


def with_facts(facts: PatientFacts, *items) -> PatientFacts:
    for item in items:
        if isinstance(item, ObservationFact):
            facts.observations.append(item)
        elif isinstance(item, ConditionFact):
            facts.conditions.append(item)
        else:
            facts.medications.append(item)
    return facts
