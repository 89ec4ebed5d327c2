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
import os
import platform
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


# runs a command and reports its own descendants' CPU and peak RSS (fresh counters per measurement)
WRAPPER = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
sys.stdout.write(done.stdout)
sys.stderr.write(done.stderr + f"\\nUSAGE {usage.ru_utime + usage.ru_stime} {usage.ru_maxrss}\\n")
sys.exit(done.returncode)
"""


def measured(args: list[str], env: dict[str, str]) -> dict:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", WRAPPER, *args], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode not in (0, 3):
        raise SystemExit(f"{args} failed ({done.returncode}): {done.stderr[-2000:]}")
    cpu, rss_kb = done.stderr.strip().splitlines()[-1].split()[1:]
    return {"wall": wall, "cpu": float(cpu), "rss_mb": int(rss_kb) / 1024, "out": done.stdout.strip()}


def on_dask(command: list[str], env: dict[str, str], workers: int, scheduler: str | None) -> dict:
    """The run on `scheduler`, else on a LocalCluster of `workers` processes started here (not timed)."""
    if scheduler:
        return measured(command + ["--engine", "dask", "--scheduler", scheduler], env)
    from distributed import LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, silence_logs=40) as cluster:
        return measured(command + ["--engine", "dask", "--scheduler", cluster.scheduler_address], env)


def best(repeat: int, measure, db: Path | None = None) -> dict:  # noqa: ANN001
    """The fastest of `repeat` measurements (a new store each time)."""
    results = []
    for _ in range(repeat):
        if db is not None and db.exists():
            db.unlink()
        results.append(measure())
    return min(results, key=lambda m: m["wall"])


def warm_up(export: Path, tmp: Path, env: dict[str, str], as_of: str) -> None:
    """One untimed run on the first 2,000 lines of each file: fills the persisted caches."""
    import gzip

    sample = tmp / "warm-up"
    sample.mkdir()
    for path in sorted(export.rglob("*.ndjson*")):
        with (gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")) as handle:
            head = [line for _, line in zip(range(2000), handle)]
        (sample / path.name.replace(".gz", "")).write_bytes(b"".join(head))
    subprocess.run([sys.executable, "-m", "connector", "run", "--trial", TRIAL, "--source", str(sample), "--as-of",
                    as_of, "--db", str(tmp / "warm-up.db"), "--workers", "1"], env=env, capture_output=True)


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
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement; the fastest is kept")
    args = parser.parse_args()
    export = Path(args.export)
    size = sum(p.stat().st_size for p in export.rglob("*.ndjson*")) / 2**20
    print(f"machine: {platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    print(f"export: {export} ({size:.0f} MB on disk)")
    with tempfile.TemporaryDirectory(prefix="ndjson-bench-") as tmp:
        # caches as every run but a machine's first finds them (unit answers, validated mapping):
        # the user's cache folder, warmed by one untimed run on a slice of the export
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        warm_up(export, Path(tmp), env, args.as_of)
        rows = [("parse (json.loads)", best(args.repeat, lambda: measured([sys.executable, "-c", PARSE, str(export)], env)))]
        resources = int(rows[0][1]["out"])
        seen: dict[str, str] | None = None
        for workers in args.workers:
            db = Path(tmp) / f"w{workers}.db"
            command = [sys.executable, "-m", "connector", "run", "--trial", TRIAL, "--source", str(export),
                       "--as-of", args.as_of, "--db", str(db), "--workers", str(workers)]
            if args.engine == "dask":
                result = best(args.repeat, lambda: on_dask(command, env, workers, args.scheduler), db)
            else:
                result = best(args.repeat, lambda: measured(command, env), db)
            found = statuses(db)
            if seen is not None and found != seen:
                raise SystemExit(f"run --workers {workers} stored other statuses than the first run")
            seen = found
            rows.append((f"run -w {workers} ({args.engine})", result))
    parse_wall = rows[0][1]["wall"]
    print(f"{resources} resources, {len(seen or {})} patients screened; load average {os.getloadavg()[0]:.1f} at end")
    patients = len(seen or {})
    parse_cpu = rows[0][1]["cpu"]
    print(f"{'':26} {'wall s':>7} {'patients/s':>11} {'CPU s':>7} {'peak RSS MB':>12} {'parse/this':>11} "
          f"{'by CPU s':>9}")
    for label, m in rows:
        print(f"{label:26} {m['wall']:7.2f} {patients / m['wall']:11.0f} {m['cpu']:7.2f} {m['rss_mb']:12.0f} "
              f"{parse_wall / m['wall']:10.2f}x {parse_cpu / m['cpu']:8.2f}x")


if __name__ == "__main__":
    main()
