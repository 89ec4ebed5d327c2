"""FHIR R4 resources written the way a hospital feed sends them, and runners for the seed mapping.

A feed is not the tidy example cohort: identifiers under hospital OIDs, code systems as OIDs,
instants with offsets, `issued` next to `effectiveDateTime`, reference ranges with `appliesTo`,
Medications by reference (in the Bundle, contained, on the server), `meta` versions. Every
resource built here is validated with `fhir.resources.R4B` (`validated`), so a test cannot pass
on data a real server would refuse.

`candidate_record(pid)` is a NET RETREAT candidate (every computable criterion met on
2026-11-16); tests change one thing and check the criterion it should move.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any

import jsonschema
from fhir.resources.R4B import get_fhir_model_class

from connector.config import Config
from connector.evaluation import evaluate_patient
from connector.mapping import load_mapping
from connector.mapping.needs import data_needs
from connector.results import PatientResult
from connector.sources import FileSource, open_source

ROOT = Path(__file__).resolve().parents[1]
AS_OF = date(2026, 11, 16)
SEED = load_mapping(ROOT / "mappings" / "NCT05773274.yaml")
_RESULTS = json.loads((ROOT / "schemas" / "result.schema.json").read_text(encoding="utf-8"))
PATIENT_RESULT_SCHEMA = {"$ref": "#/$defs/patient", "$defs": _RESULTS["$defs"]}

LOINC = "http://loinc.org"
LOINC_OID = "urn:oid:2.16.840.1.113883.6.1"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
MRN_SYSTEM = "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.14"  # an Epic-style MRN namespace
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
Resource = dict[str, Any]


def validated(resources: Iterable[Resource]) -> list[Resource]:
    """Each resource checked against the R4B model (raises pydantic's ValidationError)."""
    resources = list(resources)
    for resource in resources:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    return resources


def meta(last_updated: str | None = "2026-11-12T06:02:11.482-05:00", version: str | None = "1") -> Resource:
    found: Resource = {"source": "#epic-interconnect"}
    if last_updated:
        found["lastUpdated"] = last_updated
    if version:
        found["versionId"] = version
    return found


def patient(pid: str, *, gender: str | None = "female", birth: str | None = "1968-03-02", **extra: Any) -> Resource:
    resource: Resource = {
        "resourceType": "Patient", "id": pid, "meta": meta(),
        "identifier": [{"use": "usual", "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                                             "code": "MR"}]},
                        "system": MRN_SYSTEM, "value": f"E{sum(map(ord, pid)) * 7919 % 10**7:07d}"}],
        "active": True, "name": [{"use": "official", "family": "Testpatient", "given": ["Alex"]}],
    }
    if gender:
        resource["gender"] = gender
    if birth:
        resource["birthDate"] = birth
    resource.update(extra)
    return resource


def lab(pid: str, rid: str, loinc: str, value: float | None, unit: str | None, when: str, *, status: str = "final",
        system: str = LOINC, display: str | None = None, high: float | None = None, high_unit: str | None = None,
        ranges: list[Resource] | None = None, interpretation: str | None = None, answer: Resource | None = None,
        meta_: Resource | None = None, **extra: Any) -> Resource:
    """A laboratory Observation as an LIS sends it (category, issued, UCUM quantity)."""
    resource: Resource = {
        "resourceType": "Observation", "id": rid, "meta": meta_ or meta(),
        "identifier": [{"system": "urn:oid:1.2.840.114350.1.13.0.1.7.2.798268", "value": f"{rid}-lis"}],
        "status": status,
        "category": [{"coding": [{"system": OBS_CATEGORY, "code": "laboratory", "display": "Laboratory"}]}],
        "code": {"coding": [{"system": system, "code": loinc, **({"display": display} if display else {})}],
                 "text": display or loinc},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        "issued": when if "T" in when else f"{when}T12:00:00Z",
    }
    if value is not None:
        resource["valueQuantity"] = {"value": value, "unit": unit, "system": UCUM, "code": unit}
    if answer is not None:
        resource["valueCodeableConcept"] = answer
    if ranges is not None:
        resource["referenceRange"] = ranges
    elif high is not None:
        hu = high_unit or unit
        resource["referenceRange"] = [{"high": {"value": high, "unit": hu, "system": UCUM, "code": hu}}]
    if interpretation:
        resource["interpretation"] = [{"coding": [{"system": INTERPRETATION, "code": interpretation}]}]
    resource.update(extra)
    return resource


def coded(system: str, code: str, display: str) -> Resource:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": display}


def condition(pid: str, rid: str, code: Resource | None, *, onset: str = "2022-10-08", clinical: str = "active",
              verification: str | None = "confirmed", **extra: Any) -> Resource:
    resource: Resource = {
        "resourceType": "Condition", "id": rid, "meta": meta(),
        "clinicalStatus": {"coding": [{"system": CLINICAL, "code": clinical}]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category",
                                  "code": "problem-list-item"}]}],
        "subject": {"reference": f"Patient/{pid}"}, "onsetDateTime": onset, "recordedDate": onset,
    }
    if verification:
        resource["verificationStatus"] = {"coding": [{"system": VERIFICATION, "code": verification}]}
    if code is not None:
        resource["code"] = code
    resource.update(extra)
    return resource


