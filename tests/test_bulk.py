"""Bulk Data $export client: kick-off, polling, resumable downloads, job state (responses mocks),
and end-to-end against the real sekmet server (Patient and Group level, `_since`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
import responses

from connector.config import ServerConfig
from connector.errors import SourceError
from connector.fhir.bulk import STATE_FILE, BulkExportClient, ExportRequest, export_types, instant_z
from connector.fhir.http import HttpClient
from connector.mapping import data_needs, load_mapping
from connector.needs import DataNeeds
from connector.sources.bulk import BulkSource

BASE = "http://127.0.0.1:9999/fhir"
STATUS = f"{BASE}/bulk-status/job1"
FIXTURES = Path(__file__).parent / "fixtures" / "synthea"
PATIENT_LINES = (FIXTURES / "Patient.ndjson").read_text().splitlines()


def make_client(tmp_path: Path, sleeps: list[float] | None = None) -> BulkExportClient:
    http = HttpClient(ServerConfig(name="t", url=BASE, max_retries=0), sleep=lambda s: None, jitter=lambda: 0.0)
    return BulkExportClient(http, tmp_path / "work", sleep=(sleeps.append if sleeps is not None else (lambda s: None)))


def manifest(files: dict[str, str], token: bool = False) -> dict:
    return {"transactionTime": "2026-01-01T00:00:00.000Z", "request": f"{BASE}/Patient/$export",
            "requiresAccessToken": token, "error": [],
            "output": [{"type": t, "url": u} for t, u in files.items()]}


@responses.activate
def test_kick_off_poll_download_delete(tmp_path: Path) -> None:
    body = "\n".join(PATIENT_LINES) + "\n"
    responses.get(f"{BASE}/Patient/$export", status=202, headers={"Content-Location": STATUS})
    responses.get(STATUS, status=202, headers={"X-Progress": "10%", "Retry-After": "7"})
    responses.get(STATUS, status=202, headers={"X-Progress": "50%"})
    responses.get(STATUS, json=manifest({"Patient": f"{BASE}/bulk-files/job1/Patient.ndjson"}))
    responses.get(f"{BASE}/bulk-files/job1/Patient.ndjson", body=body)
    responses.delete(STATUS, status=202)
    sleeps: list[float] = []
    client = make_client(tmp_path, sleeps)
    request = ExportRequest("patient", ("Observation", "Patient"), "2026-01-01T00:00:00.000Z")
    result = client.export(request)
    kick = responses.calls[0].request
    assert kick.headers["Prefer"] == "respond-async"
    assert "_type=Observation%2CPatient" in kick.url and "_since=2026-01-01T00%3A00%3A00.000Z" in kick.url
    assert sleeps[0] == 7.0 and len(sleeps) == 2  # Retry-After honoured, then our own delay
    assert [p.read_text() for p in result.files] == [body]
    assert responses.calls[-1].request.method == "DELETE"
    assert oct(client.work_dir.stat().st_mode & 0o777) == "0o700"


@responses.activate
def test_group_level_and_type_filter_path(tmp_path: Path) -> None:
    responses.get(f"{BASE}/Group/g1/$export", status=202, headers={"Content-Location": STATUS})
    client = make_client(tmp_path)
    assert client.kick_off(ExportRequest("group", ("Patient",), group_id="g1",
                                         type_filters=("Observation?code=718-7",))) == STATUS
    assert "_typeFilter=Observation%3Fcode%3D718-7" in responses.calls[0].request.url


@responses.activate
def test_bearer_token_sent_only_when_manifest_requires_it(tmp_path: Path) -> None:
    class Token:
        name = "bearer"

        def authorization(self, http):  # noqa: ANN001
            return "Bearer t0k"

        def invalidate(self):
            return False

    http = HttpClient(ServerConfig(name="t", url=BASE, max_retries=0), auth=Token(), sleep=lambda s: None)
    client = BulkExportClient(http, tmp_path / "w", sleep=lambda s: None)
    responses.get(f"{BASE}/f1", body="a\n")
    responses.get(f"{BASE}/f2", body="b\n")
    client.download(f"{BASE}/f1", tmp_path / "one", requires_token=True)
    client.download(f"{BASE}/f2", tmp_path / "two", requires_token=False)
    assert responses.calls[0].request.headers["Authorization"] == "Bearer t0k"
    assert "Authorization" not in responses.calls[1].request.headers


def test_token_never_sent_to_another_host(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    with pytest.raises(SourceError, match="not on the FHIR server"):
        client.download("http://127.0.0.2:9999/file", tmp_path / "x", requires_token=True)


@responses.activate
def test_resume_with_range_and_whole_refetch_when_ignored(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    target = tmp_path / "f.ndjson"
    target.with_name("f.ndjson.part").write_text("hello ")
    responses.get(f"{BASE}/f", status=206, body="world\n")
    client.download(f"{BASE}/f", target, requires_token=False)
    assert responses.calls[0].request.headers["Range"] == "bytes=6-"
    assert target.read_text() == "hello world\n"

    target2 = tmp_path / "g.ndjson"
    target2.with_name("g.ndjson.part").write_text("garbage")
    responses.get(f"{BASE}/g", status=200, body="whole file\n")
    client.download(f"{BASE}/g", target2, requires_token=False)
    assert target2.read_text() == "whole file\n"


@responses.activate
def test_interrupted_run_continues_same_job(tmp_path: Path) -> None:
    """A crash after the first file: the re-run polls the saved job and fetches only the rest."""
    files = {"Patient": f"{BASE}/bulk-files/Patient.ndjson", "Condition": f"{BASE}/bulk-files/Condition.ndjson"}
    responses.get(f"{BASE}/Patient/$export", status=202, headers={"Content-Location": STATUS})
    responses.get(STATUS, json=manifest(files))
    responses.get(files["Patient"], body=PATIENT_LINES[0] + "\n")
    responses.get(files["Condition"], body=requests.exceptions.ConnectionError("cut"))
    client = make_client(tmp_path)
    request = ExportRequest("patient", ("Condition", "Patient"))
    with pytest.raises(SourceError):
        client.export(request)
    state = json.loads((client.work_dir / STATE_FILE).read_text())
    assert state["done"] == [files["Patient"]]

    responses.replace(responses.GET, files["Condition"], body="{}\n")
    responses.delete(STATUS, status=202)
    result = make_client(tmp_path).export(request)
    kickoffs = [c for c in responses.calls if "$export" in c.request.url]
    patient_gets = [c for c in responses.calls if c.request.url == files["Patient"]]
    assert len(kickoffs) == 1 and len(patient_gets) == 1
    assert [p.name for p in result.files] == ["0000.Patient.ndjson", "0001.Condition.ndjson"]


@responses.activate
def test_lost_job_is_restarted(tmp_path: Path) -> None:
    client = make_client(tmp_path)
    request = ExportRequest("system", ("Patient",))
    client._prepare_dir()
    client._save_state({"request": request.key(), "status_url": f"{BASE}/bulk-status/old", "manifest": None,
                        "done": []})
    responses.get(f"{BASE}/bulk-status/old", status=404)
    responses.get(f"{BASE}/$export", status=202, headers={"Content-Location": STATUS})
    responses.get(STATUS, json=manifest({"Patient": f"{BASE}/bulk-files/Patient.ndjson"}))
    responses.get(f"{BASE}/bulk-files/Patient.ndjson", body=PATIENT_LINES[0] + "\n")
    responses.delete(STATUS, status=202)
    assert [p.name for p in client.export(request).files] == ["0000.Patient.ndjson"]
    assert any(c.request.url.startswith(f"{BASE}/$export") for c in responses.calls)


def test_helpers() -> None:
    assert instant_z("2026-03-04T05:06:07.123456+00:00") == "2026-03-04T05:06:07.123Z"
    assert instant_z("2026-03-04T06:06:07+01:00") == "2026-03-04T05:06:07.000Z"
    assert export_types({"Patient", "MedicationRequest"}) == ("Medication", "MedicationRequest", "Patient")


# ---- against the real server ----------------------------------------------------------------

def _load_synthea(server) -> list[str]:  # noqa: ANN001
    for name in ("Patient", "Condition", "Observation", "MedicationRequest"):
        server.load(FIXTURES / f"{name}.ndjson")
    return [json.loads(line)["id"] for line in PATIENT_LINES]


@pytest.mark.server
def test_bulk_source_against_sekmet(fhir_server_factory, tmp_path: Path) -> None:  # noqa: ANN001
    server = fhir_server_factory()
    ids = _load_synthea(server)
    server.load({"resourceType": "Group", "id": "bulk-g", "type": "person", "actual": True,
                 "member": [{"entity": {"reference": f"Patient/{ids[0]}"}}]})
    mapping = load_mapping(Path(__file__).parents[1] / "mappings" / "NCT05773274.yaml")
    from datetime import date

    needs = data_needs(mapping, date(2026, 1, 1))
    http = HttpClient(server.server_config(), sleep=lambda s: None)

    source = BulkSource(BulkExportClient(http, tmp_path / "all", sleep=lambda s: None), "test")
    got = dict(source.iter_facts(needs))
    assert sorted(got) == sorted(ids)
    assert all(not isinstance(f, Exception) for f in got.values())
    assert not (tmp_path / "all" / STATE_FILE).read_text().count('"deleted": false')

    group = BulkSource(BulkExportClient(http, tmp_path / "grp", sleep=lambda s: None), "test", group_id="bulk-g")
    assert [pid for pid, _ in group.iter_facts(needs)] == [ids[0]]

    since = source.result.transaction_time
    assert since and since.endswith("Z")
    server.load([{"resourceType": "Condition", "id": "bulk-new-cond", "subject": {"reference": f"Patient/{ids[2]}"},
                  "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]}}])
    later = BulkSource(BulkExportClient(http, tmp_path / "inc", sleep=lambda s: None), "test", since=since)
    assert later.touched_patient_ids(DataNeeds()) == [ids[2]]


@pytest.mark.server
def test_bulk_export_with_smart_token(smart_fhir_server, tmp_path: Path) -> None:  # noqa: ANN001
    """Status polling and file downloads carry the bearer token when the server requires it."""
    from connector.fhir.auth import build_auth

    server = smart_fhir_server
    pid = "bulk-smart-p1"
    server.load([{"resourceType": "Patient", "id": pid, "gender": "female"}])
    config = server.server_config(auth=server.smart_auth("connector", tmp_path))
    http = HttpClient(config, auth=build_auth(config), sleep=lambda s: None)
    client = BulkExportClient(http, tmp_path / "smart", sleep=lambda s: None)
    result = client.export(ExportRequest("system", ("Patient",)))
    lines = [json.loads(line) for path in result.files for line in path.read_text().splitlines() if line]
    assert pid in {r["id"] for r in lines}
    state = json.loads((tmp_path / "smart" / STATE_FILE).read_text())
    assert state["manifest"]["requiresAccessToken"] is True
