"""Scheduled runs against the real FHIR server (sekmet-fhir): full run, changes, incremental
rerun and its diff, time windows moving, Bulk export path with `_since`, lock contention,
`results --post` (kill -9 and resume: test_chaos.py). Each test loads its own prefixed
patients and screens them through a Group, so tests sharing the server never see each other's
patients."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from connector.config import Config
from connector.errors import LockedError
from connector.pipeline import RunOptions, ScheduledRun, TrialSpec
from connector.scheduled import records
from connector.scheduled.lock import run_lock
from connector.store import open_store
from population import example_patients, group

pytestmark = pytest.mark.server
TRIAL = "NCT05773274"
AS_OF = date(2026, 11, 16)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server(fhir_server_factory):  # noqa: ANN001, ANN201
    return fhir_server_factory()


@pytest.fixture(scope="module")
def spec() -> TrialSpec:
    return TrialSpec.load(TRIAL)


def load_cohort(server, prefix: str) -> list[str]:  # noqa: ANN001
    resources = example_patients(prefix)
    ids = [r["id"] for r in resources if r["resourceType"] == "Patient"]
    server.load(resources + [group(f"{prefix}grp", ids)])
    return ids


def run(store, server, spec, prefix: str, **options):  # noqa: ANN001, ANN003, ANN201
    options.setdefault("as_of", AS_OF)
    config = Config(servers={"test": server.server_config()})
    opts = RunOptions(trials=[spec], source="test", group=f"{prefix}grp", **options)
    return ScheduledRun(store, config, opts).execute()


def statuses(store) -> dict[str, str]:  # noqa: ANN001
    return {r["patient_id"]: r["status"] for r in records.latest_results(store, TRIAL)}


def test_full_then_incremental_rerun_and_diff(server, spec, store) -> None:  # noqa: ANN001
    prefix = f"inc{os.getpid()}{store.dialect.name[:2]}-"
    ids = load_cohort(server, prefix)
    first = run(store, server, spec, prefix, since="auto")
    assert first.run.mode == "full" and first.run.screened == len(ids) == first.run.new_count
    assert first.run.status == "done" and first.run.errors == 0
    before = statuses(store)
    assert before[f"{prefix}net04"] == "excluded" and before[f"{prefix}net02"] == "possible"

    # net04 (excluded for a low hemoglobin) gets a new, normal one
    hb = {"resourceType": "Observation", "id": f"{prefix}net04-hb", "status": "final",
          "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
          "subject": {"reference": f"Patient/{prefix}net04"}, "effectiveDateTime": "2026-11-12T09:00:00Z",
          "valueQuantity": {"value": 12.9, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"}}
    server.load([hb])
    second = run(store, server, spec, prefix, since="auto")
    assert second.run.mode == "incremental"
    assert second.run.screened == 1, "only the changed patient is re-screened"
    after = statuses(store)
    assert after[f"{prefix}net04"] != "excluded"
    assert {k: v for k, v in after.items() if k != f"{prefix}net04"} == {
        k: v for k, v in before.items() if k != f"{prefix}net04"}
    assert records.changed_in_run(store, TRIAL, second.run.id) == {f"{prefix}net04"}
    history = records.patient_history(store, TRIAL, f"{prefix}net04")
    assert [h["status"] for h in history] == ["excluded", after[f"{prefix}net04"]]

    # nothing changed, but a month later labs have left their 28-day windows
    third = run(store, server, spec, prefix, since="auto", as_of=date(2026, 12, 20))
    assert third.run.mode == "incremental" and 0 < third.run.screened <= len(ids)
    moved = records.changed_in_run(store, TRIAL, third.run.id)
    assert f"{prefix}net01" in moved and statuses(store)[f"{prefix}net01"] == "possible"


def test_bulk_path_full_then_since(server, spec, tmp_path: Path) -> None:  # noqa: ANN001
    prefix = f"blk{os.getpid()}-"
    ids = load_cohort(server, prefix)
    with open_store(str(tmp_path / "s.db")) as store:
        first = run(store, server, spec, prefix, since="auto", bulk=True, work_dir=tmp_path / "bulk")
        assert first.run.mode == "full" and first.run.screened == len(ids)
        assert not (tmp_path / "bulk").exists(), "downloaded PHI is removed after the run"
        assert first.run.data_since and first.run.plan["bulk"] is True
        server.load([{"resourceType": "Condition", "id": f"{prefix}net03-mets",
                      "subject": {"reference": f"Patient/{prefix}net03"},
                      "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C79.31"}]},
                      "clinicalStatus": {"coding": [{
                          "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}}])
        second = run(store, server, spec, prefix, since="auto", bulk=True, work_dir=tmp_path / "bulk")
        assert second.run.mode == "incremental" and second.run.screened == 1
        assert second.run.plan["ids"] == [f"{prefix}net03"]


def test_lock_contention(server, spec, store_url: str) -> None:  # noqa: ANN001
    prefix = f"lck{os.getpid()}-"
    with open_store(store_url) as holder, open_store(store_url) as other:
        with run_lock(holder):
            with pytest.raises(LockedError, match="another run"):
                run(other, server, spec, prefix)
        assert records.interrupted_runs(other) == []


def test_results_post_writes_research_subjects(server, spec, tmp_path: Path) -> None:  # noqa: ANN001
    from click.testing import CliRunner

    from connector.cli import cli

    prefix = f"pst{os.getpid()}-"
    ids = load_cohort(server, prefix)
    db = tmp_path / "post.db"
    with open_store(str(db)) as store:
        run(store, server, spec, prefix)
    result = CliRunner().invoke(cli, ["results", "--trial", TRIAL, "--format", "fhir", "--post", "--db", str(db)],
                                standalone_mode=False)
    assert result.exception is None, result.stderr
    assert f"posted {len(ids)} ResearchSubject(s)" in result.stderr
    from connector.report.research_subjects import subject_id

    stored = server.get(f"ResearchSubject/{subject_id(TRIAL, f'{prefix}net04')}").json()
    assert stored["status"] == "ineligible" and stored["individual"]["reference"] == f"Patient/{prefix}net04"
    assert stored["study"]["reference"] == f"ResearchStudy/{TRIAL}"
    assert server.get(f"ResearchStudy/{TRIAL}").status_code == 200


def test_unreachable_server_exits_2(tmp_path: Path) -> None:
    from fhir_server import free_port

    config = tmp_path / "tc.toml"
    config.write_text(f'[servers.down]\nurl = "http://127.0.0.1:{free_port()}/fhir"\nmax_retries = 0\n')
    proc = subprocess.run([sys.executable, "-m", "connector", "--config", str(config), "run", "--trial", TRIAL,
                           "--source", "down", "--db", str(tmp_path / "s.db")], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and "connection refused" in proc.stderr.lower()
    with sqlite3.connect(tmp_path / "s.db") as conn:
        assert conn.execute("SELECT status FROM runs").fetchall() == [("failed",)]


def test_results_post_never_replaces_a_research_study_it_did_not_create(server, spec, tmp_path) -> None:  # noqa: ANN001
    """The hospital's own ResearchStudy (title, PI, sites) stays as it was; ours is only referenced.
    The identifier system and extension URLs come from the config."""
    import json

    import requests
    from click.testing import CliRunner

    from connector.cli import cli

    prefix = f"rst{os.getpid()}-"
    load_cohort(server, prefix)
    theirs = {"resourceType": "ResearchStudy", "id": TRIAL, "status": "active", "title": "NETTER-P (site copy)",
              "principalInvestigator": {"reference": "Practitioner/pi-1", "display": "Dr. Site PI"},
              "site": [{"reference": "Location/site-1"}]}
    requests.put(f"{server.base_url}/ResearchStudy/{TRIAL}", json=theirs, headers=server.admin_headers(),
                 timeout=30).raise_for_status()
    db = tmp_path / "post.db"
    with open_store(str(db)) as store:
        run(store, server, spec, prefix)
    config = tmp_path / "tc.toml"
    config.write_text('[fhir_output]\nidentifier_system = "https://hospital.example.org/prescreen"\n'
                      'extension_base = "https://hospital.example.org/fhir/StructureDefinition"\n')
    result = CliRunner().invoke(cli, ["--config", str(config), "results", "--trial", TRIAL, "--format", "fhir",
                                      "--post", "--db", str(db), "--server", server.base_url], standalone_mode=False)
    assert result.exception is None, result.stderr
    assert f"ResearchStudy/{TRIAL} exists on the server and was not created by trial-connector" in result.stderr
    kept = server.get(f"ResearchStudy/{TRIAL}").json()
    assert {k: kept.get(k) for k in ("title", "principalInvestigator", "site")} == \
        {k: theirs[k] for k in ("title", "principalInvestigator", "site")}
    posted = json.loads(result.stdout)
    assert all(e["resource"]["resourceType"] == "ResearchSubject" for e in posted["entry"])
    from connector.report.research_subjects import subject_id

    subject = server.get(f"ResearchSubject/{subject_id(TRIAL, f'{prefix}net04')}").json()
    assert subject["study"]["reference"] == f"ResearchStudy/{TRIAL}"
    assert subject["identifier"][0]["system"] == "https://hospital.example.org/prescreen"
    assert {e["url"] for e in subject["extension"]} <= {
        "https://hospital.example.org/fhir/StructureDefinition/prescreen-as-of",
        "https://hospital.example.org/fhir/StructureDefinition/prescreen-criterion"}
