"""The portfolio: the example cohort (examples/patients + examples/portfolio) screened against the
three bundled trials from one pull, ranked, as JSON and as a FHIR searchset Bundle; skipping
trials that are not recruiting."""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from fhir.resources.R4B.bundle import Bundle

from connector.cli import cli
from connector.errors import EXIT_PARTIAL  # the cohort's net11 holds a malformed Observation, on purpose
from connector.mapping.catalog import MappingSources
from connector.portfolio import screening
from connector.portfolio.scoring import rank, score_result
from connector.portfolio.searchset import CRITERION_RESULT, MATCH_EXPLANATION
from connector.portfolio.trials import select_trials
from connector.sources.files import FileSource

ROOT = Path(__file__).resolve().parents[1]
AS_OF = "2026-11-16"
TRIALS = ["NCT04267848", "NCT05147467", "NCT05773274"]
# examples/portfolio/README.md and examples/patients/README.md
EXPECTED = {
    "net01": {"NCT05773274": "candidate", "NCT04267848": "excluded", "NCT05147467": "excluded"},
    "net02": {"NCT05773274": "possible", "NCT04267848": "excluded", "NCT05147467": "excluded"},
    "lung19": {"NCT05773274": "excluded", "NCT04267848": "possible", "NCT05147467": "excluded"},
    "cll20": {"NCT05773274": "excluded", "NCT04267848": "excluded", "NCT05147467": "candidate"},
    "cll21": {"NCT05773274": "excluded", "NCT04267848": "excluded", "NCT05147467": "excluded"},
}


@pytest.fixture(autouse=True)
def no_store_in_cwd(monkeypatch, tmp_path):
    monkeypatch.setenv("TRIAL_CONNECTOR_DB", str(tmp_path / "absent.db"))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cohort")
    for path in [*(ROOT / "examples" / "patients").glob("*.json"), *(ROOT / "examples" / "portfolio").glob("*.json")]:
        shutil.copy(path, folder)
    return folder


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), standalone_mode=False, catch_exceptions=True)
    code = result.return_value if isinstance(result.return_value, int) else 0
    if result.exception is not None:
        code = getattr(result.exception, "exit_code", 1)
        return code, result.stdout, result.stderr + str(result.exception)
    return code, result.stdout, result.stderr


def test_one_pull_serves_every_trial(cohort, monkeypatch):
    """The source is read once, with the merged needs, and each patient's facts built once."""
    reads, built = [], []
    original_iter, original_facts = FileSource.iter_facts, screening.evaluate_patient
    monkeypatch.setattr(FileSource, "iter_facts", lambda self, needs, ids=None: (
        reads.append(needs), (yield from original_iter(self, needs, ids)))[1])
    monkeypatch.setattr(screening, "evaluate_patient", lambda m, facts, *a: (built.append(facts.observations),
                                                                          original_facts(m, facts, *a))[1])
    code, out, err = invoke("screen", "--source", str(cohort), "--as-of", AS_OF, "--format", "json")
    assert code == EXIT_PARTIAL, err
    document = json.loads(out)
    assert len(reads) == 1
    trials, _ = select_trials(MappingSources(), None)
    assert reads[0] == screening.merged_needs(trials, date.fromisoformat(AS_OF))
    assert {"Observation", "Condition", "MedicationAdministration"} <= reads[0].resource_types
    # 21 patients' facts, each evaluated for 3 trials (a trial that does not read a record in error gets
    # a copy without that error: the copy shares the facts read)
    assert len(built) == 21 * 3 and len({id(observations) for observations in built}) == 21
    assert [t["trial"] for t in document["trials"]] == TRIALS
    assert document["skipped"] == []


