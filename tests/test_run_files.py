"""Scheduled runs over local FHIR files, on SQLite and PostgreSQL: full and incremental runs,
per-patient errors, several trials at once, time windows, mapping changes, the CLI commands
`run`, `results` (table/json/csv/fhir) and `history`, exit codes and the run lock."""

from __future__ import annotations

import csv
import io
import json
import shutil
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.researchsubject import ResearchSubject

from connector.cli import cli
from connector.config import Config
from connector.errors import LockedError
from connector.pipeline import RunOptions, ScheduledRun, TrialSpec
from connector.results import ScreenReport
from connector.scheduled import records
from connector.scheduled.lock import run_lock
from connector.store import open_store
from population import example_patients

TRIAL = "NCT05773274"
AS_OF = date(2026, 11, 16)
ROOT = Path(__file__).resolve().parents[1]


def write_cohort(folder: Path, prefix: str = "", stamp: str | None = "2026-11-01T00:00:00Z") -> list[str]:
    """The example cohort as NDJSON (one file per type), each resource with meta.lastUpdated."""
    folder.mkdir(parents=True, exist_ok=True)
    by_type: dict[str, list[str]] = {}
    for resource in example_patients(prefix):
        if stamp:
            resource["meta"] = {"lastUpdated": stamp}
        by_type.setdefault(resource["resourceType"], []).append(json.dumps(resource))
    for rtype, lines in by_type.items():
        (folder / f"{rtype}.ndjson").write_text("\n".join(lines) + "\n")
    return [json.loads(line)["id"] for line in by_type["Patient"]]


def execute(store, folder: Path, specs: list[TrialSpec] | None = None, **options):  # noqa: ANN001, ANN003, ANN201
    options.setdefault("as_of", AS_OF)
    return ScheduledRun(store, Config(), RunOptions(trials=specs or [TrialSpec.load(TRIAL)], source=str(folder),
                                                     **options)).execute()


def statuses(store, trial: str = TRIAL) -> dict[str, str]:  # noqa: ANN001
    return {r["patient_id"]: r["status"] for r in records.latest_results(store, trial)}


@pytest.mark.parametrize("stamp", ["2026-11-01T00:00:00Z", None], ids=["with-meta", "without-meta"])
def test_full_then_incremental_by_data_version(store, tmp_path: Path, stamp: str | None) -> None:  # noqa: ANN001
    """Files without meta.lastUpdated (like examples/) are compared by content."""
    folder = tmp_path / "data"
    ids = write_cohort(folder, stamp=stamp)
    first = execute(store, folder, since="auto")
    assert (first.run.mode, first.run.screened, first.run.new_count) == ("full", len(ids), len(ids))
    assert first.run.status == "done"
    expected = {"net01": "candidate", "net02": "possible", "net04": "excluded"}
    assert {k: statuses(store)[k] for k in expected} == expected
    assert first.run.candidates + first.run.possible + first.run.excluded == len(ids)

    again = execute(store, folder, since="auto")
    assert again.run.mode == "incremental" and again.run.screened == 0 and again.run.new_count == 0

    lines = (folder / "Observation.ndjson").read_text().splitlines()
    changed = []
    for line in lines:
        obs = json.loads(line)
        if obs["id"] == "net04-hb":
            obs["valueQuantity"]["value"] = 13.1
            if stamp:
                obs["meta"]["lastUpdated"] = "2026-11-15T00:00:00Z"
        changed.append(json.dumps(obs))
    (folder / "Observation.ndjson").write_text("\n".join(changed) + "\n")
    third = execute(store, folder, since="auto")
    assert third.run.screened == 1 and records.changed_in_run(store, TRIAL, third.run.id) == {"net04"}
    assert statuses(store)["net04"] == "candidate"


def test_time_window_moves_and_mapping_change_rescreens(store, tmp_path: Path) -> None:  # noqa: ANN001
    folder = tmp_path / "data"
    ids = write_cohort(folder)
    execute(store, folder, since="auto")
    due = {pid: v[2] for pid, v in records.stored_versions(store, TRIAL).items()}
    first_due = min(d for d in due.values() if d)
    expected = {pid for pid, d in due.items() if d and d <= first_due}
    assert 0 < len(expected) < len(ids)
    soon = execute(store, folder, since="auto", as_of=date.fromisoformat(first_due))
    assert soon.run.screened == len(expected)
    assert {r["patient_id"] for r in store.fetchall("SELECT patient_id FROM status_history WHERE run_id = ?",
                                                     (soon.run.id,))} == expected
    later = execute(store, folder, since="auto", as_of=date(2026, 12, 20))
    assert later.run.screened > 0
    assert statuses(store)["net01"] == "possible"  # its labs are now older than 28 days

    mapping = tmp_path / "mappings" / f"{TRIAL}.yaml"
    mapping.parent.mkdir()
    mapping.write_text((ROOT / "mappings" / f"{TRIAL}.yaml").read_text() + "\n# edited\n")
    edited = execute(store, folder, [TrialSpec.load(TRIAL, mapping)], since="auto", as_of=date(2026, 12, 20))
    assert edited.run.mode == "full" and edited.run.screened == len(ids)
    assert "mapping" in edited.run.plan["reason"]


