"""Raw FHIR JSON -> facts: the fields the criteria read, checked; bad resources named, not fatal."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from connector.errors import ResourceError
from connector.parse import facts_from_resources, observation_fact, patient_facts, patient_id_of, reference_id

FIXTURES = Path(__file__).parent / "fixtures"


def _patient(pid: str = "p1", **extra) -> dict:
    return {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1960-05-17", **extra}


def _hb(oid: str = "o1", **extra) -> dict:
    resource = {
        "resourceType": "Observation", "id": oid, "status": "final", "meta": {"versionId": "3"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7", "display": "Hemoglobin"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-11-01T08:30:00+01:00",
        "valueQuantity": {"value": 8.1, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"},
        "referenceRange": [{"low": {"value": 12, "unit": "g/dL"}, "high": {"value": 16, "code": "g/dL",
                                                                          "system": "http://unitsofmeasure.org"}}],
    }
    resource.update(extra)
    return resource


def test_observation_fields_are_read_with_version_and_ucum_unit():
    fact = observation_fact(_hb())
    assert fact.source.reference == "Observation/o1/_history/3"
    assert fact.effective == date(2026, 11, 1)
    assert (fact.quantity.value, fact.quantity.unit, fact.quantity.is_ucum) == (8.1, "g/dL", True)
    assert fact.reference_high.value == 16 and fact.reference_high.unit == "g/dL"
    assert fact.codes[0].code == "718-7"


def test_text_unit_is_kept_but_not_marked_ucum():
    fact = observation_fact(_hb(valueQuantity={"value": 80, "unit": "g/L"}))
    assert fact.quantity.unit == "g/L" and not fact.quantity.is_ucum


@pytest.mark.parametrize("status", ["entered-in-error", "cancelled"])
def test_void_observations_are_dropped(status):
    assert observation_fact(_hb(status=status)) is None


@pytest.mark.parametrize("field, value, message", [
    ("valueQuantity", {"value": "8.1", "unit": "g/dL"}, "valueQuantity.value: expected a number, got a string"),
    ("effectiveDateTime", "2026-13-45", "effectiveDateTime: invalid date"),
    ("effectiveDateTime", "yesterday", "effectiveDateTime: invalid date"),
    ("code", "718-7", "code: expected an object, got a string"),
])
def test_bad_field_names_resource_and_path_without_echoing_value(field, value, message):
    with pytest.raises(ResourceError) as err:
        observation_fact(_hb(**{field: value}))
    assert str(err.value) == f"Observation/o1/_history/3: {message}"


def test_one_bad_resource_is_reported_and_the_rest_still_counts():
    facts = patient_facts("p1", [_patient(), _hb("bad", valueQuantity={"value": "x"}), _hb("good")])
    assert [o.source.id for o in facts.observations] == ["good"]
    assert len(facts.errors) == 1 and facts.errors[0].startswith("Observation/bad/_history/3: valueQuantity.value")
    assert "1960" not in facts.errors[0]  # no PHI in error text
    assert facts.birth_date == date(1960, 5, 17) and facts.gender == "female"


def test_missing_patient_is_an_error():
    with pytest.raises(ResourceError, match="Patient/p9 not found"):
        patient_facts("p9", [_hb()])


def test_medication_statement_not_taken_is_not_a_dose_and_references_resolve():
    med = {"resourceType": "Medication", "id": "m1",
           "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "141704",
                                "display": "everolimus"}], "text": "Afinitor"}}
    taken = {"resourceType": "MedicationStatement", "id": "s1", "status": "completed",
             "medicationReference": {"reference": "Medication/m1"}, "subject": {"reference": "Patient/p1"},
             "effectivePeriod": {"start": "2025-01-02"}}
    not_taken = dict(taken, id="s2", status="not-taken")
    contained = {"resourceType": "MedicationAdministration", "id": "a1", "status": "completed",
                 "contained": [{"resourceType": "Medication", "id": "lu", "code": {"text": "Lutathera"}}],
                 "medicationReference": {"reference": "#lu"}, "subject": {"reference": "Patient/p1"},
                 "effectiveDateTime": "2024-03-04", "dosage": {"dose": {"value": 7400, "unit": "MBq",
                                                                         "system": "http://unitsofmeasure.org",
                                                                         "code": "MBq"}}}
    facts = patient_facts("p1", [_patient(), med, taken, not_taken, contained])
    by_id = {m.source.id: m for m in facts.medications}
    assert set(by_id) == {"s1", "a1"}
    assert by_id["s1"].codes[0].code == "141704" and "Afinitor" in by_id["s1"].names
    assert by_id["s1"].effective == date(2025, 1, 2) and by_id["s1"].kind == "statement"
    assert by_id["a1"].names == ("Lutathera",) and by_id["a1"].dose.value == 7400 and by_id["a1"].kind == "administration"


def test_condition_refuted_dropped_status_and_site_kept():
    cond = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"},
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C7A.098"}]},
            "bodySite": [{"coding": [{"system": "http://snomed.info/sct", "code": "15776009"}]}],
            "onsetDateTime": "2019-06"}
    refuted = dict(cond, id="c2", verificationStatus={"coding": [{"code": "refuted"}]})
    facts = patient_facts("p1", [_patient(), cond, refuted])
    assert [c.source.id for c in facts.conditions] == ["c1"]
    assert facts.conditions[0].clinical_status == "active" and facts.conditions[0].onset == date(2019, 6, 1)
    assert facts.conditions[0].body_sites[0].code == "15776009"


@pytest.mark.parametrize("ref, expected", [
    ("Patient/123", "123"), ("https://h.example/fhir/Patient/123/_history/2", "123"),
    ("Group/123", None), ("urn:uuid:abc", None),
])
def test_reference_forms(ref, expected):
    assert reference_id({"reference": ref}, "Patient") == expected


def test_orphan_resources_are_reported_by_reference():
    patients, errors = facts_from_resources([_patient("p1"), _hb("o1"), _hb("o2", subject={"reference": "Patient/gone"})])
    assert [p.patient_id for p in patients] == ["p1"]
    assert errors == ["Observation/o2/_history/3: references Patient/gone, which is not in the source"]


def test_real_synthea_resources_parse_without_errors():
    lines = [json.loads(line) for f in sorted((FIXTURES / "synthea").glob("*.ndjson")) for line in f.open()]
    patients, errors = facts_from_resources(lines)
    assert errors == [] and len(patients) == 4
    for facts in patients:
        assert facts.errors == []
        assert facts.birth_date is not None and facts.gender in {"male", "female"}
        assert facts.observations and facts.medications and all(m.kind == "request" for m in facts.medications)
        assert all(patient_id_of(r) == facts.patient_id for r in lines
                   if r.get("subject", {}).get("reference") == facts.reference)
