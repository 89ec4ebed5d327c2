"""REST screen vs what a hospital analyst would write with a popular FHIR client (run by hand).

    .venv/bin/pip install fhirpy        # the `bench` extra
    .venv/bin/python bench/rest_vs_naive.py [--patients 300] [--noise 45] [--latency-ms 20]

Generates a population (the example cohort cycled with jittered labs, tests/population.py)
and gives every patient `--noise` extra Observations the trial does not need (vital signs and
chemistry over three years), loads it into a real FHIR server (sekmet-fhir, tests/fhir_server.py)
started here on 127.0.0.1, then screens every patient twice with the same engine:

- ours: `RestSource` / `FhirClient.patient_resources` (one batch of searches per patient), with
  default settings (narrowing chosen by measuring) and with the narrowing pinned on;
- naive: fhirpy `SyncFHIRClient`: read the Patient, search every Observation, Condition,
  MedicationStatement, MedicationRequest and MedicationAdministration of the patient (all
  pages), read each referenced Medication, then `patient_facts` + `evaluate_patient`.

Both run directly on loopback and again through a proxy adding `--latency-ms` per request
(tests/fault_proxy.py), since a hospital network is not loopback. Prints HTTP requests per
patient, bytes received, wall time, and the naive/ours ratios, and checks both reached the
same statuses. Figures of this pure-Python server are not the connector's own speed.
"""

from __future__ import annotations

import argparse
import platform
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import requests  # noqa: E402
from fhirpy import SyncFHIRClient  # noqa: E402

from connector.config import ServerConfig  # noqa: E402
from connector.evaluation import evaluate_patient  # noqa: E402
from connector.fhir.client import FhirClient  # noqa: E402
from connector.mapping import data_needs, load_mapping  # noqa: E402
from connector.parse import patient_facts, reference_id  # noqa: E402
from connector.sources.fhir_rest import RestSource  # noqa: E402
from fault_proxy import FaultProxy  # noqa: E402
from fhir_server import FhirTestServer  # noqa: E402
from population import AS_OF, generate_patients  # noqa: E402

NAIVE_TYPES = ("Observation", "Condition", "MedicationStatement", "MedicationRequest", "MedicationAdministration")
# LOINC codes the trial does not ask for: what fills a real patient's Observation list
NOISE_CODES = [("8867-4", "Heart rate", "/min"), ("9279-1", "Respiratory rate", "/min"),
               ("8310-5", "Body temperature", "Cel"), ("8480-6", "Systolic blood pressure", "mm[Hg]"),
               ("8462-4", "Diastolic blood pressure", "mm[Hg]"), ("2339-0", "Glucose", "mg/dL"),
               ("2951-2", "Sodium", "mmol/L"), ("2823-3", "Potassium", "mmol/L"),
               ("2075-0", "Chloride", "mmol/L"), ("17861-6", "Calcium", "mg/dL"),
               ("39156-5", "Body mass index", "kg/m2"), ("8302-2", "Body height", "cm")]


def noise_observations(pid: str, count: int, rng: random.Random) -> list[dict[str, Any]]:
    as_of = date.fromisoformat(AS_OF)
    found = []
    for i in range(count):
        code, display, unit = NOISE_CODES[i % len(NOISE_CODES)]
        when = as_of - timedelta(days=rng.randint(1, 3 * 365))
        found.append({"resourceType": "Observation", "id": f"{pid}-noise{i:03d}", "status": "final",
                      "subject": {"reference": f"Patient/{pid}"},
                      "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
                      "effectiveDateTime": when.isoformat(),
                      "valueQuantity": {"value": round(rng.uniform(1, 150), 1), "unit": unit,
                                        "system": "http://unitsofmeasure.org", "code": unit}})
    return found


def population(count: int, noise: int) -> tuple[list[str], list[dict[str, Any]]]:
    rng = random.Random(11)
    ids, resources = [], []
    for patient in generate_patients(count, prefix="rb"):
        pid = next(r["id"] for r in patient if r["resourceType"] == "Patient")
        ids.append(pid)
        resources += patient + noise_observations(pid, noise, rng)
    return ids, resources


@dataclass
class Measure:
    name: str
    requests: int
    bytes: int
    seconds: float
    statuses: dict[str, str]