def test_registry_rescreen_marker_forces_full_run(store, tmp_path: Path) -> None:  # noqa: ANN001
    from connector.registry.normalise import normalise_study
    from connector.registry.versions import request_rescreen, save_record

    folder = tmp_path / "data"
    write_cohort(folder)
    save_record(store, normalise_study(json.loads((ROOT / "examples" / "ctgov" / f"{TRIAL}.json").read_text())),
                source="test")
    execute(store, folder, since="auto")
    assert execute(store, folder, since="auto").run.mode == "incremental"
    assert request_rescreen(store, TRIAL)
    again = execute(store, folder, since="auto")
    assert again.run.mode == "full" and "registry" in again.run.plan["reason"]


def test_patient_errors_are_recorded_and_retried(store, tmp_path: Path) -> None:  # noqa: ANN001
    folder = tmp_path / "data"
    ids = write_cohort(folder)
    with (folder / "Condition.ndjson").open("a") as handle:
        handle.write(json.dumps({"resourceType": "Condition", "id": "ghost-c",
                                 "subject": {"reference": "Patient/ghost"},
                                 "meta": {"lastUpdated": "2026-11-01T00:00:00Z"}}) + "\n")
    outcome = execute(store, folder)
    assert outcome.run.status == "partial" and outcome.run.errors == 1 and outcome.run.screened == len(ids)
    assert [pid for pid, _ in outcome.errors] == ["ghost"]
    assert "Patient/ghost" in outcome.errors[0][1]
    retry = execute(store, folder, since="auto")
    assert retry.run.errors == 1 and retry.run.screened == 0  # retried (still failing), nobody else re-screened


def test_two_trials_in_one_run(store, tmp_path: Path) -> None:  # noqa: ANN001
    folder = tmp_path / "data"
    ids = write_cohort(folder)
    other = tmp_path / "NCT00000001.yaml"
    other.write_text((ROOT / "mappings" / f"{TRIAL}.yaml").read_text().replace(f"trial: {TRIAL}", "trial: NCT00000001"))
    specs = [TrialSpec.load(TRIAL), TrialSpec.load("NCT00000001", other)]
    outcome = execute(store, folder, specs)
    assert outcome.run.trials == (TRIAL, "NCT00000001") and outcome.run.screened == len(ids)
    assert statuses(store) == statuses(store, "NCT00000001") and len(statuses(store)) == len(ids)