def medication(rid: str, text: str, *codings: tuple[str, str, str], ingredients: list[Resource] | None = None) -> Resource:
    resource: Resource = {"resourceType": "Medication", "id": rid, "meta": meta(),
                          "code": {"coding": [{"system": s, "code": c, "display": d} for s, c, d in codings],
                                   "text": text}}
    if ingredients:
        resource["ingredient"] = ingredients
    return resource


def administration(pid: str, rid: str, when: str, *, medication_ref: str | None = None, concept: Resource | None = None,
                   status: str = "completed", dose_mbq: float | None = 7400, **extra: Any) -> Resource:
    resource: Resource = {"resourceType": "MedicationAdministration", "id": rid, "meta": meta(), "status": status,
                          "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": when}
    if medication_ref:
        resource["medicationReference"] = {"reference": medication_ref}
    else:
        resource["medicationCodeableConcept"] = concept or {"text": "Lutathera"}
    if dose_mbq is not None:
        resource["dosage"] = {"route": {"text": "intravenous"},
                              "dose": {"value": dose_mbq, "unit": "MBq", "system": UCUM, "code": "MBq"}}
    resource.update(extra)
    return resource


def statement(pid: str, rid: str, when: str, concept: Resource | None = None, *, status: str = "completed",
              **extra: Any) -> Resource:
    resource: Resource = {"resourceType": "MedicationStatement", "id": rid, "meta": meta(), "status": status,
                          "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": when,
                          "informationSource": {"display": "outside hospital records"}}
    if "medicationReference" not in extra:
        resource["medicationCodeableConcept"] = concept or {"text": "Lutathera"}
    resource.update(extra)
    return resource


def request(pid: str, rid: str, authored: str, concept: Resource, *, status: str = "active", intent: str = "order",
            **extra: Any) -> Resource:
    resource: Resource = {"resourceType": "MedicationRequest", "id": rid, "meta": meta(), "status": status,
                          "intent": intent, "subject": {"reference": f"Patient/{pid}"}, "authoredOn": authored,
                          "medicationCodeableConcept": concept}
    resource.update(extra)
    return resource


LUTATHERA_DAYS = ("2023-08-04T09:30:00-04:00", "2023-09-29T09:10:00-04:00", "2023-11-24T10:05:00-05:00",
                  "2024-01-19T09:45:00-05:00")
LAB_TIME = "2026-11-07T07:42:00-05:00"