def test_per_trial_results_equal_single_trial_screens(cohort):
    code, out, _ = invoke("screen", "--trial", "all", "--source", str(cohort), "--as-of", AS_OF, "--format", "json")
    assert code == EXIT_PARTIAL
    portfolio = {t["trial"]: t for t in json.loads(out)["trials"]}
    for trial in TRIALS:
        code, single, _ = invoke("screen", "--trial", trial, "--source", str(cohort), "--as-of", AS_OF,
                                 "--format", "json")
        assert code == (0 if trial == "NCT05147467" else EXIT_PARTIAL)  # the CLL trial reads no lab
        # identical, errors included: the one pull also reads records only another trial needs (net11's
        # malformed hemoglobin), which are no error of a trial that does not read them
        assert portfolio[trial]["patients"] == json.loads(single)["patients"], trial
        statuses = {p["patient"].split("/")[1]: p["status"] for p in portfolio[trial]["patients"]}
        assert {pid: statuses[pid] for pid in EXPECTED} == {pid: row[trial] for pid, row in EXPECTED.items()}


def test_ranking_is_best_first_explained_and_stable(cohort, tmp_path):
    args = ("screen", "--source", str(cohort), "--as-of", AS_OF, "--patient", "lung19", "--patient", "net02",
            "--patient", "cll20", "--format", "json")
    code, out, _ = invoke(*args)
    document = json.loads(out)
    ranking = {r["patient"]: r["trials"] for r in document["ranking"]}
    assert ranking["Patient/lung19"][0] == "NCT04267848"
    assert ranking["Patient/net02"][0] == "NCT05773274"
    assert ranking["Patient/cll20"][0] == "NCT05147467"
    scores = {(t["trial"], s["patient"]): s for t in document["trials"] for s in t["scores"]}
    lung = scores[("NCT04267848", "Patient/lung19")]
    assert lung["status"] == "possible" and lung["unknown"] == ["ast"] and lung["rank"] == 1
    assert lung["score"] == round(lung["met"] / lung["computable_inclusion"], 4) and 0 < lung["score"] < 1
    assert "unknown: ast (no-data)" in lung["reason"]
    excluded = scores[("NCT05773274", "Patient/lung19")]
    assert excluded["score"] == 0.0 and excluded["reason"].startswith("not met: gepnet_diagnosis (no-record)")
    # the same mappings found in another order (an extra --mappings folder listed first) rank the same
    other = tmp_path / "maps"
    other.mkdir()
    for trial in reversed(TRIALS):
        shutil.copy(ROOT / "mappings" / f"{trial}.yaml", other)
    code, again, _ = invoke(*args, "--mappings", str(other))
    assert code == 0 and json.loads(again)["ranking"] == document["ranking"]
    code, table, _ = invoke(*args[:-2])
    lines = [line for line in table.splitlines() if line.startswith("  1. ")]
    assert lines[0].startswith("  1. NCT04267848  possible") and "0.92" in lines[0]


def test_ties_go_to_fewer_unknowns_then_trial_id():
    from connector.mapping import load_mapping
    from connector.results import CriterionResult, PatientResult

    mapping = load_mapping(ROOT / "mappings" / "NCT05147467.yaml")
    ids = [c.id for c in mapping.criteria]

    def result(unknown: set[str]) -> PatientResult:
        return PatientResult("Patient/x", "possible", tuple(
            CriterionResult(i, "unknown", "no-data" if i in unknown else "manual") if i in unknown or i not in (
                "age", "cll_diagnosis") else CriterionResult(i, "met", "value") for i in ids))

    one, two = score_result(mapping, result({"ecog"})), score_result(mapping, result({"ecog", "prior_btk_inhibitor"}))
    assert one.score == two.score and rank([two, one]) == [one, two]
    later = dataclasses.replace(one, trial="NCT99999999")
    assert rank([later, one]) == [one, later]


