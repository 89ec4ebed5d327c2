"""HTTP for FHIR servers: one pooled `requests.Session`, a timeout on every request, retries
that survive flaky real servers, and errors that say what failed without leaking secrets or PHI.

Why not urllib3's `Retry`: it cannot renew a SMART token on a 401, rebuild a single-use
client assertion per attempt, cap a server's `Retry-After`, or count bytes for the verbose
output; and its sleeps cannot be injected, which keeps the tests fast.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import requests
import urllib3

from connector import __version__
from connector.config import ServerConfig
from connector.errors import ResourceError, SourceError
from connector.retry import backoff_delay, parse_retry_after

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
FHIR_JSON = "application/fhir+json"
USER_AGENT = f"trial-connector/{__version__}"
# Query parameters whose values are safe to show in logs and errors (no PHI, no secrets).
# Anything else (identifier=, name=, birthdate=, access_token=, ...) is shown as `name=***`.
SAFE_QUERY_PARAMS = frozenset({
    "_count", "_offset", "_page", "_getpages", "_getpagesoffset", "_pageId", "_include", "_revinclude",
    "_elements", "_summary", "_sort", "_total", "_format", "_type", "_since", "_lastUpdated", "_id",
    "_outputFormat", "_typeFilter", "patient", "subject", "code", "date", "status", "category", "_tag",
    "page", "pageSize", "pageToken", "ct", "_cursor",
})
_MAX_DIAGNOSTICS = 500
CHUNK_BYTES = 1 << 16
MAX_ANSWER_BYTES = 512 * 1024 * 1024  # one answer (a page, a manifest), decompressed: never a whole export
_MAX_URL_IN_MESSAGE = 300


class Auth(Protocol):
    """What HttpClient needs from an authentication method (see connector.fhir.auth)."""

    name: str

    def authorization(self, http: HttpClient) -> str | None:
        """The `Authorization` header value for the next request (None: send none)."""
        ...

    def invalidate(self) -> bool:
        """Forget the cached credential after a 401; True when a fresh one may be accepted."""
        ...


class FhirRequestError(SourceError):
    """The server refused a request with a 4xx that retrying cannot cure.

    Carries `status` so callers can fall back (400 -> broader query, 404 -> not found).
    """

    def __init__(self, message: str, *, status: int, url: str, diagnostics: str | None = None):
        super().__init__(message)
        self.status = status
        self.url = url
        self.diagnostics = diagnostics


@dataclass
class HttpStats:
    """Round trips and body bytes received: the verbose output and benchmarks read these."""

    requests: int = 0
    bytes: int = 0
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, received: int, retry: bool = False) -> None:
        with self._lock:
            self.requests += 1
            self.bytes += received
            self.retries += int(retry)

    def snapshot(self) -> HttpStats:
        """A copy, to measure what one step cost (`after.requests - before.requests`)."""
        with self._lock:
            return replace(self, _lock=threading.Lock())


def redact_url(url: str) -> str:
    """The URL as it may appear in logs and errors: no user-info, no fragment, and only
    the values of known-harmless query parameters (see SAFE_QUERY_PARAMS)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    shown = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        base = name.split(":", 1)[0].split(".", 1)[0]
        shown.append(f"{name}={value}" if base in SAFE_QUERY_PARAMS else f"{name}=***")
    text = urlunsplit((parts.scheme, host, parts.path, "&".join(shown), ""))
    return text if len(text) <= _MAX_URL_IN_MESSAGE else text[: _MAX_URL_IN_MESSAGE - 3] + "..."


def outcome_text(body: Any) -> str | None:
    """The human-readable part of an OperationOutcome (diagnostics or details.text), or of an
    OAuth 2 error response; None for anything else."""
    texts: list[str] = []
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        for issue in body.get("issue") or []:
            if not isinstance(issue, dict):
                continue
            details = issue.get("details") if isinstance(issue.get("details"), dict) else {}
            text = issue.get("diagnostics") or details.get("text")
            if isinstance(text, str) and text:
                texts.append(text)
    elif isinstance(body, dict) and isinstance(body.get("error"), str):  # RFC 6749 5.2
        texts.append(body["error"])
        if isinstance(body.get("error_description"), str):
            texts.append(body["error_description"])
    return _shorten("; ".join(texts)) if texts else None


def response_diagnostics(response: requests.Response) -> str | None:
    """What the server said about a failure: OperationOutcome diagnostics, an OAuth error, or
    a short plain-text body. Never the request (which carries credentials)."""
    try:
        body = json.loads(response.content) if response.content else None
    except (ValueError, RecursionError):
        body = None
    if body is not None:
        return outcome_text(body)
    if response.content and "html" not in response.headers.get("Content-Type", ""):
        text = " ".join(response.content[:200].decode("utf-8", "replace").split())
        return text or None
    return None


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_DIAGNOSTICS else text[: _MAX_DIAGNOSTICS - 3] + "..."


