"""Patient facts from a FHIR server with a bounded pool of concurrent requests, and the ids of
patients whose data changed since a moment (`_lastUpdated=gt`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from connector.errors import ConnectorError, ResourceError
from connector.facts import PatientFacts
from connector.needs import DataNeeds
from connector.parse import patient_facts, patient_id_of
from connector.store import format_timestamp

log = logging.getLogger(__name__)

FactsItem = tuple[str, PatientFacts | ConnectorError]
EPOCH = "1970-01-01T00:00:00.000000+00:00"
DATE_MARGIN_S = 300.0  # `Date` has 1 s resolution and may lag: look back generously


def fetch_facts(rest: Any, pid: str, needs: DataNeeds) -> PatientFacts | ConnectorError:
    """One patient's facts, or that patient's error (never raises for one patient's trouble)."""
    try:
        return patient_facts(pid, rest.patient_resources(pid, needs))
    except ConnectorError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - one patient's unexpected failure must not sink the run
        log.debug("Patient/%s: unexpected failure", pid, exc_info=True)
        return ResourceError(f"unexpected {exc.__class__.__name__} while reading the patient's data")


def concurrent_facts(rest: Any, needs: DataNeeds, patient_ids: Iterable[str], workers: int) -> Iterator[FactsItem]:
    """Facts for each id, `workers` patients in flight at most; results come as they finish."""
    workers = max(1, workers)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as pool:
        pending: dict[Future[PatientFacts | ConnectorError], str] = {}
        try:
            for pid in patient_ids:
                pending[pool.submit(fetch_facts, rest, pid, needs)] = pid
                if len(pending) >= workers:
                    yield from _collect(pending, FIRST_COMPLETED)
            while pending:
                yield from _collect(pending, FIRST_COMPLETED)
        finally:
            for future in pending:
                future.cancel()


def _collect(pending: dict[Future[Any], str], how: str) -> Iterator[FactsItem]:
    done, _ = wait(list(pending), return_when=how)
    for future in done:
        yield pending.pop(future), future.result()


def server_watermark(client: Any, needs: DataNeeds) -> str:
    """The newest `meta.lastUpdated` on the server over the needed types: anything that changes
    later has a greater one, so the next run's `_lastUpdated=gt` misses nothing, whatever our
    clock says. (A server that ignores `_sort` gives an older value: more re-screening, never less.)
    Falls back to the server's `Date` header minus a margin when `_sort` is refused."""
    from connector.fhir.http import FhirRequestError  # here: a run of local files needs no HTTP stack

    newest = EPOCH
    for rtype in sorted(needs.resource_types):
        try:
            bundle = client.http.get_json(rtype, params=[("_sort", "-_lastUpdated"), ("_count", "1"),
                                                         ("_elements", "id")])
        except FhirRequestError as exc:
            log.info("%s: cannot sort by _lastUpdated (HTTP %d); using the server's clock", rtype, exc.status)
            return server_now(client, margin_s=DATE_MARGIN_S)
        for entry in (bundle.get("entry") or []) if isinstance(bundle, dict) else []:
            meta = (entry.get("resource") or {}).get("meta") or {}
            stamp = meta.get("lastUpdated")
            if isinstance(stamp, str):
                try:
                    newest = max(newest, format_timestamp(datetime.fromisoformat(stamp.replace("Z", "+00:00"))))
                except ValueError:
                    continue
    return newest


def server_now(client: Any, margin_s: float = 0.0) -> str:
    """The server's clock (its `Date` header) minus `margin_s`; our clock when it sends none."""
    try:
        response = client.http.request("GET", "metadata", authenticate=False)
        response.close()
        header = response.headers.get("Date")
        if header:
            return format_timestamp(parsedate_to_datetime(header) - timedelta(seconds=margin_s))
    except (ConnectorError, TypeError, ValueError) as exc:
        log.info("cannot read the server's clock (%s); using ours", exc)
    return format_timestamp(datetime.now(timezone.utc) - timedelta(seconds=margin_s))


def changed_patient_ids(client: Any, needs: DataNeeds, since_z: str) -> set[str]:
    """Patients with any needed resource updated after `since_z` (`_lastUpdated=gt`)."""
    from connector.fhir.client import Query

    found: set[str] = set()
    elements = {"Patient": "id", "Observation": "subject", "Condition": "subject"}
    for rtype in sorted(needs.resource_types):
        narrow = (("_lastUpdated", f"gt{since_z}"), ("_elements", elements.get(rtype, "subject,patient")),
                  ("_count", str(client.server.page_size)))
        broad = (("_lastUpdated", f"gt{since_z}"), ("_count", str(client.server.page_size)))
        for resource in client.search_broadening(Query(rtype, (narrow, broad))):
            pid = patient_id_of(resource)
            if pid:
                found.add(pid)
    return found
