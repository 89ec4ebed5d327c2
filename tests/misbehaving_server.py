"""A tiny FHIR-ish HTTP server of the tests' own, on 127.0.0.1, that misbehaves on purpose in
ways the fault proxy cannot imitate (it only bends the real server's answers): searches that
announce matches they never return, next links that change for ever, a body sent one byte at a
time, Bulk jobs whose files have expired.

    with MisbehavingServer() as server:                 # base: server.base_url ("/fhir")
        server.route("GET", "/fhir/Patient", lambda req: json_reply({"resourceType": "Bundle", ...}))
        ... point the connector at server.base_url ...

A route is a function of the request (`Request`: method, path, query, headers) returning a
`Reply`; unrouted paths answer 404. stdlib only.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

HOST = "127.0.0.1"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class Reply:
    """What to answer. `drip_seconds` > 0 sends the body one byte at a time, that long apart;
    `declared_length` larger than the body announces more than is sent, then hangs up."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drip_seconds: float = 0.0
    declared_length: int | None = None


def json_reply(data: Any, status: int = 200, **headers: str) -> Reply:
    return Reply(status, json.dumps(data).encode(), {"Content-Type": "application/fhir+json", **headers})


def searchset(resources: list[dict[str, Any]], *, total: int | None = None, next_url: str | None = None) -> dict:
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset",
                              "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources]}
    if total is not None:
        bundle["total"] = total
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


CAPABILITIES = {"resourceType": "CapabilityStatement", "status": "active", "kind": "instance", "fhirVersion": "4.0.1",
                "format": ["json"], "rest": [{"mode": "server", "resource": [
                    {"type": t, "searchParam": [{"name": "patient", "type": "reference"},
                                                {"name": "_lastUpdated", "type": "date"}]}
                    for t in ("Patient", "Observation", "Condition", "MedicationRequest")]}]}


class MisbehavingServer:
    """A threaded HTTP server on a free 127.0.0.1 port answering from `routes`."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Callable[[Request], Reply]] = {}
        self.seen: list[Request] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer((HOST, 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None
        self.route("GET", "/fhir/metadata", lambda _req: json_reply(CAPABILITIES))

    @property
    def root_url(self) -> str:
        return f"http://{HOST}:{self._server.server_address[1]}"

    @property
    def base_url(self) -> str:
        return self.root_url + "/fhir"

    @staticmethod
    def fallback_search(_request: Request) -> Reply:
        return json_reply(searchset([], total=0))

    def route(self, method: str, path: str, handler: Callable[[Request], Reply]) -> MisbehavingServer:
        with self._lock:
            self.routes[(method, path)] = handler
        return self

    def requests(self, path: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.seen if path is None or r.path == path]

    def __enter__(self) -> MisbehavingServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="misbehaving", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in separate writes

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet tests
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                parts = urlsplit(self.path)
                request = Request(self.command, parts.path, dict(parse_qsl(parts.query)), dict(self.headers.items()))
                with server._lock:
                    server.seen.append(request)
                    handler = server.routes.get((self.command, parts.path))
                if handler is None and self.command == "GET" and parts.path.count("/") == 2:
                    handler = server.fallback_search  # any other type: an honest empty search
                reply = handler(request) if handler else json_reply({"resourceType": "OperationOutcome"}, 404)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(reply.declared_length or len(reply.body)))
                if reply.declared_length:
                    self.close_connection = True
                self.end_headers()
                try:
                    if reply.drip_seconds:
                        for i in range(len(reply.body)):
                            if server._stop.wait(reply.drip_seconds):
                                return
                            self.wfile.write(reply.body[i:i + 1])
                            self.wfile.flush()
                    else:
                        self.wfile.write(reply.body)
                except OSError:
                    pass  # the client gave up: that is the point of some tests

            do_GET = do_POST = do_DELETE = _handle

        return Handler


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


class BulkJobs:
    """Bulk $export on a MisbehavingServer: each kick-off starts job N whose manifest lists
    `files` (type -> NDJSON bytes) at /fhir/bulk-files/<N>/<type>.ndjson. `expired` holds job
    numbers whose files now answer 410; `cut` the (job, type) downloads that drop mid-body."""

    def __init__(self, server: MisbehavingServer, files: dict[str, bytes]):
        self.server = server
        self.files = files
        self.jobs = 0
        self.expired: set[int] = set()
        self.cut: set[tuple[int, str]] = set()
        server.route("GET", "/fhir/Patient/$export", self._kick_off)
        server.route("GET", "/fhir/$export", self._kick_off)

    def _kick_off(self, _request: Request) -> Reply:
        self.jobs += 1
        job = self.jobs
        status = f"/fhir/bulk-status/{job}"
        manifest = {"transactionTime": "2026-11-01T00:00:00.000Z", "request": "x", "requiresAccessToken": False,
                    "error": [], "output": [{"type": t, "url": f"{self.server.base_url}/bulk-files/{job}/{t}.ndjson"}
                                            for t in self.files]}
        self.server.route("GET", status, lambda _r: json_reply(manifest))
        self.server.route("DELETE", status, lambda _r: Reply(202))
        for rtype, body in self.files.items():
            self.server.route("GET", f"/fhir/bulk-files/{job}/{rtype}.ndjson", self._file(job, rtype, body))
        return Reply(202, headers={"Content-Location": self.server.root_url + status})

    def _file(self, job: int, rtype: str, body: bytes) -> Callable[[Request], Reply]:
        def answer(_request: Request) -> Reply:
            if job in self.expired:
                return json_reply({"resourceType": "OperationOutcome"}, 410)
            if (job, rtype) in self.cut:
                return Reply(200, body[: len(body) // 2], declared_length=len(body))
            return Reply(200, body, {"Content-Type": "application/fhir+ndjson"})
        return answer