def test_fhir_searchset_for_one_patient(cohort):
    code, out, err = invoke("screen", "--source", str(cohort), "--as-of", AS_OF, "--patient", "net01",
                            "--format", "fhir")
    assert code == 0, err
    data = json.loads(out)
    bundle = Bundle.model_validate(data)
    assert bundle.type == "searchset" and bundle.total == 3
    entries = data["entry"]
    assert [e["resource"]["id"] for e in entries][0] == "NCT05773274"
    assert all(e["search"]["mode"] == "match" and 0 <= e["search"]["score"] <= 1 for e in entries)
    assert [e["search"]["score"] for e in entries] == sorted((e["search"]["score"] for e in entries), reverse=True)
    assert all(e["resource"]["resourceType"] == "ResearchStudy" for e in entries)
    first = entries[0]["search"]["extension"]
    explanation = next(x["valueString"] for x in first if x["url"] == MATCH_EXPLANATION)
    assert explanation.startswith("9/9 computable inclusion criteria met")
    results = {next(p["valueString"] for p in x["extension"] if p["url"] == "criterion"): x["extension"]
               for x in first if x["url"] == CRITERION_RESULT}
    hemoglobin = results["hemoglobin"]
    assert {"url": "outcome", "valueCode": "met"} in hemoglobin
    assert {"url": "evidence", "valueReference": {"reference": "Observation/net01-hb"}} in hemoglobin
    assert "Okafor" not in out and "1968-03-14" not in out  # no names or birth dates
    code, _, err = invoke("screen", "--source", str(cohort), "--as-of", AS_OF, "--format", "fhir")
    assert code == 1 and "one --patient" in err


def test_not_recruiting_trials_are_skipped_with_a_note_unless_asked(cohort, tmp_path):
    db = str(tmp_path / "store.db")
    record = ROOT / "tests" / "fixtures" / "ctgov" / "studies" / "NCT03934567.json"
    assert json.loads(record.read_text())["protocolSection"]["statusModule"]["overallStatus"] == "ACTIVE_NOT_RECRUITING"
    code, _, err = invoke("registry", "import", str(record), "--db", db)
    assert code == 0, err
    maps = tmp_path / "maps"
    maps.mkdir()
    (maps / "NCT03934567.yaml").write_text(
        "trial: NCT03934567\ncriteria_hash: '" + "0" * 64 + "'\ncriteria:\n"
        "  - {id: age, type: inclusion, text: 'Age', kind: age, min_years: 18}\n", encoding="utf-8")
    base = ("screen", "--source", str(cohort), "--as-of", AS_OF, "--patient", "net01", "--format", "json",
            "--mappings", str(maps), "--db", db)
    code, out, err = invoke(*base)
    assert code == 0
    assert "note: skipped NCT03934567: registry status ACTIVE_NOT_RECRUITING" in err
    document = json.loads(out)
    assert [t["trial"] for t in document["trials"]] == ["NCT05773274", "NCT05147467", "NCT04267848"]  # ast, alt unknown
    assert document["skipped"][0]["trial"] == "NCT03934567"
    code, out, _ = invoke(*base, "--include-not-recruiting")
    assert "NCT03934567" in [t["trial"] for t in json.loads(out)["trials"]]
    # a trial named explicitly is screened whatever its status
    code, out, _ = invoke("screen", "--trial", "NCT03934567", "--source", str(cohort), "--as-of", AS_OF,
                          "--patient", "net01", "--format", "fhir", "--mappings", str(maps), "--db", db)
    assert code == 0 and json.loads(out)["entry"][0]["resource"]["status"] == "closed-to-accrual"


