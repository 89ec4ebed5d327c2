"""`run --engine dask`: the same stored results as the embedded engine, on a LocalCluster of two
worker processes (127.0.0.1 only); a worker killed mid-run loses nothing."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from connector.scheduled import dask_engine
from test_workers import corpus, run, stored

distributed = pytest.importorskip("distributed")

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=40) as local:
        yield local


def test_partitions_cut_plain_files_at_line_starts(tmp_path):
    lines = [f'{{"resourceType":"Basic","id":"b{i}"}}'.encode() for i in range(100)]
    (tmp_path / "Basic.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    parts = dask_engine.partitions(tmp_path, size=97)
    assert len(parts) > 10
    numbered = [item for part in parts for item in dask_engine.partition_lines(part, 1 << 20)]
    assert numbered == [(i + 1, line, True) for i, line in enumerate(lines)]


def test_dask_stores_what_the_embedded_engine_stores(cluster, tmp_path, monkeypatch):
    folder = tmp_path / "export"
    corpus(folder)
    monkeypatch.setattr(dask_engine, "PARTITION_BYTES", 8192)  # plain files cut in byte ranges too
    embedded = run(f"sqlite:///{tmp_path / 'embedded.db'}", folder, 1)
    on_dask = run(f"sqlite:///{tmp_path / 'dask.db'}", folder, 1, engine="dask", scheduler=cluster.scheduler_address)
    assert stored(f"sqlite:///{tmp_path / 'dask.db'}") == stored(f"sqlite:///{tmp_path / 'embedded.db'}")
    assert sorted(on_dask.source_errors) == sorted(embedded.source_errors) and embedded.source_errors
    assert (on_dask.run.screened, on_dask.run.errors, on_dask.run.status) == (
        embedded.run.screened, embedded.run.errors, embedded.run.status)


def test_a_worker_killed_mid_run_loses_nothing(cluster, tmp_path, monkeypatch):
    folder = tmp_path / "export"
    corpus(folder)
    client = distributed.Client(cluster.scheduler_address)
    victim = sorted(client.run(os.getpid).values())[0]
    killed = threading.Event()
    original_results = dask_engine.DaskRun.results

    def results_then_kill(self, done):  # noqa: ANN001, ANN202
        for i, item in enumerate(original_results(self, done)):
            if i == 0 and not killed.is_set():
                os.kill(victim, signal.SIGKILL)  # a worker dies while buckets are still being screened
                killed.set()
            yield item

    monkeypatch.setattr(dask_engine.DaskRun, "results", results_then_kill)
    monkeypatch.setattr(dask_engine, "BUCKET_BYTES", 2048)  # many buckets: most still to do when it dies
    on_dask = run(f"sqlite:///{tmp_path / 'dask.db'}", folder, 1, engine="dask", scheduler=cluster.scheduler_address)
    client.close()
    assert killed.is_set()
    embedded = run(f"sqlite:///{tmp_path / 'embedded.db'}", folder, 1)
    assert stored(f"sqlite:///{tmp_path / 'dask.db'}") == stored(f"sqlite:///{tmp_path / 'embedded.db'}")
    assert on_dask.run.screened == embedded.run.screened
