"""Local FHIR files as a patient source: a folder (or one file) of Bundles, single resources,
or NDJSON (optionally gzipped) as a Bulk Data client writes them.

Bulk NDJSON is one file per resource type, so a patient's data is spread over every file.
Grouping it in memory would grow with the population, so resources are first spilled into
a temporary SQLite file keyed by patient and then read back one patient at a time: memory
stays flat whatever the number of patients. Only resources the trial needs are kept.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from connector.bundles import resolve_bundle
from connector.codes import canonical_system
from connector.errors import ConnectorError, ResourceError
from connector.facts import PatientFacts
from connector.needs import DataNeeds
from connector.parse import PATIENT_FIELDS, patient_facts, patient_id_of

log = logging.getLogger(__name__)

SUFFIXES = (".json", ".ndjson", ".json.gz", ".ndjson.gz")
_MAX_ERRORS_LOGGED = 50


def fhir_files(path: Path) -> list[Path]:
    """The FHIR files under `path` (or `path` itself), in a stable order."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))


def _open_text(path: Path) -> IO[str]:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def iter_resources(path: Path, errors: list[str],
                   patient_errors: dict[str, list[str]] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(location, resource) for every resource in the files; unreadable ones go to `errors`,
    or to `patient_errors[patient id]` when they belong to a one-patient Bundle."""
    for file in fhir_files(path):
        try:
            if ".ndjson" in file.name:
                yield from _ndjson_resources(file, errors)
            else:
                yield from _json_resources(file, errors, patient_errors)
        except (OSError, UnicodeDecodeError, EOFError) as exc:
            errors.append(f"{file}: cannot read: {exc.__class__.__name__}")


def _ndjson_resources(file: Path, errors: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    with _open_text(file) as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            location = f"{file}:{lineno}"
            try:
                resource = json.loads(line)
            except json.JSONDecodeError as exc:
                errors.append(f"{location}: invalid JSON ({exc.msg} at column {exc.colno})")
                continue
            if _checked(resource, location, errors):
                yield location, resource


def _json_resources(file: Path, errors: list[str],
                    patient_errors: dict[str, list[str]] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    with _open_text(file) as handle:
        try:
            data = json.load(handle)
        except json.JSONDecodeError as exc:
            errors.append(f"{file}: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")
            return
    if isinstance(data, dict) and data.get("resourceType") == "Bundle":
        entries, unresolved = resolve_bundle(data)
        patients = [r["id"] for _, r in entries if isinstance(r, dict) and r.get("resourceType") == "Patient"
                    and isinstance(r.get("id"), str)]
        for i, resource in entries:
            location = f"{file}: entry[{i}]"
            if resource is None:
                errors.append(f"{location}: entry without resource")
            elif _checked(resource, location, errors):
                if i in unresolved:
                    _dangling(resource, unresolved[i], patients, patient_errors)
                yield location, resource
    elif _checked(data, str(file), errors):
        yield str(file), data


def _dangling(resource: dict[str, Any], references: list[str], patients: list[str],
              patient_errors: dict[str, list[str]] | None) -> None:
    """A subject that names nothing in its Bundle: the patient's error when the Bundle holds one
    patient (it is that patient's record); otherwise the source reports it has no subject."""
    if len(patients) == 1 and patient_errors is not None and patient_id_of(resource) is None:
        patient_errors.setdefault(patients[0], []).append(
            f"{resource['resourceType']}/{resource['id']}: reference {', '.join(references)} resolves nowhere "
            "in its Bundle; not used")


def _checked(resource: Any, location: str, errors: list[str]) -> bool:
    if not isinstance(resource, dict):
        errors.append(f"{location}: expected a JSON object")
        return False
    if not isinstance(resource.get("resourceType"), str):
        errors.append(f"{location}: resource without resourceType")
        return False
    if not isinstance(resource.get("id"), str) or not resource["id"]:
        errors.append(f"{location}: {resource['resourceType']} without id")
        return False
    return True


def wanted(resource: dict[str, Any], needs: DataNeeds) -> bool:
    """Whether the trial reads this resource; Observations are narrowed by code like a REST search."""
    rtype = resource["resourceType"]
    if rtype == "Medication":
        return True
    if rtype not in needs.resource_types:
        return False
    if rtype == "Observation" and needs.observation_codes:
        code = resource.get("code")
        codings = code.get("coding") if isinstance(code, dict) else None
        return any(isinstance(c, dict) and (canonical_system(c.get("system")), c.get("code")) in needs.observation_codes
                   for c in codings or [])
    return True


class _Spill:
    """A throw-away SQLite file (owner-only) holding resources keyed by patient id."""

    def __init__(self) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="trial-connector-")
        os.chmod(self.dir.name, 0o700)
        self.db = sqlite3.connect(os.path.join(self.dir.name, "spill.db"))
        self.db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
            "CREATE TABLE patient (pid TEXT PRIMARY KEY, seq INTEGER, present INTEGER);"
            "CREATE TABLE resource (pid TEXT, body TEXT);"
        )
        self.shared: list[dict[str, Any]] = []
        self._seq = 0

    def add(self, pid: str, resource: dict[str, Any]) -> None:
        self._seq += 1
        is_patient = resource["resourceType"] == "Patient"
        self.db.execute(
            "INSERT INTO patient VALUES (?, ?, ?) ON CONFLICT(pid) DO UPDATE SET present = max(present, excluded.present)",
            (pid, self._seq, int(is_patient)))
        self.db.execute("INSERT INTO resource VALUES (?, ?)", (pid, json.dumps(resource, separators=(",", ":"))))

    def finish(self) -> None:
        self.db.execute("CREATE INDEX resource_pid ON resource (pid)")

    def patient_ids(self) -> list[str]:
        return [row[0] for row in self.db.execute("SELECT pid FROM patient ORDER BY seq")]

    def resources(self, pid: str) -> tuple[list[dict[str, Any]], str]:
        """The patient's resources and a digest of their content (files rarely carry meta versions)."""
        bodies = sorted(body for (body,) in self.db.execute("SELECT body FROM resource WHERE pid = ?", (pid,)))
        digest = hashlib.sha256("\n".join(bodies).encode("utf-8")).hexdigest()
        return [json.loads(body) for body in bodies], digest

    def close(self) -> None:
        self.db.close()
        self.dir.cleanup()


