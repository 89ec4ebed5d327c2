"""The pieces of a scheduled run on their own: when results go stale, progress output, the
concurrent fetcher (with a server answering 503 for a while), and the store records."""

from __future__ import annotations

import io
import json
from datetime import date
from pathlib import Path

import pytest
import responses

from connector.config import ServerConfig
from connector.errors import LockedError, ResourceError
from connector.facts import MedicationFact, ObservationFact, PatientFacts, SourceRef
from connector.fhir.client import FhirClient
from connector.mapping import load_mapping
from connector.results import PatientResult
from connector.scheduled import records
from connector.scheduled.fetching import changed_patient_ids, concurrent_facts, server_watermark
from connector.scheduled.freshness import mapping_windows, rescreen_on
from connector.scheduled.lock import run_lock
from connector.scheduled.progress import Progress
from connector.sources.fhir_rest import RestSource
from connector.needs import DataNeeds

ROOT = Path(__file__).resolve().parents[1]
MAPPING = load_mapping(ROOT / "mappings" / "NCT05773274.yaml")
AS_OF = date(2026, 11, 16)
BASE = "http://127.0.0.1:9998/fhir"


def obs(day: date | None) -> ObservationFact:
    return ObservationFact(SourceRef("Observation", f"o{day}"), "final", (), day)


def test_mapping_windows_are_read_from_the_rules() -> None:
    observation, medication, age = mapping_windows(MAPPING)
    assert 28 in observation and age is True
    assert medication  # PRRT administrations are counted over a period


def test_rescreen_on_earliest_window_exit_or_birthday() -> None:
    facts = PatientFacts("p", birth_date=date(1960, 6, 1))
    assert rescreen_on(MAPPING, facts, AS_OF) == date(2027, 6, 1)  # only the birthday can change it
    facts.observations = [obs(date(2026, 11, 7)), obs(None), obs(date(2020, 1, 1))]
    smallest = min(mapping_windows(MAPPING)[0])
    expected = date.fromordinal(date(2026, 11, 7).toordinal() + smallest + 1)
    assert rescreen_on(MAPPING, facts, AS_OF) == expected
    facts.observations.append(obs(date(2026, 11, 18)))  # dated in the future: enters the window then
    assert rescreen_on(MAPPING, facts, AS_OF) == date(2026, 11, 18)
    assert rescreen_on(MAPPING, PatientFacts("q"), AS_OF) is None


def test_medication_period_counts_too() -> None:
    period = min(mapping_windows(MAPPING)[1])
    day = date.fromordinal(AS_OF.toordinal() - 1)
    facts = PatientFacts("p", medications=[MedicationFact(SourceRef("MedicationAdministration", "m"),
                                                          "administration", "completed", (), (), day)])
    assert rescreen_on(MAPPING, facts, AS_OF) == date.fromordinal(day.toordinal() + period + 1)


def test_progress_plain_lines_when_not_a_tty() -> None:
    stream = io.StringIO()
    progress = Progress(total=4, stream=stream, interval_s=0.0, tty=False)
    progress.advance()
    progress.advance()
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[-1].startswith("progress: 2/4 patients") and "ETA" in lines[-1]


def _patient_bundle(pid: str) -> dict:
    return {"resourceType": "Bundle", "type": "searchset",
            "entry": [{"resource": {"resourceType": "Patient", "id": pid, "gender": "female"}}]}


@responses.activate
def test_concurrent_facts_survive_503_and_report_per_patient_errors() -> None:
    server = ServerConfig(name="t", url=BASE, max_retries=3)
    client = FhirClient(server, sleep=lambda s: None, jitter=lambda: 0.0)
    responses.get(f"{BASE}/metadata", status=404)
    for pid in ("a", "b", "c"):
        responses.get(f"{BASE}/Patient", match=[responses.matchers.query_param_matcher(
            {"_id": pid, "_count": "200"})], status=503, headers={"Retry-After": "1"})
        responses.get(f"{BASE}/Patient", match=[responses.matchers.query_param_matcher(
            {"_id": pid, "_count": "200"})], json=_patient_bundle(pid) if pid != "c" else {
                "resourceType": "Bundle", "type": "searchset", "entry": []})
    needs = DataNeeds(frozenset({"Patient"}))
    got = dict(concurrent_facts(RestSource(client), needs, ["a", "b", "c"], workers=2))
    assert isinstance(got["a"], PatientFacts) and got["b"].gender == "female"
    assert isinstance(got["c"], ResourceError)  # no Patient: that patient's error, the others go on
    assert client.stats.retries == 3


@responses.activate
def test_changed_ids_and_watermark() -> None:
    client = FhirClient(ServerConfig(name="t", url=BASE, max_retries=0), sleep=lambda s: None)
    responses.get(f"{BASE}/Patient", match=[responses.matchers.query_param_matcher(
        {"_lastUpdated": "gt2026-01-01T00:00:00.000Z", "_elements": "id", "_count": "200"})],
        json={"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient", "id": "p1"}}]})
    responses.get(f"{BASE}/Observation", match=[responses.matchers.query_param_matcher(
        {"_lastUpdated": "gt2026-01-01T00:00:00.000Z", "_elements": "subject", "_count": "200"})],
        json={"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Observation", "id": "o",
                                                                "subject": {"reference": "Patient/p2"}}}]})
    needs = DataNeeds(frozenset({"Patient", "Observation"}))
    assert changed_patient_ids(client, needs, "2026-01-01T00:00:00.000Z") == {"p1", "p2"}

    responses.reset()
    for rtype, stamp in (("Observation", "2026-02-01T10:00:00.5Z"), ("Patient", "2026-01-01T00:00:00Z")):
        responses.get(f"{BASE}/{rtype}", json={"resourceType": "Bundle", "entry": [
            {"resource": {"resourceType": rtype, "id": "x", "meta": {"lastUpdated": stamp}}}]})
    assert server_watermark(client, needs) == "2026-02-01T10:00:00.500000+00:00"
    assert "_sort=-_lastUpdated" in responses.calls[0].request.url


