"""ClinicalTrials.gov API v2 client: single studies and paged searches, paced and retried.

Only two endpoints are used: `GET {api}/studies/{nctId}` (follows the 301 an alias id gets)
and `GET {api}/studies` (filters, `pageToken` paging until a page carries no `nextPageToken`;
a page may be empty or short and paging still goes on). 429, 5xx and connection failures are
retried with backoff, honouring `Retry-After`; 404 and 400 carry plain-text bodies that become
errors naming the id or parameter.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

from connector import __version__
from connector.errors import ConnectorError, SourceError
from connector.fhir.http import read_body_by
from connector.registry.ids import normalise_nct_id
from connector.registry.pacing import Clock, Pacer, Sleep
from connector.retry import backoff_delay, parse_retry_after

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_PAGE_SIZE = 1000
OVERALL_STATUSES = (  # the API's Status enum (filter.overallStatus values)
    "ACTIVE_NOT_RECRUITING", "COMPLETED", "ENROLLING_BY_INVITATION", "NOT_YET_RECRUITING", "RECRUITING",
    "SUSPENDED", "TERMINATED", "WITHDRAWN", "AVAILABLE", "NO_LONGER_AVAILABLE", "TEMPORARILY_NOT_AVAILABLE",
    "APPROVED_FOR_MARKETING", "WITHHELD", "UNKNOWN",
)
USER_AGENT = f"trial-connector/{__version__} (registry sync)"
_BODY_SHOWN = 300


class StudyNotFound(ConnectorError):
    """The registry has no study under this id (HTTP 404)."""

    def __init__(self, nct_id: str, detail: str = ""):
        super().__init__(f"{nct_id}: not found" + (f" ({detail})" if detail else ""))
        self.nct_id = nct_id


class RegistryRequestError(ConnectorError):
    """The registry refused a request (400 and other 4xx): retrying will not help."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


@dataclass
class FetchedStudy:
    """One study as the API returned it, plus how we got there."""

    study: dict[str, Any]
    requested_id: str
    url: str
    alias_of: str | None = None  # set when requested_id redirected to another study


@dataclass
class Page:
    studies: list[dict[str, Any]]
    next_page_token: str | None
    total_count: int | None
    number: int


@dataclass
class ClientStats:
    requests: int = 0
    retries: int = 0
    bytes: int = 0
    waited_s: float = 0.0


@dataclass
class SearchQuery:
    """What `GET /studies` filters on (API parameter names in comments)."""

    ids: list[str] = field(default_factory=list)  # filter.ids
    cond: str | None = None  # query.cond
    term: str | None = None  # query.term
    statuses: list[str] = field(default_factory=list)  # filter.overallStatus
    advanced: str | None = None  # filter.advanced, e.g. AREA[LastUpdatePostDate]RANGE[2025-01-01,MAX]

    def params(self) -> dict[str, str]:
        params: dict[str, str] = {}
        if self.ids:
            params["filter.ids"] = "|".join(self.ids)
        if self.cond:
            params["query.cond"] = self.cond
        if self.term:
            params["query.term"] = self.term
        if self.statuses:
            params["filter.overallStatus"] = "|".join(s.upper() for s in self.statuses)
        if self.advanced:
            params["filter.advanced"] = self.advanced
        return params


