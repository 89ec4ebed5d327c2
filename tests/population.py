"""Generated NET RETREAT-like populations for run tests and the benchmark.

Each patient is a copy of one of the 18 example patients (examples/patients, screening date
2026-11-16) with its ids prefixed and its lab values jittered, so a population of any size has
the same realistic shapes and a spread of outcomes. Deterministic for a given seed.
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "patients"
AS_OF = "2026-11-16"


def _templates() -> list[tuple[str, str]]:
    """(template patient id, the Bundle's resources as JSON text) for each example Bundle."""
    found = []
    for path in sorted(EXAMPLES.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("resourceType") != "Bundle":
            continue
        resources = [e["resource"] for e in data["entry"]]
        pid = next(r["id"] for r in resources if r["resourceType"] == "Patient")
        found.append((pid, json.dumps(resources)))
    return found


def example_patients(prefix: str) -> list[dict[str, Any]]:
    """The example cohort itself with every id prefixed (`{prefix}net01`...), values unchanged."""
    resources: list[dict[str, Any]] = []
    for pid, text in _templates():
        resources.extend(json.loads(text.replace(f'"{pid}', f'"{prefix}{pid}').replace(
            f"Patient/{pid}", f"Patient/{prefix}{pid}")))
    return resources


def generate_patients(count: int, prefix: str = "g", seed: int = 7,
                      last_updated: str | None = None) -> Iterator[list[dict[str, Any]]]:
    """`count` patients (each a list of resources), cycling through the templates; with
    `last_updated`, every resource gets that `meta.lastUpdated` (as a server would add)."""
    rng = random.Random(seed)
    templates = _templates()
    for i in range(count):
        pid, text = templates[i % len(templates)]
        new_id = f"{prefix}{i:06d}-{pid}"
        resources = json.loads(text.replace(f"Patient/{pid}", f"Patient/{new_id}").replace(f'"{pid}', f'"{new_id}'))
        for resource in resources:
            if last_updated:
                resource["meta"] = {"lastUpdated": last_updated}
            quantity = resource.get("valueQuantity")
            if resource["resourceType"] == "Observation" and isinstance(quantity, dict) and isinstance(
                    quantity.get("value"), (int, float)):
                quantity["value"] = round(quantity["value"] * rng.uniform(0.85, 1.15), 2)
        yield resources


def write_ndjson(directory: Path, count: int, prefix: str = "g", seed: int = 7, gz: bool = False,
                 last_updated: str | None = "2026-11-01T00:00:00Z") -> int:
    """Write the population as one NDJSON file per resource type (as a Bulk export would)."""
    directory.mkdir(parents=True, exist_ok=True)
    handles: dict[str, Any] = {}
    total = 0
    try:
        for resources in generate_patients(count, prefix, seed, last_updated):
            for resource in resources:
                rtype = resource["resourceType"]
                if rtype not in handles:
                    name = directory / f"{rtype}.ndjson{'.gz' if gz else ''}"
                    handles[rtype] = gzip.open(name, "wt", encoding="utf-8") if gz else name.open("w", encoding="utf-8")
                handles[rtype].write(json.dumps(resource, separators=(",", ":")) + "\n")
                total += 1
    finally:
        for handle in handles.values():
            handle.close()
    return total


def group(group_id: str, patient_ids: list[str]) -> dict[str, Any]:
    return {"resourceType": "Group", "id": group_id, "type": "person", "actual": True,
            "member": [{"entity": {"reference": f"Patient/{pid}"}} for pid in patient_ids]}
