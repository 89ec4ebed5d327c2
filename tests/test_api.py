"""The documented Python API (connector.api), the layer the command line is built on."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import jsonschema
import pytest

from connector import api
from connector.errors import ConnectorError, MappingError, ResourceError, StoreError
from connector.mapping.catalog import BUNDLED, DIR, FILE
from connector.results import ScreenReport

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "patients"
AS_OF = date(2026, 11, 16)
RESULT_SCHEMA = json.loads((ROOT / "schemas" / "result.schema.json").read_text(encoding="utf-8"))


def bundle(name: str) -> dict:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def trial() -> api.TrialMapping:
    return api.load_mapping("NCT05773274")


def test_load_mapping_names_file_source_and_hash(trial, tmp_path):
    assert (trial.trial, trial.entry.source, len(trial.sha256)) == ("NCT05773274", BUNDLED, 64)
    copy = tmp_path / "NCT05773274.yaml"
    copy.write_text((ROOT / "mappings" / "NCT05773274.yaml").read_text(encoding="utf-8") + "# site copy\n")
    from_dir = api.load_mapping("nct5773274", mappings_dirs=[tmp_path])
    assert from_dir.entry.source == DIR and from_dir.sha256 != trial.sha256
    from_file = api.load_mapping(file=copy)  # the trial is read from the file
    assert (from_file.trial, from_file.entry.source) == ("NCT05773274", FILE)
    with pytest.raises(MappingError, match="no mapping for NCT09999999"):
        api.load_mapping("NCT09999999")
    with pytest.raises(ConnectorError, match="not a ClinicalTrials.gov id"):
        api.load_mapping("NCT-1")


def test_screen_patient_from_a_bundle_a_resource_list_and_a_bare_patient(trial):
    data = bundle("04-excluded-low-hemoglobin.json")
    result = api.screen_patient(data, trial, as_of=AS_OF)
    assert (result.patient, result.status) == ("Patient/net04", "excluded")
    hemoglobin = result.criterion("hemoglobin")
    assert (hemoglobin.outcome, hemoglobin.reason) == ("not_met", "value")
    resources = [e["resource"] for e in data["entry"]]
    assert api.screen_patient(resources, trial, as_of=AS_OF) == result
    patient_only = api.screen_patient(resources[0], trial, as_of=AS_OF)  # the Patient resource alone: no labs
    assert patient_only.patient == "Patient/net04" and patient_only.criterion("hemoglobin").reason == "no-data"


def test_screen_patient_needs_exactly_one_patient(trial):
    two = bundle("01-clear-candidate.json")["entry"] + bundle("04-excluded-low-hemoglobin.json")["entry"]
    with pytest.raises(ResourceError, match="found 2 patients"):
        api.screen_patient({"resourceType": "Bundle", "entry": two}, trial, as_of=AS_OF)
    outcome = api.screen_resources({"resourceType": "Bundle", "entry": two}, trial, as_of=AS_OF)
    assert [(p.patient, p.status) for p in outcome.report.patients] == [("Patient/net01", "candidate"),
                                                                         ("Patient/net04", "excluded")]


def test_screen_source_report_matches_the_result_schema_and_names_the_mapping(trial):
    outcome = api.screen_source(EXAMPLES, trial, as_of=AS_OF)
    document = outcome.report.to_json()
    jsonschema.validate(document, RESULT_SCHEMA)
    assert document["mapping"]["sha256"] == trial.sha256 and document["mapping"]["file"] == trial.file
    assert ScreenReport.from_json(document).to_json() == document
    assert outcome.patient_errors == [] and len(outcome.report.patients) >= 18


def test_read_results_from_a_store_and_never_creates_one(tmp_path, trial):
    missing = tmp_path / "none.db"
    with pytest.raises(StoreError, match="does not exist"):
        api.read_results("NCT05773274", db=str(missing))
    assert not missing.exists()
    from click.testing import CliRunner

    from connector.cli import cli

    db = tmp_path / "store.db"
    ran = CliRunner().invoke(cli, ["run", "--trial", "NCT05773274", "--source", str(EXAMPLES), "--as-of",
                                   AS_OF.isoformat(), "--db", str(db)])
    assert ran.exit_code in (0, 3), ran.output
    stored = api.read_results("nct05773274", db=str(db))
    direct = {p.patient: p.status for p in api.screen_source(EXAMPLES, trial, as_of=AS_OF).report.patients}
    assert {p.patient: p.status for p in stored} == direct
    assert {p.patient for p in api.read_results("NCT05773274", db=str(db), status="excluded")} == \
        {pid for pid, status in direct.items() if status == "excluded"}