def _with_params(url: str, params: Any) -> str:
    """The URL requests will send once `params` are added (for messages only)."""
    if not params:
        return url
    prepared = requests.models.PreparedRequest()
    prepared.prepare_url(url, params)
    return prepared.url or url


def _network_reason(exc: BaseException) -> str:
    """A short cause for a network failure, without the URL that requests puts in its messages."""
    if isinstance(exc, DeadlineExceeded):
        return "timed out (the whole answer took longer than the timeout)"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "read timed out"
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, OSError) and item.strerror:
            return item.strerror.lower()
        if isinstance(item, BaseException):
            stack.extend(a for a in item.args if isinstance(a, BaseException))
            stack.extend(x for x in (item.__cause__, item.__context__, getattr(item, "reason", None)) if x)
    return exc.__class__.__name__


class DeadlineExceeded(requests.exceptions.ReadTimeout):
    """The whole answer did not arrive within `timeout`, though each piece came in time."""


def read_body_by(response: requests.Response, deadline: float, max_bytes: int = MAX_ANSWER_BYTES) -> None:
    """Read a streamed response's body completely by `deadline` (a time.monotonic value).

    `requests` applies its timeout to each socket read, so a server sending a byte every few
    seconds holds a request for hours; this bounds the whole answer, and its size (a body,
    compressed or not, over `max_bytes` is refused). The body is then available as
    `response.content`, as if it had not been streamed."""
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            if time.monotonic() > deadline:
                response.close()
                raise DeadlineExceeded("answer not complete within the timeout")
            chunk = response.raw.read1(CHUNK_BYTES, decode_content=True)
            if not chunk:
                break
            size += len(chunk)
            if size > max_bytes:
                response.close()
                raise SourceError(f"{response.request.method} {redact_url(response.url)}: answer larger than "
                                  f"{max_bytes // (1024 * 1024)} MB; refused")
            chunks.append(chunk)
    except (urllib3.exceptions.ProtocolError, urllib3.exceptions.DecodeError) as exc:
        raise requests.exceptions.ChunkedEncodingError(exc) from exc
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise requests.exceptions.ReadTimeout(exc) from exc
    response._content = b"".join(chunks)  # noqa: SLF001 - what requests itself sets after reading
    response._content_consumed = True  # noqa: SLF001


