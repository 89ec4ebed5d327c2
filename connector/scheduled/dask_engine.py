"""`run --engine dask --scheduler tcp://HOST:PORT`: a population screen on a Dask cluster.

For exports too big for one machine. The NDJSON files must be readable by the workers at the
same path (a shared filesystem); nothing but results comes back to this process:

1. scan: one task per partition (a file, or a byte range of a large plain NDJSON file) parses
   its lines on a worker (FileSource's scan_batch: the same rules, errors per line with
   file:line) and splits what it keeps into buckets by a hash of the patient id;
2. shuffle + screen: one task per bucket gathers that bucket from every scan (Dask moves the
   data between workers), groups it by patient, builds facts and evaluates every trial;
3. this process stores each bucket's results as it arrives, through ScheduledRun's own code
   (lock, resume, per-patient errors: unchanged).

Tasks are pure functions of the files, so when a worker dies Dask recomputes what it held and
nothing is lost; if this process dies, the next run resumes like any other.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import operator
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connector.errors import ConfigError, ConnectorError, short
from connector.needs import DataNeeds
from connector.scheduled.records import TrialOutcome
from connector.scheduled.workers import ScreenJob
from connector.sources.files import (
    _PROBLEMS_SHOWN,
    DEFAULT_MAX_RESOURCE_BYTES,
    PatientRecord,
    Scan,
    _json_resources,
    bodies_digest,
    fhir_files,
    ndjson_lines,
    scan_batch,
    unreadable_error,
)

log = logging.getLogger(__name__)

PARTITION_BYTES = 64 * 1024 * 1024  # plain NDJSON files larger than this are read in byte ranges
BUCKET_BYTES = 64 * 1024 * 1024  # input per bucket: what one screening task holds (kept data is ~15%)


@dataclass(frozen=True)
class Partition:
    """A file, or the lines of a plain file between two byte offsets (each at a line start)."""

    file: str
    start: int = 0
    end: int | None = None


def partitions(path: Path, size: int = PARTITION_BYTES) -> list[Partition]:
    """The files' partitions: gzipped or small files whole, large plain ones cut at line starts."""
    out = []
    for file in fhir_files(path):
        length = file.stat().st_size
        if file.name.endswith(".gz") or length <= size:
            out.append(Partition(str(file)))
            continue
        cuts = [0]
        with file.open("rb") as handle:
            while cuts[-1] + size < length:
                handle.seek(cuts[-1] + size)
                handle.readline()  # to the start of the next line
                if handle.tell() >= length:
                    break
                cuts.append(handle.tell())
        out.extend(Partition(str(file), a, b) for a, b in zip(cuts, cuts[1:] + [length]))
    return out


def bucket_of(pid: str, buckets: int) -> int:
    """Stable across processes (unlike hash() of a str)."""
    return int.from_bytes(hashlib.blake2b(pid.encode("utf-8"), digest_size=8).digest(), "big") % buckets


class _Range:
    """The bytes of a file from its current position up to `length` of them (what ndjson_lines reads)."""

    def __init__(self, handle: Any, length: int):
        self.handle = handle
        self.left = length

    def read(self, size: int) -> bytes:
        data = self.handle.read(min(size, self.left))
        self.left -= len(data)
        return data


def partition_lines(part: Partition, max_bytes: int) -> Iterator[tuple[int, bytes, bool]]:
    """The partition's lines, numbered as in the whole file."""
    path = Path(part.file)
    if part.end is None:
        opener: Any = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rb") as handle:
            yield from ndjson_lines(handle, max_bytes)
        return
    with path.open("rb") as handle:
        before = 0
        while handle.tell() < part.start:  # line numbers: count the newlines before the partition
            block = handle.read(min(1 << 20, part.start - handle.tell()))
            if not block:
                break
            before += block.count(b"\n")
        for lineno, raw, whole in ndjson_lines(_Range(handle, part.end - part.start), max_bytes):
            yield before + lineno, raw, whole


