"""The FHIR client against a real FHIR R4 server (sekmet-fhir on 127.0.0.1), with and
without SMART Backend Services enforced, including the `fetch` and `servers check` CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import defaultdict
from datetime import date
from pathlib import Path

import pytest
import requests

from connector.config import Config
from connector.errors import SourceError
from connector.fhir.auth import AuthError, build_auth
from connector.fhir.client import FhirClient
from connector.fhir.http import FhirRequestError
from connector.needs import DataNeeds
from connector.parse import patient_facts
from connector.sources import open_source
from connector.sources.fhir_rest import RestSource
from fhir_server import ClientKey, FhirTestServer

pytestmark = pytest.mark.server

SYNTHEA = Path(__file__).parent / "fixtures" / "synthea"
LOINC = "http://loinc.org"
HAND = "tc-int-1"  # the hand-made patient's id


def synthea_resources() -> list[dict]:
    return [json.loads(line) for f in sorted(SYNTHEA.glob("*.ndjson")) for line in f.read_text().splitlines() if line]


def expected_by_patient() -> dict[str, set[tuple[str, str]]]:
    """What each Synthea patient has in the fixture files: the truth to compare with."""
    expected: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for r in synthea_resources():
        pid = r["id"] if r["resourceType"] == "Patient" else r["subject"]["reference"].split("/")[-1]
        expected[pid].add((r["resourceType"], r["id"]))
    return expected


def hand_made_patient() -> list[dict]:
    """One patient with every medication type, a Medication by reference, and an ignored Observation."""
    subject = {"reference": f"Patient/{HAND}"}
    hb = {"coding": [{"system": LOINC, "code": "718-7", "display": "Hemoglobin"}]}
    return [
        {"resourceType": "Patient", "id": HAND, "gender": "female", "birthDate": "1961-05-20"},
        {"resourceType": "Observation", "id": f"{HAND}-hb-old", "status": "final", "subject": subject, "code": hb,
         "effectiveDateTime": "2019-03-01", "valueQuantity": {"value": 10.1, "unit": "g/dL",
                                                              "system": "http://unitsofmeasure.org", "code": "g/dL"}},
        {"resourceType": "Observation", "id": f"{HAND}-hb-new", "status": "final", "subject": subject, "code": hb,
         "effectiveDateTime": "2025-02-01", "valueQuantity": {"value": 12.9, "unit": "g/dL",
                                                              "system": "http://unitsofmeasure.org", "code": "g/dL"}},
        {"resourceType": "Observation", "id": f"{HAND}-hb-error", "status": "entered-in-error", "subject": subject,
         "code": hb, "effectiveDateTime": "2025-02-02", "valueQuantity": {"value": 99, "unit": "g/dL"}},
        {"resourceType": "Observation", "id": f"{HAND}-weight", "status": "final", "subject": subject,
         "code": {"coding": [{"system": LOINC, "code": "29463-7"}]}, "effectiveDateTime": "2025-02-01",
         "valueQuantity": {"value": 61.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}},
        {"resourceType": "Condition", "id": f"{HAND}-net", "subject": subject,
         "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                        "code": "active"}]},
         "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C7A.1"}]},
         "onsetDateTime": "2023-06-01"},
        {"resourceType": "Medication", "id": f"{HAND}-med-lutathera",
         "code": {"text": "Lutathera", "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                   "code": "2003033", "display": "lutetium Lu 177 dotatate"}]}},
        {"resourceType": "MedicationAdministration", "id": f"{HAND}-ma-1", "status": "completed", "subject": subject,
         "medicationReference": {"reference": f"Medication/{HAND}-med-lutathera"},
         "effectiveDateTime": "2024-01-10"},
        {"resourceType": "MedicationRequest", "id": f"{HAND}-mr-1", "status": "active", "intent": "order",
         "subject": subject, "authoredOn": "2024-05-01",
         "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                   "code": "141704", "display": "everolimus"}]}},
        {"resourceType": "MedicationStatement", "id": f"{HAND}-ms-1", "status": "active", "subject": subject,
         "effectiveDateTime": "2024-06-01", "medicationCodeableConcept": {"text": "sunitinib"}},
    ]


def ids(resources: list[dict]) -> set[tuple[str, str]]:
    return {(r["resourceType"], r["id"]) for r in resources}


@pytest.fixture(scope="module")
def loaded_server(fhir_server: FhirTestServer) -> FhirTestServer:
    fhir_server.load(synthea_resources())
    fhir_server.load(hand_made_patient())
    return fhir_server


@pytest.fixture(scope="module")
def loaded_smart_server(smart_fhir_server: FhirTestServer) -> FhirTestServer:
    smart_fhir_server.load(synthea_resources())
    smart_fhir_server.load(hand_made_patient())
    return smart_fhir_server


# ---- no auth -------------------------------------------------------------------------------------

def test_search_pages_with_a_small_count(loaded_server):
    client = FhirClient(loaded_server.server_config(page_size=7))
    pid, expected = next((p, e) for p, e in expected_by_patient().items()
                         if sum(t == "Observation" for t, _ in e) > 20)
    observations = list(client.search("Observation", {"patient": pid}))
    wanted = {i for t, i in expected if t == "Observation"}
    assert [r["id"] for r in observations if r["id"] in wanted] and {r["id"] for r in observations} == wanted
    assert len(observations) == len(wanted)  # every entry once
    assert client.stats.requests == -(-len(wanted) // 7)  # ceil: one request per page


def test_patient_resources_match_what_was_loaded(loaded_server):
    client = FhirClient(loaded_server.server_config(page_size=10))  # patients have up to 35 observations
    client.connect()
    for pid, expected in expected_by_patient().items():
        before = client.stats.requests
        found = client.patient_resources(pid)
        assert ids(found) == expected, pid
        pages = -(-sum(t == "Observation" for t, _ in expected) // 10)
        assert client.stats.requests - before == 1 + (pages - 1)  # one batch, plus extra Observation pages


def test_paging_through_an_update_between_pages_reports_the_entry_it_skipped(loaded_server):
    """sekmet pages by offset in write order: an update mid-read moves an entry to the end, so
    it comes twice (de-duplicated) and the entry after the page break shifts back and is never
    returned. The read says so (announced total vs. distinct matches) instead of losing it."""
    pid, expected = next(iter(expected_by_patient().items()))
    client = FhirClient(loaded_server.server_config(page_size=5))
    pages = client.search("Observation", {"patient": pid})
    seen = [next(pages) for _ in range(5)]
    updated = dict(seen[0], status="amended")
    requests.put(f"{loaded_server.base_url}/Observation/{updated['id']}", json=updated,
                 headers=loaded_server.admin_headers(), timeout=30).raise_for_status()
    rest = []
    with pytest.raises(SourceError, match=r"announced (\d+) matches but returned (\d+)") as failed:
        for resource in pages:
            rest.append(resource)
    all_ids = [r["id"] for r in seen + rest]
    assert len(all_ids) == len(set(all_ids))
    announced = int(re.search(r"announced (\d+)", str(failed.value)).group(1))
    assert len(all_ids) == announced - 1
    raw = [e["resource"]["id"] for e in loaded_server.get("Observation", patient=pid, _count=5).json()["entry"]]
    assert seen[0]["id"] not in raw  # the updated entry moved to the end: the server really did repeat it


def test_narrowed_observations_and_medication_reference(loaded_server):
    client = FhirClient(loaded_server.server_config())
    needs = DataNeeds(observation_codes=frozenset({(LOINC, "718-7")}), observations_since=date(2024, 1, 1))
    found = ids(client.patient_resources(HAND, needs))
    assert ("Observation", f"{HAND}-hb-new") in found
    assert ("Observation", f"{HAND}-hb-old") not in found  # before the window
    assert ("Observation", f"{HAND}-weight") not in found  # not a needed code
    assert ("Medication", f"{HAND}-med-lutathera") in found  # via _include
    assert {t for t, _ in found} == {"Patient", "Observation", "Condition", "Medication", "MedicationRequest",
                                     "MedicationStatement", "MedicationAdministration"}


def test_facts_of_the_hand_made_patient(loaded_server):
    facts = patient_facts(HAND, FhirClient(loaded_server.server_config()).patient_resources(HAND))
    assert {o.source.id for o in facts.observations} == {f"{HAND}-hb-old", f"{HAND}-hb-new", f"{HAND}-weight"}
    names = {name.lower() for m in facts.medications for name in m.names}
    assert {"lutathera", "everolimus", "sunitinib"} <= names
    assert facts.errors == []


def test_rest_source_lists_patient_ids_page_by_page(loaded_server):
    source = RestSource(FhirClient(loaded_server.server_config(page_size=2)))
    listed = list(source.patient_ids())
    assert len(listed) == len(set(listed))
    assert set(expected_by_patient()) | {HAND} <= set(listed)
    assert source.stats.requests >= len(listed) // 2


def test_open_source_reads_a_server_by_url(loaded_server):
    source = open_source(loaded_server.base_url, Config())
    results = dict(source.iter_facts(DataNeeds(), [HAND, "no-such-patient"]))
    assert results[HAND].patient_id == HAND and len(results[HAND].conditions) == 1
    assert "not found" in str(results["no-such-patient"])


# ---- SMART Backend Services ------------------------------------------------------------------------

@pytest.mark.parametrize("client_id", ["connector", "connector-es384"])
def test_smart_client_pulls_patients(loaded_smart_server, tmp_path, client_id):
    config = loaded_smart_server.server_config(auth=loaded_smart_server.smart_auth(client_id, tmp_path))
    client = FhirClient(config)
    for pid, expected in expected_by_patient().items():
        assert ids(client.patient_resources(pid)) == expected
    assert client.http.auth.tokens_fetched == 1  # cached across patients


def test_smart_server_refuses_requests_without_a_token(loaded_smart_server):
    client = FhirClient(loaded_smart_server.server_config())
    with pytest.raises(FhirRequestError) as err:
        client.patient_resources(HAND)
    assert err.value.status == 401


def test_smart_scopes_are_enforced_and_explained(fhir_server_factory, tmp_path):
    key = ClientKey.generate("RS384", kid="narrow")
    server = fhir_server_factory(smart_clients=[key.registration("narrow", scopes="system/Patient.rs")])
    config = server.server_config(auth=key.auth_config("narrow", tmp_path, scope="system/Patient.rs"))
    with pytest.raises(FhirRequestError) as err:
        FhirClient(config).patient_resources("anyone")
    assert err.value.status == 403 and "do not permit" in str(err.value)


def test_smart_unknown_key_is_refused_clearly(loaded_smart_server, tmp_path):
    stranger = ClientKey.generate("RS384", kid=loaded_smart_server.client_keys["connector"].kid)
    config = loaded_smart_server.server_config(auth=stranger.auth_config("connector", tmp_path))
    with pytest.raises(AuthError) as err:
        FhirClient(config).patient_resources(HAND)
    assert "HTTP 401" in str(err.value) and "invalid_client" in str(err.value)


def test_smart_token_renewal_before_expiry_and_after_401(fhir_server_factory, tmp_path):
    key = ClientKey.generate("RS384", kid="short")
    server = fhir_server_factory(smart_clients=[key.registration("short")], token_lifetime=2)
    server.load(hand_made_patient())
    skew = [0.0]  # seconds the connector's clock lags behind the server's
    config = server.server_config(auth=key.auth_config("short", tmp_path))
    auth = build_auth(config, now=lambda: time.time() - skew[0])
    client = FhirClient(config, auth=auth)
    assert ids(client.patient_resources(HAND)) >= {("Patient", HAND)}
    assert auth.tokens_fetched == 1
    time.sleep(2.2)
    # expired: renewed before use
    assert ("Patient", HAND) in ids(client.patient_resources(HAND))
    assert auth.tokens_fetched == 2
    # a lagging clock makes the connector send an expired token: the 401 renews it once
    time.sleep(2.2)
    skew[0] = 2.0
    assert ("Patient", HAND) in ids(client.patient_resources(HAND))
    assert auth.tokens_fetched == 3


# ---- the CLI -------------------------------------------------------------------------------------

def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "connector", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def write_config(tmp_path: Path, server: FhirTestServer, client_id: str | None = None) -> Path:
    """A TOML config naming the server `hospital`, with SMART auth as `client_id` when given."""
    lines = [f'[servers.hospital]\nurl = "{server.base_url}"\nmax_retries = 1\npage_size = 10\n']
    if client_id is not None:
        key = server.client_keys[client_id]
        pem = key.write_pem(tmp_path, "connector.pem")
        lines.append(f'[servers.hospital.auth]\ntype = "smart"\nclient_id = "{client_id}"\n'
                     f'private_key_file = "{pem}"\nkey_id = "{key.kid}"\nalgorithm = "{key.algorithm}"\n'
                     'scope = "system/*.rs"\n')
    path = tmp_path / "trial-connector.toml"
    path.write_text("".join(lines))
    return path


def test_fetch_cli_prints_facts_and_request_count(loaded_server, tmp_path):
    result = run_cli("-v", "fetch", "--source", loaded_server.base_url, "--patient", HAND, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Patient/{HAND}  female")
    assert "Observations: 3" in result.stdout and "Conditions: 1" in result.stdout
    assert "Medications: 3" in result.stdout and "lutetium Lu 177 dotatate" in result.stdout
    assert f"HTTP requests for Patient/{HAND}: 1 " in result.stderr
    assert "1961" not in result.stdout + result.stderr  # no birth date anywhere


def test_fetch_cli_json_with_smart_config(loaded_smart_server, tmp_path):
    config = write_config(tmp_path, loaded_smart_server, "connector")
    result = run_cli("--config", str(config), "-v", "fetch", "--source", "hospital", "--patient", HAND,
                     "--format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["patient"] == f"Patient/{HAND}"
    assert data["counts"] == {"observations": 3, "conditions": 1, "medications": 3, "errors": 0}
    assert "birth" not in result.stdout
    assert f"HTTP requests for Patient/{HAND}:" in result.stderr
    assert "PRIVATE KEY" not in result.stderr and "access_token" not in result.stderr


def test_fetch_cli_exit_codes(loaded_server, tmp_path):
    missing = run_cli("fetch", "--source", loaded_server.base_url, "--patient", "nobody-here", cwd=tmp_path)
    assert missing.returncode == 1 and "Patient/nobody-here not found" in missing.stderr
    config = tmp_path / "trial-connector.toml"
    config.write_text('[servers.down]\nurl = "http://127.0.0.1:9/fhir"\nmax_retries = 0\n')
    down = run_cli("fetch", "--source", "down", "--patient", HAND, cwd=tmp_path)
    assert down.returncode == 2 and "http://127.0.0.1:9/fhir/metadata" in down.stderr


def test_servers_check_reports_support_and_auth(loaded_smart_server, tmp_path):
    config = write_config(tmp_path, loaded_smart_server, "connector-es384")
    result = run_cli("--config", str(config), "servers", "check", "hospital", "--format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["fhir_version"] == "4.0.1" and report["batch"] is True
    assert report["bulk_export"] == ["system", "Patient", "Group"]
    assert report["auth"]["status"] == "ok" and report["auth"]["algorithm"] == "ES384"
    assert report["auth"]["token_url"] == loaded_smart_server.token_url
    assert report["read"]["status"] == "ok"
    assert "code" in report["types"]["Observation"]["search_params"]


def test_servers_check_without_credentials_fails_with_2(loaded_smart_server, tmp_path):
    result = run_cli("servers", "check", loaded_smart_server.base_url, cwd=tmp_path)
    assert result.returncode == 2
    assert "FHIR version: 4.0.1" in result.stdout and "read access: failed" in result.stdout


def test_servers_check_names_a_config_problem_with_exit_1(loaded_server, tmp_path):
    config = tmp_path / "trial-connector.toml"
    config.write_text(f'[servers.hospital]\nurl = "{loaded_server.base_url}"\n[servers.hospital.auth]\n'
                      f'type = "smart"\nclient_id = "connector"\nprivate_key_file = "{tmp_path}/missing.pem"\n')
    result = run_cli("--config", str(config), "servers", "check", "hospital", cwd=tmp_path)
    assert result.returncode == 1
    assert "batch: yes" in result.stdout  # the server part is still reported
    assert "auth (smart): config error" in result.stdout and "missing.pem" in result.stdout
    listed = run_cli("--config", str(config), "servers", "list", cwd=tmp_path)
    assert listed.returncode == 0 and listed.stdout.startswith(f"hospital  {loaded_server.base_url}  auth=smart")
