"""Local FHIR files as a patient source: a folder (or one file) of Bundles, single resources,
or NDJSON (optionally gzipped) as a Bulk Data client writes them.

Bulk NDJSON is one file per resource type, so a patient's data is spread over every file.
Grouping it in memory would grow with the population, so resources are first spilled into
a temporary SQLite file keyed by patient and then read back one patient at a time: memory
stays flat whatever the number of patients. Only resources the trial needs are kept.

Speed: lines are read in batches (`scan_batch`) that a pool of processes can share
(connector.scheduled.workers); each line is parsed once with orjson (the stdlib only to say
why a line is unreadable, or to read what orjson refuses but the stdlib reads, such as NaN),
and a kept NDJSON line is spilled as the bytes it came as, never re-encoded.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import sqlite3
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

import orjson

from connector.bundles import resolve_bundle
from connector.errors import ConnectorError, ResourceError, short
from connector.facts import PatientFacts
from connector.jsontext import parse
from connector.needs import DataNeeds
from connector.parse import PATIENT_FIELDS, patient_facts, patient_id_of, reference_id
from connector.sources.problems import ProblemLog

log = logging.getLogger(__name__)

SUFFIXES = (".json", ".ndjson", ".json.gz", ".ndjson.gz")
DEFAULT_MAX_RESOURCE_BYTES = 64 * 1024 * 1024  # one resource (an NDJSON line, a .json file)
_MAX_ERRORS_LOGGED = 50
_HINT_BYTES = 64 * 1024  # of an over-long line, only this much is kept to find its patient
_READ_BLOCK = 1 << 20
_BOM = b"\xef\xbb\xbf"
BATCH_BYTES = 1 << 20  # NDJSON lines handed to one scan_batch call (a unit of work for a process pool)

# Where an unreadable line names its patient: the subject/patient reference, or the id of a Patient.
_FHIR_ID = rb"[A-Za-z0-9\-.]{1,64}"
_SUBJECT_REF = re.compile(rb'"(?:subject|patient|beneficiary)"\s*:\s*\{[^{}]{0,500}?"reference"\s*:\s*"Patient/('
                          + _FHIR_ID + rb')"')
_ANY_PATIENT_REF = re.compile(rb'"reference"\s*:\s*"Patient/(' + _FHIR_ID + rb')"')
_PATIENT_TYPE = re.compile(rb'"resourceType"\s*:\s*"Patient"')
_BUNDLE_TYPE = re.compile(rb'"resourceType"\s*:\s*"Bundle"')
_TOP_ID = re.compile(rb'"id"\s*:\s*"(' + _FHIR_ID + rb')"')

PatientProblem = Callable[[str, str], None]  # (patient id, message naming file and line)


class UnreadableLine(Exception):
    """One NDJSON line (or .json file) that is not a readable FHIR resource."""


def fhir_files(path: Path) -> list[Path]:
    """The FHIR files under `path` (or `path` itself), in a stable order."""
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))


def _open_binary(path: Path) -> IO[bytes]:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    return path.open("rb")


def iter_resources(path: Path, errors: Any, on_patient_problem: PatientProblem | None = None,
                   max_resource_bytes: int = DEFAULT_MAX_RESOURCE_BYTES,
                   patient_errors: dict[str, list[str]] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(location, resource) for every resource in the files.

    An unreadable resource (bad bytes, bad JSON, too deep, too large, no type or id) is one
    problem named by file and line; it goes to `on_patient_problem` when it names its patient,
    else to `errors`. Nothing else of the file is lost. A readable resource whose references
    resolve nowhere in its one-patient Bundle is noted in `patient_errors[patient id]`.
    """
    def problem(pid: str | None, message: str) -> None:
        if pid is not None and on_patient_problem is not None:
            on_patient_problem(pid, message)
        else:
            errors.append(message)

    for file in fhir_files(path):
        try:
            if ".ndjson" in file.name:
                yield from _ndjson_resources(file, problem, max_resource_bytes)
            else:
                yield from _json_resources(file, problem, max_resource_bytes, patient_errors)
        except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
            errors.append(f"{file}: cannot read: {exc.__class__.__name__}")