class FileSource:
    """Patients from local FHIR files; `errors` collects problems that belong to no patient."""

    is_local = True

    def __init__(self, path: Path):
        self.path = path
        self.errors: list[str] = []
        self.patient_errors: dict[str, list[str]] = {}  # problems that belong to one patient's result
        self.patient_count: int | None = None

    def describe(self) -> str:
        return f"files under {self.path}"

    def iter_facts(self, needs: DataNeeds,
                   patient_ids: Iterable[str] | None = None) -> Iterator[tuple[str, PatientFacts | ConnectorError]]:
        """(patient id, facts or that patient's error) for the chosen patients, or all of them."""
        spill = _Spill()
        try:
            self._load(spill, needs)
            ids = list(patient_ids) if patient_ids is not None else spill.patient_ids()
            self.patient_count = len(ids)  # known once the files are read: progress bars use it
            for pid in ids:
                yield pid, self._facts(spill, pid)
        finally:
            spill.close()

    def _load(self, spill: _Spill, needs: DataNeeds) -> None:
        for location, resource in iter_resources(self.path, self.errors, self.patient_errors):
            if not wanted(resource, needs):
                continue
            pid = patient_id_of(resource)
            if pid is not None:
                spill.add(pid, resource)
            elif resource["resourceType"] == "Medication":
                spill.shared.append(resource)
            elif resource["resourceType"] in PATIENT_FIELDS and not self._placed_as_error(resource):
                self.errors.append(f"{location}: {resource['resourceType']}/{resource['id']} has no Patient subject")
        spill.finish()
        for message in self.errors[:_MAX_ERRORS_LOGGED]:
            log.warning("%s", message)

    def _placed_as_error(self, resource: dict[str, Any]) -> bool:
        prefix = f"{resource['resourceType']}/{resource['id']}: "
        return any(m.startswith(prefix) for messages in self.patient_errors.values() for m in messages)

    def _facts(self, spill: _Spill, pid: str) -> PatientFacts | ConnectorError:
        resources, digest = spill.resources(pid)
        if not any(r["resourceType"] == "Patient" for r in resources):
            if not resources:
                return ResourceError(f"Patient/{pid} not found in the source")
            refs = ", ".join(f"{r['resourceType']}/{r['id']}" for r in resources[:5])
            more = f" and {len(resources) - 5} more" if len(resources) > 5 else ""
            return ResourceError(f"{refs}{more} reference Patient/{pid}, which is not in the source")
        try:
            facts = patient_facts(pid, resources + spill.shared)
        except ConnectorError as exc:
            return exc
        facts.errors.extend(self.patient_errors.get(pid, []))
        facts.data_version = digest
        return facts
