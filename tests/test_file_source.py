"""Local files as a source: Bundles, single resources, NDJSON(.gz); bad lines named, patients kept."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

from connector.errors import ResourceError
from connector.facts import PatientFacts
from connector.needs import EVERYTHING, DataNeeds
from connector.sources.files import FileSource

FIXTURES = Path(__file__).parent / "fixtures"


def _collect(source: FileSource, needs: DataNeeds = EVERYTHING, ids=None) -> dict:
    return dict(source.iter_facts(needs, ids))


def test_ndjson_per_type_is_grouped_by_patient(tmp_path):
    for f in (FIXTURES / "synthea").glob("*.ndjson"):
        with gzip.open(tmp_path / (f.name + ".gz"), "wt") as out:  # as Bulk clients often store them
            out.write(f.read_text())
    results = _collect(FileSource(tmp_path))
    expected = {json.loads(line)["id"] for line in (FIXTURES / "synthea/Patient.ndjson").open()}
    assert set(results) == expected
    total_obs = sum(1 for _ in (FIXTURES / "synthea/Observation.ndjson").open())
    assert sum(len(f.observations) for f in results.values()) == total_obs


def test_observations_narrowed_by_needed_codes():
    needs = DataNeeds(observation_codes=frozenset({("http://loinc.org", "29463-7")}))
    results = _collect(FileSource(FIXTURES / "synthea"), needs)
    observations = [o for f in results.values() for o in f.observations]
    assert observations and all(o.codes[0].code == "29463-7" for o in observations)


def test_bad_lines_and_orphans_are_named_and_others_survive(tmp_path):
    shutil.copy(FIXTURES / "synthea/Patient.ndjson", tmp_path / "Patient.ndjson")
    pid = json.loads((FIXTURES / "synthea/Patient.ndjson").open().readline())["id"]
    (tmp_path / "Observation.ndjson").write_text("\n".join([
        '{"resourceType": "Observation", "id": "ok", "status": "final", "subject": {"reference": "Patient/%s"},'
        ' "valueQuantity": {"value": 1}}' % pid,
        '{"resourceType": "Observation", "id": "bad", "subject": {"reference": "Patient/%s"},'
        ' "valueQuantity": {"value": "high"}}' % pid,
        '{"id": "x1"}',
        '{not json',
        '{"resourceType": "Observation", "id": "orphan", "subject": {"reference": "Patient/nobody"}}',
    ]) + "\n")
    source = FileSource(tmp_path)
    results = _collect(source)
    facts = results[pid]
    assert isinstance(facts, PatientFacts)
    assert [o.source.id for o in facts.observations] == ["ok"]
    assert facts.errors == ["Observation/bad: valueQuantity.value: expected a number, got a string"]
    assert isinstance(results["nobody"], ResourceError)
    assert "Observation/orphan reference Patient/nobody" in str(results["nobody"])
    assert f"{tmp_path / 'Observation.ndjson'}:3: resource without resourceType" in source.errors
    assert any(e.startswith(f"{tmp_path / 'Observation.ndjson'}:4: invalid JSON") for e in source.errors)
    assert len(results) == 5  # the 4 fixture patients and the orphan's missing one


def test_bundle_file_and_unknown_patient_id(tmp_path):
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": "b1", "gender": "male"},
         "request": {"method": "PUT", "url": "Patient/b1"}},
        {"request": {"method": "DELETE", "url": "Patient/zz"}},
    ]}
    (tmp_path / "b1.json").write_text(json.dumps(bundle))
    (tmp_path / "notes.txt").write_text("not FHIR")
    source = FileSource(tmp_path)
    results = _collect(source, ids=["b1", "missing"])
    assert results["b1"].gender == "male"
    assert str(results["missing"]) == "Patient/missing not found in the source"
    assert source.errors == [f"{tmp_path / 'b1.json'}: entry[1]: entry without resource"]
