"""Bad input as a user meets it on the command line: one clear line that names the file,
patient, criterion and JSON path, the right exit code, and nothing else lost.

The loader's and the parser's unit tests (test_mapping_loader.py, test_parse.py,
test_file_source.py) check each message in isolation; here the real seed mapping and the
example cohort go through `trial-connector` itself. (An unknown threshold unit in the seed
mapping is already checked end to end in test_screen_cli.py.)
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from test_screen_cli import AS_OF, EXAMPLES, ROOT, run_cli

SEED_MAPPING = ROOT / "mappings" / "NCT05773274.yaml"
SEED_RECORD = ROOT / "examples" / "ctgov" / "NCT05773274.json"
UCUM = "http://unitsofmeasure.org"
COHORT = ("01-clear-candidate.json", "02-possible-missing-labs.json", "03-possible-stale-labs.json",
          "04-excluded-low-hemoglobin.json")


@pytest.fixture(autouse=True)
def no_store_in_cwd(monkeypatch, tmp_path):
    monkeypatch.setenv("TRIAL_CONNECTOR_DB", str(tmp_path / "store.db"))


def seed_with(old: str, new: str) -> str:
    text = SEED_MAPPING.read_text(encoding="utf-8")
    assert text.count(old) >= 1, old
    return text.replace(old, new, 1)


# where each criterion sits in the seed mapping, so the expected JSON paths follow its edits
AT = {c["id"]: i for i, c in enumerate(yaml.safe_load(SEED_MAPPING.read_text(encoding="utf-8"))["criteria"])}

# (name, change to the seed mapping, the end of the one-line error after "error: <file>: ")
MAPPING_CASES = [
    ("wrong-type", ("    window_days: 28\n", "    window_days: four weeks\n"),
     f"criterion 'hemoglobin': $.criteria[{AT['hemoglobin']}].window_days: 'four weeks' is not of type 'integer'"),
    ("unknown-kind", ("    kind: age\n", "    kind: agee\n"),
     f"criterion 'age': $.criteria[{AT['age']}].kind: unknown kind 'agee' (known: age, sex, site_country, condition, "
     "observation, coded_observation, medication, derived, all_of, any_of, not, manual)"),
    ("unknown-unit", ("unit: MBq, tolerance", "unit: Mbecquerel, tolerance"),
     f"criterion 'prior_prrt': $.criteria[{AT['prior_prrt']}].administrations.cumulative_dose.unit: 'Mbecquerel' "
     "is not a known UCUM unit"),
    ("duplicate-id", ("  - id: neutrophils\n", "  - id: hemoglobin\n"),
     f"criterion 'hemoglobin': $.criteria[{AT['neutrophils']}].id: duplicate id (also $.criteria[{AT['hemoglobin']}])"),
]


@pytest.mark.parametrize("name,change,message", MAPPING_CASES, ids=[c[0] for c in MAPPING_CASES])
def test_bad_mapping_is_one_line_naming_file_criterion_and_path(monkeypatch, capsys, tmp_path, name, change, message):
    bad = tmp_path / f"{name}.yaml"
    bad.write_text(seed_with(*change), encoding="utf-8")
    code, out, err = run_cli(monkeypatch, capsys, "screen", "--trial", "NCT05773274", "--source", str(EXAMPLES),
                             "--as-of", AS_OF, "--mapping", str(bad))
    assert code == 1
    assert out == ""  # nothing is screened with half a mapping
    assert err == f"error: {bad}: {message}\n"


def test_yaml_syntax_error_is_one_line_naming_file_and_line(monkeypatch, capsys, tmp_path):
    text = seed_with('    comparator: ">="\n', '    comparator: ">=\n')  # an unclosed quote
    broken_line = text[:text.index('">=\n')].count("\n") + 1
    bad = tmp_path / "syntax.yaml"
    bad.write_text(text, encoding="utf-8")
    code, out, err = run_cli(monkeypatch, capsys, "screen", "--trial", "NCT05773274", "--source", str(EXAMPLES),
                             "--as-of", AS_OF, "--mapping", str(bad))
    assert code == 1 and out == ""
    found = re.fullmatch(rf"error: {re.escape(str(bad))}: invalid YAML: line (\d+) column \d+: .+\n", err)
    assert found, err
    assert broken_line <= int(found.group(1)) <= broken_line + 10  # where YAML noticed the unclosed quote


def test_unknown_kind_inside_an_arm_names_the_arm_path(monkeypatch, capsys, tmp_path):
    bad = tmp_path / "arm.yaml"
    bad.write_text(seed_with("kind: site_country", "kind: site_countri"), encoding="utf-8")
    code, out, err = run_cli(monkeypatch, capsys, "screen", "--trial", "NCT05773274", "--source", str(EXAMPLES),
                             "--as-of", AS_OF, "--mapping", str(bad))
    assert code == 1 and out == "" and err.count("\n") == 1
    assert re.match(rf"error: {re.escape(str(bad))}: .*\$\.arms\[\d+\]\.options\[\d+\]\.\S*kind: unknown kind "
                    r"'site_countri'", err), err


# ---- FHIR resources -------------------------------------------------------------------------

def observation(rid: str, patient: str, loinc: str = "718-7", **fields) -> dict:
    resource = {"resourceType": "Observation", "id": rid, "status": "final",
                "subject": {"reference": f"Patient/{patient}"},
                "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
                "effectiveDateTime": "2026-11-10",
                "valueQuantity": {"value": 12.0, "unit": "g/dL", "system": UCUM, "code": "g/dL"}}
    resource.update(fields)
    return resource


def bad_resources() -> list[dict]:
    """One of each kind of bad FHIR input, spread over the cohort's patients."""
    untyped = observation("bad-untyped", "net02")
    del untyped["resourceType"]
    return [
        untyped,  # line 1
        observation("bad-string", "net04", valueQuantity={"value": "twelve", "unit": "g/dL", "system": UCUM,
                                                          "code": "g/dL"}),
        observation("bad-date", "net04", loinc="777-3", effectiveDateTime="2026-13-45"),
        observation("bad-unit", "net03", valueQuantity={"value": 12, "unit": "grams per decilitre",
                                                        "code": "gram/deciliter"}),
        observation("bad-orphan", "ghost"),
        {"resourceType": "Observation", "status": "final"},  # line 6: no id, names no patient
    ]


