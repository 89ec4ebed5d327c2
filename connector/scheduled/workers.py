"""Screening in parallel processes, partitioned by patient (`run --workers N`).

Only CPU work moves to the workers: parsing NDJSON batches (FileSource's scan_batch), turning
one patient's kept resources into facts and evaluating every trial. The parent reads the
files, keeps the spill and writes every result to the store itself, through the same code as
a one-process run (lock, resume, per-patient errors unchanged). Work is handed out in order
with a bounded number of tasks in flight, so results come back in the order a one-process run
makes them and memory does not grow with the population.

Small sources are screened in the parent: starting processes costs more than it saves below
PARALLEL_MIN_BYTES of input.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date
from itertools import islice
from typing import Any, TypeVar

from connector.errors import ConnectorError, ResourceError, StoreError, short
from connector.evaluation import evaluate_patient
from connector.facts import PatientFacts
from connector.mapping.model import Mapping
from connector.needs import EVERYTHING, DataNeeds
from connector.scheduled.freshness import rescreen_on
from connector.scheduled.records import TrialOutcome

log = logging.getLogger(__name__)

PARALLEL_MIN_BYTES = 8 * 1024 * 1024  # input below this is screened in the parent
PATIENTS_PER_TASK = 16  # patients screened per task sent to a worker (fewer, larger messages)
IN_FLIGHT_PER_WORKER = 3  # tasks queued per worker: keeps them busy, bounds memory

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class TrialJob:
    trial: str
    mapping: Mapping
    mapping_hash: str
    needs: DataNeeds = EVERYTHING  # what the trial reads: errors about other records are not its own


@dataclass(frozen=True)
class ScreenJob:
    """What screening one patient needs besides the patient: sent to each worker once."""

    trials: tuple[TrialJob, ...]
    as_of: date
    site_country: str

    def outcomes(self, facts: PatientFacts) -> list[TrialOutcome]:
        """The patient's result for every trial, with what it was computed from."""
        outcomes = []
        for spec in self.trials:
            result = evaluate_patient(spec.mapping, facts.seen_by(spec.needs), self.as_of, self.site_country)
            due = rescreen_on(spec.mapping, facts, self.as_of)
            outcomes.append(TrialOutcome(spec.trial, result, spec.mapping_hash, facts.data_version,
                                         self.as_of.isoformat(), due.isoformat() if due else None))
        return outcomes

    def screen(self, item: Any) -> list[TrialOutcome] | ConnectorError:
        """Outcomes for a patient's facts (or kept resources, see sources.files.PatientRecord);
        an error comes back as it is; anything going wrong with this patient is its error."""
        if isinstance(item, ConnectorError):
            return item
        try:
            facts = item if isinstance(item, PatientFacts) else item.facts()
            if isinstance(facts, ConnectorError):
                return facts
            return self.outcomes(facts)
        except ConnectorError as exc:
            return exc
        except Exception as exc:  # noqa: BLE001 - one patient never sinks the run
            if isinstance(exc, StoreError):
                raise
            log.debug("screening failed", exc_info=True)
            return ResourceError(short(f"unexpected {exc.__class__.__name__}"))


_JOB: ScreenJob | None = None


def _start_worker(job: ScreenJob) -> None:
    global _JOB
    _JOB = job


def _screen_many(items: list[tuple[str, Any]]) -> list[tuple[str, list[TrialOutcome] | ConnectorError]]:
    assert _JOB is not None, "worker started without a job"
    return [(pid, _JOB.screen(item)) for pid, item in items]


class Screener:
    """Screens patients in `workers` processes (1: in this process); use as a context manager."""

    def __init__(self, job: ScreenJob, workers: int = 1):
        self.job = job
        self.workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> "Screener":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    @property
    def parallel(self) -> bool:
        return self.workers > 1

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            self._pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_start_worker,
                                             initargs=(self.job,))
            log.info("screening with %d worker processes", self.workers)
        return self._pool

    def map(self, function: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """`map(function, items)` in the workers, in order, a bounded number of tasks at a time.
        `function` must be a module-level function (it is sent to the workers by name)."""
        if not self.parallel:
            yield from map(function, items)
            return
        pool = self._executor()
        pending: deque[Future[R]] = deque()
        limit = self.workers * IN_FLIGHT_PER_WORKER
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) >= limit:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def screen(self, items: Iterable[tuple[str, Any]]) -> Iterator[tuple[str, list[TrialOutcome] | ConnectorError]]:
        """(patient id, outcomes or its error) for each (patient id, facts | kept resources | error), in order."""
        if not self.parallel:
            for pid, item in items:
                yield pid, self.job.screen(item)
            return
        iterator = iter(items)
        chunks = iter(lambda: list(islice(iterator, PATIENTS_PER_TASK)), [])
        for results in self.map(_screen_many, chunks):
            yield from results
