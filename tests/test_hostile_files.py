"""Hostile local files (issue 13): one bad line is one error named by file and line, attached
to the patient it names; nothing else of the file is lost; deep nesting, huge lines and gzip
bombs cost one error each, in bounded memory; error lists stay bounded.

Runs go through the scheduled pipeline on both store backends (the `store` fixture)."""

from __future__ import annotations

import gzip
import json
import tracemalloc
from pathlib import Path

from connector.config import Config
from connector.errors import ResourceError
from connector.facts import PatientFacts
from connector.needs import EVERYTHING
from connector.pipeline import RunOptions, ScheduledRun, TrialSpec
from connector.scheduled import records
from connector.sources.files import FileSource
from test_run_files import AS_OF, TRIAL, statuses, write_cohort

FIXTURES = Path(__file__).parent / "fixtures"
SYNTHEA_PATIENTS = FIXTURES / "synthea" / "Patient.ndjson"


def run_folder(store, folder: Path, config: Config | None = None):  # noqa: ANN001, ANN201
    options = RunOptions(trials=[TrialSpec.load(TRIAL)], source=str(folder), as_of=AS_OF)
    return ScheduledRun(store, config or Config(), options).execute()


def rewrite_line(file: Path, wanted_id: str, change) -> int:  # noqa: ANN001
    """Replace the line holding resource `wanted_id` by change(its bytes); returns its line number."""
    lines = file.read_bytes().split(b"\n")
    for i, line in enumerate(lines):
        if line and json.loads(line)["id"] == wanted_id:
            lines[i] = change(line)
            file.write_bytes(b"\n".join(lines))
            return i + 1
    raise AssertionError(wanted_id)


def clean_statuses(store, tmp_path: Path) -> dict[str, str]:  # noqa: ANN001
    folder = tmp_path / "clean"
    write_cohort(folder)
    run_folder(store, folder)
    got = statuses(store)
    store.execute("DELETE FROM patient_results")
    return got


def test_a_non_utf8_byte_is_one_error_on_its_patient_and_loses_nothing_else(store, tmp_path):
    clean = clean_statuses(store, tmp_path)
    folder = tmp_path / "bad"
    write_cohort(folder)
    observations = folder / "Observation.ndjson"
    first = json.loads(observations.read_bytes().split(b"\n")[0])
    victim = first["subject"]["reference"].split("/")[1]
    line = rewrite_line(observations, first["id"], lambda raw: raw.replace(b'"final"', b'"fin\xffal"'))
    byte = observations.read_bytes().split(b"\n")[line - 1].index(b"\xff") + 1
    outcome = run_folder(store, folder)
    assert outcome.run.status == "partial" and outcome.run.errors == 1
    assert outcome.errors == [(victim, f"1 unreadable resource(s) name this patient: {observations}:{line}: "
                                       f"not valid UTF-8 (byte {byte})")]
    got = statuses(store)
    assert victim not in got  # never screened on half its data
    assert got == {pid: status for pid, status in clean.items() if pid != victim}  # every later line was read


def test_deep_nesting_is_that_resource_s_error_and_the_run_finishes(store, tmp_path):
    folder = tmp_path / "data"
    ids = write_cohort(folder)
    deep = "[" * 100_000 + "]" * 100_000
    with (folder / "Observation.ndjson").open("a") as out:
        out.write('{"resourceType":"Observation","id":"deep","subject":{"reference":"Patient/net02"},"x":'
                  + deep + "}\n")
    (folder / "bomb.json").write_text(deep)  # a whole file too: names no patient
    outcome = run_folder(store, folder)
    assert outcome.run.status == "partial"
    assert [pid for pid, _ in outcome.errors] == ["net02"]
    assert "JSON nested too deeply" in outcome.errors[0][1]
    assert list(outcome.source_errors) == [f"{folder / 'bomb.json'}: JSON nested too deeply"]
    assert set(statuses(store)) == set(ids) - {"net02"}


def test_a_truncated_line_naming_its_patient_makes_that_patient_an_error_not_a_candidate(store, tmp_path):
    folder = tmp_path / "data"
    write_cohort(folder)
    clean = run_folder(store, folder)
    assert statuses(store)["net01"] == "candidate"
    conditions = folder / "Condition.ndjson"
    net01 = next(json.loads(line)["id"] for line in conditions.read_text().splitlines()
                 if '"Patient/net01"' in line)
    cut = lambda raw: raw[: raw.index(b'"Patient/net01"') + 20]  # noqa: E731 - cut after the subject
    line = rewrite_line(conditions, net01, cut)
    outcome = run_folder(store, folder)
    assert outcome.run.status == "partial" and outcome.run.candidates == clean.run.candidates - 1
    assert outcome.errors[0][0] == "net01"
    assert f"{conditions}:{line}: invalid JSON" in outcome.errors[0][1]


def test_a_gzip_bomb_line_is_refused_in_bounded_memory_and_the_rest_read(tmp_path):
    limit = 1024 * 1024
    with gzip.open(tmp_path / "Observation.ndjson.gz", "wb") as out:
        out.write(b'{"resourceType":"Observation","id":"big","subject":{"reference":"Patient/'
                  + json.loads(SYNTHEA_PATIENTS.open().readline())["id"].encode() + b'"},"note":"')
        out.write(b"a" * (30 * limit))
        out.write(b'"}\n')
        for line in (FIXTURES / "synthea" / "Observation.ndjson").read_bytes().splitlines(keepends=True):
            out.write(line)
    (tmp_path / "Patient.ndjson").write_bytes(SYNTHEA_PATIENTS.read_bytes())
    assert (tmp_path / "Observation.ndjson.gz").stat().st_size < limit  # small on disk, 30 MB inflated
    source = FileSource(tmp_path, max_resource_bytes=limit)
    tracemalloc.start()
    try:
        results = dict(source.iter_facts(EVERYTHING))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * limit
    victim = json.loads(SYNTHEA_PATIENTS.open().readline())["id"]
    assert isinstance(results[victim], ResourceError)
    assert f"{tmp_path / 'Observation.ndjson.gz'}:1: resource larger than the 1 MB limit" in str(results[victim])
    others = [r for pid, r in results.items() if pid != victim]
    assert len(others) == 3 and all(isinstance(r, PatientFacts) and r.observations for r in others)


