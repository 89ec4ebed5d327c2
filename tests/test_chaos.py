"""Chaos: `trial-connector run` killed with -9 at seeded random points of a REST, a Bulk and a
local-file run, on SQLite and PostgreSQL; the same command run again must finish the job with
exactly the results of an uninterrupted run, and leave no spill folder or export behind.

Kill points are "after k patients are done" (k drawn from a fixed seed; k = 0 kills during
set-up: the export, the spill, the first requests), so the test is repeatable while still
hitting different phases. Bounded: one small population, one kill per case, a 60 s cap on
each process."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import pytest

from connector.config import Config
from connector.pipeline import RunOptions, ScheduledRun, TrialSpec
from connector.store import open_store
from population import generate_patients, group, write_ndjson

pytestmark = pytest.mark.server
TRIAL = "NCT05773274"
AS_OF = date(2026, 11, 16)
ROOT = Path(__file__).resolve().parents[1]
PATIENTS = 24
FILE_PATIENTS = 120  # local files are screened much faster: more patients give a kill room to land
SEED = 20261201
KINDS = ("rest", "bulk", "files")


@pytest.fixture(scope="module")
def population(fhir_server, tmp_path_factory) -> dict:  # noqa: ANN001
    """One population on the session FHIR server (behind a Group) and as NDJSON files."""
    prefix = f"chaos{os.getpid()}-"
    patients = list(generate_patients(PATIENTS, prefix=prefix, seed=SEED))
    fhir_server.load([r for p in patients for r in p] + [group(f"{prefix}grp", [p[0]["id"] for p in patients])])
    folder = tmp_path_factory.mktemp("chaos-files")
    write_ndjson(folder, FILE_PATIENTS, prefix=prefix, seed=SEED)
    return {"server": fhir_server, "group": f"{prefix}grp", "folder": folder, "reference": {}}


def arguments(kind: str, population: dict, work_dir: Path) -> dict:
    """The run's options, as RunOptions fields (the CLI gets the same as flags)."""
    if kind == "files":
        return {"source": str(population["folder"])}
    options = {"source": population["server"].base_url, "group": population["group"]}
    if kind == "bulk":
        options.update(bulk=True, work_dir=work_dir)
    return options


def command(options: dict, db: str) -> list[str]:
    line = [sys.executable, "-m", "connector", "run", "--trial", TRIAL, "--source", options["source"],
            "--as-of", AS_OF.isoformat(), "--db", db]
    if options.get("group"):
        line += ["--group", options["group"]]
    if options.get("bulk"):
        line += ["--bulk", "--work-dir", str(options["work_dir"])]
    return line


def run_in_process(store_url: str, options: dict) -> tuple:  # noqa: ANN001
    with open_store(store_url) as store:
        outcome = ScheduledRun(store, Config(), RunOptions(trials=[TrialSpec.load(TRIAL)], as_of=AS_OF,
                                                           **options)).execute()
        return outcome, results(store)


def results(store) -> list[tuple]:  # noqa: ANN001
    rows = store.fetchall("SELECT patient_id, status, result FROM patient_results ORDER BY patient_id")
    return [(r["patient_id"], r["status"], store.from_json(r["result"])) for r in rows]


def progress(watcher) -> tuple[int, int]:  # noqa: ANN001
    """(runs started, patients done) as the store shows them; (-1, -1) while it is being created."""
    try:
        return (int(watcher.scalar("SELECT COUNT(*) AS n FROM runs") or 0),
                int(watcher.scalar("SELECT COUNT(*) AS n FROM run_progress") or 0))
    except Exception:  # noqa: BLE001 - the tables are being created by the run we watch
        return -1, -1


def reference(kind: str, population: dict, tmp_path: Path) -> list[tuple]:
    """An uninterrupted run's results (computed once per kind)."""
    kind = "rest" if kind == "bulk" else kind  # the same server read either way: the same results
    if kind not in population["reference"]:
        options = arguments(kind, population, tmp_path / "reference-work")
        _, got = run_in_process(str(tmp_path / f"reference-{kind}.db"), options)
        assert len(got) == size(kind)
        population["reference"][kind] = got
    return population["reference"][kind]


@pytest.mark.parametrize("kind", KINDS)
def test_kill_9_at_a_random_point_then_rerun_equals_an_uninterrupted_run(kind, population, store_url, tmp_path,
                                                                         monkeypatch):
    rng = random.Random(f"{SEED}-{kind}-{'pg' if store_url.startswith('postgres') else 'sqlite'}")
    total = size(kind)
    kill_after = rng.choice([0, rng.randrange(1, total // 2)])  # early enough to land before the end
    expected = reference(kind, population, tmp_path)
    temp = tmp_path / "tmp"
    temp.mkdir()
    options = arguments(kind, population, tmp_path / "work")
    watcher = open_store(store_url)  # created (migrated) up front, so it can be watched from the start
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(temp)}
    proc = subprocess.Popen(command(options, store_url), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    killed = False
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            started, done = progress(watcher)
            if started > 0 and done >= kill_after and (kill_after or _setting_up(kind, temp, tmp_path / "work")):
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
            time.sleep(0.002)
        proc.wait(timeout=60)
        done = progress(watcher)[1]
    finally:
        watcher.close()
    assert killed and done < total, f"the run ended (rc {proc.returncode}) before its kill point {kill_after}"

    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # the rerun shares the killed run's temp folder
    outcome, got = run_in_process(store_url, {**options, "source": options["source"]})
    assert outcome.run.status == "done"
    assert got == expected
    with open_store(store_url) as store:
        statuses = [r["status"] for r in store.fetchall("SELECT status FROM runs ORDER BY id")]
        history = store.fetchall("SELECT COUNT(*) AS n, COUNT(DISTINCT patient_id) AS d FROM status_history")
    assert statuses == ["done"]  # the killed run was resumed, not repeated beside a new one
    assert history == [{"n": total, "d": total}]  # no patient screened twice, none skipped
    assert list(temp.iterdir()) == []  # no spill folder (clinical data) left behind
    assert not (tmp_path / "work").exists()  # nor a Bulk export


def size(kind: str) -> int:
    return FILE_PATIENTS if kind == "files" else PATIENTS


def _setting_up(kind: str, temp: Path, work: Path) -> bool:
    """Whether a run is past start-up into its first phase (so a kill at 0 hits the data path)."""
    if kind == "files":
        return any(temp.glob("trial-connector-spill-*/spill.db"))
    if kind == "bulk":
        return work.exists()
    return True  # REST: the run row exists, the patient list is being read