def scan_partition(part: Partition, needs: DataNeeds, buckets: int, max_bytes: int) -> dict[Any, Any]:
    """Kept resources and problems of one partition, split into buckets by patient (a Dask task)."""
    out: dict[Any, Any] = {b: Scan() for b in range(buckets)}
    errors: list[str] = []
    shared: list[dict[str, Any]] = []
    batch: list[tuple[int, bytes, bool]] = []
    try:
        if ".ndjson" not in Path(part.file).name:  # a Bundle or a single resource
            found = Scan()
            for location, resource in _json_resources(Path(part.file), found.problem, max_bytes):
                found.add(location, resource, needs)
            _split(found, out, errors, shared, buckets)
        for item in partition_lines(part, max_bytes) if ".ndjson" in Path(part.file).name else ():
            batch.append(item)
            if len(batch) >= 2000:
                _split(scan_batch((part.file, batch), needs, max_bytes), out, errors, shared, buckets)
                batch = []
        if batch:
            _split(scan_batch((part.file, batch), needs, max_bytes), out, errors, shared, buckets)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        errors.append(f"{part.file}: cannot read: {exc.__class__.__name__}")
    out["errors"] = errors
    out["shared"] = shared
    return out


def _split(scan: Scan, out: dict[Any, Any], errors: list[str], shared: list[dict[str, Any]], buckets: int) -> None:
    errors.extend(scan.errors)
    shared.extend(scan.shared)
    for row in scan.kept:
        out[bucket_of(row[0], buckets)].kept.append(row)
    for pid, message in scan.patient_problems:
        out[bucket_of(pid, buckets)].patient_problems.append((pid, message))


def screen_bucket(parts: list[Scan], shared_lists: list[list[dict[str, Any]]], job: ScreenJob,
                  skip: frozenset[str]) -> list[tuple[str, list[TrialOutcome] | ConnectorError]]:
    """Group one bucket's resources by patient (in the order first read) and screen each (a Dask task)."""
    shared = [r for found in shared_lists for r in found]
    bodies: dict[str, list[bytes]] = {}
    problems: dict[str, list[str]] = {}
    for part in parts:
        for pid, _, body in part.kept:
            bodies.setdefault(pid, []).append(body)
        for pid, message in part.patient_problems:
            problems.setdefault(pid, []).append(short(message))
            bodies.setdefault(pid, [])
    results: list[tuple[str, list[TrialOutcome] | ConnectorError]] = []
    for pid, found in bodies.items():
        if pid in skip:
            continue
        if pid in problems:
            results.append((pid, unreadable_error(len(problems[pid]), problems[pid][:_PROBLEMS_SHOWN])))
            continue
        ordered = sorted(found)
        results.append((pid, job.screen(PatientRecord(pid, ordered, bodies_digest(ordered), shared))))
    return results


class DaskRun:
    """Screens the files under `path` on the cluster at `scheduler`; iterate for results."""

    def __init__(self, scheduler: str, path: Path, needs: DataNeeds, job: ScreenJob,
                 max_bytes: int = DEFAULT_MAX_RESOURCE_BYTES):
        if not path.exists():
            raise ConfigError(f"--engine dask reads files the workers can read: {path} does not exist")
        self.scheduler = scheduler
        self.path = path
        self.needs = needs
        self.job = job
        self.max_bytes = max_bytes
        self.errors: list[str] = []

    def results(self, done: set[str]) -> Iterator[tuple[str, list[TrialOutcome] | ConnectorError]]:
        """(patient id, outcomes or its error) per patient not in `done`, bucket by bucket."""
        try:
            from distributed import Client, as_completed
        except ImportError:
            raise ConfigError("--engine dask needs Dask: pip install 'trial-connector[dask]'") from None
        parts = partitions(self.path)
        size = sum(os.stat(p.file).st_size for p in parts)
        with Client(self.scheduler, timeout="30s") as client:
            workers = max(1, len(client.scheduler_info().get("workers", {})))
            buckets = max(workers * 2, -(-size // BUCKET_BYTES))
            log.info("dask: %d partition(s), %d bucket(s), %d worker(s)", len(parts), buckets, workers)
            scans = client.map(scan_partition, parts, needs=self.needs, buckets=buckets, max_bytes=self.max_bytes,
                               pure=False)
            shared = [client.submit(operator.getitem, s, "shared") for s in scans]
            errors = [client.submit(operator.getitem, s, "errors") for s in scans]
            pending, inputs = {}, []
            for b in range(buckets):
                parts_b = [client.submit(operator.getitem, s, b) for s in scans]
                inputs.append(parts_b)  # held until the end: a lost worker's pieces can be recomputed
                skip = frozenset(p for p in done if bucket_of(p, buckets) == b)
                future = client.submit(screen_bucket, parts_b, shared, self.job, skip, pure=False)
                pending[future.key] = future
            for future in as_completed(list(pending.values())):
                results = future.result()
                del pending[future.key]  # the last reference: the cluster may drop that bucket's results
                yield from results
            for found in client.gather(errors):
                self.errors.extend(found)
