"""`trial-connector screen` end to end on the example cohort (examples/patients), no server.

The expected outcome of every example patient is the table in examples/patients/README.md,
written from the cohort's design; this test reads that table so the two cannot drift apart.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from connector.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "patients"
RESULT_SCHEMA = json.loads((ROOT / "schemas" / "result.schema.json").read_text(encoding="utf-8"))
AS_OF = "2026-11-16"


def expected_rows() -> dict[str, dict[str, str]]:
    rows = {}
    for line in (EXAMPLES / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].endswith(".json"):
            rows[cells[1]] = {"file": cells[0], "status": cells[2], "arm2": cells[4]}
    return rows


EXPECTED = expected_rows()


@pytest.fixture(autouse=True)
def no_store_in_cwd(monkeypatch, tmp_path):
    """Screen reads a synced registry record from the store when one exists: keep tests off ./."""
    monkeypatch.setenv("TRIAL_CONNECTOR_DB", str(tmp_path / "absent.db"))


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run the real entry point (main) and return (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["trial-connector", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def screen_json(monkeypatch, capsys, *extra: str, source: Path | str = EXAMPLES):
    code, out, err = run_cli(monkeypatch, capsys, "screen", "--trial", "NCT05773274", "--source", str(source),
                             "--as-of", AS_OF, "--format", "json", *extra)
    return code, (json.loads(out) if out.strip() else None), err


def phi_strings() -> set[str]:
    """Names, birth dates and MRNs of the example patients."""
    found = set()
    for path in EXAMPLES.glob("*.json"):
        for entry in json.loads(path.read_text(encoding="utf-8")).get("entry", []):
            resource = entry["resource"]
            if resource["resourceType"] == "Patient":
                found.add(resource["birthDate"])
                found.update(i["value"] for i in resource["identifier"])
                for name in resource["name"]:
                    found.add(name["family"])
                    found.update(name["given"])
    return found


def test_readme_table_covers_every_example():
    bundles = [p for p in EXAMPLES.glob("*.json")
               if json.loads(p.read_text(encoding="utf-8")).get("resourceType") == "Bundle"]
    assert sorted(row["file"] for row in EXPECTED.values()) == sorted(p.name for p in bundles)
    assert len(EXPECTED) >= 14
    assert {row["status"] for row in EXPECTED.values()} == {"candidate", "possible", "excluded"}


def test_every_example_patient_has_its_designed_status(monkeypatch, capsys):
    code, report, err = screen_json(monkeypatch, capsys)
    assert code == 0, err
    jsonschema.validate(report, RESULT_SCHEMA)
    assert report["trial"] == "NCT05773274" and report["as_of"] == AS_OF
    assert report["mapping"]["file"].endswith("NCT05773274.yaml") and len(report["mapping"]["criteria_hash"]) == 64
    got = {p["patient"].split("/")[1]: p for p in report["patients"]}
    assert set(got) == set(EXPECTED)
    for pid, row in EXPECTED.items():
        patient = got[pid]
        assert patient["status"] == row["status"], (pid, row["file"])
        arms = {a["label"]: a for a in patient["arms"]}
        assert arms["Arm I (177Lu-DOTATATE)"]["options"] == ["lutetium lu 177 dotatate"]
        assert ", ".join(arms["Arm II (everolimus)"]["options"]) == row["arm2"], pid
    assert "warning" not in err  # the mapping matches the bundled registry record


def criterion(report, pid, cid):
    patient = next(p for p in report["patients"] if p["patient"] == f"Patient/{pid}")
    return next(c for c in patient["criteria"] if c["id"] == cid)


def test_designed_reasons_and_evidence(monkeypatch, capsys):
    _, report, _ = screen_json(monkeypatch, capsys)
    assert criterion(report, "net02", "neutrophils")["reason"] == "no-data"
    stale = criterion(report, "net03", "hemoglobin")
    assert stale["reason"] == "stale" and stale["evidence"][0]["date"] == "2026-10-02"
    low = criterion(report, "net04", "hemoglobin")
    assert (low["outcome"], low["evidence"][0]["value"], low["evidence"][0]["unit"]) == ("not_met", 7.9, "g/dL")
    assert (criterion(report, "net05", "bilirubin")["outcome"], criterion(report, "net05", "bilirubin")["reason"]) == ("unknown", "manual")
    assert criterion(report, "net06", "prior_prrt")["reason"] == "dose"
    assert criterion(report, "net07", "no_brain_metastases")["reason"] == "manual"
    crcl = criterion(report, "net12", "creatinine_clearance")
    assert crcl["evidence"][0] == {"reference": "Cockcroft-Gault", "value": 49.58, "unit": "mL/min", "date": AS_OF}
    assert criterion(report, "net13", "prior_prrt")["reason"] == "count"
    assert criterion(report, "net18", "bilirubin")["reason"] == "no-reference-range"
    measured = criterion(report, "net18", "creatinine_clearance")
    assert measured["outcome"] == "met" and measured["evidence"][0]["reference"] == "Observation/net18-crcl"


def test_malformed_resource_is_reported_and_nothing_else_is_lost(monkeypatch, capsys):
    code, report, _ = screen_json(monkeypatch, capsys, "--patient", "net11")
    assert code == 0
    [patient] = report["patients"]
    assert patient["errors"] == ["Observation/net11-hb-bad: valueQuantity.value: expected a number, got a string"]
    assert criterion(report, "net11", "hemoglobin")["reason"] == "no-data"
    assert criterion(report, "net11", "platelets")["outcome"] == "met"


def test_site_country_gates_cabozantinib(monkeypatch, capsys):
    _, report, _ = screen_json(monkeypatch, capsys, "--patient", "net01", "--site-country", "ca")
    arm = report["patients"][0]["arms"][1]
    assert "cabozantinib" not in arm["options"]
    assert {"option": "cabozantinib",
            "why": "site country is not the United States (cabozantinib is for US patients only)"} in arm["excluded_options"]


def test_unknown_patient_is_reported_and_the_run_is_partial(monkeypatch, capsys):
    code, report, err = screen_json(monkeypatch, capsys, "--patient", "net01", "--patient", "nobody")
    assert code == 3
    assert [p["patient"] for p in report["patients"]] == ["Patient/net01"]
    assert "error: Patient/nobody:" in err


def test_table_output(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "screen", "--trial", "NCT05773274", "--source", str(EXAMPLES),
                           "--as-of", AS_OF, "--patient", "net04", "--patient", "net03", "--patient", "net05")
    assert code == 0
    assert re.search(r"Patient/net04\s+EXCLUDED", out) and re.search(r"Patient/net03\s+POSSIBLE", out)
    assert re.search(r"✗ hemoglobin .*not_met .*Observation/net04-hb: 7\.9 g/dL \(2026-11-07\)", out)
    assert re.search(r"\? hemoglobin .*unknown .*stale", out)
    assert re.search(r"\? bilirubin .*review .*manual", out)
    assert re.search(r"✓ age ", out)
    assert "to review (manual): " in out and "consent" in out
    assert "not sunitinib: not a pancreatic NET" in out
    assert out.rstrip().endswith("3 patient(s): 1 candidate, 1 possible, 1 excluded")


def test_no_phi_in_output_or_logs(monkeypatch, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    secrets = phi_strings()
    assert len(secrets) > 50
    _, json_out, json_err = run_cli(monkeypatch, capsys, "-vv", "screen", "--trial", "NCT05773274", "--source",
                                    str(EXAMPLES), "--as-of", AS_OF, "--format", "json")
    _, table_out, table_err = run_cli(monkeypatch, capsys, "-vv", "screen", "--trial", "NCT05773274", "--source",
                                      str(EXAMPLES), "--as-of", AS_OF)
    text = json_out + json_err + table_out + table_err + caplog.text
    leaked = sorted(s for s in secrets if s in text)
    assert leaked == []


def test_criteria_hash_warning(monkeypatch, capsys, tmp_path):
    record = json.loads((ROOT / "examples" / "ctgov" / "NCT05773274.json").read_text(encoding="utf-8"))
    record["protocolSection"]["eligibilityModule"]["eligibilityCriteria"] += "\n* A new criterion"
    changed = tmp_path / "record.json"
    changed.write_text(json.dumps(record), encoding="utf-8")
    code, report, err = screen_json(monkeypatch, capsys, "--patient", "net01", "--trial-record", str(changed))
    assert code == 0 and report["patients"][0]["status"] == "candidate"
    assert err.startswith("warning: mapping ") and "review the mapping" in err and str(changed) in err


def test_criteria_hash_checked_against_the_record_synced_in_the_store(monkeypatch, capsys, tmp_path):
    db = tmp_path / "store.db"
    record = json.loads((ROOT / "examples" / "ctgov" / "NCT05773274.json").read_text(encoding="utf-8"))
    code, _, err = run_cli(monkeypatch, capsys, "registry", "import", "--db", str(db),
                           str(ROOT / "examples" / "ctgov" / "NCT05773274.json"))
    assert code == 0, err
    code, _, err = screen_json(monkeypatch, capsys, "--patient", "net01", "--db", str(db))
    assert code == 0 and "warning" not in err  # the mapping matches the synced text
    record["protocolSection"]["eligibilityModule"]["eligibilityCriteria"] += "\n* A new criterion"
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(record), encoding="utf-8")
    code, _, err = run_cli(monkeypatch, capsys, "registry", "import", "--db", str(db), str(changed))
    assert code == 0, err
    code, report, err = screen_json(monkeypatch, capsys, "--patient", "net01", "--db", str(db))
    assert code == 0 and report["patients"][0]["status"] == "candidate"
    assert err.startswith("warning: mapping ") and "synced in the store" in err


def test_usage_and_mapping_errors_exit_1_with_one_line(monkeypatch, capsys, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, "screen", "--trial", "NCT-0577", "--source", str(EXAMPLES))
    assert code == 1 and err.startswith("error: --trial 'NCT-0577' is not a ClinicalTrials.gov id")
    code, _, err = run_cli(monkeypatch, capsys, "screen", "--trial", "NCT09999999", "--source", str(EXAMPLES))
    assert code == 1 and "no mapping for NCT09999999" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "mappings" / "NCT05773274.yaml").read_text(encoding="utf-8")
                   .replace("unit: g/L}", "unit: g/dq}"), encoding="utf-8")
    code, _, err = run_cli(monkeypatch, capsys, "screen", "--trial", "NCT05773274", "--source", str(EXAMPLES),
                           "--mapping", str(bad))
    assert code == 1
    assert err.strip().endswith("criterion 'hemoglobin': $.criteria[12].threshold.unit: 'g/dq' is not a known UCUM unit")
    assert err.count("\n") == 1


def test_server_source_needs_patient(monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "screen", "--trial", "NCT05773274", "--source",
                             "http://127.0.0.1:9/fhir", "--as-of", AS_OF)
    assert code == 1 and out == ""
    assert err.startswith("error: ") and "--patient" in err


def test_same_cohort_as_bulk_ndjson(monkeypatch, capsys, tmp_path):
    """The cohort exported Bulk-style (one NDJSON file per type) screens the same."""
    by_type: dict[str, list[str]] = {}
    for path in sorted(EXAMPLES.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for resource in [e["resource"] for e in data["entry"]] if data["resourceType"] == "Bundle" else [data]:
            by_type.setdefault(resource["resourceType"], []).append(json.dumps(resource))
    for rtype, lines in by_type.items():
        (tmp_path / f"{rtype}.ndjson").write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, report, _ = screen_json(monkeypatch, capsys, source=tmp_path)
    assert code == 0
    assert {p["patient"].split("/")[1]: p["status"] for p in report["patients"]} == \
        {pid: row["status"] for pid, row in EXPECTED.items()}


def test_installed_entry_point_from_another_directory(tmp_path):
    """`python -m connector` as a user runs it: mapping and record found next to the package."""
    proc = subprocess.run([sys.executable, "-m", "connector", "screen", "--trial", "NCT05773274", "--source",
                           str(EXAMPLES / "01-clear-candidate.json"), "--as-of", AS_OF, "--format", "json"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["patients"][0]["status"] == "candidate"


def test_default_screening_date_is_today(monkeypatch, capsys):
    from datetime import date

    code, out, _ = run_cli(monkeypatch, capsys, "screen", "--trial", "NCT05773274", "--source",
                           str(EXAMPLES / "01-clear-candidate.json"), "--format", "json")
    assert code == 0 and json.loads(out)["as_of"] == date.today().isoformat()


@pytest.mark.server
def test_same_cohort_from_the_real_fhir_server(fhir_server, monkeypatch, capsys):
    """The example Bundles loaded into sekmet-fhir (transactions as written) screen the same."""
    import requests

    for path in sorted(EXAMPLES.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data["resourceType"] != "Bundle":
            continue  # the malformed single Observation: a server refuses it, as it should
        response = requests.post(fhir_server.base_url, json=data, headers=fhir_server.admin_headers(), timeout=60)
        assert response.status_code == 200, (path.name, response.text[:300])
    patients = [arg for pid in EXPECTED for arg in ("--patient", pid)]
    code, report, err = screen_json(monkeypatch, capsys, *patients, source=fhir_server.base_url)
    assert code == 0, err
    jsonschema.validate(report, RESULT_SCHEMA)
    assert {p["patient"].split("/")[1]: p["status"] for p in report["patients"]} == \
        {pid: row["status"] for pid, row in EXPECTED.items()}
    arm2 = {p["patient"]: ", ".join(p["arms"][1]["options"]) for p in report["patients"]}
    assert arm2 == {f"Patient/{pid}": row["arm2"] for pid, row in EXPECTED.items()}
