"""Speed of the criteria engine: screen a Bulk NDJSON export against the seed mapping.

Usage: python bench/screen_bench.py [PATH] [--as-of YYYY-MM-DD]
PATH defaults to ../shared/synthea (615 real Synthea patients, gzipped NDJSON). Prints the
time to read the source (narrowed to what the mapping needs) and the time spent evaluating,
separately, so a regression in either shows. Not a test: no timing assertions anywhere.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from datetime import date
from pathlib import Path

from connector.evaluation import evaluate_patient
from connector.facts import PatientFacts
from connector.mapping import data_needs, load_mapping
from connector.sources.files import FileSource

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", default=str(ROOT.parent / "shared" / "synthea"))
    parser.add_argument("--as-of", default="2021-06-01", help="screening date (Synthea data end in 2021)")
    args = parser.parse_args()
    as_of = date.fromisoformat(args.as_of)
    mapping = load_mapping(ROOT / "mappings" / "NCT05773274.yaml")
    needs = data_needs(mapping, as_of)

    started = time.perf_counter()
    facts = [item for _, item in FileSource(Path(args.path)).iter_facts(needs) if isinstance(item, PatientFacts)]
    read = time.perf_counter() - started

    started = time.perf_counter()
    results = [evaluate_patient(mapping, f, as_of) for f in facts]
    evaluated = time.perf_counter() - started

    statuses = Counter(r.status for r in results)
    print(f"{len(results)} patients, {len(mapping.criteria)} criteria, as of {as_of}")
    print(f"read source: {read:.2f} s; evaluate: {evaluated:.3f} s "
          f"({evaluated / max(len(results), 1) * 1000:.2f} ms/patient)")
    print("statuses:", dict(statuses))


if __name__ == "__main__":
    main()