def ndjson_lines(handle: IO[bytes], max_bytes: int) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, raw bytes without the newline, whole) for each line, in memory bounded by
    `max_bytes`: a longer line is skipped to its end and only its first bytes are given, with
    whole=False. Read in blocks and split (a readline per line cost twice the parse)."""
    lineno = 0
    carry = b""
    skipped: bytes | None = None  # the head of an over-long line whose end is not read yet
    while True:
        block = handle.read(_READ_BLOCK)
        if not block:
            break
        if skipped is not None:
            end = block.find(b"\n")
            if end < 0:
                continue
            lineno += 1
            yield lineno, skipped, False
            skipped, block = None, block[end + 1:]
        lines = (carry + block if carry else block).split(b"\n")
        carry = lines.pop()
        for line in lines:
            lineno += 1
            if len(line) > max_bytes:
                yield lineno, line[:_HINT_BYTES], False
            else:
                yield lineno, line, True
        if len(carry) > max_bytes:
            skipped, carry = carry[:_HINT_BYTES], b""
    if skipped is not None:
        yield lineno + 1, skipped, False
    elif carry:
        yield lineno + 1, carry[:_HINT_BYTES] if len(carry) > max_bytes else carry, len(carry) <= max_bytes


def parse_resource(raw: bytes, first: bool = False) -> dict[str, Any]:
    """One resource from its bytes; UnreadableLine says why not (never echoing the content)."""
    return check_resource(parse_json(raw, first))


def parse_json(raw: bytes, first: bool = False, whole_file: bool = False) -> Any:
    """JSON from bytes decoded as UTF-8 (a leading BOM allowed on the first line); UnreadableLine if not."""
    if first and raw.startswith(_BOM):
        raw = raw[len(_BOM):]
    try:
        return orjson.loads(raw)  # ~3x json.loads; refuses bad UTF-8 and JSON as the stdlib does
    except orjson.JSONDecodeError:
        pass  # the stdlib says why (or reads what orjson refuses: NaN, integers beyond 64 bits)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableLine(f"not valid UTF-8 (byte {exc.start + 1})") from None
    try:
        resource = json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}" if whole_file else f"column {exc.colno}"
        raise UnreadableLine(f"invalid JSON ({exc.msg} at {where})") from None
    except RecursionError:
        raise UnreadableLine("JSON nested too deeply") from None
    return resource


def check_resource(resource: Any) -> dict[str, Any]:
    """`resource` when it is an object with a resourceType and an id; else UnreadableLine."""
    if not isinstance(resource, dict):
        raise UnreadableLine("expected a JSON object")
    if not isinstance(resource.get("resourceType"), str):
        raise UnreadableLine("resource without resourceType")
    if not isinstance(resource.get("id"), str) or not resource["id"]:
        raise UnreadableLine(f"{short(resource['resourceType'], 64)} without id")
    return resource


def patient_named_in(raw: bytes) -> str | None:
    """The patient an unreadable line belongs to, when its bytes say so unambiguously."""
    if _PATIENT_TYPE.search(raw[:4096]):
        found = _TOP_ID.search(raw)
        return found.group(1).decode("ascii") if found else None
    subject = _SUBJECT_REF.search(raw)
    if subject:
        return subject.group(1).decode("ascii")
    refs = {m.group(1) for m in _ANY_PATIENT_REF.finditer(raw)}
    return refs.pop().decode("ascii") if len(refs) == 1 else None


def patient_of_invalid(resource: Any) -> str | None:
    """The patient a parsed but invalid resource (no type or id) names, if any."""
    if not isinstance(resource, dict):
        return None
    if resource.get("resourceType") == "Patient" and isinstance(resource.get("id"), str):
        return resource["id"] or None
    for name in ("subject", "patient"):
        pid = reference_id(resource.get(name), "Patient")
        if pid:
            return pid
    return None


def _ndjson_resources(file: Path, problem: Callable[[str | None, str], None],
                      max_bytes: int) -> Iterator[tuple[str, dict[str, Any]]]:
    with _open_binary(file) as handle:
        for lineno, raw, whole in ndjson_lines(handle, max_bytes):
            if not raw.strip():
                continue
            location = f"{file}:{lineno}"
            if not whole:
                problem(patient_named_in(raw), f"{location}: resource larger than the {_mb(max_bytes)} limit "
                                                "(max_resource_mb); skipped")
                continue
            try:
                yield location, parse_resource(raw, first=lineno == 1)
            except UnreadableLine as exc:
                problem(patient_named_in(raw), f"{location}: {exc}")


def _json_resources(file: Path, problem: Callable[[str | None, str], None], max_bytes: int,
                    patient_errors: dict[str, list[str]] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    with _open_binary(file) as handle:
        raw = handle.read(max_bytes + 1)
    if len(raw) > max_bytes:
        problem(None, f"{file}: larger than the {_mb(max_bytes)} limit (max_resource_mb); skipped")
        return
    try:
        data = parse_json(raw, first=True, whole_file=True)
        if not (isinstance(data, dict) and data.get("resourceType") == "Bundle"):
            yield str(file), check_resource(data)
            return
    except UnreadableLine as exc:
        problem(None if _BUNDLE_TYPE.search(raw[:4096]) else patient_named_in(raw), f"{file}: {exc}")
        return
    entries, unresolved = resolve_bundle(data)
    patients = [r["id"] for _, r in entries if isinstance(r, dict) and r.get("resourceType") == "Patient"
                and isinstance(r.get("id"), str)]
    for i, resource in entries:
        location = f"{file}: entry[{i}]"
        if resource is None:
            problem(None, f"{location}: entry without resource")
            continue
        try:
            checked = check_resource(resource)
        except UnreadableLine as exc:
            problem(patient_of_invalid(resource), f"{location}: {exc}")
            continue
        if i in unresolved and _placed_as_error(checked, unresolved[i], patients, patient_errors):
            continue
        yield location, checked


def _placed_as_error(resource: dict[str, Any], references: list[str], patients: list[str],
                     patient_errors: dict[str, list[str]] | None) -> bool:
    """A subject that names nothing in its Bundle is the patient's error when the Bundle holds one
    patient (it is that patient's record), and the resource is not used; otherwise (False) the
    source reports that it has no subject."""
    if len(patients) != 1 or patient_errors is None or patient_id_of(resource) is not None:
        return False
    patient_errors.setdefault(patients[0], []).append(
        f"{resource['resourceType']}/{short(resource['id'], 64)}: reference {', '.join(references)} "
        "resolves nowhere in its Bundle; not used")
    return True


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):g} MB"


SPILL_PREFIX = "trial-connector-spill-"
_OWNER_FILE = "owner.pid"
_PROBLEMS_SHOWN = 3


def remove_stale_spills(tmp_dir: str | None = None) -> int:
    """Delete spill folders (clinical data) left by a process that was killed; returns how many.

    Each spill folder holds the id of the process that made it; a folder whose process is gone
    (or unreadable, and older than a day) is removed. Only our own folders are looked at.
    """
    removed = 0
    root = Path(tmp_dir or tempfile.gettempdir())
    for folder in root.glob(SPILL_PREFIX + "*"):
        try:
            if not folder.is_dir() or folder.is_symlink() or folder.stat().st_uid != os.getuid():
                continue
            if _spill_owner_alive(folder):
                continue
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
        except OSError:
            continue
    if removed:
        log.info("removed %d spill folder(s) left by killed runs", removed)
    return removed


def _spill_owner_alive(folder: Path) -> bool:
    try:
        owner = int((folder / _OWNER_FILE).read_text().strip())
    except (OSError, ValueError):
        return time.time() - folder.stat().st_mtime < 86400  # being created right now, or not ours to judge
    if owner == os.getpid():
        return True
    try:
        os.kill(owner, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Scan:
    """What a batch of resources gave: kept resources by patient (as JSON bytes), shared
    Medications, unreadable resources naming their patient, and problems of no patient."""

    kept: list[tuple[str, bool, bytes]] = field(default_factory=list)  # (patient id, is its Patient, JSON)
    shared: list[dict[str, Any]] = field(default_factory=list)
    patient_problems: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def problem(self, pid: str | None, message: str) -> None:
        if pid is None:
            self.errors.append(message)
        else:
            self.patient_problems.append((pid, message))

    def add(self, location: str, resource: dict[str, Any], needs: DataNeeds, body: bytes | None = None) -> None:
        """Keep `resource` if the trial reads it; `body` is its JSON as read (else it is encoded)."""
        if not needs.reads(resource):
            return
        rtype = resource["resourceType"]
        pid = patient_id_of(resource)
        if pid is not None:
            if body is None:
                body = json.dumps(resource, separators=(",", ":")).encode("utf-8")
            self.kept.append((pid, rtype == "Patient", body))
        elif rtype == "Medication":
            self.shared.append(resource)
        elif rtype in PATIENT_FIELDS:
            self.errors.append(f"{location}: {rtype}/{short(resource['id'], 64)} has no Patient subject")


Batch = tuple[str, list[tuple[int, bytes, bool]]]  # (file, [(line number, raw bytes, whole)])


def ndjson_batches(file: Path, max_bytes: int) -> Iterator[Batch]:
    """The file's lines in batches of about BATCH_BYTES (memory bounded as by ndjson_lines)."""
    with _open_binary(file) as handle:
        batch: list[tuple[int, bytes, bool]] = []
        size = 0
        for item in ndjson_lines(handle, max_bytes):
            batch.append(item)
            size += len(item[1])
            if size >= BATCH_BYTES:
                yield str(file), batch
                batch, size = [], 0
        if batch:
            yield str(file), batch



def scan_batch(batch: Batch, needs: DataNeeds, max_bytes: int = DEFAULT_MAX_RESOURCE_BYTES) -> Scan:
    """Parse a batch of NDJSON lines (once each) and keep what the trial reads: runs in any process.

    Most lines are resources no criterion reads, so the common path is kept short: orjson, a
    type check, next line. Anything unusual (blank, BOM, invalid, no type or id) takes the
    careful path that words the problem exactly.
    """
    file, lines = batch
    scan = Scan()
    read_types = needs.resource_types | {"Medication"}
    for lineno, raw, whole in lines:
        if not whole:
            scan.problem(patient_named_in(raw), f"{file}:{lineno}: resource larger than the {_mb(max_bytes)} limit "
                                                "(max_resource_mb); skipped")
            continue
        try:
            resource = orjson.loads(raw)
            body = raw
        except orjson.JSONDecodeError:
            if not raw.strip():
                continue
            resource, body = None, raw[len(_BOM):] if lineno == 1 and raw.startswith(_BOM) else raw
        try:
            if resource is None:
                resource = parse_resource(raw, first=lineno == 1)
            elif not (type(resource) is dict and type(resource.get("resourceType")) is str  # noqa: E721
                      and type(resource.get("id")) is str and resource["id"]):  # noqa: E721
                check_resource(resource)
        except UnreadableLine as exc:
            scan.problem(patient_named_in(raw), f"{file}:{lineno}: {exc}")
            continue
        if resource["resourceType"] in read_types:
            scan.add(f"{file}:{lineno}", resource, needs, body.strip())
    return scan


class _Spill:
    """A throw-away SQLite file (owner-only) holding resources and unreadable lines keyed by
    patient id. A run killed with -9 cannot remove it; the next one does (remove_stale_spills)."""

    def __init__(self) -> None:
        remove_stale_spills()
        self.dir = tempfile.TemporaryDirectory(prefix=SPILL_PREFIX)
        os.chmod(self.dir.name, 0o700)
        Path(self.dir.name, _OWNER_FILE).write_text(str(os.getpid()))
        self.db = sqlite3.connect(os.path.join(self.dir.name, "spill.db"))
        self.db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
            "CREATE TABLE patient (pid TEXT PRIMARY KEY, seq INTEGER, present INTEGER);"
            "CREATE TABLE resource (pid TEXT, body BLOB);"
            "CREATE TABLE problem (pid TEXT, message TEXT);"
        )
        self.shared: list[dict[str, Any]] = []
        self._seq = 0

    def _patients(self, rows: Iterable[tuple[str, bool]]) -> None:
        numbered = []
        for pid, present in rows:
            self._seq += 1
            numbered.append((pid, self._seq, int(present)))
        self.db.executemany(
            "INSERT INTO patient VALUES (?, ?, ?) ON CONFLICT(pid) DO UPDATE SET present = max(present, excluded.present)",
            numbered)

    def take(self, scan: Scan, errors: Any) -> None:
        """Store what a batch kept (in the order it was read); its problems go to `errors`."""
        self._patients([(pid, present) for pid, present, _ in scan.kept] + [(pid, False) for pid, _ in
                                                                           scan.patient_problems])
        self.db.executemany("INSERT INTO resource VALUES (?, ?)", [(pid, body) for pid, _, body in scan.kept])
        self.db.executemany("INSERT INTO problem VALUES (?, ?)",
                            [(pid, short(message)) for pid, message in scan.patient_problems])
        self.shared.extend(scan.shared)
        errors.extend(scan.errors)

    def finish(self) -> None:
        self.db.execute("CREATE INDEX resource_pid ON resource (pid)")
        self.db.execute("CREATE INDEX problem_pid ON problem (pid)")

    def patient_ids(self) -> list[str]:
        return [row[0] for row in self.db.execute("SELECT pid FROM patient ORDER BY seq")]

    def bodies(self, pid: str) -> tuple[list[bytes], str]:
        """The patient's resources as JSON bytes, and a digest of them (files rarely carry meta versions)."""
        bodies = sorted(body for (body,) in self.db.execute("SELECT body FROM resource WHERE pid = ?", (pid,)))
        return bodies, bodies_digest(bodies)

    def problems(self, pid: str) -> tuple[int, list[str]]:
        """How many unreadable resources name `pid`, and the first few messages."""
        count = self.db.execute("SELECT count(*) FROM problem WHERE pid = ?", (pid,)).fetchone()[0]
        shown = [m for (m,) in self.db.execute("SELECT message FROM problem WHERE pid = ? ORDER BY rowid LIMIT ?",
                                               (pid, _PROBLEMS_SHOWN))]
        return count, shown

    def close(self) -> None:
        self.db.close()
        self.dir.cleanup()