def screen_ours(base_url: str, ids: list[str], mapping: Any, as_of: date, narrow: bool | str = "auto") -> Measure:
    """Default settings: narrow_observations = "auto" (timed both ways on the first patients,
    the faster kept). narrow=True pins `code=`/`date=ge` on the Observation search: it shows
    what the narrowing costs this server (sekmet's patient+code+date searches are slow)."""
    client = FhirClient(ServerConfig(name="bench", url=base_url, timeout=120, narrow_observations=narrow))
    client.connect()  # metadata read once per run, like a scheduled run does
    source = RestSource(client)
    needs = data_needs(mapping, as_of)
    before = client.stats.snapshot()
    started = time.perf_counter()
    statuses = {}
    for pid in ids:
        facts = patient_facts(pid, source.patient_resources(pid, needs))
        statuses[pid] = evaluate_patient(mapping, facts, as_of).status
    seconds = time.perf_counter() - started
    after = client.stats.snapshot()
    source.close()
    label = "ours (default, auto)" if narrow == "auto" else f"ours, narrow={str(narrow).lower()}"
    print(f"  {label}: Observation searches {client.narrowing.describe()}")
    return Measure(label, after.requests - before.requests, after.bytes - before.bytes, seconds, statuses)


def screen_naive(base_url: str, ids: list[str], mapping: Any, as_of: date) -> Measure:
    counted = {"requests": 0, "bytes": 0}

    def count(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        counted["requests"] += 1
        counted["bytes"] += len(response.content)

    client = SyncFHIRClient(base_url, requests_config={"hooks": {"response": [count]}, "timeout": 120})
    started = time.perf_counter()
    statuses = {}
    for pid in ids:
        resources = [client.reference("Patient", pid).to_resource().serialize()]
        for rtype in NAIVE_TYPES:
            resources += [r.serialize() for r in client.resources(rtype).search(patient=pid).fetch_all()]
        for med_id in {reference_id(r.get("medicationReference"), "Medication") for r in resources} - {None}:
            resources.append(client.reference("Medication", med_id).to_resource().serialize())
        statuses[pid] = evaluate_patient(mapping, patient_facts(pid, resources), as_of).status
    seconds = time.perf_counter() - started
    return Measure("naive (fhirpy)", counted["requests"], counted["bytes"], seconds, statuses)


def report(label: str, ours: Measure, naive: Measure, patients: int, broad: Measure | None = None) -> None:
    print(f"\n{label}: {patients} patients")
    print(f"  {'':24} {'requests/patient':>17} {'KiB/patient':>12} {'wall s':>8} {'patients/s':>11}")
    for m in (ours, broad, naive):
        if m is None:
            continue
        print(f"  {m.name:24} {m.requests / patients:17.2f} {m.bytes / patients / 1024:12.1f} {m.seconds:8.1f} "
              f"{patients / m.seconds:11.1f}")
    print(f"  ratio naive/ours: requests x{naive.requests / ours.requests:.2f}, bytes x{naive.bytes / ours.bytes:.2f}, "
          f"wall time x{naive.seconds / ours.seconds:.2f}")
    differ = [p for p in ours.statuses if ours.statuses[p] != naive.statuses[p]
              or (broad is not None and broad.statuses[p] != ours.statuses[p])]
    print(f"  same status for every patient: {'yes' if not differ else f'NO, {len(differ)} differ: {differ[:5]}'}"
          f"  ({dict(Counter(ours.statuses.values()))})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=300)
    parser.add_argument("--noise", type=int, default=45, help="irrelevant Observations added per patient")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args()
    as_of = date.fromisoformat(AS_OF)
    mapping = load_mapping(ROOT / "mappings" / "NCT05773274.yaml")
    ids, resources = population(args.patients, args.noise)
    observations = sum(r["resourceType"] == "Observation" for r in resources)
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}")
    print(f"population: {len(ids)} patients, {len(resources)} resources, "
          f"{observations / len(ids):.1f} Observations per patient ({args.noise} of them not needed by the trial)")
    with tempfile.TemporaryDirectory() as workdir, FhirTestServer(Path(workdir)) as server:
        started = time.perf_counter()
        server.load(resources)
        print(f"loaded into sekmet-fhir in {time.perf_counter() - started:.0f} s")
        report("loopback", screen_ours(server.base_url, ids, mapping, as_of),
               screen_naive(server.base_url, ids, mapping, as_of), len(ids),
               broad=screen_ours(server.base_url, ids, mapping, as_of, narrow=True))
        with FaultProxy(server.root_url, latency=args.latency_ms / 1000) as proxy:
            base = proxy.url("/fhir")
            report(f"through a proxy adding {args.latency_ms:.0f} ms per request",
                   screen_ours(base, ids, mapping, as_of), screen_naive(base, ids, mapping, as_of), len(ids),
                   broad=screen_ours(base, ids, mapping, as_of, narrow=True))


if __name__ == "__main__":
    main()