class HttpClient:
    """Requests to one FHIR server (or its token endpoint / Bulk file server) with retries.

    `request()` is usable for any URL: searches, reads, Bulk status polling, file downloads
    (`stream=True`, `Range` headers). Retries: connection errors, timeouts, 408/429/5xx with
    exponential backoff and jitter, honouring `Retry-After` up to `server.retry_after_cap`.
    A 401 makes the auth renew its credential once. `sleep`, `now` and `jitter` are injectable
    so tests never wait.
    """

    def __init__(
        self,
        server: ServerConfig,
        session: requests.Session | None = None,
        auth: Auth | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
    ):
        self.server = server
        self.base_url = server.url.rstrip("/")
        self.session = session or requests.Session()
        self.session.headers.setdefault("User-Agent", USER_AGENT)
        self.auth = auth
        self.stats = HttpStats()
        self._sleep = sleep
        self._now = now
        self._jitter = jitter
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        if server.verify is False:
            log.warning("TLS certificate verification is OFF for server %s (verify_tls = false)", server.name)

    def url(self, path_or_url: str) -> str:
        """An absolute URL: relative paths are taken against the server's base URL."""
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        if not path_or_url.strip("/"):
            return self.base_url
        return f"{self.base_url}/{path_or_url.lstrip('/')}"

    def backoff(self, attempt: int) -> float:
        """Delay before retry number `attempt` (1-based): exponential, half of it random."""
        return backoff_delay(attempt, self.backoff_base, self.backoff_max, self._jitter())

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        data_factory: Callable[[], Any] | None = None,
        authenticate: bool = True,
        timeout: float | None = None,
        max_retries: int | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        """Send one request, retrying what can be retried; returns any 1xx-3xx response.

        `data_factory` builds the body afresh for each attempt (a SMART client assertion is
        single-use). Other keyword arguments go to `requests` (params, data, json, stream...).
        Raises FhirRequestError for other 4xx, SourceError once retries are spent.
        """
        url = self.url(url)
        shown = redact_url(_with_params(url, kwargs.get("params")))
        retries = self.server.max_retries if max_retries is None else max_retries
        timeout = self.server.timeout if timeout is None else timeout
        renewed = False
        attempt = 0
        while True:
            attempt += 1
            send_headers = {"Accept": FHIR_JSON, **(headers or {})}
            if authenticate and self.auth is not None:
                value = self.auth.authorization(self)
                if value:
                    send_headers["Authorization"] = value
            if data_factory is not None:
                kwargs["data"] = data_factory()
            started = time.monotonic()
            streamed = bool(kwargs.get("stream"))
            try:
                response = self.session.request(method, url, headers=send_headers, timeout=timeout,
                                                verify=self.server.verify, **{**kwargs, "stream": True})
                if not streamed:
                    read_body_by(response, started + timeout)
            except requests.exceptions.SSLError:
                self.stats.count(0, retry=attempt > 1)
                raise SourceError(f"{method} {shown}: TLS verification failed (set ca_bundle for a private CA; "
                                  "verify_tls = false only if you accept the risk)") from None
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                    requests.exceptions.ChunkedEncodingError) as exc:
                self.stats.count(0, retry=attempt > 1)
                reason = _network_reason(exc)
                if attempt > retries:
                    raise SourceError(f"{method} {shown}: {reason} (gave up after {attempt} attempts)") from None
                delay = self.backoff(attempt)
                log.info("%s %s: %s; retry %d/%d in %.1f s", method, shown, reason, attempt, retries, delay)
                self._sleep(delay)
                continue
            except requests.exceptions.RequestException as exc:
                raise SourceError(f"{method} {shown}: {exc.__class__.__name__}") from None
            received = len(response.content) if not streamed else int(
                response.headers.get("Content-Length") or 0)
            self.stats.count(received, retry=attempt > 1)
            status = response.status_code
            log.debug("%s %s -> %d (%d bytes, %.2f s)", method, shown, status, received, time.monotonic() - started)
            if status < 400:
                return response
            if status == 401 and authenticate and self.auth is not None and not renewed:
                renewed = True
                if self.auth.invalidate():
                    response.close()
                    log.info("%s %s: 401, renewing %s credentials once", method, shown, self.auth.name)
                    attempt -= 1  # a renewal is not a retry
                    continue
            diagnostics = response_diagnostics(response)
            response.close()
            detail = f": {diagnostics}" if diagnostics else ""
            if status in RETRY_STATUSES:
                if attempt > retries:
                    raise SourceError(f"{method} {shown}: HTTP {status} (gave up after {attempt} attempts){detail}")
                delay = self._retry_delay(response, attempt)
                log.info("%s %s: HTTP %d; retry %d/%d in %.1f s", method, shown, status, attempt, retries, delay)
                self._sleep(delay)
                continue
            raise FhirRequestError(f"{method} {shown}: HTTP {status} {response.reason or ''}".rstrip() + detail,
                                   status=status, url=shown, diagnostics=diagnostics)

    def _retry_delay(self, response: requests.Response, attempt: int) -> float:
        """The server's Retry-After (capped) when it sent one, else our backoff."""
        asked = parse_retry_after(response.headers.get("Retry-After"), self._now())
        if asked is None:
            return self.backoff(attempt)
        if asked > self.server.retry_after_cap:
            log.info("Retry-After %.0f s is over the cap; waiting %.0f s", asked, self.server.retry_after_cap)
        return min(asked, self.server.retry_after_cap)

    def json(self, response: requests.Response) -> Any:
        """The response body as JSON; a clear error naming the URL when it is not."""
        try:
            return json.loads(response.content)
        except ValueError as exc:
            kind = response.headers.get("Content-Type", "no content type")
            raise SourceError(f"{response.request.method} {redact_url(response.url)}: response is not valid JSON "
                              f"({kind}; {exc.__class__.__name__} at character {getattr(exc, 'pos', '?')})") from None
        except RecursionError:
            raise ResourceError(f"{response.request.method} {redact_url(response.url)}: the response's JSON is "
                                "nested too deeply") from None

    def get_json(self, url: str, params: Mapping[str, Any] | list[tuple[str, str]] | None = None,
                 **kwargs: Any) -> Any:
        return self.json(self.request("GET", url, params=params, **kwargs))

    def post_json(self, url: str, body: Any, **kwargs: Any) -> Any:
        headers = {"Content-Type": FHIR_JSON, **kwargs.pop("headers", {})}
        return self.json(self.request("POST", url, data=json.dumps(body), headers=headers, **kwargs))

    def close(self) -> None:
        self.session.close()