@dataclass
class PatientRecord:
    """One patient's kept resources as read (JSON bytes): what a worker process turns into facts."""

    pid: str
    bodies: list[bytes]
    digest: str
    shared: list[dict[str, Any]]
    errors: list[str] = field(default_factory=list)  # found while reading the source (a dangling subject)

    def facts(self) -> PatientFacts | ConnectorError:
        """The patient's facts, or why they cannot be had (a ConnectorError, never raised)."""
        try:
            resources = [parse(body) for body in self.bodies]
        except ValueError:
            return ResourceError("unexpected unreadable resource in the spill")
        if not any(r["resourceType"] == "Patient" for r in resources):
            if not resources:
                return ResourceError(f"Patient/{self.pid} not found in the source")
            refs = ", ".join(f"{r['resourceType']}/{r['id']}" for r in resources[:5])
            more = f" and {len(resources) - 5} more" if len(resources) > 5 else ""
            return ResourceError(f"{refs}{more} reference Patient/{self.pid}, which is not in the source")
        try:
            facts = patient_facts(self.pid, resources + self.shared)
        except ConnectorError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - one patient's unexpected failure must not sink the run
            log.debug("Patient/%s: unexpected failure", self.pid, exc_info=True)
            return ResourceError(f"unexpected {exc.__class__.__name__} while reading the patient's data")
        facts.errors.extend(self.errors)
        facts.data_version = self.digest
        return facts