def candidate_record(pid: str, *, without: Iterable[str] = ()) -> list[Resource]:
    """A candidate for NET RETREAT on 2026-11-16 (female, 58, small-bowel NET, 4 Lutathera cycles,
    recent labs in range). `without`: ids (after the `pid-` prefix) to leave out."""
    skip = set(without)
    lutathera = medication(f"{pid}-med-lu", "Lutathera 370 MBq/mL injection",
                           (RXNORM, "2003033", "lutetium Lu 177 dotatate"))
    items = [
        patient(pid),
        condition(pid, f"{pid}-net", coded(ICD10CM, "C7A.012", "Malignant carcinoid tumor of the ileum")),
        lutathera,
        *[administration(pid, f"{pid}-lu{i + 1}", day, medication_ref=f"Medication/{pid}-med-lu")
          for i, day in enumerate(LUTATHERA_DAYS)],
        lab(pid, f"{pid}-ecog", "89247-1", None, None, "2026-10-27T10:15:00-05:00", display="ECOG Performance Status",
            answer=coded(LOINC, "LA9623-5", "Restricted in physically strenuous activity")),
        lab(pid, f"{pid}-hb", "718-7", 12.4, "g/dL", LAB_TIME, display="Hemoglobin", high=15.5),
        lab(pid, f"{pid}-anc", "751-8", 3.1, "10*3/uL", LAB_TIME, display="Neutrophils [#/volume] in Blood"),
        lab(pid, f"{pid}-plt", "777-3", 212, "10*3/uL", LAB_TIME, display="Platelets [#/volume] in Blood"),
        lab(pid, f"{pid}-bili", "1975-2", 0.7, "mg/dL", LAB_TIME, display="Bilirubin.total", high=1.2),
        lab(pid, f"{pid}-scr", "2160-0", 0.9, "mg/dL", LAB_TIME, display="Creatinine"),
        lab(pid, f"{pid}-wt", "29463-7", 68, "kg", "2026-10-17T11:20:00-04:00", display="Body weight"),
    ]
    return validated(r for r in items if r["id"].removeprefix(f"{pid}-") not in skip)


def bundle(resources: Iterable[Resource], *, uuids: bool = False, valid: bool = True) -> Resource:
    """A `collection` Bundle; with `uuids`, entries are named by `urn:uuid:` fullUrls and the
    references between them use those (as interface engines write transaction Bundles).
    `valid=False` for a Bundle broken on purpose (it is then not validated)."""
    resources = [json.loads(json.dumps(r)) for r in resources]
    if not uuids:
        entries = [{"fullUrl": f"https://ehr.example.org/fhir/{r['resourceType']}/{r['id']}", "resource": r}
                   for r in resources]
    else:
        names = {f"{r['resourceType']}/{r['id']}": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, r['id'])}"
                 for r in resources}
        text = json.dumps(resources)
        for ref, urn in names.items():
            text = text.replace(f'"reference": "{ref}"', f'"reference": "{urn}"')
        entries = [{"fullUrl": names[f"{r['resourceType']}/{r['id']}"], "resource": r} for r in json.loads(text)]
    found = {"resourceType": "Bundle", "type": "collection", "timestamp": "2026-11-16T05:00:00Z", "entry": entries}
    if valid:
        get_fhir_model_class("Bundle").model_validate(found)
    return found


def write(directory: Path, name: str, data: Resource) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return path


def screen_path(path: Path, mapping: Any = SEED) -> dict[str, PatientResult | Exception]:
    """Every patient under `path` (files) screened with the seed mapping on AS_OF."""
    source = FileSource(path)
    return _screen(source.iter_facts(data_needs(mapping, AS_OF)), mapping)


def screen_resources(tmp_path: Path, resources: Iterable[Resource], *, uuids: bool = False,
                     mapping: Any = SEED) -> dict[str, PatientResult | Exception]:
    write(tmp_path / "feed", "bundle.json", bundle(resources, uuids=uuids))
    return screen_path(tmp_path / "feed", mapping)


def screen_server(server: Any, patient_ids: list[str], mapping: Any = SEED) -> dict[str, PatientResult | Exception]:
    """The same patients read through the real FHIR server's REST API."""
    source = open_source(server.base_url, Config())
    return _screen(source.iter_facts(data_needs(mapping, AS_OF), patient_ids), mapping)


def _screen(stream: Iterable[tuple[str, Any]], mapping: Any) -> dict[str, PatientResult | Exception]:
    """Each patient's result, checked against schemas/result.schema.json (every reason is declared)."""
    results: dict[str, PatientResult | Exception] = {}
    for pid, facts in stream:
        if isinstance(facts, Exception):
            results[pid] = facts
            continue
        results[pid] = evaluate_patient(mapping, facts, AS_OF)
        jsonschema.validate(results[pid].to_json(), PATIENT_RESULT_SCHEMA)
    return results


def outcome(result: PatientResult | Exception, criterion: str) -> tuple[str, str]:
    assert isinstance(result, PatientResult), result
    found = result.criterion(criterion)
    return found.outcome, found.reason


def references(result: PatientResult | Exception, criterion: str) -> list[str]:
    assert isinstance(result, PatientResult), result
    return [e.reference for e in result.criterion(criterion).evidence]