def test_max_resource_mb_is_read_from_the_config(tmp_path):
    from connector.config import load_config

    path = tmp_path / "c.toml"
    path.write_text("[limits]\nmax_resource_mb = 2\n")
    assert load_config(path).max_resource_bytes == 2 * 1024 * 1024


def test_millions_of_bad_lines_are_counted_not_kept(tmp_path):
    (tmp_path / "junk.ndjson").write_bytes(b"{}\n" * 50_000)
    source = FileSource(tmp_path)
    assert dict(source.iter_facts(EVERYTHING)) == {}
    assert len(source.errors) == 50_000
    kept = list(source.errors)
    assert 0 < len(kept) <= 200 and kept[0] == f"{tmp_path / 'junk.ndjson'}:1: resource without resourceType"


def test_any_exception_from_one_patient_is_that_patient_s_error(store, tmp_path, monkeypatch):
    import connector.scheduled.workers as screening  # where a run evaluates each patient

    folder = tmp_path / "data"
    ids = write_cohort(folder)
    real = screening.evaluate_patient

    def fragile(mapping, facts, *args):  # noqa: ANN001, ANN002, ANN202
        if facts.patient_id == "net03":
            raise RecursionError("maximum recursion depth exceeded")
        return real(mapping, facts, *args)

    monkeypatch.setattr(screening, "evaluate_patient", fragile)
    outcome = run_folder(store, folder)
    assert outcome.run.status == "partial"
    assert outcome.errors == [("net03", "unexpected RecursionError")]
    assert set(statuses(store)) == set(ids) - {"net03"}


def test_an_error_mid_run_fails_the_run_instead_of_leaving_it_running(store, tmp_path, monkeypatch):
    import connector.pipeline as pipeline

    folder = tmp_path / "data"
    write_cohort(folder)
    monkeypatch.setattr(pipeline.ScheduledRun, "_process", lambda self, run: int("five"))
    try:
        run_folder(store, folder)
    except ValueError:
        pass
    else:
        raise AssertionError("the ValueError should propagate")
    (failed,) = store.fetchall("SELECT status, error FROM runs")
    assert failed == {"status": "failed", "error": "unexpected ValueError"}
    monkeypatch.undo()
    again = run_folder(store, folder)
    assert not again.resumed and again.run.status == "done"


def test_registry_import_survives_a_deeply_nested_file(monkeypatch, capsys, tmp_path):
    from test_screen_cli import run_cli

    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    record = Path(__file__).resolve().parents[1] / "examples" / "ctgov" / "NCT05773274.json"
    code, _, err = run_cli(monkeypatch, capsys, "registry", "import", "--db", str(tmp_path / "r.db"), str(deep),
                           str(record))
    assert code == 1
    assert f"{deep}: JSON nested too deeply" in err.splitlines()
    assert err.splitlines()[-1] == "fetched: 1, new: 1, changed: 0, unchanged: 0, failed: 1"


def test_a_patient_with_unreadable_data_is_never_a_candidate(store, tmp_path):
    folder = tmp_path / "data"
    write_cohort(folder)
    run_folder(store, folder)
    assert statuses(store)["net01"] == "candidate"
    bad_date = {"resourceType": "Observation", "id": "net01-odd", "status": "final",
                "subject": {"reference": "Patient/net01"}, "effectiveDateTime": "2026-13-45",
                "code": {"coding": [{"system": "http://loinc.org", "code": "2160-0"}]},
                "valueQuantity": {"value": 0.9, "unit": "mg/dL", "system": "http://unitsofmeasure.org",
                                  "code": "mg/dL"}}
    with (folder / "Observation.ndjson").open("a") as out:
        out.write(json.dumps(bad_date) + "\n")
    run_folder(store, folder)
    (row,) = [r for r in records.latest_results(store, TRIAL) if r["patient_id"] == "net01"]
    assert row["status"] == "possible"
    assert row["result"]["errors"] == ["Observation/net01-odd: effectiveDateTime: invalid date"]


def test_screen_survives_deep_nesting_and_bad_bytes(monkeypatch, capsys, tmp_path):
    from test_screen_cli import run_cli

    monkeypatch.setenv("TRIAL_CONNECTOR_DB", str(tmp_path / "absent.db"))
    folder = tmp_path / "data"
    ids = write_cohort(folder)
    with (folder / "Observation.ndjson").open("ab") as out:
        out.write(b'{"resourceType":"Observation","id":"deep","subject":{"reference":"Patient/net02"},"x":'
                  + b"[" * 100_000 + b"]" * 100_000 + b"}\n")
        out.write(b'{"resourceType":"Observation","id":"odd","subject":{"reference":"Patient/net03"},'
                  b'"status":"\xc3\x28"}\n')
    code, out, err = run_cli(monkeypatch, capsys, "screen", "--trial", TRIAL, "--source", str(folder),
                             "--as-of", AS_OF.isoformat(), "--format", "json")
    assert code == 3
    screened = {p["patient"].split("/")[1] for p in json.loads(out)["patients"]}
    assert screened == set(ids) - {"net02", "net03"}
    assert "error: Patient/net02: 1 unreadable resource(s) name this patient: " in err
    assert "JSON nested too deeply" in err and "not valid UTF-8 (byte" in err