MapBatches = Callable[[Callable[[Batch], Scan], Iterable[Batch]], Iterable[Scan]]


class FileSource:
    """Patients from local FHIR files; `errors` counts problems that belong to no patient (and
    keeps the first messages); an unreadable resource that names its patient is that patient's error."""

    is_local = True

    def __init__(self, path: Path, max_resource_bytes: int = DEFAULT_MAX_RESOURCE_BYTES):
        self.path = path
        self.max_resource_bytes = max_resource_bytes
        self.errors: Any = ProblemLog()
        self.patient_errors: dict[str, list[str]] = {}  # problems that belong to one patient's result
        self.patient_count: int | None = None

    def describe(self) -> str:
        return f"files under {self.path}"

    def iter_facts(self, needs: DataNeeds,
                   patient_ids: Iterable[str] | None = None) -> Iterator[tuple[str, PatientFacts | ConnectorError]]:
        """(patient id, facts or that patient's error) for the chosen patients, or all of them."""
        for pid, item in self.iter_records(needs, patient_ids):
            yield pid, item.facts() if isinstance(item, PatientRecord) else item

    def iter_records(self, needs: DataNeeds, patient_ids: Iterable[str] | None = None,
                     map_batches: MapBatches = map) -> Iterator[tuple[str, PatientRecord | ConnectorError]]:
        """(patient id, its kept resources or its error); `map_batches` may scan NDJSON batches in
        other processes (an ordered map, like the builtin): the result is the same."""
        spill = _Spill()
        try:
            self._load(spill, needs, map_batches)
            ids = list(patient_ids) if patient_ids is not None else spill.patient_ids()
            self.patient_count = len(ids)  # known once the files are read: progress bars use it
            for pid in ids:
                yield pid, self._record(spill, pid)
        finally:
            spill.close()

    def _load(self, spill: _Spill, needs: DataNeeds, map_batches: MapBatches) -> None:
        scan = partial(scan_batch, needs=needs, max_bytes=self.max_resource_bytes)
        for found in map_batches(scan, self._batches(spill, needs)):
            spill.take(found, self.errors)
        spill.finish()
        for message in list(self.errors)[:_MAX_ERRORS_LOGGED]:
            log.warning("%s", message)
        if len(self.errors) > _MAX_ERRORS_LOGGED:
            log.warning("... and %d more problem(s) reading %s", len(self.errors) - _MAX_ERRORS_LOGGED, self.path)

    def _batches(self, spill: _Spill, needs: DataNeeds) -> Iterator[Batch]:
        """NDJSON batches to scan; .json files (Bundles, single resources) are read here directly."""
        for file in fhir_files(self.path):
            try:
                if ".ndjson" in file.name:
                    yield from ndjson_batches(file, self.max_resource_bytes)
                    continue
                found = Scan()
                for location, resource in _json_resources(file, found.problem, self.max_resource_bytes,
                                                          self.patient_errors):
                    found.add(location, resource, needs)
                spill.take(found, self.errors)
            except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
                self.errors.append(f"{file}: cannot read: {exc.__class__.__name__}")

    def _record(self, spill: _Spill, pid: str) -> PatientRecord | ConnectorError:
        count, shown = spill.problems(pid)
        if count:
            return unreadable_error(count, shown)
        bodies, digest = spill.bodies(pid)
        return PatientRecord(pid, bodies, digest, spill.shared, self.patient_errors.get(pid, []))


def unreadable_error(count: int, shown: list[str]) -> ResourceError:
    """A patient named by `count` unreadable resources (the first messages `shown`) is not screened."""
    more = f" (and {count - len(shown)} more)" if count > len(shown) else ""
    return ResourceError(f"{count} unreadable resource(s) name this patient: {'; '.join(shown)}{more}")


def bodies_digest(bodies: list[bytes]) -> str:
    """What a patient's data in files is, for incremental runs: a digest of its kept resources' bytes."""
    return hashlib.sha256(b"\n".join(sorted(bodies))).hexdigest()
