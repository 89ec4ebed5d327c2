"""Raw FHIR R4 JSON (dicts) -> the facts the criteria read.

Why not `fhir.resources` models here: full validation costs ~30x a plain JSON parse and checks
hundreds of fields the criteria never read. This module reads only the fields in
`connector.facts`, checks *their* types, and reports a resource it cannot read by its
reference and JSON path (never by its content: values may be PHI) so the rest of the
patient's data still counts.

Dropped on purpose (they are not clinical facts): Observations `entered-in-error` /
`cancelled`; Conditions verified `entered-in-error` / `refuted`; MedicationStatement
`not-taken` / `entered-in-error`; MedicationRequest `entered-in-error` / `cancelled` / `draft`;
MedicationAdministration `not-done` / `entered-in-error`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from datetime import date
from typing import Any

from connector.errors import ResourceError
from connector.facts import (
    Coding,
    ConditionFact,
    MedicationFact,
    ObservationFact,
    PatientFacts,
    Quantity,
    SourceRef,
)

UCUM_SYSTEM = "http://unitsofmeasure.org"
PATIENT_FIELDS = {
    "Observation": "subject",
    "Condition": "subject",
    "MedicationStatement": "subject",
    "MedicationRequest": "subject",
    "MedicationAdministration": "subject",
}
MEDICATION_KINDS = {
    "MedicationStatement": "statement",
    "MedicationRequest": "request",
    "MedicationAdministration": "administration",
}
IGNORED_STATUS = {
    "Observation": {"entered-in-error", "cancelled"},
    "MedicationStatement": {"not-taken", "entered-in-error"},
    "MedicationRequest": {"entered-in-error", "cancelled", "draft"},
    "MedicationAdministration": {"not-done", "entered-in-error"},
}
IGNORED_VERIFICATION = {"entered-in-error", "refuted"}
_DATE_RE = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?(?:T[0-9:.]+(?:Z|[+-]\d{2}:\d{2})?)?$")


class _Reader:
    """Typed access to one resource's fields; errors name the resource and the JSON path."""

    def __init__(self, resource: dict[str, Any]):
        self.resource = resource
        self.ref = source_ref(resource)

    def fail(self, path: str, problem: str) -> ResourceError:
        return ResourceError(f"{self.ref.reference}: {path}: {problem}")

    def obj(self, value: Any, path: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected an object, got {_kind(value)}")
        return value

    def items(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(path, f"expected a list, got {_kind(value)}")
        return value

    def text(self, value: Any, path: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(path, f"expected a string, got {_kind(value)}")
        return value

    def when(self, value: Any, path: str) -> date | None:
        """A FHIR date/dateTime/instant -> its calendar date as written (partial dates -> first day)."""
        if value is None:
            return None
        match = _DATE_RE.match(value) if isinstance(value, str) else None
        if not match:
            raise self.fail(path, "invalid date" if isinstance(value, str) else f"expected a date, got {_kind(value)}")
        year, month, day = match.groups()
        try:
            return date(int(year), int(month or 1), int(day or 1))
        except ValueError:
            raise self.fail(path, "invalid date") from None

    def concept(self, value: Any, path: str) -> tuple[tuple[Coding, ...], str | None]:
        if value is None:
            return (), None
        concept = self.obj(value, path)
        codings = []
        for i, coding in enumerate(self.items(concept.get("coding"), f"{path}.coding")):
            coding = self.obj(coding, f"{path}.coding[{i}]")
            code = coding.get("code")
            codings.append(Coding(
                self.text(coding.get("system"), f"{path}.coding[{i}].system"),
                None if code is None else str(code),
                self.text(coding.get("display"), f"{path}.coding[{i}].display"),
            ))
        return tuple(codings), self.text(concept.get("text"), f"{path}.text")

    def quantity(self, value: Any, path: str) -> Quantity | None:
        if value is None:
            return None
        q = self.obj(value, path)
        number = q.get("value")
        if number is None:
            return None
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise self.fail(f"{path}.value", f"expected a number, got {_kind(number)}")
        code = self.text(q.get("code"), f"{path}.code")
        is_ucum = q.get("system") == UCUM_SYSTEM and code is not None
        unit = code if is_ucum else (code or self.text(q.get("unit"), f"{path}.unit"))
        comparator = self.text(q.get("comparator"), f"{path}.comparator")
        return Quantity(float(number), unit, is_ucum, comparator)

    def first_date(self, *fields: str) -> date | None:
        """The first present of several date fields; `xPeriod` fields use start, else end."""
        for name in fields:
            value = self.resource.get(name)
            if value is None:
                continue
            if name.endswith("Period"):
                period = self.obj(value, name)
                found = self.when(period.get("start"), f"{name}.start") or self.when(period.get("end"), f"{name}.end")
                if found:
                    return found
            else:
                return self.when(value, name)
        return None


def _kind(value: Any) -> str:
    """Names a JSON value's type without echoing the value (it may be PHI)."""
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


def source_ref(resource: dict[str, Any]) -> SourceRef:
    """The resource's reference with its version when the server gave one."""
    rtype = resource.get("resourceType")
    rid = resource.get("id")
    if not isinstance(rtype, str) or not rtype:
        raise ResourceError("resource without resourceType")
    if not isinstance(rid, str) or not rid:
        raise ResourceError(f"{rtype} without id")
    meta = resource.get("meta")
    version = meta.get("versionId") if isinstance(meta, dict) else None
    return SourceRef(rtype, rid, str(version) if version is not None else None)


def reference_id(reference: Any, expected_type: str) -> str | None:
    """`Patient/123`, `https://x/fhir/Patient/123/_history/2` -> `123`; other forms -> None."""
    if not isinstance(reference, dict):
        return None
    ref = reference.get("reference")
    if not isinstance(ref, str):
        return None
    parts = ref.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2] == expected_type and parts[-1]:
        return parts[-1]
    return None


def patient_id_of(resource: dict[str, Any]) -> str | None:
    """Which patient a clinical resource belongs to (None for shared resources like Medication)."""
    rtype = resource.get("resourceType")
    if rtype == "Patient":
        rid = resource.get("id")
        return rid if isinstance(rid, str) else None
    field_name = PATIENT_FIELDS.get(rtype)  # type: ignore[arg-type]
    if field_name is None:
        return None
    return reference_id(resource.get(field_name), "Patient") or reference_id(resource.get("patient"), "Patient")


def observation_fact(resource: dict[str, Any]) -> ObservationFact | None:
    r = _Reader(resource)
    status = r.text(resource.get("status"), "status")
    if status in IGNORED_STATUS["Observation"]:
        return None
    codes, _ = r.concept(resource.get("code"), "code")
    value_codes, value_text = r.concept(resource.get("valueCodeableConcept"), "valueCodeableConcept")
    quantity = r.quantity(resource.get("valueQuantity"), "valueQuantity")
    if quantity is None and "valueInteger" in resource:
        number = resource["valueInteger"]
        if isinstance(number, bool) or not isinstance(number, int):
            raise r.fail("valueInteger", f"expected an integer, got {_kind(number)}")
        quantity = Quantity(float(number), None)
    if value_text is None:
        value_text = r.text(resource.get("valueString"), "valueString")
    high = low = None
    for i, ref_range in enumerate(r.items(resource.get("referenceRange"), "referenceRange")):
        ref_range = r.obj(ref_range, f"referenceRange[{i}]")
        high = r.quantity(ref_range.get("high"), f"referenceRange[{i}].high")
        low = r.quantity(ref_range.get("low"), f"referenceRange[{i}].low")
        if high or low:
            break
    return ObservationFact(
        source=r.ref,
        status=status,
        codes=codes,
        effective=r.first_date("effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued"),
        quantity=quantity,
        value_codes=value_codes,
        value_text=value_text,
        reference_high=high,
        reference_low=low,
    )


def condition_fact(resource: dict[str, Any]) -> ConditionFact | None:
    r = _Reader(resource)
    verification = _status_code(r, resource.get("verificationStatus"), "verificationStatus")
    if verification in IGNORED_VERIFICATION:
        return None
    codes, text = r.concept(resource.get("code"), "code")
    sites: list[Coding] = []
    for i, site in enumerate(r.items(resource.get("bodySite"), "bodySite")):
        sites.extend(r.concept(site, f"bodySite[{i}]")[0])
    return ConditionFact(
        source=r.ref,
        codes=codes,
        clinical_status=_status_code(r, resource.get("clinicalStatus"), "clinicalStatus"),
        verification_status=verification,
        onset=r.first_date("onsetDateTime", "onsetPeriod"),
        recorded=r.when(resource.get("recordedDate"), "recordedDate"),
        text=text,
        body_sites=tuple(sites),
    )


def _status_code(r: _Reader, value: Any, path: str) -> str | None:
    codes, _ = r.concept(value, path)
    return next((c.code for c in codes if c.code), None)


def medication_fact(resource: dict[str, Any], medications: dict[str, dict[str, Any]]) -> MedicationFact | None:
    """`medications` maps Medication id -> resource, to resolve `medicationReference`."""
    r = _Reader(resource)
    rtype = r.ref.resource_type
    status = r.text(resource.get("status"), "status")
    if status in IGNORED_STATUS[rtype]:
        return None
    codes, text = r.concept(resource.get("medicationCodeableConcept"), "medicationCodeableConcept")
    names = [text] if text else []
    med_ref = resource.get("medicationReference")
    if med_ref is not None:
        medication = _resolve_medication(r, med_ref, medications)
        if medication is not None:
            codes, text = _Reader(medication).concept(medication.get("code"), "code")
            names = [text] if text else []
        display = r.text(r.obj(med_ref, "medicationReference").get("display"), "medicationReference.display")
        if display:
            names.append(display)
    names.extend(c.display for c in codes if c.display)
    return MedicationFact(
        source=r.ref,
        kind=MEDICATION_KINDS[rtype],
        status=status,
        codes=codes,
        names=tuple(dict.fromkeys(names)),
        effective=_medication_date(r),
        dose=_medication_dose(r),
    )


def _resolve_medication(r: _Reader, med_ref: Any, medications: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """A `#contained` or `Medication/ID` reference -> the Medication resource, when we have it."""
    ref = r.text(r.obj(med_ref, "medicationReference").get("reference"), "medicationReference.reference")
    if ref is None:
        return None
    if ref.startswith("#"):
        return next((item for item in r.items(r.resource.get("contained"), "contained")
                     if isinstance(item, dict) and item.get("id") == ref[1:]), None)
    med_id = reference_id(med_ref, "Medication")
    return medications.get(med_id) if med_id else None


def _medication_date(r: _Reader) -> date | None:
    rtype = r.ref.resource_type
    if rtype == "MedicationRequest":
        return r.first_date("authoredOn")
    if rtype == "MedicationStatement":
        return r.first_date("effectiveDateTime", "effectivePeriod", "dateAsserted")
    return r.first_date("effectiveDateTime", "effectivePeriod")


def _medication_dose(r: _Reader) -> Quantity | None:
    rtype = r.ref.resource_type
    resource = r.resource
    if rtype == "MedicationAdministration":
        dosage = resource.get("dosage")
        return r.quantity(r.obj(dosage, "dosage").get("dose"), "dosage.dose") if dosage is not None else None
    field_name = "dosage" if rtype == "MedicationStatement" else "dosageInstruction"
    for i, dosage in enumerate(r.items(resource.get(field_name), field_name)):
        dosage = r.obj(dosage, f"{field_name}[{i}]")
        for j, rate in enumerate(r.items(dosage.get("doseAndRate"), f"{field_name}[{i}].doseAndRate")):
            rate = r.obj(rate, f"{field_name}[{i}].doseAndRate[{j}]")
            dose = r.quantity(rate.get("doseQuantity"), f"{field_name}[{i}].doseAndRate[{j}].doseQuantity")
            if dose:
                return dose
    return None


def _apply_patient(facts: PatientFacts, resource: dict[str, Any]) -> None:
    r = _Reader(resource)
    facts.source = r.ref
    facts.gender = r.text(resource.get("gender"), "gender")
    facts.birth_date = r.when(resource.get("birthDate"), "birthDate")
    facts.deceased = bool(resource.get("deceasedBoolean")) or resource.get("deceasedDateTime") is not None


def _newest(current: str | None, resource: dict[str, Any]) -> str | None:
    meta = resource.get("meta")
    stamp = meta.get("lastUpdated") if isinstance(meta, dict) else None
    if isinstance(stamp, str) and (current is None or stamp > current):
        return stamp
    return current


def patient_facts(patient_id: str, resources: Iterable[dict[str, Any]]) -> PatientFacts:
    """All the facts of one patient from its raw resources (plus any Medication they reference).

    A resource that cannot be read is listed in `errors` (reference + path) and skipped.
    Raises ResourceError when the Patient resource itself is absent.
    """
    resources = list(resources)
    medications = {res["id"]: res for res in resources
                   if isinstance(res, dict) and res.get("resourceType") == "Medication" and isinstance(res.get("id"), str)}
    facts = PatientFacts(patient_id=patient_id)
    found_patient = False
    for resource in resources:
        try:
            if not isinstance(resource, dict):
                raise ResourceError(f"expected a JSON object for a resource, got {_kind(resource)}")
            rtype = resource.get("resourceType")
            if rtype == "Patient":
                if resource.get("id") == patient_id:
                    _apply_patient(facts, resource)
                    found_patient = True
            elif rtype == "Observation":
                _append(facts.observations, observation_fact(resource))
            elif rtype == "Condition":
                _append(facts.conditions, condition_fact(resource))
            elif rtype in MEDICATION_KINDS:
                _append(facts.medications, medication_fact(resource, medications))
            else:
                continue
            facts.last_updated = _newest(facts.last_updated, resource)
        except ResourceError as exc:
            facts.errors.append(str(exc))
    if not found_patient:
        raise ResourceError(f"Patient/{patient_id} not found")
    facts.data_version = record_digest(resources)
    return facts


def record_digest(resources: Iterable[Any]) -> str:
    """A digest of which resources a record holds and their versions (`meta.versionId` /
    `meta.lastUpdated`, which FHIR servers maintain): any added, removed or updated resource
    changes it. Sources without such metadata (local files) digest the content instead."""
    keys = []
    for resource in resources:
        if isinstance(resource, dict):
            meta = resource.get("meta") if isinstance(resource.get("meta"), dict) else {}
            keys.append(f"{resource.get('resourceType')}/{resource.get('id')}|{meta.get('versionId')}|"
                        f"{meta.get('lastUpdated')}")
    return hashlib.sha256("\n".join(sorted(keys)).encode("utf-8")).hexdigest()


def _append(target: list[Any], fact: Any) -> None:
    if fact is not None:
        target.append(fact)


def group_by_patient(resources: Iterable[dict[str, Any]]) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    """Split resources into per-patient lists; the second list holds shared ones (e.g. Medication)."""
    by_patient: dict[str, list[dict[str, Any]]] = {}
    shared: list[dict[str, Any]] = []
    for resource in resources:
        pid = patient_id_of(resource)
        if pid is None:
            shared.append(resource)
        else:
            by_patient.setdefault(pid, []).append(resource)
    return by_patient, shared


def facts_from_resources(resources: Iterable[dict[str, Any]]) -> tuple[list[PatientFacts], list[str]]:
    """Facts for every patient present in `resources`, plus errors for resources whose Patient is absent.

    Convenient for small in-memory sets (tests, one Bundle); large sources stream through
    `connector.sources` instead.
    """
    by_patient, shared = group_by_patient(resources)
    patients, errors = [], []
    for pid, items in by_patient.items():
        try:
            patients.append(patient_facts(pid, items + shared))
        except ResourceError:
            errors.extend(f"{source_ref(item).reference}: references Patient/{pid}, which is not in the source"
                          for item in items)
    return patients, errors