def screen_files(monkeypatch, capsys, source: Path) -> tuple[int, dict, str]:
    code, out, err = run_cli(monkeypatch, capsys, "screen", "--trial", "NCT05773274", "--source", str(source),
                             "--as-of", AS_OF, "--format", "json")
    return code, json.loads(out), err


def by_patient(report: dict) -> dict[str, dict]:
    return {p["patient"].split("/")[1]: p for p in report["patients"]}


def criteria(result: dict, skip: str = "") -> list[dict]:
    return [c for c in result["criteria"] if c["id"] != skip]


def test_bad_fhir_resources_are_named_and_every_other_patient_is_unaffected(monkeypatch, capsys, caplog, tmp_path):
    clean_dir, bad_dir = tmp_path / "clean", tmp_path / "bad"
    for folder in (clean_dir, bad_dir):
        folder.mkdir()
        for name in COHORT:
            shutil.copy(EXAMPLES / name, folder / name)
    bad_file = bad_dir / "extra.ndjson"
    bad_file.write_text("".join(json.dumps(r) + "\n" for r in bad_resources()), encoding="utf-8")

    code, clean, err = screen_files(monkeypatch, capsys, clean_dir)
    assert code == 0, err
    clean = by_patient(clean)
    code, report, err = screen_files(monkeypatch, capsys, bad_dir)
    got = by_patient(report)
    assert code == 3  # screened, but not everything could be read

    # a resource without resourceType that names its patient: that patient's error, by file and line
    assert (f"error: Patient/net02: 1 unreadable resource(s) name this patient: {bad_file}:1: resource without "
            "resourceType\n") in err
    assert "net02" not in got
    # one that names no patient: a problem of the source (logged as a warning, on stderr)
    assert f"{bad_file}:6: Observation without id" in caplog.text
    assert err.endswith(f"warning: 1 problem(s) reading files under {bad_dir}; data in them was not screened\n")
    # a reference to a Patient the source does not have: that reference, on one line
    assert f"error: Patient/ghost: Observation/bad-orphan reference Patient/ghost, which is not in the source\n" in err
    assert "ghost" not in got
    # a string where a number belongs and an invalid date: in the patient's errors, by resource and path
    assert got["net04"]["errors"] == ["Observation/bad-date: effectiveDateTime: invalid date",
                                      "Observation/bad-string: valueQuantity.value: expected a number, got a string"]
    assert "twelve" not in json.dumps(report) + err  # the bad value itself is not echoed
    assert {**got["net04"], "errors": []} == clean["net04"]  # the bad ones dropped, the rest counts
    # a unit that is not UCUM: the criterion cannot decide, and says which record and unit
    hemoglobin = next(c for c in got["net03"]["criteria"] if c["id"] == "hemoglobin")
    assert hemoglobin == {"id": "hemoglobin", "outcome": "unknown", "reason": "unit", "evidence": [
        {"reference": "Observation/bad-unit", "value": 12, "unit": "gram/deciliter", "date": "2026-11-10"}]}
    assert criteria(got["net03"], "hemoglobin") == criteria(clean["net03"], "hemoglobin")
    # everyone else exactly as in the clean run
    assert got["net01"] == clean["net01"]