def _result(pid: str, status: str) -> PatientResult:
    return PatientResult(f"Patient/{pid}", status)


def test_records_round_trip_and_history(store) -> None:  # noqa: ANN001
    run1 = records.start_run(store, ["NCT05773274"], "src", "full", "2026-11-16", None, {"ids": None})
    outcome = records.TrialOutcome("NCT05773274", _result("p1", "candidate"), "h1", "v1", "2026-11-16", "2026-12-01")
    assert records.save_patient(store, run1, "p1", [outcome]) == 1
    records.save_patient_error(store, run1, "p2", ["NCT05773274"], "Patient/p2 not found")
    assert records.done_patients(store, run1) == {"p1", "p2"}
    assert [r.id for r in records.interrupted_runs(store)] == [run1]
    records.set_data_since(store, run1, "2026-11-16T10:00:00Z")
    done = records.finish_run(store, run1, records.PARTIAL)
    assert (done.screened, done.candidates, done.errors, done.new_count) == (1, 1, 1, 1)
    assert done.data_since == "2026-11-16T10:00:00.000000+00:00"
    assert records.last_successful_run(store, "src", "NCT05773274").id == run1
    assert records.last_successful_run(store, "other", "NCT05773274") is None
    assert records.errored_patients(store, "NCT05773274", "src") == {"p2"}
    assert records.due_patients(store, "NCT05773274", "2026-12-01", "src") == {"p1"}
    assert records.due_patients(store, "NCT05773274", "2026-11-30") == set()
    assert records.stale_mapping(store, "NCT05773274", "h2") and not records.stale_mapping(store, "NCT05773274", "h1")

    run2 = records.start_run(store, ["NCT05773274"], "src", "incremental", "2026-12-01", None, {"ids": ["p1", "p2"]})
    assert records.get_run(store, run2).planned == 2
    records.save_patient(store, run2, "p1", [records.TrialOutcome("NCT05773274", _result("p1", "excluded"), "h1",
                                                                  "v2", "2026-12-01", None)])
    records.save_patient(store, run2, "p2", [records.TrialOutcome("NCT05773274", _result("p2", "possible"), "h1",
                                                                  "v1", "2026-12-01", None)])
    assert records.errored_patients(store, "NCT05773274") == set()
    assert records.changed_in_run(store, "NCT05773274", run2) == {"p1", "p2"}
    assert [(h["status"], h["previous_status"]) for h in records.patient_history(store, "NCT05773274", "p1")] == [
        ("candidate", None), ("excluded", "candidate")]
    rows = records.latest_results(store, "NCT05773274", status="excluded")
    assert [r["patient_id"] for r in rows] == ["p1"] and rows[0]["result"]["status"] == "excluded"


def test_lock_is_exclusive_and_released(store_url: str) -> None:
    from connector.store import open_store

    with open_store(store_url) as a, open_store(store_url) as b:
        with run_lock(a):
            with pytest.raises(LockedError, match="another run is writing"):
                with run_lock(b):
                    pass
        with run_lock(b):
            pass


def test_migration_is_listed_after_registry(store) -> None:  # noqa: ANN001
    names = [r["name"] for r in store.fetchall("SELECT name FROM schema_version ORDER BY version")]
    assert names[:2] == ["registry", "screening_runs"]


def test_progress_bar_on_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(stream=stream, tty=True)
    progress.set_total(3)
    progress.advance(3)
    progress.close()
    assert "3/3" in stream.getvalue() and "patient" in stream.getvalue()


@responses.activate
def test_server_dying_mid_run_fails_the_run_with_exit_2(store) -> None:  # noqa: ANN001
    """Listing works, then every patient's request fails: after a few in a row the run stops
    (exit 2) instead of burning retries on thousands of patients; what was done stays done."""
    import re

    import requests

    from connector.config import Config
    from connector.errors import SourceError
    from connector.pipeline import RunOptions, ScheduledRun, TrialSpec

    ids = [f"p{i}" for i in range(30)]

    def answer(request):  # noqa: ANN001, ANN202
        if "_id=" in request.url:
            raise requests.exceptions.ConnectionError("refused")
        if "_sort=" in request.url or "/Patient" not in request.url:
            return 200, {}, json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": []})
        entries = [{"resource": {"resourceType": "Patient", "id": pid}} for pid in ids]
        return 200, {}, json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": entries})

    responses.get(f"{BASE}/metadata", status=404)
    responses.add_callback(responses.GET, re.compile(re.escape(BASE) + r"/\w+.*"), callback=answer)
    config = Config(servers={"s": ServerConfig(name="s", url=BASE, max_retries=0)})
    options = RunOptions(trials=[TrialSpec.load("NCT05773274")], source="s", as_of=AS_OF, concurrency=1)
    with pytest.raises(SourceError, match="in a row failed") as info:
        ScheduledRun(store, config, options).execute()
    assert info.value.exit_code == 2
    run = records.get_run(store, 1)
    assert run.status == "failed" and run.errors == 10 and run.planned == len(ids)
