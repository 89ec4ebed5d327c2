"""Bulk NDJSON screen vs the parse limit (run by hand, not a test).

    .venv/bin/python bench/bulk_vs_parse.py [--sizes 2500 10000] [--gz]

For each size, writes a generated population (the example cohort cycled with jittered labs,
tests/population.py) as one NDJSON file per resource type, as a Bulk export does, then in
fresh processes (so each peak RSS is its own):

- screen: `FileSource` (narrowed to what the trial needs, spilled to SQLite by patient) ->
  `evaluate_patient` for every patient: the whole local screening path;
- parse: read every line of the same files and `json.loads` it, nothing else: the floor no
  screening of these files can beat.

Prints patients/s, resources/s, peak RSS and the screen/parse ratios, and the peak RSS of
both sizes side by side: a screen's peak must not grow with the number of patients.
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child_parse(folder: Path) -> dict:
    started = time.perf_counter()
    resources = 0
    patients = set()
    for path in sorted(folder.iterdir()):
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    r = json.loads(line)
                    resources += 1
                    if r.get("resourceType") == "Patient":
                        patients.add(r["id"])
    return {"seconds": time.perf_counter() - started, "resources": resources, "patients": len(patients),
            "rss_mb": peak_rss_mb()}


def child_screen(folder: Path) -> dict:
    from datetime import date

    from connector.evaluation import evaluate_patient
    from connector.facts import PatientFacts
    from connector.mapping import data_needs, load_mapping
    from connector.sources.files import FileSource
    from population import AS_OF

    as_of = date.fromisoformat(AS_OF)
    mapping = load_mapping(ROOT / "mappings" / "NCT05773274.yaml")
    needs = data_needs(mapping, as_of)
    rss_ready = peak_rss_mb()
    started = time.perf_counter()
    source = FileSource(folder)
    screened = failed = 0
    statuses: dict[str, int] = {}
    for _, item in source.iter_facts(needs):
        if not isinstance(item, PatientFacts):
            failed += 1
            continue
        status = evaluate_patient(mapping, item, as_of).status
        statuses[status] = statuses.get(status, 0) + 1
        screened += 1
    return {"seconds": time.perf_counter() - started, "patients": screened, "failed": failed,
            "errors": len(source.errors), "statuses": statuses, "rss_ready_mb": rss_ready, "rss_mb": peak_rss_mb()}


def run_child(mode: str, folder: Path) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", mode, str(folder)], capture_output=True, text=True,
                          check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2500, 10000])
    parser.add_argument("--gz", action="store_true", help="gzipped NDJSON (as many Bulk servers send)")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, folder = args.child
        print(json.dumps((child_screen if mode == "screen" else child_parse)(Path(folder))))
        return

    from population import write_ndjson

    print(f"machine: {platform.platform()}, {platform.machine()}, Python {platform.python_version()}")
    rows = []
    for size in args.sizes:
        with tempfile.TemporaryDirectory(prefix="bulk-bench-") as tmp:
            folder = Path(tmp) / "export"
            count = write_ndjson(folder, size, gz=args.gz)
            megabytes = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
            parse = run_child("parse", folder)
            screen = run_child("screen", folder)
        assert parse["resources"] == count and screen["patients"] == size, (parse, screen)
        print(f"\n{size} patients, {count} resources, {megabytes:.0f} MB of NDJSON{' (gz)' if args.gz else ''}")
        print(f"  {'':8} {'wall s':>7} {'patients/s':>11} {'resources/s':>12} {'peak RSS MB':>12}")
        for name, m in (("parse", parse), ("screen", screen)):
            print(f"  {name:8} {m['seconds']:7.1f} {size / m['seconds']:11.0f} {count / m['seconds']:12.0f} "
                  f"{m['rss_mb']:12.0f}")
        print(f"  screen takes x{screen['seconds'] / parse['seconds']:.2f} the parse time "
              f"(parse is {parse['seconds'] / screen['seconds'] * 100:.0f}% of it); "
              f"screen RSS after imports, before reading: {screen['rss_ready_mb']:.0f} MB")
        print(f"  statuses {screen['statuses']}, failed {screen['failed']}, file errors {screen['errors']}")
        rows.append((size, parse, screen))
    if len(rows) > 1:
        (small, _, s_small), (large, _, s_large) = rows[0], rows[-1]
        print(f"\npeak RSS of the screen: {s_small['rss_mb']:.0f} MB at {small} patients, {s_large['rss_mb']:.0f} MB "
              f"at {large} (x{large / small:.0f} patients, RSS x{s_large['rss_mb'] / s_small['rss_mb']:.2f})")


if __name__ == "__main__":
    main()
