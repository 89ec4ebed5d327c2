"""`trial-connector registry ...` end to end, on SQLite and PostgreSQL, with the API mocked by
`responses` serving the real recorded records."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import jsonschema
import pytest
import responses
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.researchstudy import ResearchStudy

from connector.resources import schema_path
from registry_support import API, FIXTURES, fast_config, load, run_cli, study, with_status

SEED = "NCT05773274"
SUMMARY_KEYS = ("fetched", "new", "changed", "unchanged", "failed")


@pytest.fixture
def cli(store_url, tmp_path):
    """`cli(*args)` runs trial-connector with the test store and a fast request budget."""
    config = fast_config(tmp_path)

    def run(*args: str, env: dict | None = None, db: bool = True):
        base = ["--config", str(config), "registry", *args]
        return run_cli(base + (["--db", store_url] if db else []), env=env)

    return run


def summary(stderr: str) -> dict[str, int]:
    last = stderr.strip().splitlines()[-1]
    parts = dict(part.split(": ") for part in last.split(", "))
    assert tuple(parts) == SUMMARY_KEYS, last
    return {k: int(v) for k, v in parts.items()}


def sent_params(call) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


def page_of(*records: dict, token: str | None = None) -> dict:
    page: dict = {"studies": list(records)}
    if token:
        page["nextPageToken"] = token
    return page


@responses.activate
def test_sync_one_trial_then_show_json_and_fhir(cli):
    responses.get(f"{API}/studies/{SEED}", json=study(SEED))
    result = cli("sync", "nct5773274", "--api-url", API)
    assert result.exit_code == 0, result.stderr
    assert summary(result.stderr) == {"fetched": 1, "new": 1, "changed": 0, "unchanged": 0, "failed": 0}
    assert result.stdout == ""
    assert f"{SEED}: new (version 1)" in result.stderr

    shown = cli("show", SEED, "--format", "json")
    assert shown.exit_code == 0
    record = json.loads(shown.stdout)  # stdout holds only the record
    jsonschema.validate(record, json.loads(schema_path("trial.schema.json").read_text()))
    source = study(SEED)["protocolSection"]
    assert record["phases"] == ["PHASE2"] and record["minimum_age"] == "18 Years" and record["minimum_age_years"] == 18
    assert record["eligibility_criteria"] == source["eligibilityModule"]["eligibilityCriteria"]
    assert record["last_update_posted"] == "2025-11-12"

    fhir = cli("show", SEED, "--format", "fhir")
    resource = ResearchStudy.model_validate(json.loads(fhir.stdout))
    assert resource.id == SEED and resource.title == source["identificationModule"]["briefTitle"]

    table = cli("show", SEED)
    assert "RECRUITING" in table.stdout and "23 inclusion, 5 exclusion" in table.stdout


@responses.activate
def test_sync_several_ids_reports_the_missing_one_and_stores_the_rest(cli):
    found = [study("NCT00184067"), study("NCT03934567")]
    responses.get(f"{API}/studies", json=page_of(*found))
    result = cli("sync", "NCT00184067", "NCT00000001", "NCT03934567", "--api-url", API)
    assert result.exit_code == 1
    assert "NCT00000001: not found" in result.stderr
    assert summary(result.stderr) == {"fetched": 2, "new": 2, "changed": 0, "unchanged": 0, "failed": 1}
    assert sent_params(responses.calls[0])["filter.ids"] == ["NCT00184067|NCT00000001|NCT03934567"]
    assert len(responses.calls) == 1  # one search request for the whole list
    shown = cli("show", "NCT00184067", "NCT03934567", "--format", "json")
    assert [r["nct_id"] for r in json.loads(shown.stdout)] == ["NCT00184067", "NCT03934567"]


@responses.activate
def test_sync_404_is_not_found_and_exit_1(cli):
    responses.get(f"{API}/studies/NCT00000002", status=404, body="Not Found", content_type="text/plain")
    result = cli("sync", "NCT00000002", "--api-url", API)
    assert result.exit_code == 1
    assert "NCT00000002: not found" in result.stderr
    assert summary(result.stderr)["failed"] == 1


@responses.activate
def test_invalid_id_exits_1_before_any_request(cli):
    result = cli("sync", SEED, "NCT-123", "--api-url", API)
    assert result.exit_code == 1
    assert "error: 'NCT-123' is not a ClinicalTrials.gov id" in result.stderr
    assert len(responses.calls) == 0


@responses.activate
def test_status_change_then_version_holder_refresh(cli):
    url = f"{API}/studies/NCT01305200"
    responses.get(url, json=load("versions/NCT01305200@2026-03-03.json"))
    assert cli("sync", "NCT01305200", "--api-url", API).exit_code == 0
    responses.replace(responses.GET, url, json=load("versions/NCT01305200@2026-03-06.json"))
    refreshed = cli("sync", "NCT01305200", "--api-url", API)
    assert summary(refreshed.stderr) == {"fetched": 1, "new": 0, "changed": 0, "unchanged": 1, "failed": 0}
    before = cli("changes", "NCT01305200").stdout

    responses.replace(responses.GET, url, json=with_status(load("versions/NCT01305200@2026-03-06.json"), "WITHDRAWN"))
    changed = cli("sync", "NCT01305200", "--api-url", API)
    assert summary(changed.stderr)["changed"] == 1
    listing = cli("changes", "NCT01305200").stdout
    assert "version 2" in listing and "    overall_status: COMPLETED -> WITHDRAWN" in listing.splitlines()
    assert "version 2" not in before

    responses.replace(responses.GET, url, json=with_status(load("versions/NCT01305200@2026-03-03.json"), "WITHDRAWN"))
    again = cli("sync", "NCT01305200", "--api-url", API)  # versionHolder differs only
    assert summary(again.stderr)["unchanged"] == 1
    assert cli("changes", "NCT01305200").stdout == listing


@responses.activate
def test_query_pages_to_the_end_with_status_filter(cli):
    first = load("pages/biomcp__search_phelan_limit5_20260811.json")
    second = load("pages/biomcp__search_phelan_next_20260811.json")
    responses.get(f"{API}/studies", json=first)
    responses.get(f"{API}/studies", json=second)
    responses.get(f"{API}/studies", json={"studies": []})
    result = cli("sync", "--query", "phelan", "--status", "recruiting", "--page-size", "5", "--api-url", API)
    assert result.exit_code == 0, result.stderr
    assert summary(result.stderr) == {"fetched": 10, "new": 10, "changed": 0, "unchanged": 0, "failed": 0}
    assert len(responses.calls) == 3
    assert all(sent_params(c)["query.term"] == ["phelan"] for c in responses.calls)
    assert all(sent_params(c)["filter.overallStatus"] == ["RECRUITING"] for c in responses.calls)
    assert sent_params(responses.calls[2])["pageToken"] == [second["nextPageToken"]]
    assert "page 1: 5 studies of 21" in result.stderr


@responses.activate
def test_query_since_auto_asks_only_for_updates_since_last_run(cli):
    responses.get(f"{API}/studies", json=page_of(study("NCT05147467")))
    assert cli("sync", "--query", "cll", "--since", "auto", "--api-url", API).exit_code == 0
    assert "filter.advanced" not in sent_params(responses.calls[0])  # first run: everything
    second = cli("sync", "--query", "cll", "--since", "auto", "--api-url", API)
    assert summary(second.stderr)["unchanged"] == 1
    advanced = sent_params(responses.calls[1])["filter.advanced"][0]
    assert advanced.startswith("AREA[LastUpdatePostDate]RANGE[") and advanced.endswith(",MAX]")
    explicit = cli("sync", "--query", "cll", "--since", "2025-01-01", "--api-url", API)
    assert explicit.exit_code == 0
    assert sent_params(responses.calls[2])["filter.advanced"] == ["AREA[LastUpdatePostDate]RANGE[2025-01-01,MAX]"]


@responses.activate
def test_ids_since_auto_counts_unreturned_trials_unchanged(cli):
    responses.get(f"{API}/studies", json=page_of(study("NCT00184067"), study("NCT03934567")))
    assert cli("sync", "NCT00184067", "NCT03934567", "--api-url", API).exit_code == 0
    responses.replace(responses.GET, f"{API}/studies", json=page_of(with_status(study("NCT03934567"), "COMPLETED")))
    result = cli("sync", "NCT00184067", "NCT03934567", "--since", "auto", "--api-url", API)
    assert result.exit_code == 0, result.stderr
    assert summary(result.stderr) == {"fetched": 1, "new": 0, "changed": 1, "unchanged": 1, "failed": 0}
    assert len(responses.calls) == 2  # the incremental refresh is one request
    assert "RANGE[" in sent_params(responses.calls[1])["filter.advanced"][0]
    assert "NCT00184067: unchanged (not updated since" in result.stderr


@responses.activate
def test_alias_redirect_is_recorded(cli):
    responses.get(f"{API}/studies/NCT01234567", status=301, headers={"Location": f"/api/v2/studies/{SEED}"})
    responses.get(f"{API}/studies/{SEED}", json=study(SEED))
    result = cli("sync", "NCT01234567", "--api-url", API)
    assert result.exit_code == 0
    assert f"NCT01234567: alias of {SEED}" in result.stderr
    assert json.loads(cli("show", "NCT01234567", "--format", "json").stdout)["nct_id"] == SEED


@responses.activate
def test_api_url_from_env_and_flag_precedence(cli):
    other = "http://127.0.0.1:8766/api/v2"
    responses.get(f"{other}/studies/{SEED}", json=study(SEED))
    responses.get(f"{API}/studies/{SEED}", json=study(SEED))
    assert cli("sync", SEED, env={"CTGOV_API_URL": other}).exit_code == 0
    assert responses.calls[0].request.url.startswith(other)
    assert cli("sync", SEED, "--api-url", API, env={"CTGOV_API_URL": other}).exit_code == 0
    assert responses.calls[1].request.url.startswith(API)


def test_import_stores_good_files_and_rejects_schema_breaking_ones(cli):
    files = [str(FIXTURES / "studies" / f"{SEED}.json"), str(FIXTURES / "pages" / "kylevogeler__sampleResponse.json"),
             str(FIXTURES / "altered" / "NCT01505608.json")]
    result = cli("import", *files)
    assert result.exit_code == 1
    assert summary(result.stderr) == {"fetched": 3, "new": 2, "changed": 0, "unchanged": 0, "failed": 1}
    assert "NCT01505608: does not match the ClinicalTrials.gov API Study schema: $." in result.stderr
    assert "$.protocolSection.armsInterventionsModule.interventions[0].armGroupLabels" in result.stderr
    assert cli("show", "NCT01505608").exit_code == 1
    assert cli("show", "NCT00711542").exit_code == 0


def test_show_and_changes_of_unknown_trial(cli):
    assert cli("import", str(FIXTURES / "studies" / f"{SEED}.json")).exit_code == 0
    result = cli("show", "NCT00000003", "--format", "json")
    assert result.exit_code == 1 and result.stdout == ""
    assert "NCT00000003: not in the store" in result.stderr
    assert cli("changes", "NCT00000003").exit_code == 1


def test_usage_errors(cli):
    assert cli("sync").exit_code == 1
    assert cli("sync", SEED, "--query", "x").exit_code == 1
    assert cli("sync", SEED, "--status", "RECRUITING").exit_code == 1
    bad_since = cli("sync", SEED, "--since", "yesterday")
    assert bad_since.exit_code == 1 and "--since" in bad_since.stderr


def test_unreachable_postgres_store_exits_2(tmp_path):
    config = fast_config(tmp_path)
    result = run_cli(["--config", str(config), "registry", "show", SEED,
                      "--db", "postgresql://u:pw@127.0.0.1:1/test"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: cannot connect to PostgreSQL store postgresql://u:***@127.0.0.1:1/test")
    assert ":pw@" not in result.stderr


def test_db_from_environment(tmp_path):
    config = fast_config(tmp_path)
    db = tmp_path / "env.db"
    args = ["--config", str(config), "registry", "import", str(FIXTURES / "studies" / f"{SEED}.json")]
    assert run_cli(args, env={"TRIAL_CONNECTOR_DB": str(db)}).exit_code == 0
    assert db.exists()
    shown = run_cli(["--config", str(config), "registry", "show", SEED, "--format", "json"],
                    env={"TRIAL_CONNECTOR_DB": str(db)})
    assert json.loads(shown.stdout)["nct_id"] == SEED


@responses.activate
def test_fhir_bundle_for_several_trials(cli):
    responses.get(f"{API}/studies", json=page_of(study(SEED), study("NCT00716976")))
    cli("sync", SEED, "NCT00716976", "--api-url", API)
    out = cli("show", SEED, "NCT00716976", "--format", "fhir")
    bundle = Bundle.model_validate(json.loads(out.stdout))
    assert [e.resource.id for e in bundle.entry] == [SEED, "NCT00716976"]


def test_unknown_status_is_refused_before_any_request(cli):
    result = cli("sync", "--query", "x", "--status", "RECRUTING", "--api-url", API)
    assert result.exit_code == 1 and "RECRUTING" in result.stderr
