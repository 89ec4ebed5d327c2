"""Raw FHIR R4 JSON (dicts) -> the facts the criteria read.

Why not `fhir.resources` models here: full validation costs ~30x a plain JSON parse and checks
hundreds of fields the criteria never read. This module reads only the fields in
`connector.facts`, checks *their* types, and reports a resource it cannot read by its
reference and JSON path (never by its content: values may be PHI) so the rest of the
patient's data still counts.

Dropped on purpose (they are not clinical facts): Observations `entered-in-error` /
`cancelled`; Conditions verified `entered-in-error` / `refuted`; MedicationStatement
`not-taken` / `entered-in-error` / `intended`; MedicationRequest `entered-in-error` /
`cancelled` / `draft` and intents `proposal` / `plan`; MedicationAdministration `not-done` /
`entered-in-error`. Preliminary Observations and unconfirmed Conditions are kept with their
status: the criteria decide what they may say.

Code systems are normalised here, at the source (`urn:oid:2.16.840.1.113883.6.1` -> LOINC ...),
so every later filter compares canonical URIs. A resource seen more than once counts once
(connector.versions).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import date
from typing import Any

from connector.codes import canonical_system
from connector.errors import ResourceError
from connector.facts import (
    Coding,
    ConditionFact,
    MedicationFact,
    Moment,
    ObservationFact,
    PatientFacts,
    Quantity,
    ReferenceRange,
    SourceRef,
)
from connector.fhirtime import BadDate, parse_fhir_time
from connector.versions import current_versions

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
    "MedicationStatement": {"not-taken", "entered-in-error", "intended"},
    "MedicationRequest": {"entered-in-error", "cancelled", "draft"},
    "MedicationAdministration": {"not-done", "entered-in-error"},
}
IGNORED_INTENT = {"proposal", "plan"}  # MedicationRequest: a suggestion or a plan is not an order given
IGNORED_VERIFICATION = {"entered-in-error", "refuted"}


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
        span = self.span(value, path)
        return span[0] if span else None

    def span(self, value: Any, path: str) -> tuple[date, date, Moment] | None:
        """(first day, last day, instants) of a FHIR date/dateTime/instant (see connector.fhirtime)."""
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(path, f"expected a date, got {_kind(value)}")
        try:
            return parse_fhir_time(value)
        except BadDate:
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
                canonical_system(self.text(coding.get("system"), f"{path}.coding[{i}].system")),
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
        found = self.first_time(*fields)
        return found[0] if found else None

    def first_time(self, *fields: str, period_end_first: bool = False) -> tuple[date, Moment] | None:
        """(date as written, instants) of the first present field; a Period gives its start, or
        with `period_end_first` its end (a 24-hour urine collection is a result when complete)."""
        for name in fields:
            value = self.resource.get(name)
            if value is None:
                continue
            if name.endswith("Period"):
                period = self.obj(value, name)
                ends = ("end", "start") if period_end_first else ("start", "end")
                for end in ends:
                    span = self.span(period.get(end), f"{name}.{end}")
                    if span:
                        return span[0], span[2]
            else:
                span = self.span(value, name)
                if span:
                    return span[0], span[2]
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
    ranges = tuple(_reference_range(r, item, f"referenceRange[{i}]")
                   for i, item in enumerate(r.items(resource.get("referenceRange"), "referenceRange")))
    first = next((rr for rr in ranges if rr.high or rr.low), None)
    interpretation = tuple(coding for i, item in enumerate(r.items(resource.get("interpretation"), "interpretation"))
                           for coding in r.concept(item, f"interpretation[{i}]")[0])
    when = r.first_time("effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued", period_end_first=True)
    return ObservationFact(
        source=r.ref,
        status=status,
        codes=codes,
        effective=when[0] if when else None,
        quantity=quantity,
        value_codes=value_codes,
        value_text=value_text,
        reference_high=first.high if first else None,
        reference_low=first.low if first else None,
        moment=when[1] if when else None,
        interpretation=interpretation,
        reference_ranges=ranges,
    )


_AGE_UNITS_IN_YEARS = {"a": 1.0, "yr": 1.0, "year": 1.0, "years": 1.0, "mo": 1 / 12, "month": 1 / 12,
                       "months": 1 / 12, "wk": 7 / 365.25, "d": 1 / 365.25}


def _reference_range(r: _Reader, value: Any, path: str) -> ReferenceRange:
    item = r.obj(value, path)
    type_codes, _ = r.concept(item.get("type"), f"{path}.type")
    applies_to = tuple(coding for i, concept in enumerate(r.items(item.get("appliesTo"), f"{path}.appliesTo"))
                       for coding in r.concept(concept, f"{path}.appliesTo[{i}]")[0])
    age = r.obj(item["age"], f"{path}.age") if item.get("age") is not None else {}
    bounds = []
    for end in ("low", "high"):
        q = r.quantity(age.get(end), f"{path}.age.{end}")
        factor = _AGE_UNITS_IN_YEARS.get((q.unit or "a").lower()) if q else None
        if q is not None and factor is None:
            raise r.fail(f"{path}.age.{end}", "age unit is not one of a, mo, wk, d")
        bounds.append(q.value * factor if q is not None and factor is not None else None)
    return ReferenceRange(
        low=r.quantity(item.get("low"), f"{path}.low"),
        high=r.quantity(item.get("high"), f"{path}.high"),
        type_codes=type_codes,
        applies_to=applies_to,
        age_low=bounds[0],
        age_high=bounds[1],
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


def medication_fact(resource: dict[str, Any], medications: dict[str, list[dict[str, Any]]],
                    errors: list[str] | None = None) -> MedicationFact | None:
    """`medications` maps Medication id -> its copies (one, or several in conflict), to resolve
    `medicationReference`; a reference that resolves nowhere is added to `errors` (the fact
    keeps what the reference's display says)."""
    r = _Reader(resource)
    rtype = r.ref.resource_type
    status = r.text(resource.get("status"), "status")
    if status in IGNORED_STATUS[rtype]:
        return None
    if rtype == "MedicationRequest" and r.text(resource.get("intent"), "intent") in IGNORED_INTENT:
        return None
    codes, text = r.concept(resource.get("medicationCodeableConcept"), "medicationCodeableConcept")
    names = [text] if text else []
    med_ref = resource.get("medicationReference")
    if med_ref is not None:
        found = _resolve_medication(r, r.obj(med_ref, "medicationReference"), "medicationReference", medications)
        if not found and errors is not None:
            target = r.text(med_ref.get("reference"), "medicationReference.reference") or "(no reference)"
            errors.append(f"{r.ref.reference}: medicationReference {target} resolves nowhere "
                          "(not in the Bundle, the source or contained)")
        for medication in found:  # several only when copies conflict: the record shows what each says
            med_codes, med_names = _medication_concepts(medication, r, medications)
            codes += med_codes
            names += med_names
        display = r.text(med_ref.get("display"), "medicationReference.display")
        if display:
            names.append(display)
    names.extend(c.display for c in codes if c.display)
    return MedicationFact(
        source=r.ref,
        kind=MEDICATION_KINDS[rtype],
        status=status,
        codes=tuple(dict.fromkeys(codes)),
        names=tuple(dict.fromkeys(names)),
        effective=_medication_date(r),
        dose=_medication_dose(r),
    )


def _medication_concepts(medication: dict[str, Any], owner: _Reader,
                         medications: dict[str, list[dict[str, Any]]]) -> tuple[tuple[Coding, ...], list[str]]:
    """A Medication's code and its ingredients' codes (`itemCodeableConcept`, or `itemReference`
    to another Medication), with their texts: a product coded by brand still matches its ingredient."""
    m = _Reader(medication) if medication.get("id") else owner
    codes, text = m.concept(medication.get("code"), "code")
    names = [text] if text else []
    for i, ingredient in enumerate(m.items(medication.get("ingredient"), "ingredient")):
        ingredient = m.obj(ingredient, f"ingredient[{i}]")
        item_codes, item_text = m.concept(ingredient.get("itemCodeableConcept"), f"ingredient[{i}].itemCodeableConcept")
        item_ref = ingredient.get("itemReference")
        if item_ref is not None:
            path = f"ingredient[{i}].itemReference"
            for item in _resolve_medication(owner, m.obj(item_ref, path), path, medications):
                if item is not medication:
                    more_codes, more_text = m.concept(item.get("code"), f"{path}(code)")
                    item_codes += more_codes
                    item_text = item_text or more_text
            display = m.text(item_ref.get("display"), f"{path}.display")
            if display:
                names.append(display)
        codes += item_codes
        if item_text:
            names.append(item_text)
    return codes, names


def _resolve_medication(r: _Reader, reference: dict[str, Any], path: str,
                        medications: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """A `#contained` or `Medication/ID` reference -> the Medication (or contained Substance);
    empty when it resolves nowhere."""
    ref = r.text(reference.get("reference"), f"{path}.reference")
    if ref is None:
        return []
    if ref.startswith("#"):
        return [item for item in r.items(r.resource.get("contained"), "contained")
                if isinstance(item, dict) and item.get("id") == ref[1:]][:1]
    med_id = reference_id(reference, "Medication")
    return medications.get(med_id, []) if med_id else []


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
    birth = r.span(resource.get("birthDate"), "birthDate")
    facts.birth_date, facts.birth_date_latest = (birth[0], birth[1]) if birth else (None, None)
    deceased = resource.get("deceasedBoolean")
    if deceased is not None and not isinstance(deceased, bool):
        raise r.fail("deceasedBoolean", f"expected a boolean, got {_kind(deceased)}")
    facts.deceased_on = r.when(resource.get("deceasedDateTime"), "deceasedDateTime")
    facts.deceased = bool(deceased) or facts.deceased_on is not None


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
    facts = PatientFacts(patient_id=patient_id)
    current, conflicts = current_versions(resources)
    if ("Patient", patient_id) in conflicts:
        raise ResourceError(conflicts[("Patient", patient_id)])
    medications: dict[str, list[dict[str, Any]]] = {}
    for res in current:
        if isinstance(res, dict) and res.get("resourceType") == "Medication" and isinstance(res.get("id"), str):
            medications.setdefault(res["id"], []).append(res)
    _note_conflicts(facts, current, conflicts)
    found_patient = False
    for resource in current:
        before = len(facts.errors)
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
                _append(facts.medications, medication_fact(resource, medications, facts.errors))
            else:
                continue
            facts.last_updated = _newest(facts.last_updated, resource)
        except ResourceError as exc:
            facts.errors.append(str(exc))
        facts.tie_errors(facts.errors[before:], [resource])
    if not found_patient:
        raise ResourceError(f"Patient/{patient_id} not found")
    facts.data_version = record_digest(resources)
    return facts


def _note_conflicts(facts: PatientFacts, current: list[Any], conflicts: dict[tuple[str, str], str]) -> None:
    """Conflicting copies go to the patient's errors and mark the records criteria may cite; a
    shared Medication in conflict matters only to the records that point to it."""
    for (rtype, rid), message in conflicts.items():
        if rtype == "Medication":
            records = [r for r in current if _refers_to_medication(r, rid)]
            referrers = [f"{r['resourceType']}/{r['id']}" for r in records]
        else:
            records = [r for r in current if isinstance(r, dict) and (r.get("resourceType"), r.get("id")) == (rtype, rid)]
            referrers = [f"{rtype}/{rid}"]
        if records:
            facts.note_error(message, records)
            facts.conflicted.update(referrers)


def _refers_to_medication(resource: Any, medication_id: str) -> bool:
    return (isinstance(resource, dict) and resource.get("resourceType") in MEDICATION_KINDS
            and isinstance(resource.get("id"), str)
            and reference_id(resource.get("medicationReference"), "Medication") == medication_id)


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
