"""A population screen of Bulk NDJSON vs merely parsing it (run by hand, not a test).

    python bench/ndjson_screen.py [EXPORT] [--workers 1 2] [--engine embedded] [--repeat 1]

EXPORT defaults to ../shared/synthea (615 real Synthea patients, gzipped NDJSON). Each
measurement runs in a fresh process, one after the other:

- parse: read every line and `json.loads` it, nothing else (the bar: a screen should be faster);
- run -w N: `trial-connector run --workers N` into a new SQLite store (read, keep what the
  trial needs, facts, evaluation, results stored): the whole scheduled path.

Prints wall seconds, patients/s, CPU seconds and peak RSS (getrusage of the processes the
bench waited for: the run and the pool workers it waited for; Dask workers started by the
bench count only after their cluster closes), parse/run ratios (goal: >= 1.0x with one
worker, >= 1.8x with two), and checks that every run stored the same statuses. Wall-time
ratios need idle cores: the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRIAL = "NCT05773274"
# ../shared next to a clone, or two levels up from a worktree
SYNTHEA = next((p for p in (ROOT.parent / "shared" / "synthea", ROOT.parents[1] / "shared" / "synthea") if p.is_dir()),
               ROOT.parent / "shared" / "synthea")

PARSE = """
import gzip, json, sys
from pathlib import Path
n = 0
for path in sorted(Path(sys.argv[1]).rglob("*.ndjson*")):
    with (gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")) as handle:
        for line in handle:
            if line.strip():
                json.loads(line)
                n += 1
print(n)
"""


def measured(args: list[str], env: dict[str, str]) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 3):
        raise SystemExit(f"{args} failed ({done.returncode}): {done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "rss_mb": after.ru_maxrss / 1024, "out": done.stdout.strip()}


def on_dask(command: list[str], env: dict[str, str], workers: int, scheduler: str | None) -> dict:
    """The run on `scheduler`, else on a LocalCluster of `workers` processes started here (not timed)."""
    if scheduler:
        return measured(command + ["--engine", "dask", "--scheduler", scheduler], env)
    from distributed import LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=40) as cluster:
        return measured(command + ["--engine", "dask", "--scheduler", cluster.scheduler_address], env)


def statuses(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT patient_id, status FROM patient_results"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", nargs="?", default=str(SYNTHEA))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--engine", default="embedded")
    parser.add_argument("--scheduler", default=None,
                        help="dask scheduler address (--engine dask; default: a LocalCluster of --workers processes)")
    parser.add_argument("--as-of", default="2021-06-01", help="screening date (Synthea data end in 2021)")
    args = parser.parse_args()
    export = Path(args.export)
    size = sum(p.stat().st_size for p in export.rglob("*.ndjson*")) / 2**20
    print(f"machine: {platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    print(f"export: {export} ({size:.0f} MB on disk)")
    with tempfile.TemporaryDirectory(prefix="ndjson-bench-") as tmp:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TRIAL_CONNECTOR_CACHE_DIR": str(Path(tmp) / "cache")}
        rows = [("parse (json.loads)", measured([sys.executable, "-c", PARSE, str(export)], env))]
        resources = int(rows[0][1]["out"])
        seen: dict[str, str] | None = None
        for workers in args.workers:
            db = Path(tmp) / f"w{workers}.db"
            command = [sys.executable, "-m", "connector", "run", "--trial", TRIAL, "--source", str(export),
                       "--as-of", args.as_of, "--db", str(db), "--workers", str(workers)]
            if args.engine == "dask":
                result = on_dask(command, env, workers, args.scheduler)
            else:
                result = measured(command, env)
            found = statuses(db)
            if seen is not None and found != seen:
                raise SystemExit(f"run --workers {workers} stored other statuses than the first run")
            seen = found
            rows.append((f"run -w {workers} ({args.engine})", result))
    parse_wall = rows[0][1]["wall"]
    print(f"{resources} resources, {len(seen or {})} patients screened; load average {os.getloadavg()[0]:.1f} at end")
    patients = len(seen or {})
    print(f"{'':26} {'wall s':>7} {'patients/s':>11} {'CPU s':>7} {'peak RSS MB':>12} {'parse/this':>11}")
    for label, m in rows:
        print(f"{label:26} {m['wall']:7.2f} {patients / m['wall']:11.0f} {m['cpu']:7.2f} {m['rss_mb']:12.0f} "
              f"{parse_wall / m['wall']:10.2f}x")


if __name__ == "__main__":
    main()
