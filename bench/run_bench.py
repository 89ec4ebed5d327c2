"""Scheduled-run benchmark (run by hand, not a test): a generated population from NDJSON files
through the whole pipeline (files -> facts -> evaluation -> store).

    .venv/bin/python bench/run_bench.py [--patients 10000] [--db URL] [--gz]

The population is the example cohort cycled with jittered lab values (tests/population.py),
one NDJSON file per resource type as a Bulk export writes them. Prints the full run's
patients/s, an unchanged incremental rerun's time, and the process's peak RSS, which should
stay flat as --patients grows (FileSource spills to SQLite; results are written per patient).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from connector.config import Config  # noqa: E402
from connector.pipeline import RunOptions, ScheduledRun, TrialSpec  # noqa: E402
from connector.scheduled.progress import Progress  # noqa: E402
from connector.store import open_store  # noqa: E402
from population import write_ndjson  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--db", default=None, help="store URL (default: a temporary SQLite file)")
    parser.add_argument("--gz", action="store_true", help="write gzipped NDJSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="run-bench-") as tmp:
        folder = Path(tmp) / "export"
        started = time.perf_counter()
        count = write_ndjson(folder, args.patients, gz=args.gz)
        print(f"generated {args.patients} patients ({count} resources) in {time.perf_counter() - started:.1f} s; "
              f"peak RSS so far {peak_rss_mb():.0f} MB")
        options = RunOptions(trials=[TrialSpec.load("NCT05773274")], source=str(folder), as_of=date(2026, 11, 16),
                             since="auto")
        with open_store(args.db or str(Path(tmp) / "bench.db")) as store:
            for label in ("full run", "unchanged rerun (--since auto)"):
                started = time.perf_counter()
                outcome = ScheduledRun(store, Config(), options, Progress(interval_s=30.0)).execute()
                elapsed = time.perf_counter() - started
                r = outcome.run
                print(f"{label}: {elapsed:.1f} s, screened {r.screened} ({r.screened / elapsed:.0f} patients/s "
                      f"screened, {args.patients / elapsed:.0f} patients/s read); candidates {r.candidates}, "
                      f"possible {r.possible}, excluded {r.excluded}, errors {r.errors}")
        print(f"peak RSS {peak_rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