def test_interrupted_run_is_resumed_without_repeats(store, tmp_path: Path) -> None:  # noqa: ANN001
    folder = tmp_path / "data"
    ids = write_cohort(folder)
    spec = TrialSpec.load(TRIAL)
    run = ScheduledRun(store, Config(), RunOptions(trials=[spec], source=str(folder), as_of=AS_OF))
    original = run._screen
    calls = {"n": 0}

    def crash_after_five(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt  # like a kill: the run stays `running`
        return original(*args, **kwargs)

    run._screen = crash_after_five  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        run.execute()
    assert [r.status for r in records.interrupted_runs(store)] == ["running"]
    resumed = execute(store, folder)  # the same command: continues where it stopped
    assert resumed.resumed and resumed.run.as_of == AS_OF.isoformat()
    assert resumed.run.screened == len(ids)
    rows = store.fetchall("SELECT COUNT(*) AS n FROM status_history")
    assert rows[0]["n"] == len(ids)


def killed_run(store, folder: Path) -> records.RunRow:  # noqa: ANN001
    """A run over the example cohort interrupted before it screened anyone (left `running`)."""
    write_cohort(folder)
    run = ScheduledRun(store, Config(), RunOptions(trials=[TrialSpec.load(TRIAL)], source=str(folder), as_of=AS_OF))
    run._screen = lambda *args: (_ for _ in ()).throw(KeyboardInterrupt)  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        run.execute()
    (killed,) = records.interrupted_runs(store)
    return killed


@pytest.mark.parametrize("other", [{"as_of": date(2030, 1, 1)}, {"patient_ids": ["net01"]}, {"since": "auto"}],
                         ids=["as-of", "patient", "since"])
def test_an_interrupted_run_is_resumed_only_by_the_same_command(store, tmp_path, caplog, other) -> None:  # noqa: ANN001
    folder = tmp_path / "data"
    killed = killed_run(store, folder)
    other = {"as_of": AS_OF, **other}
    fresh = execute(store, folder, **other)
    assert not fresh.resumed and fresh.run.id != killed.id
    assert fresh.run.as_of == other["as_of"].isoformat()
    assert records.get_run(store, killed.id).status == "abandoned"
    assert f"run {killed.id} was interrupted, but with other options" in caplog.text


def test_an_interrupted_run_is_not_resumed_with_a_changed_mapping(store, tmp_path, caplog) -> None:  # noqa: ANN001
    """Results of one run all come from one mapping: a killed run whose mapping file changed since
    is abandoned, not continued with the new criteria."""
    folder = tmp_path / "data"
    killed = killed_run(store, folder)
    edited = tmp_path / f"{TRIAL}.yaml"
    seed = Path(__file__).resolve().parents[1] / "mappings" / f"{TRIAL}.yaml"
    edited.write_text(seed.read_text(encoding="utf-8") + "\n# reviewed again\n", encoding="utf-8")
    fresh = execute(store, folder, specs=[TrialSpec.load(TRIAL, edited)])
    assert not fresh.resumed and fresh.run.id != killed.id
    assert records.get_run(store, killed.id).status == "abandoned"
    assert "a changed mapping file" in caplog.text


def test_lock_held_means_locked_error(store_url: str, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    write_cohort(folder)
    with open_store(store_url) as first, open_store(store_url) as second:
        with run_lock(first):
            with pytest.raises(LockedError) as info:
                execute(second, folder)
            assert info.value.exit_code == 4
        assert execute(second, folder).run.status == "done"  # released


# ---- the CLI --------------------------------------------------------------------------------

def invoke(*args: str) -> tuple[int, str, str]:
    runner = CliRunner()
    result = runner.invoke(cli, list(args), standalone_mode=False, catch_exceptions=True)
    code = result.return_value if isinstance(result.return_value, int) else 0
    if result.exception is not None:
        code = getattr(result.exception, "exit_code", 1)
    return code, result.stdout, result.stderr


@pytest.fixture
def cli_store(tmp_path: Path) -> tuple[Path, str]:
    folder = tmp_path / "data"
    write_cohort(folder, stamp=None)
    shutil.copy(ROOT / "examples" / "patients" / "11-possible-malformed-observation.json", folder)
    return folder, str(tmp_path / "cli.db")


def test_cli_run_results_history(cli_store) -> None:  # noqa: ANN001
    folder, db = cli_store
    code, out, err = invoke("run", "--trial", TRIAL, "--source", str(folder), "--as-of", "2026-11-16", "--db", db)
    assert code == 3, err  # net11's malformed Observation: a resource error, counted and in the exit code
    assert out.startswith("run 1, full, as of 2026-11-16: screened 18 patients against 1 trial\n")
    assert f"  {TRIAL}: 6 candidates, 4 possible, 8 excluded; 18 new or changed since the last run" in out
    assert "errors: 1 resource error in 1 screened patient" in out
    assert Path(db).stat().st_mode & 0o777 == 0o600

    code, out, _ = invoke("results", "--trial", TRIAL, "--format", "json", "--db", db)
    report = ScreenReport.from_json(json.loads(out))
    assert report.trial == TRIAL and len(report.patients) == 18 and report.as_of == AS_OF
    net11 = next(p for p in report.patients if p.patient == "Patient/net11")
    assert net11.errors, "the malformed Observation is reported in the patient's errors"

    code, out, _ = invoke("results", "--trial", TRIAL, "--status", "candidate", "--format", "csv", "--db", db)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows and {r["status"] for r in rows} == {"candidate"} and rows[0]["hemoglobin"] == "met"
    assert "Okafor" not in out and "1968-03-14" not in out  # no names or birth dates

    code, out, _ = invoke("results", "--trial", TRIAL, "--format", "fhir", "--db", db)
    bundle = Bundle.model_validate(json.loads(out))
    subjects = [e.resource for e in bundle.entry if e.resource.__resource_type__ == "ResearchSubject"]
    assert len(subjects) == 18
    by_patient = {s.individual.reference: s for s in subjects}
    assert by_patient["Patient/net01"].status == "candidate"
    assert by_patient["Patient/net02"].status == "potential-candidate"
    assert by_patient["Patient/net04"].status == "ineligible"
    assert all(s.study.reference == f"ResearchStudy/{TRIAL}" for s in subjects)
    ResearchSubject.model_validate(by_patient["Patient/net04"].model_dump())
    hb = next(x for x in by_patient["Patient/net04"].extension if x.extension and
              any(p.valueString == "hemoglobin" for p in x.extension if p.url == "criterion"))
    assert any(p.url == "evidence" and p.valueReference.reference == "Observation/net04-hb" for p in hb.extension)

    code, out, _ = invoke("results", "--trial", TRIAL, "--db", db)
    assert "Patient/net01  CANDIDATE" in out and "18 patients screened: 6 candidates" in out

    # a second run with a later date: only patients whose status changed show as new
    code, out, err = invoke("run", "--trial", TRIAL, "--source", str(folder), "--as-of", "2026-12-20", "--db", db)
    assert code == 3, err
    code, out, _ = invoke("results", "--trial", TRIAL, "--new-since-last-run", "--format", "json", "--db", db)
    new = {p["patient"] for p in json.loads(out)["patients"]}
    assert "Patient/net01" in new and "Patient/net16" not in new  # net16: not a GEP-NET, stays excluded

    code, out, _ = invoke("history", "net01", "--trial", TRIAL, "--db", db)
    assert "run    1" in out and "candidate" in out and "was candidate" in out
    code, out, _ = invoke("history", "Patient/net01", "--trial", TRIAL, "--format", "json", "--db", db)
    assert [r["status"] for r in json.loads(out)["runs"]] == ["candidate", "possible"]


def test_cli_exit_codes(cli_store, tmp_path: Path) -> None:  # noqa: ANN001
    folder, db = cli_store
    with (folder / "Condition.ndjson").open("a") as handle:
        handle.write(json.dumps({"resourceType": "Condition", "id": "x", "subject": {"reference": "Patient/nobody"}}) + "\n")
    code, out, err = invoke("run", "--trial", TRIAL, "--source", str(folder), "--as-of", "2026-11-16", "--db", db)
    assert code == 3 and "1 patient not screened" in out and "Patient/nobody" in err
    with open_store(db) as holder, run_lock(holder):
        code, _, _ = invoke("run", "--trial", TRIAL, "--source", str(folder), "--db", db)
        assert code == 4
    code, _, _ = invoke("run", "--trial", "NCT1", "--source", str(folder), "--db", db)
    assert code == 1
    code, _, _ = invoke("run", "--trial", TRIAL, "--source", str(folder), "--since", "yesterday", "--db", db)
    assert code == 1
    code, _, _ = invoke("results", "--trial", TRIAL, "--post", "--db", db)
    assert code == 1


def test_cli_run_warns_when_the_synced_criteria_text_moved_on(cli_store, tmp_path: Path) -> None:  # noqa: ANN001
    folder, db = cli_store
    record_file = ROOT / "examples" / "ctgov" / f"{TRIAL}.json"
    assert invoke("registry", "import", "--db", db, str(record_file))[0] == 0
    code, _, err = invoke("run", "--trial", TRIAL, "--source", str(folder), "--as-of", "2026-11-16", "--db", db)
    assert code == 3 and "warning: mapping" not in err  # 3: net11's malformed Observation

    record = json.loads(record_file.read_text(encoding="utf-8"))
    record["protocolSection"]["eligibilityModule"]["eligibilityCriteria"] += "\n* A new criterion"
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps(record), encoding="utf-8")
    assert invoke("registry", "import", "--db", db, str(changed))[0] == 0
    code, out, err = invoke("run", "--trial", TRIAL, "--source", str(folder), "--as-of", "2026-11-16",
                            "--since", "auto", "--db", db)
    assert code == 3 and "warning: mapping mappings/NCT05773274.yaml" in err and "synced in the store" in err
    assert "screened 18" in out  # the registry's re-screen marker: every earlier flag is re-screened


def test_the_lock_is_the_store_s_not_the_spelling_of_its_path(store_url: str, tmp_path: Path, monkeypatch) -> None:
    """A symlink, a relative path or another URL spelling of the same store is the same lock."""
    folder = tmp_path / "data"
    write_cohort(folder)
    if store_url.startswith("postgresql"):
        others = [store_url + "&application_name=other-spelling"]
    else:
        (tmp_path / "link.db").symlink_to(store_url)
        monkeypatch.chdir(tmp_path)
        others = [str(tmp_path / "link.db"), "store.db", "./link.db"]
    with open_store(store_url) as first:
        with run_lock(first):
            for other in others:
                with open_store(other) as second, pytest.raises(LockedError):
                    execute(second, folder)
