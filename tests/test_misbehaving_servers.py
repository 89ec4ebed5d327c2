"""Servers that misbehave in ways that lose data quietly (issue 13), each a real HTTP server
process-local thread on 127.0.0.1 (tests/misbehaving_server.py) and runs on both stores:

- a search announcing patients it never returns, `_count=0`, an export without files, an empty
  population where the last run had many: the run fails (exit 2) and never becomes the base of
  an incremental run;
- Bulk files expired after an interrupted download: a new export, results as a clean run's;
- `--work-dir`: only what the tool wrote is deleted; a user's non-empty folder is refused.
"""

from __future__ import annotations

import json

import pytest

from connector.config import Config, ServerConfig
from connector.errors import ConfigError, SourceError
from connector.pipeline import RunOptions, ScheduledRun, TrialSpec
from connector.scheduled import records
from misbehaving_server import BulkJobs, MisbehavingServer, Reply, json_reply, searchset
from population import example_patients
from test_run_files import AS_OF, TRIAL, statuses


@pytest.fixture
def server():  # noqa: ANN201
    with MisbehavingServer() as running:
        yield running


FEW = ("net01", "net02", "net03", "net04")  # a candidate, two possible, one excluded


def cohort() -> list[dict]:
    """Four patients of the example cohort (each resource names its patient in its id)."""
    return [r for r in example_patients("") if r["id"].split("-")[0] in FEW]


def by_type(resources: list[dict]) -> dict[str, bytes]:
    files: dict[str, list[str]] = {}
    for resource in resources:
        files.setdefault(resource["resourceType"], []).append(json.dumps(resource))
    return {t: ("\n".join(lines) + "\n").encode() for t, lines in files.items()}


def serve_rest(server: MisbehavingServer, resources: list[dict], patients: str = "honest") -> None:
    """Per-patient searches answered from `resources`; the Patient list as `patients` says."""
    def search(rtype: str):  # noqa: ANN202
        def answer(request):  # noqa: ANN001, ANN202
            mine = [r for r in resources if r["resourceType"] == rtype]
            if "_id" in request.query:
                mine = [r for r in mine if r["id"] == request.query["_id"]]
            elif "patient" in request.query:
                mine = [r for r in mine if json.dumps(r).count(f'"Patient/{request.query["patient"]}"')]
            elif rtype == "Patient" and patients == "announces-118":
                return json_reply(searchset([], total=118))
            elif rtype == "Patient" and patients == "none":
                return json_reply(searchset([]))
            if request.query.get("_count") == "0":
                return json_reply(searchset([], total=len(mine)))  # as servers answer _count=0
            if request.query.get("_sort"):
                mine = mine[:1]
            return json_reply(searchset(mine, total=len(mine)))
        return answer

    for rtype in {r["resourceType"] for r in resources}:
        server.route("GET", f"/fhir/{rtype}", search(rtype))


def run(store, server: MisbehavingServer, **settings):  # noqa: ANN001, ANN003, ANN201
    options = {k: settings.pop(k) for k in ("since", "bulk", "work_dir") if k in settings}
    config = Config(servers={"bad": ServerConfig(name="bad", url=server.base_url, max_retries=0, **settings)})
    return ScheduledRun(store, config, RunOptions(trials=[TrialSpec.load(TRIAL)], source="bad", as_of=AS_OF,
                                                  **options)).execute()


def test_empty_or_short_answers_fail_the_run_and_never_become_an_incremental_base(store, server):
    resources = cohort()
    serve_rest(server, resources)
    good = run(store, server)
    assert good.run.status == "done" and good.run.screened == len(FEW)

    serve_rest(server, resources, patients="announces-118")
    with pytest.raises(SourceError, match="announced 118 matches but returned 0") as failed:
        run(store, server)
    assert failed.value.exit_code == 2

    with pytest.raises(SourceError, match="announced 4 matches but returned 0"):
        serve_rest(server, resources)
        run(store, server, page_size=0)

    serve_rest(server, resources, patients="none")
    with pytest.raises(SourceError, match="gave no patients at all, but the last full run read 4"):
        run(store, server)

    runs = store.fetchall("SELECT id, status FROM runs ORDER BY id")
    assert [r["status"] for r in runs] == ["done", "failed", "failed", "failed"]
    assert records.last_successful_run(store, server.base_url, TRIAL).id == good.run.id
    assert len(statuses(store)) == len(FEW)  # nothing stored was lost


