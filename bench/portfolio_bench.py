"""Cost of screening N trials at once: one pull with merged data needs vs one pull per trial (run by hand).

    .venv/bin/python bench/portfolio_bench.py [--patients 60] [--counts 1 3 10] [--synthea DIR]

Loads the first `--patients` patients of a Synthea NDJSON export (default: ../shared/synthea;
Patient, Observation, Condition, MedicationRequest) into a real FHIR server (sekmet-fhir,
tests/fhir_server.py) on 127.0.0.1, then screens every patient against 1, 3 and 10 mappings over
REST: the three bundled mappings, and for 10 seven more made from them (another NCT id each and
one extra lab criterion with its own LOINC code, so the merged needs grow too). For each N it
prints requests, KiB and wall time per patient for the portfolio (ONE pull with the merged
needs: connector.portfolio.screening) beside N separate single-trial pulls, and the ratio to
N = 1. No timing assertions: figures are this machine's and this pure-Python server's.
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from connector.config import ServerConfig  # noqa: E402
from connector.evaluation import evaluate_patient  # noqa: E402
from connector.mapping import data_needs  # noqa: E402
from connector.mapping.loader import build_mapping, load_mapping  # noqa: E402
from connector.mapping.model import Mapping  # noqa: E402
from connector.fhir.client import FhirClient  # noqa: E402
from connector.parse import patient_facts  # noqa: E402
from connector.portfolio.screening import merged_needs  # noqa: E402
from connector.portfolio.trials import PortfolioTrial  # noqa: E402
from connector.sources.fhir_rest import RestSource  # noqa: E402
from fhir_server import FhirTestServer  # noqa: E402

AS_OF = date(2026, 11, 16)
TYPES = ("Patient", "Observation", "Condition", "MedicationRequest")
BUNDLED = ("NCT05773274", "NCT04267848", "NCT05147467")
# one extra lab per synthetic trial (LOINC: glucose, sodium, potassium, albumin, alkaline
# phosphatase, cholesterol, hemoglobin A1c), so ten trials ask for more codes than three
EXTRA_LABS = [("2345-7", "mg/dL", 300), ("2951-2", "mmol/L", 130), ("2823-3", "mmol/L", 3.0), ("1751-7", "g/dL", 2.5),
              ("6768-6", "U/L", 400), ("2093-3", "mg/dL", 300), ("4548-4", "%", 10)]


def synthea(folder: Path, patients: int) -> tuple[list[str], list[dict[str, Any]]]:
    with gzip.open(folder / "Patient.ndjson.gz", "rt", encoding="utf-8") as handle:
        people = [json.loads(line) for _, line in zip(range(patients), handle)]
    ids = [p["id"] for p in people]
    wanted = {f"Patient/{i}" for i in ids}
    resources = list(people)
    for rtype in TYPES[1:]:
        with gzip.open(folder / f"{rtype}.ndjson.gz", "rt", encoding="utf-8") as handle:
            for line in handle:
                resource = json.loads(line)
                if (resource.get("subject") or {}).get("reference") in wanted:
                    resources.append(resource)
    return ids, resources


def mappings(count: int) -> list[Mapping]:
    base = [load_mapping(ROOT / "mappings" / f"{t}.yaml") for t in BUNDLED]
    if count <= len(base):
        return base[:count]
    out = list(base)
    import yaml

    for i in range(count - len(base)):
        source = ROOT / "mappings" / f"{BUNDLED[i % len(base)]}.yaml"
        document = yaml.safe_load(source.read_text(encoding="utf-8"))
        document["trial"] = f"NCT99{i:06d}"
        code, unit, limit = EXTRA_LABS[i % len(EXTRA_LABS)]
        document["criteria"].append({"id": "extra_lab", "type": "inclusion", "text": f"LOINC {code} < {limit}",
                                     "kind": "observation", "codes": [{"system": "loinc", "codes": [code]}],
                                     "comparator": "<", "threshold": {"value": limit, "unit": unit},
                                     "window_days": 90})
        out.append(build_mapping(document, f"variant {i}"))
    return out


@dataclass
class Cost:
    requests: int
    bytes: int
    seconds: float
    evaluate_seconds: float  # of `seconds`, spent evaluating criteria (the rest is fetching and parsing)


def screen(base_url: str, ids: list[str], trials: list[Mapping], one_pull: bool) -> Cost:
    client = FhirClient(ServerConfig(name="bench", url=base_url, timeout=120))
    client.connect()
    source = RestSource(client)
    before = client.stats.snapshot()
    evaluating = 0.0

    def evaluate(mapping: Mapping, facts: Any) -> None:
        nonlocal evaluating
        begun = time.perf_counter()
        evaluate_patient(mapping, facts, AS_OF)
        evaluating += time.perf_counter() - begun

    started = time.perf_counter()
    if one_pull:
        needs = merged_needs([PortfolioTrial(None, m, None) for m in trials], AS_OF)  # type: ignore[arg-type]
        for pid in ids:
            facts = patient_facts(pid, source.patient_resources(pid, needs))
            for mapping in trials:
                evaluate(mapping, facts)
    else:
        for mapping in trials:
            needs = data_needs(mapping, AS_OF)
            for pid in ids:
                evaluate(mapping, patient_facts(pid, source.patient_resources(pid, needs)))
    seconds = time.perf_counter() - started
    after = client.stats.snapshot()
    source.close()
    return Cost(after.requests - before.requests, after.bytes - before.bytes, seconds, evaluating)


def best(repeat: int, *args: Any) -> Cost:
    """The fastest of `repeat` runs: the machine is shared, the slower runs measure the neighbours."""
    return min((screen(*args) for _ in range(repeat)), key=lambda c: c.seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=60)
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 3, 10])
    parser.add_argument("--repeat", type=int, default=2, help="runs per measurement; the fastest is shown")
    parser.add_argument("--synthea", type=Path, default=next(
        (p / "shared" / "synthea" for p in ROOT.parents if (p / "shared" / "synthea").is_dir()), None),
        help="folder of the Synthea NDJSON export (default: the nearest ../shared/synthea)")
    args = parser.parse_args()
    ids, resources = synthea(args.synthea, args.patients)
    print(f"machine: {platform.platform()}, Python {platform.python_version()}")
    print(f"population: {len(ids)} Synthea patients, {len(resources)} resources ({', '.join(TYPES)})")
    with tempfile.TemporaryDirectory() as workdir, FhirTestServer(Path(workdir)) as server:
        started = time.perf_counter()
        server.load(resources)
        print(f"loaded into sekmet-fhir in {time.perf_counter() - started:.0f} s\n")
        rows = []
        for count in args.counts:
            trials = mappings(count)
            rows.append((count, best(args.repeat, server.base_url, ids, trials, True),
                         best(args.repeat, server.base_url, ids, trials, False)))
        n = len(ids)
        first = rows[0][1]
        print(f"{'trials':>6} | {'one pull: req/pt':>16} {'KiB/pt':>7} {'ms/pt':>7} {'eval ms/pt':>10} {'x N=1':>6} | "
              f"{'per-trial pulls: req/pt':>23} {'KiB/pt':>7} {'ms/pt':>7} {'x N=1':>6} | {'one pull faster':>15}")
        for count, one, separate in rows:
            print(f"{count:>6} | {one.requests / n:16.2f} {one.bytes / n / 1024:7.1f} {one.seconds / n * 1000:7.1f} "
                  f"{one.evaluate_seconds / n * 1000:10.1f} {one.seconds / first.seconds:6.2f} | "
                  f"{separate.requests / n:23.2f} {separate.bytes / n / 1024:7.1f} {separate.seconds / n * 1000:7.1f} "
                  f"{separate.seconds / rows[0][2].seconds:6.2f} | {separate.seconds / one.seconds:14.2f}x")


if __name__ == "__main__":
    main()
