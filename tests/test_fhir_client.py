"""FhirClient: paging, de-duplication, capability-driven plans, batch, 400 fallbacks and
medication references, against `responses` mocks (the real server is in test_fhir_integration)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
import responses
from responses import matchers

from connector.config import ServerConfig
from connector.errors import ResourceError, SourceError
from connector.fhir.capabilities import Capabilities
from connector.fhir.client import FhirClient
from connector.fhir.http import FhirRequestError
from connector.needs import DataNeeds
from connector.sources.fhir_rest import RestSource

BASE = "http://127.0.0.1:8090/fhir"
FIXTURES = Path(__file__).parent / "fixtures" / "fhir"
SEKMET_CAPS = json.loads((FIXTURES / "capability_sekmet.json").read_text())
EPIC_CAPS = json.loads((FIXTURES / "capability_epic_like.json").read_text())
LOINC = "http://loinc.org"
NEEDS = DataNeeds(observation_codes=frozenset({(LOINC, "718-7"), (LOINC, "777-3")}),
                  observations_since=date(2024, 1, 1))


# NEEDS' two LOINC codes as a `code=` search asks for them: under the URI and the OID
CODES_AS_SEARCHED = ("http://loinc.org|718-7,http://loinc.org|777-3,"
                     "urn:oid:2.16.840.1.113883.6.1|718-7,urn:oid:2.16.840.1.113883.6.1|777-3")

def client(page_size: int = 50, **settings) -> FhirClient:
    config = ServerConfig(name="test", url=BASE, page_size=page_size, **{"max_retries": 1, **settings})
    return FhirClient(config, sleep=lambda s: None, jitter=lambda: 0.5)


def res(rtype: str, rid: str, **fields) -> dict:
    return {"resourceType": rtype, "id": rid, **fields}


def obs(rid: str, pid: str = "p1") -> dict:
    return res("Observation", rid, status="final", subject={"reference": f"Patient/{pid}"})


def searchset(resources: list[dict], next_url: str | None = None, included: list[dict] = ()) -> dict:
    entries = [{"resource": r, "search": {"mode": "match"}} for r in resources]
    entries += [{"resource": r, "search": {"mode": "include"}} for r in included]
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": entries,
              "link": [{"relation": "self", "url": f"{BASE}/x"}]}
    if next_url:
        bundle["link"].append({"relation": "next", "url": next_url})
    return bundle


def query_of(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def mock_metadata(statement: dict = SEKMET_CAPS) -> None:
    responses.get(f"{BASE}/metadata", json=statement)


# ---- search and paging -------------------------------------------------------------------

@responses.activate
def test_search_follows_next_links_to_the_end_with_count():
    responses.get(f"{BASE}/Observation", match=[matchers.query_param_matcher({"patient": "p1", "_count": "2"})],
                  json=searchset([obs("o1"), obs("o2")], f"{BASE}/Observation?patient=p1&_count=2&_offset=2"))
    responses.get(f"{BASE}/Observation", match=[matchers.query_param_matcher(
        {"patient": "p1", "_count": "2", "_offset": "2"})],
        json=searchset([obs("o3"), obs("o4")], f"{BASE}/Observation?patient=p1&_count=2&_offset=4"))
    responses.get(f"{BASE}/Observation", match=[matchers.query_param_matcher(
        {"patient": "p1", "_count": "2", "_offset": "4"})], json=searchset([obs("o5")]))
    found = list(client(page_size=2).search("Observation", {"patient": "p1"}))
    assert [r["id"] for r in found] == ["o1", "o2", "o3", "o4", "o5"]
    assert len(responses.calls) == 3


@responses.activate
def test_entries_repeated_across_pages_are_returned_once():
    # offset paging while a resource was updated: o2 shows up on both pages
    responses.get(f"{BASE}/Observation", match=[matchers.query_param_matcher({"_count": "3"})],
                  json=searchset([obs("o1"), obs("o2"), obs("o3")], f"{BASE}/Observation?_count=3&_offset=3"))
    responses.get(f"{BASE}/Observation", match=[matchers.query_param_matcher({"_count": "3", "_offset": "3"})],
                  json=searchset([obs("o2"), obs("o4")]))
    found = [r["id"] for r in client(page_size=3).search("Observation")]
    assert found == ["o1", "o2", "o3", "o4"]


@responses.activate
def test_a_resource_updated_between_pages_is_kept_at_its_newer_version():
    v1 = obs("o2") | {"meta": {"versionId": "9", "lastUpdated": "2026-11-07T09:00:00.000-05:00"}}
    v2 = obs("o2") | {"status": "corrected", "meta": {"versionId": "10", "lastUpdated": "2026-11-07T16:30:00Z"}}
    responses.get(f"{BASE}/Observation", match=[matchers.query_param_matcher({"_count": "2"})],
                  json=searchset([obs("o1"), v2], f"{BASE}/Observation?_count=2&_offset=2"))
    responses.get(f"{BASE}/Observation", match=[matchers.query_param_matcher({"_count": "2", "_offset": "2"})],
                  json=searchset([v1, obs("o3")]))
    found: dict = {}
    FhirClient._collect(client(page_size=2).search("Observation"), found)
    assert found[("Observation", "o2")]["meta"]["versionId"] == "10"  # by lastUpdated; "9" > "10" as text


@responses.activate
def test_relative_next_links_and_outcome_entries():
    page1 = searchset([obs("o1")], "Observation?_count=1&_offset=1")
    page1["entry"].append({"resource": {"resourceType": "OperationOutcome", "issue": [
        {"severity": "warning", "code": "not-supported", "diagnostics": "Unknown parameter 'foo' ignored"}]},
        "search": {"mode": "outcome"}})
    responses.get(f"{BASE}/Observation", match=[matchers.query_param_matcher({"_count": "1"})], json=page1)
    responses.get(f"{BASE}/Observation", match=[matchers.query_param_matcher({"_count": "1", "_offset": "1"})],
                  json=searchset([obs("o2")]))
    assert [r["id"] for r in client(page_size=1).search("Observation")] == ["o1", "o2"]


@responses.activate
def test_next_link_to_another_host_is_refused():
    responses.get(f"{BASE}/Patient", json=searchset([res("Patient", "p1")], "http://evil.example.org/fhir/Patient?page=2"))
    with pytest.raises(SourceError, match="next-page link points to http://evil.example.org"):
        list(client().search("Patient"))
    assert len(responses.calls) == 1


@responses.activate
def test_a_next_link_loop_ends():
    loop = f"{BASE}/Patient?_count=1&_offset=1"
    responses.get(f"{BASE}/Patient", match=[matchers.query_param_matcher({"_count": "1"})],
                  json=searchset([res("Patient", "p1")], loop))
    responses.get(f"{BASE}/Patient", match=[matchers.query_param_matcher({"_count": "1", "_offset": "1"})],
                  json=searchset([res("Patient", "p2")], loop))
    assert [r["id"] for r in client(page_size=1).search("Patient")] == ["p1", "p2"]
    assert len(responses.calls) == 2


@responses.activate
def test_a_page_that_is_not_a_bundle_is_an_error():
    responses.get(f"{BASE}/Patient", json={"resourceType": "Patient", "id": "x"})
    with pytest.raises(SourceError, match="Patient search: the server returned something other than a Bundle"):
        list(client().search("Patient"))


@responses.activate
def test_read_checks_the_id_and_reports_404():
    responses.get(f"{BASE}/Patient/p1", json=res("Patient", "p1"))
    responses.get(f"{BASE}/Patient/gone", status=404, json={"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "not-found", "diagnostics": "Patient/gone not found"}]})
    c = client()
    assert c.read("Patient", "p1")["id"] == "p1"
    with pytest.raises(FhirRequestError) as err:
        c.read("Patient", "gone")
    assert err.value.status == 404 and "Patient/gone not found" in str(err.value)
    with pytest.raises(ResourceError, match="not a valid FHIR id"):
        c.read("Patient", "../metadata")


# ---- capabilities ------------------------------------------------------------------------

def test_capabilities_of_the_real_sekmet_statement():
    caps = Capabilities.from_statement(SEKMET_CAPS)
    assert caps.fhir_version == "4.0.1" and caps.batch is True
    assert caps.supports_param("Observation", "code") and caps.supports_param("Observation", "date")
    assert caps.supports_include("MedicationRequest", "MedicationRequest:medication")
    assert caps.medication_types({"MedicationStatement", "MedicationRequest", "MedicationAdministration"}) == [
        "MedicationStatement", "MedicationRequest", "MedicationAdministration"]
    assert caps.bulk_export == ["system", "Patient", "Group"]


def test_epic_like_server_gets_medication_history_from_requests_and_administrations():
    caps = Capabilities.from_statement(EPIC_CAPS)
    assert caps.batch is False and not caps.supports_type("MedicationStatement")
    assert caps.medication_types({"MedicationStatement"}) == ["MedicationRequest", "MedicationAdministration"]
    assert not caps.supports_include("MedicationRequest", "MedicationRequest:medication")
    assert not caps.supports_param("Condition", "code") and caps.supports_param("Condition", "patient")
    assert caps.token_url == "http://127.0.0.1:8090/oauth2/token"
    assert caps.bulk_export == []


def test_unknown_capabilities_assume_common_features_but_no_batch():
    caps = Capabilities.unknown()
    assert caps.supports_type("MedicationStatement") and caps.supports_param("Observation", "code")
    assert caps.batch is False


@responses.activate
def test_metadata_is_read_once():
    mock_metadata()
    c = client()
    assert c.capabilities() is c.capabilities()
    assert len(responses.calls) == 1


@responses.activate
def test_missing_metadata_falls_back_to_assumptions():
    responses.get(f"{BASE}/metadata", status=404)
    caps = client().capabilities()
    assert caps.known is False and caps.batch is False


# ---- one patient: batch --------------------------------------------------------------------

class BatchServer:
    """Answers a batch Bundle from per-type searchsets (or per-type error statuses)."""

    def __init__(self, bundles: dict[str, dict], errors: dict[str, int] | None = None):
        self.bundles = bundles
        self.errors = errors or {}
        self.requests: list[list[str]] = []

    def __call__(self, request):
        body = json.loads(request.body)
        assert body["resourceType"] == "Bundle" and body["type"] == "batch"
        urls = [e["request"]["url"] for e in body["entry"]]
        assert all(e["request"]["method"] == "GET" for e in body["entry"])
        self.requests.append(urls)
        entries = []
        for url in urls:
            rtype = url.split("?")[0]
            if rtype in self.errors:
                entries.append({"response": {"status": f"{self.errors[rtype]} Bad Request", "outcome": {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "error", "code": "invalid", "diagnostics": f"{rtype}: bad parameter"}]}}})
            else:
                entries.append({"resource": self.bundles.get(rtype, searchset([])), "response": {"status": "200 OK"}})
        return 200, {}, json.dumps({"resourceType": "Bundle", "type": "batch-response", "entry": entries})


@responses.activate
def test_one_batch_fetches_a_patient_with_narrowed_observations():
    mock_metadata()
    med = res("Medication", "m1", code={"text": "everolimus"})
    server = BatchServer({
        "Patient": searchset([res("Patient", "p1")]),
        "Observation": searchset([obs("o1")]),
        "Condition": searchset([res("Condition", "c1", subject={"reference": "Patient/p1"})]),
        "MedicationRequest": searchset([res("MedicationRequest", "mr1", subject={"reference": "Patient/p1"},
                                            medicationReference={"reference": "Medication/m1"})], included=[med]),
    })
    responses.add_callback(responses.POST, BASE, callback=server)
    c = client()
    c.connect()
    before = c.stats.requests
    found = c.patient_resources("p1", NEEDS)
    assert c.stats.requests - before == 1
    assert {(r["resourceType"], r["id"]) for r in found} == {
        ("Patient", "p1"), ("Observation", "o1"), ("Condition", "c1"), ("MedicationRequest", "mr1"),
        ("Medication", "m1")}
    urls = {u.split("?")[0]: query_of(u) for u in server.requests[0]}
    assert set(urls) == {"Patient", "Observation", "Condition", "MedicationStatement", "MedicationRequest",
                         "MedicationAdministration"}
    assert urls["Patient"] == {"_id": "p1"}
    assert urls["Observation"] == {  # each code under its URI and its OID: servers match the system as stored
        "patient": "p1", "code": CODES_AS_SEARCHED, "date": "ge2024-01-01", "_count": "50"}
    assert urls["MedicationRequest"]["_include"] == "MedicationRequest:medication"


@responses.activate
def test_narrowing_can_be_turned_off_per_server():
    mock_metadata()
    server = BatchServer({"Patient": searchset([res("Patient", "p1")]), "Observation": searchset([obs("o1")])})
    responses.add_callback(responses.POST, BASE, callback=server)
    client(narrow_observations=False).patient_resources("p1", NEEDS)
    urls = {u.split("?")[0]: query_of(u) for u in server.requests[0]}
    assert urls["Observation"] == {"patient": "p1", "_count": "50"}


@responses.activate
def test_next_links_of_batch_entries_are_followed():
    mock_metadata()
    page2 = f"{BASE}/Observation?patient=p1&_count=1&_offset=1"
    server = BatchServer({"Patient": searchset([res("Patient", "p1")]),
                          "Observation": searchset([obs("o1")], page2)})
    responses.add_callback(responses.POST, BASE, callback=server)
    responses.get(f"{BASE}/Observation", match=[matchers.query_param_matcher(
        {"patient": "p1", "_count": "1", "_offset": "1"})], json=searchset([obs("o2"), obs("o1")]))
    ids = sorted(r["id"] for r in client(page_size=1).patient_resources("p1") if r["resourceType"] == "Observation")
    assert ids == ["o1", "o2"]


@responses.activate
def test_batch_entry_rejected_with_400_falls_back_to_broader_query_and_remembers():
    mock_metadata()
    server = BatchServer({"Patient": searchset([res("Patient", "p1")])}, errors={"Observation": 400})
    responses.add_callback(responses.POST, BASE, callback=server)
    broader_calls = []

    def observation_search(request):
        query = query_of(request.url)
        broader_calls.append(query)
        if "date" in query:
            return 400, {}, json.dumps({"resourceType": "OperationOutcome", "issue": [
                {"severity": "error", "code": "not-supported", "diagnostics": "date not supported"}]})
        return 200, {}, json.dumps(searchset([obs("o1"), obs("o9")]))

    responses.add_callback(responses.GET, f"{BASE}/Observation", callback=observation_search)
    c = client()
    found = c.patient_resources("p1", NEEDS)
    assert {r["id"] for r in found if r["resourceType"] == "Observation"} == {"o1", "o9"}
    # the batch asked with code+date; the fallback dropped date and kept the codes
    assert broader_calls == [{"patient": "p1", "code": CODES_AS_SEARCHED, "_count": "50"}]
    # the next patient's batch already uses the broader Observation query
    server.errors.clear()
    c.patient_resources("p2", NEEDS)
    second = {u.split("?")[0]: query_of(u) for u in server.requests[1]}
    assert "date" not in second["Observation"] and second["Observation"]["patient"] == "p2"


@responses.activate
def test_refused_batch_switches_to_one_search_per_type():
    mock_metadata()
    responses.post(BASE, status=405, json={"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "not-supported", "diagnostics": "batch not allowed"}]})
    for rtype in ("Patient", "Observation", "Condition", "MedicationStatement", "MedicationRequest",
                  "MedicationAdministration"):
        responses.get(f"{BASE}/{rtype}", json=searchset([res("Patient", "p1")] if rtype == "Patient" else []))
    c = client()
    c.connect()
    c.patient_resources("p1")
    c.patient_resources("p2")
    methods = [call.request.method for call in responses.calls[1:]]
    assert methods == ["POST"] + ["GET"] * 12  # the batch is not tried again for p2


@responses.activate
def test_batch_entry_forbidden_is_an_error_with_diagnostics():
    mock_metadata()
    responses.add_callback(responses.POST, BASE, callback=BatchServer({}, errors={"Condition": 403}))
    with pytest.raises(FhirRequestError) as err:
        client().patient_resources("p1")
    assert err.value.status == 403 and "Condition: bad parameter" in str(err.value)


# ---- one patient: no batch (Epic-like) -------------------------------------------------------

@responses.activate
def test_without_batch_one_search_per_supported_type_and_references_resolved():
    mock_metadata(EPIC_CAPS)
    responses.get(f"{BASE}/Patient", match=[matchers.query_param_matcher({"_id": "p1", "_count": "50"})],
                  json=searchset([res("Patient", "p1")]))
    responses.get(f"{BASE}/Observation", json=searchset([obs("o1")]))
    responses.get(f"{BASE}/Condition", json=searchset([]))
    responses.get(f"{BASE}/MedicationRequest", json=searchset([
        res("MedicationRequest", "mr1", medicationReference={"reference": "Medication/m1"}),
        res("MedicationRequest", "mr2", medicationReference={"reference": f"{BASE}/Medication/m2"})]))
    responses.get(f"{BASE}/MedicationAdministration", json=searchset([]))
    responses.get(f"{BASE}/Medication", match=[matchers.query_param_matcher({"_id": "m1,m2", "_count": "50"})],
                  json=searchset([res("Medication", "m1"), res("Medication", "m2")]))
    c = client()
    found = c.patient_resources("p1", NEEDS)
    assert ("Medication", "m2") in {(r["resourceType"], r["id"]) for r in found}
    paths = [urlsplit(call.request.url).path.rsplit("/", 1)[-1] for call in responses.calls]
    assert paths == ["metadata", "Patient", "Observation", "Condition", "MedicationRequest",
                     "MedicationAdministration", "Medication"]
    obs_query = query_of(responses.calls[2].request.url)
    assert obs_query["code"] == CODES_AS_SEARCHED and obs_query["date"] == "ge2024-01-01"
    assert "_include" not in query_of(responses.calls[4].request.url)
    # Medications are cached: the next patient referencing m1 costs no Medication search
    calls_before = len(responses.calls)
    c.patient_resources("p1", NEEDS)
    assert [urlsplit(call.request.url).path.rsplit("/", 1)[-1] for call in responses.calls[calls_before:]] == [
        "Patient", "Observation", "Condition", "MedicationRequest", "MedicationAdministration"]


@responses.activate
def test_rejected_code_parameter_falls_back_to_all_observations():
    mock_metadata(EPIC_CAPS)
    needs = DataNeeds(resource_types=frozenset({"Patient", "Observation"}),
                      observation_codes=frozenset({(LOINC, "718-7")}))
    responses.get(f"{BASE}/Patient", json=searchset([res("Patient", "p1")]))
    responses.get(f"{BASE}/Observation", match=[matchers.query_param_matcher(
        {"patient": "p1", "code": "http://loinc.org|718-7,urn:oid:2.16.840.1.113883.6.1|718-7", "_count": "50"})], status=400,
        json={"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "invalid",
                                                              "diagnostics": "code system not supported"}]})
    responses.get(f"{BASE}/Observation", match=[matchers.query_param_matcher({"patient": "p1", "_count": "50"})],
                  json=searchset([obs("o1"), obs("o2")]))
    found = client().patient_resources("p1", needs)
    assert sorted(r["id"] for r in found if r["resourceType"] == "Observation") == ["o1", "o2"]


@responses.activate
def test_unsupported_parameters_are_not_sent():
    statement = json.loads(json.dumps(EPIC_CAPS))
    observation = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Observation")
    observation["searchParam"] = [p for p in observation["searchParam"] if p["name"] != "date"]
    mock_metadata(statement)
    plan = client().plan("p1", NEEDS)
    observation_query = next(q for q in plan if q.rtype == "Observation")
    assert "date" not in dict(observation_query.variants[0]) and "code" in dict(observation_query.variants[0])


@responses.activate
def test_needs_limit_the_types_searched():
    mock_metadata()
    plan = client().plan("p1", DataNeeds(resource_types=frozenset({"Patient", "Condition"})))
    assert [q.rtype for q in plan] == ["Patient", "Condition"]


@responses.activate
def test_invalid_patient_id_is_refused_before_any_search():
    mock_metadata()
    with pytest.raises(ResourceError):
        client().patient_resources("p1&_count=1000")
    assert [urlsplit(c.request.url).path for c in responses.calls] == ["/fhir/metadata"]


# ---- RestSource --------------------------------------------------------------------------------

@responses.activate
def test_rest_source_pages_patient_ids():
    responses.get(f"{BASE}/Patient", match=[matchers.query_param_matcher({"_elements": "id", "_count": "2"})],
                  json=searchset([res("Patient", "a"), res("Patient", "b")],
                                 f"{BASE}/Patient?_elements=id&_count=2&_offset=2"))
    responses.get(f"{BASE}/Patient", match=[matchers.query_param_matcher(
        {"_elements": "id", "_count": "2", "_offset": "2"})], json=searchset([res("Patient", "c")]))
    source = RestSource(client(page_size=2))
    assert list(source.patient_ids()) == ["a", "b", "c"]
    assert list(source.patient_ids(limit=1)) == ["a"]


@responses.activate
def test_rest_source_without_elements_support():
    responses.get(f"{BASE}/Patient", match=[matchers.query_param_matcher({"_elements": "id", "_count": "5"})],
                  status=400)
    responses.get(f"{BASE}/Patient", match=[matchers.query_param_matcher({"_count": "5"})],
                  json=searchset([res("Patient", "a")]))
    assert list(RestSource(client(page_size=5)).patient_ids()) == ["a"]


@responses.activate
def test_metadata_that_is_not_a_capability_statement_is_survived():
    responses.get(f"{BASE}/metadata", body="<html>login page</html>", content_type="text/html")
    caps = client().capabilities()
    assert caps.known is False and caps.supports_type("Observation")
