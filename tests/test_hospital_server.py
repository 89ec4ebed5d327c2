"""Issue 9's status, version, reference and code-system rules through a real FHIR R4 server
(sekmet-fhir): the hospital-feed records of test_hospital_data.py, stored with PUT and read back
over REST the way a scheduled run reads them."""

from __future__ import annotations

import pytest

from connector.results import CANDIDATE, POSSIBLE
from hospital_feed import (
    LAB_TIME,
    LOINC_OID,
    RXNORM,
    ICD10CM,
    administration,
    candidate_record,
    coded,
    condition,
    lab,
    outcome,
    references,
    request,
    screen_server,
    statement,
    validated,
)

pytestmark = pytest.mark.server

XOFIGO = coded(RXNORM, "1433981", "radium Ra 223 dichloride")


def load(server, pid: str, *changes, without=()) -> None:
    record = candidate_record(pid, without=without)
    extra = validated(changes)
    ids = {(r["resourceType"], r["id"]) for r in extra}
    server.load([r for r in record if (r["resourceType"], r["id"]) not in ids] + extra)


def test_statuses_and_intents_over_rest(fhir_server):
    pid = "i9-status"
    load(fhir_server, pid,
         lab(pid, f"{pid}-plt-void", "777-3", 12, "10*3/uL", "2026-11-09T08:00:00-05:00", status="entered-in-error"),
         lab(pid, f"{pid}-hb-prelim", "718-7", 6.9, "g/dL", "2026-11-09T08:00:00-05:00", status="preliminary"),
         condition(pid, f"{pid}-brain", coded(ICD10CM, "C79.31", "Secondary malignant neoplasm of brain"),
                   verification="refuted"),
         condition(pid, f"{pid}-chf", coded(ICD10CM, "I50.22", "Chronic systolic heart failure"),
                   verification="provisional"),
         request(pid, f"{pid}-ra-1", "2025-03-01", XOFIGO, intent="proposal"),
         statement(pid, f"{pid}-ra-2", "2025-03-01", XOFIGO, status="not-taken"),
         administration(pid, f"{pid}-ra-3", "2025-03-01", concept=XOFIGO, status="not-done", dose_mbq=None))
    result = screen_server(fhir_server, [pid])[pid]
    assert outcome(result, "platelets") == ("met", "value")
    assert outcome(result, "hemoglobin") == ("unknown", "preliminary")
    assert len(references(result, "hemoglobin")) == 2
    assert outcome(result, "no_brain_metastases") == ("met", "no-record")
    assert outcome(result, "no_uncontrolled_chf") == ("unknown", "manual")
    assert outcome(result, "no_targeted_alpha") == ("met", "no-record")
    assert result.status == POSSIBLE


def test_a_corrected_result_stored_as_a_new_version_supersedes_the_first(fhir_server):
    pid = "i9-version"
    load(fhir_server, pid, lab(pid, f"{pid}-plt", "777-3", 42, "10*3/uL", LAB_TIME))
    fhir_server.load(validated([lab(pid, f"{pid}-plt", "777-3", 182, "10*3/uL", LAB_TIME, status="corrected")]))
    history = fhir_server.get(f"Observation/{pid}-plt/_history").json()
    assert history.get("total", len(history.get("entry", []))) >= 2
    result = screen_server(fhir_server, [pid])[pid]
    assert outcome(result, "platelets") == ("met", "value")
    assert result.criterion("platelets").evidence[0].value == 182
    assert result.status == CANDIDATE and not result.errors


def test_medication_references_resolve_on_the_server_or_are_the_patients_error(fhir_server):
    found, lost = "i9-ref-ok", "i9-ref-lost"
    load(fhir_server, found)  # administrations point to Medication/{pid}-med-lu, stored on the server
    load(fhir_server, lost, administration(lost, f"{lost}-lu4", "2024-01-19T09:45:00-05:00",
                                            medication_ref="Medication/i9-never-sent"))
    results = screen_server(fhir_server, [found, lost])
    assert outcome(results[found], "prior_prrt") == ("met", "count")
    assert results[found].status == CANDIDATE and not results[found].errors
    assert any("Medication/i9-never-sent" in e and "resolves nowhere" in e for e in results[lost].errors)
    assert results[lost].status == POSSIBLE


def test_a_contained_medication_and_oid_coded_labs_over_rest(fhir_server):
    pid = "i9-codes"
    brand = {"resourceType": "Medication", "id": "afinitor", "code": {"text": "AFINITOR 10 MG TABLET"},
             "ingredient": [{"itemCodeableConcept": coded(RXNORM, "141704", "everolimus")}]}
    everolimus = statement(pid, f"{pid}-evero", "2025-02-01", medicationReference={"reference": "#afinitor"},
                           contained=[brand])
    everolimus.pop("medicationCodeableConcept", None)
    low_hb = lab(pid, f"{pid}-hb", "718-7", 7.1, "g/dL", LAB_TIME, system=LOINC_OID)  # the server's code= search
    load(fhir_server, pid, everolimus, low_hb)
    result = screen_server(fhir_server, [pid])[pid]
    assert outcome(result, "hemoglobin") == ("not_met", "value")
    arm = next(a for a in result.arms if a.label.startswith("Arm II"))
    assert "everolimus" not in arm.options
