"""Write a large Bulk NDJSON export by replicating the Synthea patients with new ids (by hand).

    python bench/generate_population.py /tmp/pop-10k --patients 10000 [--source ../shared/synthea]

Every UUID in a copy (resource ids and the references to them) gets the suffix `-<copy>`, so
copy k is a distinct, internally consistent population; the last copy is cut to reach exactly
--patients. Files are gzipped (level 1) like the source. Generate into /tmp, never into the repo.
"""

from __future__ import annotations

import argparse
import gzip
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SYNTHEA = next((p for p in (ROOT.parent / "shared" / "synthea", ROOT.parents[1] / "shared" / "synthea") if p.is_dir()),
               ROOT.parent / "shared" / "synthea")
UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
PATIENT_REF = re.compile(rb'"reference":\s*"Patient/([0-9a-f-]{36})"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", type=Path)
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--source", type=Path, default=SYNTHEA)
    args = parser.parse_args()
    files = sorted(args.source.glob("*.ndjson*"))
    patient_file = next(f for f in files if f.name.startswith("Patient."))
    with gzip.open(patient_file, "rb") as handle:
        ids = [UUID.search(line).group(0) for line in handle if line.strip()]  # type: ignore[union-attr]
    copies = -(-args.patients // len(ids))
    last_ids = set(ids[: args.patients - (copies - 1) * len(ids)])
    args.target.mkdir(parents=True, exist_ok=True)
    for file in files:
        with gzip.open(file, "rb") as handle:
            lines = [line for line in handle if line.strip()]
        with gzip.open(args.target / file.name, "wb", compresslevel=1) as out:
            for k in range(copies):
                suffix = f"-{k}".encode()
                for line in lines:
                    if k == copies - 1 and not _belongs(line, file, last_ids):
                        continue
                    out.write(UUID.sub(lambda m: m.group(0) + suffix, line))
        print(f"{file.name}: {len(lines)} lines x {copies} copies")
    print(f"{args.patients} patients written to {args.target}")


def _belongs(line: bytes, file: Path, kept: set[bytes]) -> bool:
    if file.name.startswith("Patient."):
        return UUID.search(line).group(0) in kept  # type: ignore[union-attr]
    ref = PATIENT_REF.search(line)
    return ref is None or ref.group(1) in kept


if __name__ == "__main__":
    main()
