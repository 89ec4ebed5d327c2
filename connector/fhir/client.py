"""FHIR R4 searches and reads, and the few round trips that pull one patient's data.

Per patient the client asks for the Patient, its Observations (narrowed by the codes and date
window the trial needs), Conditions and medication history, plus the Medication resources
that `medicationReference` points to. Where the CapabilityStatement allows it all of that
goes in one `batch` Bundle; each search then pages through `Bundle.link[next]`. Servers that
reject a narrowing parameter (HTTP 400) get a broader query, which is remembered for the
next patients. Offset paging can repeat an entry: a repeat is dropped, and of two versions
(updated between page reads) the later `meta.lastUpdated` is kept.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import requests

from connector.config import ServerConfig
from connector.errors import ResourceError, SourceError
from connector.fhir.auth import build_auth
from connector.fhir.capabilities import Capabilities
from connector.fhir.http import Auth, FhirRequestError, HttpClient, HttpStats, outcome_text, redact_url
from connector.fhir.narrowing import NarrowingChoice
from connector.log_once import warn_once
from connector.needs import EVERYTHING, DataNeeds
from connector.codes import search_tokens
from connector.parse import reference_id
from connector.versions import newer_copy

log = logging.getLogger(__name__)

FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
REJECTED = (400, 422)  # "I do not understand this query": worth a broader one
MEDICATION_TYPES = ("MedicationStatement", "MedicationRequest", "MedicationAdministration")
_MEDICATION_CACHE_MAX = 10_000
STALE_PAGES = 3  # pages in a row with nothing new before a search counts as paging for ever
_IDS_PER_SEARCH = 50  # keeps `Medication?_id=a,b,...` URLs short

Params = list[tuple[str, str]]


def _version_key(resource: dict[str, Any]) -> str:
    """Which version of a resource this is, as the server labels it (for de-duplicating pages)."""
    meta = resource.get("meta") if isinstance(resource.get("meta"), dict) else {}
    return f"{meta.get('versionId')}|{meta.get('lastUpdated')}"


def check_id(rtype: str, rid: str) -> str:
    """A FHIR logical id, checked so it cannot change the URL it is put into."""
    if not isinstance(rid, str) or not FHIR_ID.match(rid):
        raise ResourceError(f"{rtype} id {rid!r} is not a valid FHIR id (letters, digits, '-', '.'; up to 64)")
    return rid


@dataclass(frozen=True)
class Query:
    """One search with its broader variants, tried in order when the server rejects one."""

    rtype: str
    variants: tuple[tuple[tuple[str, str], ...], ...]

    @property
    def key(self) -> tuple[str, tuple[str, ...]]:
        """Identifies the query's shape (not its patient), to remember which variant works."""
        return self.rtype, tuple(sorted({name for name, _ in self.variants[0]}))