def test_draft_mappings_are_skipped_unless_allowed(monkeypatch):
    """A mapping with `status: draft` (issue 12) is left out of the portfolio unless --allow-draft."""
    from connector.mapping.model import Mapping
    from connector.portfolio import trials as portfolio_trials

    @dataclasses.dataclass(frozen=True)
    class DraftMapping(Mapping):
        status: str = "draft"

    real = portfolio_trials.load_mapping

    def load(path):  # noqa: ANN001, ANN202
        mapping = real(path)
        if mapping.trial != "NCT05147467":
            return mapping
        return DraftMapping(**{f.name: getattr(mapping, f.name) for f in dataclasses.fields(Mapping)
                               if f.name != "status"})

    monkeypatch.setattr(portfolio_trials, "load_mapping", load)
    chosen, skipped = select_trials(MappingSources(), None)
    assert [t.trial for t in chosen] == ["NCT04267848", "NCT05773274"]
    assert [(s.trial, "draft" in s.note) for s in skipped] == [("NCT05147467", True)]
    chosen, skipped = select_trials(MappingSources(), None, allow_draft=True)
    assert [t.trial for t in chosen] == TRIALS and skipped == []


@pytest.mark.server
def test_one_pull_over_rest_costs_the_requests_of_one_trial(fhir_server, monkeypatch):
    """Over REST the portfolio makes exactly the requests a single-trial screen makes."""
    import requests

    bundles = [*(ROOT / "examples" / "patients").glob("*.json"), *(ROOT / "examples" / "portfolio").glob("*.json")]
    for path in sorted(bundles):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data["resourceType"] == "Bundle":  # the malformed single Observation is not one
            response = requests.post(fhir_server.base_url, json=data, headers=fhir_server.admin_headers(), timeout=60)
            assert response.status_code == 200, (path.name, response.text[:300])
    sent: list[str] = []
    original = requests.Session.send

    def send(self, request, **kwargs):  # noqa: ANN001, ANN003, ANN202
        sent.append(request.url)
        return original(self, request, **kwargs)

    monkeypatch.setattr(requests.Session, "send", send)
    patients = ["--patient", "net01", "--patient", "lung19", "--patient", "cll20"]
    code, out, err = invoke("screen", "--source", fhir_server.base_url, *patients, "--as-of", AS_OF, "--format", "json")
    assert code == 0, err
    portfolio_requests = len(sent)
    ranking = {r["patient"]: r["trials"][0] for r in json.loads(out)["ranking"]}
    assert ranking == {"Patient/net01": "NCT05773274", "Patient/lung19": "NCT04267848", "Patient/cll20": "NCT05147467"}
    sent.clear()
    code, _, err = invoke("screen", "--trial", "NCT05773274", "--source", fhir_server.base_url, *patients,
                          "--as-of", AS_OF, "--format", "json")
    assert code == 0, err
    assert portfolio_requests == len(sent) > 0, (portfolio_requests, len(sent))


def test_run_of_the_portfolio_stores_each_trial_only_its_own_record_errors(tmp_path):
    """`run --trial all`: net11's malformed hemoglobin is an error of the trials that read hemoglobin
    only; the CLL trial (no lab) stores net11 as a single-trial run would, without it."""
    data = tmp_path / "net11"
    data.mkdir()
    for path in (ROOT / "examples" / "patients").glob("11-*.json"):
        shutil.copy(path, data)
    db = str(tmp_path / "store.db")
    code, _, err = invoke("run", "--trial", "all", "--source", str(data), "--as-of", AS_OF, "--db", db)
    assert code == EXIT_PARTIAL, err
    errors = {}
    for trial in TRIALS:
        code, out, err = invoke("results", "--trial", trial, "--format", "json", "--db", db)
        assert code == 0, err
        errors[trial] = json.loads(out)["patients"][0]["errors"]
    assert errors["NCT05147467"] == []
    assert any("Observation/net11-hb-bad" in e for e in errors["NCT05773274"])