def test_a_bulk_export_without_files_fails_the_run(store, server, tmp_path):
    BulkJobs(server, {})
    with pytest.raises(SourceError, match="finished with no files at all"):
        run(store, server, bulk=True, work_dir=tmp_path / "work")
    assert store.fetchall("SELECT status FROM runs") == [{"status": "failed"}]
    assert not (tmp_path / "work").exists()  # nothing to resume: nothing left behind


def test_expired_bulk_files_after_an_interrupted_download_start_a_new_export(store, server, tmp_path, store_url):
    jobs = BulkJobs(server, by_type(cohort()))
    jobs.cut.add((1, "Observation"))
    with pytest.raises(SourceError, match="download interrupted"):
        run(store, server, bulk=True, work_dir=tmp_path / "work")
    jobs.expired.add(1)  # the server dropped job 1 meanwhile: every rerun used to fail on it
    again = run(store, server, bulk=True, work_dir=tmp_path / "work")
    assert again.run.status == "done" and jobs.jobs == 2
    assert not (tmp_path / "work").exists()  # made by the run, removed by it

    from connector.store import open_store

    clean_store = open_store(str(tmp_path / "clean.db"))
    try:
        run(clean_store, server, bulk=True, work_dir=tmp_path / "clean-work")
        assert statuses(store) == statuses(clean_store) and len(statuses(store)) == len(FEW)
    finally:
        clean_store.close()


def test_work_dir_deletes_only_what_the_tool_wrote(store, server, tmp_path):
    BulkJobs(server, by_type(cohort()))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.docx").write_text("years of work")
    with pytest.raises(ConfigError, match="is not empty and was not made by trial-connector"):
        run(store, server, bulk=True, work_dir=mine)
    assert [p.name for p in mine.iterdir()] == ["thesis.docx"]

    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(store, server, bulk=True, work_dir=empty).run.status == "done"
    assert empty.is_dir() and list(empty.iterdir()) == []  # the user's folder stays, emptied of our files


def test_slow_drip_answer_is_bounded_by_the_timeout_as_a_deadline(server):
    import time

    from connector.fhir.http import HttpClient

    body = json.dumps(searchset([])).encode()
    server.route("GET", "/fhir/Patient", lambda _r: Reply(200, body, {"Content-Type": "application/fhir+json"},
                                                         drip_seconds=0.05))
    http = HttpClient(ServerConfig(name="drip", url=server.base_url, timeout=1.0, max_retries=0))
    started = time.monotonic()
    with pytest.raises(SourceError, match="timed out"):
        http.get_json("Patient")
    assert time.monotonic() - started < 2.5  # each byte came in time; the whole answer did not


def test_next_links_that_change_for_ever_stop_with_an_error(server):
    from connector.fhir.client import FhirClient

    patient = {"resourceType": "Patient", "id": "p1"}
    pages = {"n": 0}

    def endless(request):  # noqa: ANN001, ANN202
        pages["n"] += 1
        return json_reply(searchset([patient], next_url=f"{server.base_url}/Patient?page={pages['n']}"))

    server.route("GET", "/fhir/Patient", endless)
    client = FhirClient(ServerConfig(name="loop", url=server.base_url, max_retries=0))
    with pytest.raises(SourceError, match="pages in a row brought nothing new"):
        list(client.search("Patient"))
    assert pages["n"] <= 5


def test_pages_past_the_announced_total_stop_with_an_error(server):
    from connector.fhir.client import FhirClient

    pages = {"n": 0}

    def growing(request):  # noqa: ANN001, ANN202
        pages["n"] += 1
        fresh = {"resourceType": "Patient", "id": f"p{pages['n']}"}
        return json_reply(searchset([fresh], total=3, next_url=f"{server.base_url}/Patient?page={pages['n']}"))

    server.route("GET", "/fhir/Patient", growing)
    client = FhirClient(ServerConfig(name="loop", url=server.base_url, max_retries=0))
    with pytest.raises(SourceError, match="more than the 3 matches it announced"):
        list(client.search("Patient"))
    assert pages["n"] == 4


def test_an_answer_that_inflates_without_end_is_refused_in_bounded_memory(server):
    import gzip

    import requests

    from connector.fhir.http import read_body_by

    bomb = gzip.compress(b"[" + b" " * (8 * 1024 * 1024) + b"]")  # 8 MB of JSON in about 8 kB
    server.route("GET", "/fhir/Patient", lambda _r: Reply(200, bomb, {"Content-Type": "application/fhir+json",
                                                                      "Content-Encoding": "gzip"}))
    response = requests.get(f"{server.base_url}/Patient", stream=True, timeout=10)
    with pytest.raises(SourceError, match="answer larger than 1 MB; refused"):
        read_body_by(response, deadline=float("inf"), max_bytes=1024 * 1024)