class FhirClient:
    """A FHIR R4 server: `search`, `read`, `capabilities`, `patient_resources`, and `stats`."""

    def __init__(
        self,
        server: ServerConfig,
        session: requests.Session | None = None,
        *,
        auth: Auth | None = None,
        http: HttpClient | None = None,
        **http_options: Any,
    ):
        self.server = server
        self.base_url = server.url.rstrip("/")
        self.http = http or HttpClient(server, session, auth if auth is not None else build_auth(server),
                                       **http_options)
        self._capabilities: Capabilities | None = None
        self._variant_start: dict[tuple[str, tuple[str, ...]], int] = {}
        self._medications: dict[str, dict[str, Any]] = {}
        self._batch_usable = True
        self.narrowing = NarrowingChoice(server.narrow_observations)

    @property
    def stats(self) -> HttpStats:
        """HTTP round trips and bytes so far (token requests and retries included)."""
        return self.http.stats

    def close(self) -> None:
        self.http.close()

    # ---- what the server supports -------------------------------------------------------

    def capabilities(self) -> Capabilities:
        """The server's CapabilityStatement, read once; without one, common features are assumed."""
        if self._capabilities is None:
            self._capabilities = self._read_capabilities()
        return self._capabilities

    def connect(self) -> Capabilities:
        """Read /metadata and obtain credentials now, so that a wrong URL, key or scope fails
        before the first patient (and per-patient request counts exclude this set-up)."""
        caps = self.capabilities()
        if self.http.auth is not None:
            self.http.auth.authorization(self.http)
        return caps

    def _read_capabilities(self) -> Capabilities:
        try:
            try:
                response = self.http.request("GET", "metadata", authenticate=False)
            except FhirRequestError as exc:
                if exc.status not in (401, 403):
                    raise
                response = self.http.request("GET", "metadata")  # some servers guard /metadata too
        except FhirRequestError as exc:
            warn_once(log, "%s/metadata: HTTP %d; assuming common FHIR features and no batch", self.base_url,
                      exc.status)
            return Capabilities.unknown()
        try:
            statement = json.loads(response.content)
        except (ValueError, RecursionError):
            statement = None
        if not isinstance(statement, dict) or statement.get("resourceType") != "CapabilityStatement":
            warn_once(log, "%s/metadata is not a CapabilityStatement; assuming common FHIR features and no batch",
                      self.base_url)
            return Capabilities.unknown()
        caps = Capabilities.from_statement(statement)
        if caps.fhir_version and not caps.fhir_version.startswith("4.0"):
            warn_once(log, "%s says fhirVersion %s; this connector speaks R4 (4.0.x)", self.base_url, caps.fhir_version)
        return caps

    # ---- plain REST ----------------------------------------------------------------------

    def read(self, rtype: str, rid: str) -> dict[str, Any]:
        """`GET [base]/[type]/[id]`; FhirRequestError with status 404/410 when it is not there."""
        resource = self.http.get_json(f"{rtype}/{check_id(rtype, rid)}")
        if not isinstance(resource, dict) or resource.get("resourceType") != rtype:
            raise SourceError(f"GET {self.base_url}/{rtype}/{rid}: the server did not return a {rtype}")
        return resource

    def search(self, rtype: str, params: Iterable[tuple[str, str]] | dict[str, str] | None = None,
               *, page_size: int | None = None) -> Iterator[dict[str, Any]]:
        """Every resource a search returns (matches and `_include`d ones), following
        `Bundle.link[next]` to the end, each version of a type/id once (a resource updated while
        the pages were read comes twice: callers keep the newer, see `_collect`). `_count`
        defaults to the server's page_size."""
        params = list(params.items() if isinstance(params, dict) else params or [])
        if not any(name == "_count" for name, _ in params):
            params.append(("_count", str(page_size or self.server.page_size)))
        first = self.http.get_json(rtype, params=params)
        yield from self.walk_pages(first, f"{rtype} search")

    def walk_pages(self, bundle: Any, label: str,
                   seen: set[tuple[str, str, str]] | None = None) -> Iterator[dict[str, Any]]:
        """The resources of a searchset Bundle and of every page after it.

        A server that misbehaves cannot make this page for ever or end short in silence: pages
        that bring nothing new (STALE_PAGES in a row), more matches than the announced `total`,
        or fewer once the last page is read, are a SourceError.
        """
        seen = set() if seen is None else seen
        visited: set[str] = set()
        total = bundle.get("total") if isinstance(bundle, dict) else None
        total = total if isinstance(total, int) and not isinstance(total, bool) and total >= 0 else None
        matched: set[tuple[str, str]] = set()  # type/id of matches: a newer version of one is not a new match
        stale = 0
        while True:
            if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
                raise SourceError(f"{label}: the server returned something other than a Bundle")
            fresh = 0
            for resource, is_match in self._entries(bundle, label, seen):
                fresh += 1
                if is_match:
                    matched.add((resource["resourceType"], resource["id"]))
                yield resource
            if total is not None and len(matched) > total:
                raise SourceError(f"{label}: the server returned more than the {total} matches it announced; "
                                  "its paging is broken")
            stale = 0 if fresh else stale + 1
            next_url = next((link.get("url") for link in bundle.get("link") or []
                             if isinstance(link, dict) and link.get("relation") == "next"), None)
            if not isinstance(next_url, str) or not next_url:
                break
            if stale >= STALE_PAGES:
                raise SourceError(f"{label}: {stale} pages in a row brought nothing new but the server keeps "
                                  "linking a next page; stopped")
            next_url = urljoin(self.base_url + "/", next_url)
            if next_url in visited:
                log.warning("%s: the server's next link repeats a page already read; stopping there", label)
                break
            self._check_same_server(next_url, label)
            visited.add(next_url)
            bundle = self.http.get_json(next_url)
        if total is not None and len(matched) < total:
            raise SourceError(f"{label}: the server announced {total} matches but returned {len(matched)}")

    def _entries(self, bundle: dict[str, Any], label: str,
                 seen: set[tuple[str, str, str]]) -> Iterator[tuple[dict[str, Any], bool]]:
        """(resource, whether it is a match rather than an `_include`) for each new entry."""
        duplicates = 0
        for entry in bundle.get("entry") or []:
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict):
                continue
            rtype, rid = resource.get("resourceType"), resource.get("id")
            if rtype == "OperationOutcome":
                text = outcome_text(resource)
                if text:
                    log.info("%s: server notes: %s", label, text)
                continue
            if not isinstance(rtype, str) or not isinstance(rid, str):
                log.warning("%s: skipped an entry without resourceType/id", label)
                continue
            version = _version_key(resource)
            if (rtype, rid, version) in seen:
                duplicates += 1
                continue
            seen.add((rtype, rid, version))
            search = entry.get("search")
            # another version of a resource already seen is yielded too: patient_resources keeps the newer
            yield resource, not (isinstance(search, dict) and search.get("mode") == "include")
        if duplicates:
            log.debug("%s: %d repeated entries dropped (offset paging while data changed)", label, duplicates)

    def _check_same_server(self, url: str, label: str) -> None:
        """Never follow a link (and send our credentials) to a different scheme, host or port."""
        mine, theirs = urlsplit(self.base_url), urlsplit(url)
        if (mine.scheme, mine.hostname, mine.port) != (theirs.scheme, theirs.hostname, theirs.port):
            raise SourceError(f"{label}: the next-page link points to {theirs.scheme}://{theirs.netloc}, not to "
                              f"{mine.scheme}://{mine.netloc}; refusing to follow it (check the server's base URL)")

    def search_broadening(self, query: Query, start: int | None = None) -> Iterator[dict[str, Any]]:
        """Run a query; when the server rejects a variant before returning anything, try the
        next, broader one, and remember it for the same query shape next time."""
        first = self._variant_start.get(query.key, 0) if start is None else start
        for i in range(first, len(query.variants)):
            produced = False
            try:
                for resource in self.search(query.rtype, query.variants[i]):
                    produced = True
                    yield resource
            except FhirRequestError as exc:
                if exc.status not in REJECTED or produced or i == len(query.variants) - 1:
                    raise
                log.info("%s search rejected (HTTP %d%s); trying a broader one", query.rtype, exc.status,
                         f": {exc.diagnostics}" if exc.diagnostics else "")
                continue
            if i:
                self._variant_start[query.key] = i
            return

    # ---- one patient ---------------------------------------------------------------------

    def plan(self, patient_id: str, needs: DataNeeds = EVERYTHING, narrow: bool | None = None) -> list[Query]:
        """The searches that fetch what `needs` asks for, shaped by what this server supports;
        `narrow`: code=/date=ge on the Observation search (default: what `narrowing` says now)."""
        narrow = self.narrowing.next() if narrow is None else narrow
        caps = self.capabilities()
        check_id("Patient", patient_id)
        queries = [Query("Patient", ((("_id", patient_id),),))]
        wanted = set(needs.resource_types)
        for rtype in ("Observation", "Condition"):
            if rtype not in wanted:
                continue
            if not caps.supports_type(rtype):
                log.info("%s does not offer %s searches; skipped", self.base_url, rtype)
                continue
            base = [self._patient_param(caps, rtype, patient_id)]
            narrowing: Params = []
            if rtype == "Observation" and narrow:
                if needs.observation_codes and caps.supports_param(rtype, "code"):
                    narrowing.append(("code", ",".join(search_tokens(needs.observation_codes))))
                if needs.observations_since and caps.supports_param(rtype, "date"):
                    narrowing.append(("date", f"ge{needs.observations_since.isoformat()}"))
            queries.append(self._query(rtype, base, narrowing))
        for rtype in caps.medication_types(wanted):
            base = [self._patient_param(caps, rtype, patient_id)]
            include = f"{rtype}:medication"
            extra = [("_include", include)] if caps.supports_include(rtype, include) else []
            queries.append(self._query(rtype, base, extra))
        return queries

    def _query(self, rtype: str, base: Params, optional: Params) -> Query:
        """Variants: all parameters, then dropping the optional ones from the last."""
        count = [("_count", str(self.server.page_size))]
        variants = [tuple(base + optional[:n] + count) for n in range(len(optional), -1, -1)]
        return Query(rtype, tuple(variants))

    @staticmethod
    def _patient_param(caps: Capabilities, rtype: str, patient_id: str) -> tuple[str, str]:
        if caps.supports_param(rtype, "patient") or not caps.supports_param(rtype, "subject"):
            return "patient", patient_id
        return "subject", f"Patient/{patient_id}"

    def patient_resources(self, patient_id: str, needs: DataNeeds = EVERYTHING) -> list[dict[str, Any]]:
        """The raw resources of one patient: the Patient (absent if the server has none), its
        Observations/Conditions/medication history as `needs` asks, and referenced Medications."""
        narrow = self.narrowing.next()
        started = time.perf_counter()
        queries = self.plan(patient_id, needs, narrow)
        found: dict[tuple[str, str], dict[str, Any]] = {}
        if self.capabilities().batch and self._batch_usable and len(queries) > 1:
            self._run_batch(queries, found)
        else:
            for query in queries:
                self._collect(self.search_broadening(query), found)
        self._add_referenced_medications(found)
        self.narrowing.record(narrow, time.perf_counter() - started)
        return list(found.values())

    @staticmethod
    def _collect(resources: Iterable[dict[str, Any]], found: dict[tuple[str, str], dict[str, Any]]) -> None:
        for resource in resources:
            key = (resource["resourceType"], resource["id"])
            found[key] = newer_copy(found[key], resource) if key in found else resource

    def _run_batch(self, queries: list[Query], found: dict[tuple[str, str], dict[str, Any]]) -> None:
        """All searches in one `batch` Bundle; each entry's pages are then followed on their own."""
        chosen = [min(self._variant_start.get(q.key, 0), len(q.variants) - 1) for q in queries]
        bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": f"{q.rtype}?{urlencode(q.variants[i])}"}}
            for q, i in zip(queries, chosen, strict=True)]}
        try:
            reply = self.http.post_json(self.base_url, bundle)
        except FhirRequestError as exc:
            if exc.status == 401:
                raise
            # 403 too: some servers want write scopes for any POST to [base], even a batch of reads
            log.warning("%s: batch refused (HTTP %d%s); using one search per type from now on", self.base_url,
                        exc.status, f": {exc.diagnostics}" if exc.diagnostics else "")
            self._batch_usable = False
            for query in queries:
                self._collect(self.search_broadening(query), found)
            return
        entries = reply.get("entry") if isinstance(reply, dict) else None
        if not isinstance(entries, list) or len(entries) != len(queries):
            log.warning("%s: batch response does not match the request; using one search per type", self.base_url)
            self._batch_usable = False
            for query in queries:
                self._collect(self.search_broadening(query), found)
            return
        for query, variant, entry in zip(queries, chosen, entries, strict=True):
            self._collect(self._batch_entry(query, variant, entry), found)

    def _batch_entry(self, query: Query, variant: int, entry: Any) -> Iterator[dict[str, Any]]:
        label = f"{query.rtype} search (batch)"
        response = entry.get("response") if isinstance(entry, dict) else None
        status_text = str(response.get("status", "")) if isinstance(response, dict) else ""
        status = int(status_text.split()[0]) if status_text[:3].isdigit() else 0
        if 200 <= status < 300 and isinstance(entry.get("resource"), dict):
            yield from self.walk_pages(entry["resource"], label)
            return
        diagnostics = outcome_text(response.get("outcome")) if isinstance(response, dict) else None
        if status in REJECTED and variant + 1 < len(query.variants):
            log.info("%s rejected (HTTP %d%s); trying a broader one", label, status,
                     f": {diagnostics}" if diagnostics else "")
            yield from self.search_broadening(query, start=variant + 1)
            return
        url = redact_url(f"{self.base_url}/{query.rtype}?{urlencode(query.variants[variant])}")
        detail = f": {diagnostics}" if diagnostics else ""
        raise FhirRequestError(f"batch entry GET {url}: HTTP {status_text or 'status missing'}{detail}",
                               status=status, url=url, diagnostics=diagnostics)

    def _add_referenced_medications(self, found: dict[tuple[str, str], dict[str, Any]]) -> None:
        """Medication resources that `medicationReference` points to and `_include` did not bring.

        They are shared by many patients, so they are cached and fetched in one `_id` search.
        """
        for (rtype, _), resource in found.items():
            if rtype == "Medication":
                self._remember_medication(resource)
        missing: list[str] = []
        for (rtype, _), resource in list(found.items()):
            if rtype not in MEDICATION_TYPES:
                continue
            med_id = reference_id(resource.get("medicationReference"), "Medication")
            if med_id is None or ("Medication", med_id) in found:
                continue
            if med_id in self._medications:
                found[("Medication", med_id)] = self._medications[med_id]
            elif FHIR_ID.match(med_id) and med_id not in missing:
                missing.append(med_id)
        if not missing:
            return
        fetched: list[dict[str, Any]] = []
        try:
            for i in range(0, len(missing), _IDS_PER_SEARCH):
                fetched += self.search("Medication", [("_id", ",".join(missing[i:i + _IDS_PER_SEARCH]))])
        except FhirRequestError as exc:
            warn_once(log, "Medication search failed (HTTP %d); medication names may be missing", exc.status)
        for medication in fetched:
            if medication.get("resourceType") == "Medication":
                self._remember_medication(medication)
                found.setdefault(("Medication", medication["id"]), medication)
        absent = [m for m in missing if ("Medication", m) not in found]
        if absent:
            log.warning("referenced Medication(s) not found on the server: %s", ", ".join(absent[:10]))

    def _remember_medication(self, medication: dict[str, Any]) -> None:
        if len(self._medications) < _MEDICATION_CACHE_MAX:
            self._medications[medication["id"]] = medication