class CtGovClient:
    """A paced, retrying client for one API base URL (e.g. https://clinicaltrials.gov/api/v2)."""

    def __init__(
        self,
        api_url: str,
        *,
        requests_per_minute: float = 50.0,
        max_retries: int = 5,
        timeout: float = 60.0,
        retry_after_cap: float = 300.0,
        session: requests.Session | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        rng: random.Random | None = None,
        verify: bool | str = True,
    ):
        self.api_url = api_url.rstrip("/")
        self.session = session or requests.Session()
        self.session.headers.setdefault("User-Agent", USER_AGENT)
        self.session.headers["Accept"] = "application/json"
        self.pacer = Pacer(requests_per_minute, clock=clock, sleep=sleep)
        self.sleep = sleep
        self.max_retries = max_retries
        self.timeout = timeout
        self.retry_after_cap = retry_after_cap
        self.rng = rng or random.Random()
        self.verify = verify
        self.stats = ClientStats()

    # -- endpoints ----------------------------------------------------------------------------

    def get_study(self, nct_id: str) -> FetchedStudy:
        """`GET /studies/{id}`; an alias id is followed to its study and reported in `alias_of`."""
        nct_id = normalise_nct_id(nct_id)
        url = f"{self.api_url}/studies/{nct_id}"
        response = self._get(url, {}, what=nct_id)
        if response.status_code == 404:
            raise StudyNotFound(nct_id, _body(response))
        study = self._json(response, url)
        if not isinstance(study, dict):
            raise SourceError(f"{url}: expected a study object, got {type(study).__name__}")
        actual = _nct_id_of(study)
        alias_of = actual if response.history and actual and actual != nct_id else None
        if alias_of:
            log.info("%s is an alias of %s (HTTP %s redirect)", nct_id, actual, response.history[0].status_code)
        return FetchedStudy(study=study, requested_id=nct_id, url=response.url, alias_of=alias_of)

    def pages(self, query: SearchQuery, page_size: int = MAX_PAGE_SIZE, count_total: bool = True) -> Iterator[Page]:
        """`GET /studies` page by page until a page has no `nextPageToken`."""
        url = f"{self.api_url}/studies"
        base = query.params()
        base["pageSize"] = str(max(1, min(page_size, MAX_PAGE_SIZE)))
        token: str | None = None
        seen_tokens: set[str] = set()
        number = 0
        while True:
            number += 1
            params = dict(base)
            if token:
                params["pageToken"] = token
            elif count_total:
                params["countTotal"] = "true"
            response = self._get(url, params, what=_describe_params(base))
            if response.status_code == 404:
                raise RegistryRequestError(f"{url}: not found (HTTP 404); is the API URL right?", 404)
            body = self._json(response, url)
            studies = body.get("studies") if isinstance(body, dict) else None
            if not isinstance(studies, list):
                raise SourceError(f"{url} (page {number}): the answer has no 'studies' list")
            token = body.get("nextPageToken") or None
            yield Page(studies=studies, next_page_token=token, total_count=body.get("totalCount"), number=number)
            if token is None:
                return
            if token in seen_tokens:
                raise SourceError(f"{url}: the API returned nextPageToken {token!r} twice; stopping to avoid a loop")
            seen_tokens.add(token)

    def studies(self, query: SearchQuery, page_size: int = MAX_PAGE_SIZE) -> Iterator[dict[str, Any]]:
        for page in self.pages(query, page_size):
            yield from page.studies

    # -- transport ----------------------------------------------------------------------------

    def _get(self, url: str, params: Mapping[str, str], what: str) -> requests.Response:
        """GET with pacing and retries; returns 2xx and 404 responses, raises for the rest."""
        attempt = 0
        while True:
            self.stats.waited_s += self.pacer.wait()
            self.stats.requests += 1
            try:
                started = time.monotonic()
                response = self.session.get(url, params=params, timeout=self.timeout, verify=self.verify,
                                            stream=True)
                read_body_by(response, started + self.timeout)  # the timeout bounds the whole answer
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                if attempt >= self.max_retries:
                    raise SourceError(
                        f"ClinicalTrials.gov API unreachable at {url} after {attempt + 1} attempts: {_reason(exc)}"
                    ) from None
                delay = self._backoff(attempt)
                log.warning("%s: %s; retrying in %.1fs", url, _reason(exc), delay)
            else:
                self.stats.bytes += len(response.content)
                status = response.status_code
                if status < 300 or status == 404:
                    return response
                if status not in RETRY_STATUSES:
                    raise RegistryRequestError(_refusal(response, what), status)
                if attempt >= self.max_retries:
                    raise SourceError(
                        f"ClinicalTrials.gov API answered HTTP {status} to {url} {attempt + 1} times; giving up"
                    )
                delay = self._retry_delay(response, attempt)
                log.warning("%s: HTTP %s; retrying in %.1fs", url, status, delay)
            attempt += 1
            self.stats.retries += 1
            self.sleep(delay)

    def _retry_delay(self, response: requests.Response, attempt: int) -> float:
        told = parse_retry_after(response.headers.get("Retry-After"), time.time())
        if told is not None:
            return min(told, self.retry_after_cap)
        return self._backoff(attempt)

    def _backoff(self, attempt: int) -> float:
        """About 2 s, 4 s, 8 s ... (capped at a minute): the public API is shared, be gentle."""
        return backoff_delay(attempt + 1, base=2.0, cap=60.0, jitter=self.rng.random())

    @staticmethod
    def _json(response: requests.Response, url: str) -> Any:
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("Content-Type")
            raise SourceError(f"{url}: the answer is not JSON (content-type {kind})") from None
        except RecursionError:
            raise SourceError(f"{url}: the answer's JSON is nested too deeply") from None


def _nct_id_of(study: Mapping[str, Any]) -> str | None:
    ident = (study.get("protocolSection") or {}).get("identificationModule") or {}
    value = ident.get("nctId")
    return value if isinstance(value, str) else None


def _body(response: requests.Response) -> str:
    text = " ".join(response.text.split())
    return text if len(text) <= _BODY_SHOWN else text[: _BODY_SHOWN - 1] + "…"


def _refusal(response: requests.Response, what: str) -> str:
    body = _body(response)
    return f"ClinicalTrials.gov refused {what} (HTTP {response.status_code})" + (f": {body}" if body else "")


def _describe_params(params: Mapping[str, str]) -> str:
    shown = ", ".join(f"{k}={v!r}" for k, v in params.items() if k != "pageSize")
    return f"the search {shown}" if shown else "the search"


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for marker in ("Connection refused", "timed out", "Name or service not known", "Connection reset"):
        if marker in text:
            return marker.lower()
    return type(exc).__name__