def test_a_file_that_is_not_json_is_named_and_the_rest_screened(monkeypatch, capsys, caplog, tmp_path):
    for name in COHORT[:2]:
        shutil.copy(EXAMPLES / name, tmp_path / name)
    broken = tmp_path / "03-broken.json"
    broken.write_text((EXAMPLES / COHORT[2]).read_text(encoding="utf-8")[:500], encoding="utf-8")
    code, report, err = screen_files(monkeypatch, capsys, tmp_path)
    assert code == 3
    assert sorted(by_patient(report)) == ["net01", "net02"]
    assert f"{broken}: invalid JSON (Expecting ',' delimiter at line" in caplog.text
    assert "warning: 1 problem(s) reading" in err


# ---- ClinicalTrials.gov records -------------------------------------------------------------

def test_ctgov_record_without_protocol_section_is_refused_and_the_others_stored(monkeypatch, capsys, tmp_path):
    record = json.loads(SEED_RECORD.read_text(encoding="utf-8"))
    del record["protocolSection"]
    bad = tmp_path / "no-protocol.json"
    bad.write_text(json.dumps(record), encoding="utf-8")
    page = tmp_path / "page.json"
    page.write_text(json.dumps({"studies": [record]}), encoding="utf-8")
    db = str(tmp_path / "registry.db")
    code, _, err = run_cli(monkeypatch, capsys, "registry", "import", "--db", db, str(bad), str(page), str(SEED_RECORD))
    assert code == 1
    lines = err.splitlines()
    assert f"{bad}: study without nctId: does not match the ClinicalTrials.gov API Study schema: " \
           "$.protocolSection: missing (a study record needs it)" in lines
    assert f"{page}: $.studies[0]: study without nctId: does not match the ClinicalTrials.gov API Study schema: " \
           "$.protocolSection: missing (a study record needs it)" in lines
    assert lines[-1] == "fetched: 3, new: 1, changed: 0, unchanged: 0, failed: 2"
    code, out, _ = run_cli(monkeypatch, capsys, "registry", "show", "--db", db, "NCT05773274")
    assert code == 0 and "NCT05773274" in out