def lab(rid: str, loinc: str, value: object) -> dict:
    return {"resourceType": "Observation", "id": rid, "status": "final", "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
            "effectiveDateTime": "2026-11-07T09:30:00Z",
            "valueQuantity": {"value": value, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"}}


def test_each_trial_sees_the_errors_about_records_it_reads_and_every_patient_level_one():
    from connector.needs import EVERYTHING, DataNeeds
    from connector.parse import patient_facts

    dose = {"resourceType": "MedicationAdministration", "id": "ma1", "status": "completed",
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-10-01",
            "medicationReference": {"reference": "Medication/lu177"}}
    copies = [{"resourceType": "Medication", "id": "lu177", "code": {"text": text}} for text in ("Lutathera", "Other")]
    facts = patient_facts("p1", [
        {"resourceType": "Patient", "id": "p1", "gender": "female", "birthDate": "1960-05-01"},
        lab("hb", "718-7", "11,2"),  # unreadable hemoglobin
        {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}, "onsetDateTime": "2026-13-01"},
        dose, *copies])  # a Medication in conflict: the error of those that read the administration
    facts.errors.append("Observation/x: reference Patient/p9 resolves nowhere in its Bundle; not used")  # patient level
    assert len(facts.errors) == 4, facts.errors
    hemoglobin = DataNeeds(frozenset({"Patient", "Observation"}), frozenset({("http://loinc.org", "718-7")}))
    platelets = DataNeeds(frozenset({"Patient", "Observation"}), frozenset({("http://loinc.org", "777-3")}))
    medications = DataNeeds(frozenset({"Patient", "MedicationAdministration"}))
    assert facts.seen_by(EVERYTHING) is facts
    assert [e[:14] for e in facts.seen_by(hemoglobin).errors] == ["Observation/hb", "Observation/x:"]
    assert facts.seen_by(platelets).errors == [facts.errors[-1]]
    assert [e.split(":")[0] for e in facts.seen_by(medications).errors] == ["Medication/lu177", "Observation/x"]
    assert facts.seen_by(platelets).observations is facts.observations  # the same facts, fewer errors


def test_work_items_are_the_criteria_hints_with_the_codes_to_request():
    """One source of truth: a work item's window, first date and latest value are its hint's."""
    from connector.mapping import load_mapping
    from connector.portfolio.worklist import worklist
    from connector.report.hints import hint_for
    from connector.results import CriterionResult, Evidence, PatientResult

    mapping = load_mapping(ROOT / "mappings" / "NCT05773274.yaml")
    as_of = date.fromisoformat(AS_OF)
    special = {
        "bilirubin": CriterionResult("bilirubin", "unknown", "no-reference-range",
                                     (Evidence("Observation/bili", 1.9, "mg/dL", "2026-11-02"),)),
        "creatinine_clearance": CriterionResult("creatinine_clearance", "unknown", "stale", (
            Evidence("Observation/scr", 1.1, "mg/dL", "2026-08-30"), Evidence("Observation/wt", 71, "kg", "2026-09-04"))),
        "hemoglobin": CriterionResult("hemoglobin", "unknown", "no-data", ()),
        "consent": CriterionResult("consent", "unknown", "manual", ()),  # a person's call, not data to request
    }
    results = tuple(special.get(c.id, CriterionResult(c.id, "met", "value", ())) for c in mapping.criteria)
    [work] = worklist(mapping, [PatientResult("Patient/p1", "possible", results)], as_of)
    items = {i.criterion: i for i in work.items}
    assert list(items) == ["hemoglobin", "bilirubin", "creatinine_clearance"]  # mapping order
    criteria = {c.id: c for c in mapping.criteria}
    for cid, item in items.items():
        hint = hint_for(criteria[cid], special[cid], as_of)
        expected_latest = None if hint.latest_reference is None else {
            "reference": hint.latest_reference, "value": hint.latest_value, "unit": hint.latest_unit,
            "date": hint.latest_date}
        assert (item.window_days, item.not_before, item.latest) == (hint.window_days, hint.dated_from, expected_latest)
        assert item.to_json()["text"] == hint.text
    assert items["hemoglobin"].not_before == "2026-10-19" and items["hemoglobin"].latest is None
    assert "Gilbert" in items["bilirubin"].to_json()["text"]  # the whole criterion, not its first line
    assert {"http://loinc.org|2160-0", "http://loinc.org|29463-7"} <= set(items["creatinine_clearance"].codes)
