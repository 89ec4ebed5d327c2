"""`run --workers N`: patients screened in parallel processes give the same stored results as one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from connector.config import Config
from connector.pipeline import RunOptions, ScheduledRun, TrialSpec
from connector.scheduled import workers
from connector.sources import files
from connector.store import open_store
from test_run_files import AS_OF, TRIAL, write_cohort

FIXTURES = Path(__file__).parent / "fixtures"


def corpus(folder: Path) -> None:
    """Real Synthea records, the example cohort and a few broken lines, as a Bulk export writes them."""
    write_cohort(folder / "cohort")
    shutil.copytree(FIXTURES / "synthea", folder / "synthea", ignore=shutil.ignore_patterns("*.md"))
    with (folder / "cohort" / "Observation.ndjson").open("ab") as out:
        out.write(b'{"resourceType":"Observation","id":"cut","subject":{"reference":"Patient/net02"},"val\n')
        out.write(b'{"resourceType":"Observation","id":"nosubject","status":"final","code":{"coding":'
                  b'[{"system":"http://loinc.org","code":"718-7"}]}}\n')
        out.write(b'\xff\xfe not even text\n')
        out.write(b'{"resourceType":"Condition","subject":{"reference":"Patient/net05"}}\n')


def stored(store_url: str) -> dict[tuple[str, str], tuple]:
    with open_store(store_url) as store:
        rows = store.fetchall("SELECT trial, patient_id, status, result, data_version, rescreen_on FROM patient_results")
        errors = store.fetchall("SELECT trial, patient_id, message FROM patient_errors")
    out = {(r["trial"], r["patient_id"]): (r["status"], json.dumps(store.from_json(r["result"]), sort_keys=True),
                                           r["data_version"], r["rescreen_on"]) for r in rows}
    out.update({(e["trial"], e["patient_id"]): ("error", e["message"]) for e in errors})
    return out


def run(store_url: str, folder: Path, count: int, **options):  # noqa: ANN003, ANN201
    with open_store(store_url) as store:
        return ScheduledRun(store, Config(), RunOptions(trials=[TrialSpec.load(TRIAL)], source=str(folder),
                                                         as_of=AS_OF, workers=count, **options)).execute()


def test_two_workers_store_what_one_stores(tmp_path, monkeypatch):
    folder = tmp_path / "export"
    corpus(folder)
    monkeypatch.setattr(files, "BATCH_BYTES", 4096)  # many batches through the pool, not one
    one = run(f"sqlite:///{tmp_path / 'one.db'}", folder, 1)
    two = run(f"sqlite:///{tmp_path / 'two.db'}", folder, 2)
    assert one.run.screened == two.run.screened > 10 and one.run.errors == two.run.errors >= 2
    assert sorted(one.source_errors) == sorted(two.source_errors) and len(one.source_errors) >= 2
    assert stored(f"sqlite:///{tmp_path / 'one.db'}") == stored(f"sqlite:///{tmp_path / 'two.db'}")
    assert one.run.status == two.run.status == "partial"


def test_a_killed_parallel_run_resumes_without_repeats_or_gaps(tmp_path, monkeypatch):
    folder = tmp_path / "export"
    corpus(folder)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    original = ScheduledRun._screen
    calls = {"n": 0}

    def killed_after_five(self, *args):  # noqa: ANN001, ANN002, ANN202
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt  # like a kill: the run stays `running`, the pool is shut down
        return original(self, *args)

    monkeypatch.setattr(ScheduledRun, "_screen", killed_after_five)
    with pytest.raises(KeyboardInterrupt):
        run(url, folder, 2)
    monkeypatch.setattr(ScheduledRun, "_screen", original)
    resumed = run(url, folder, 2)
    assert resumed.resumed
    whole = run(f"sqlite:///{tmp_path / 'whole.db'}", folder, 1)
    assert stored(url) == stored(f"sqlite:///{tmp_path / 'whole.db'}")
    with open_store(url) as store:
        assert store.scalar("SELECT COUNT(*) FROM status_history") == whole.run.screened


def test_small_inputs_stay_in_one_process_unless_told(tmp_path, monkeypatch):
    folder = tmp_path / "export"
    write_cohort(folder)
    with open_store(f"sqlite:///{tmp_path / 's.db'}") as store:
        def screened(count):  # noqa: ANN001, ANN202
            return ScheduledRun(store, Config(), RunOptions(trials=[TrialSpec.load(TRIAL)], source=str(folder),
                                                           workers=count))._workers()
        monkeypatch.setattr(workers, "default_workers", lambda: 8)
        import connector.pipeline as pipeline
        monkeypatch.setattr(pipeline, "default_workers", lambda: 8)
        assert screened(None) == 1  # a few KB: starting processes would cost more than it saves
        assert screened(3) == 3
        monkeypatch.setattr(pipeline, "PARALLEL_MIN_BYTES", 1)
        assert screened(None) == 8


def test_results_come_back_in_order_with_a_bounded_window():
    job = workers.ScreenJob((), AS_OF, "US")
    with workers.Screener(job, 2) as screener:
        assert list(screener.map(abs, range(-200, 0))) == list(range(200, 0, -1))
