"""A fault-injecting HTTP proxy of the tests' own, in front of the real FHIR test server.

sekmet-fhir cannot return 429/503, stall or cut a connection on purpose; real hospital
servers and gateways do all of that. This proxy forwards every request to the upstream
server and, when a scripted `Fault` matches, misbehaves instead::

    with FaultProxy(server.root_url) as proxy:          # base: proxy.url("/fhir")
        proxy.script(Fault("status", status=429, headers={"Retry-After": "1"}, times=2))
        proxy.script(Fault("reset", match="Observation", skip=1))
        ... run the connector against proxy.url("/fhir") ...
        assert proxy.fired("status") == 2

The upstream's absolute URLs (Bundle links, fullUrls, Content-Location) are rewritten to the
proxy's, so that paging goes through the proxy too. `latency` adds a fixed delay to every
request (benchmarks use it to imitate a hospital network); `ssl_context` makes it an HTTPS
front (TLS tests with a self-signed certificate). stdlib only, 127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOST = "127.0.0.1"
KINDS = ("status", "reset", "stall", "truncate", "truncate_cut")
_HOP_HEADERS = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
                "transfer-encoding", "upgrade", "content-length", "host", "content-encoding"}


@dataclass
class Seen:
    """One request the proxy received, and what it did with it (a fault kind or `passed`)."""

    method: str
    path: str
    body: bytes
    outcome: str = "passed"
    status: int = 0


@dataclass
class Fault:
    """A scripted misbehaviour.

    kind: `status` (answer `status` with `headers`, e.g. 429 + Retry-After, 503, 404),
          `reset` (close the connection with a TCP RST, nothing answered),
          `stall` (answer nothing for `stall_seconds`, then close: the client's read timeout),
          `truncate` (the upstream's JSON body cut in half, Content-Length telling the cut length),
          `truncate_cut` (Content-Length of the whole body, then the connection closes midway).
    match: a substring of "METHOD path?query" (or of the request body for a batch POST), or a
           predicate on the Seen request; empty matches everything.
    skip: let this many matching requests through first; times: then fire this many times.
    """

    kind: str
    match: str | Callable[[Seen], bool] = ""
    times: int = 1
    skip: int = 0
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    stall_seconds: float = 5.0
    fired: int = 0
    _matched: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r} (one of {', '.join(KINDS)})")

    def take(self, seen: Seen) -> bool:
        """True when this fault fires for `seen` (counts matches; call under the proxy lock)."""
        if self.fired >= self.times:
            return False
        if callable(self.match):
            hit = self.match(seen)
        else:
            hit = self.match in f"{seen.method} {seen.path}" or self.match in seen.body.decode("utf-8", "replace")
        if not hit:
            return False
        self._matched += 1
        if self._matched <= self.skip:
            return False
        self.fired += 1
        return True


class FaultProxy:
    """A threaded HTTP proxy on a free 127.0.0.1 port in front of `upstream` (scheme://host:port)."""

    def __init__(self, upstream: str, *, latency: float = 0.0, timeout: float = 120.0,
                 ssl_context: ssl.SSLContext | None = None):
        parts = urlsplit(upstream)
        if parts.hostname != HOST:
            raise ValueError("the fault proxy only fronts servers on 127.0.0.1")
        self.upstream_root = f"{parts.scheme}://{parts.netloc}"
        self.upstream_host, self.upstream_port = parts.hostname, parts.port or 80
        self.latency = latency
        self.timeout = timeout
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self.bytes_sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = ThreadingHTTPServer((HOST, 0), self._handler_class())
        self._server.daemon_threads = True
        self.scheme = "http"
        if ssl_context is not None:  # handshakes happen on accept; a refused one is just dropped
            self._server.socket = ssl_context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._thread: threading.Thread | None = None

    # ---- life cycle and script -----------------------------------------------------------

    @property
    def root_url(self) -> str:
        return f"{self.scheme}://{HOST}:{self._server.server_address[1]}"

    def url(self, path: str = "") -> str:
        """The proxy's address for an upstream path, e.g. url("/fhir")."""
        return self.root_url + path

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # releases stalled handlers
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def script(self, *faults: Fault) -> FaultProxy:
        with self._lock:
            self.faults.extend(faults)
        return self

    def reset(self) -> None:
        """Forget the script and what was seen (keeps running)."""
        with self._lock:
            self.faults.clear()
            self.seen.clear()
            self.bytes_sent = 0

    def fired(self, kind: str | None = None) -> int:
        """How many times faults (of `kind`) fired."""
        with self._lock:
            return sum(f.fired for f in self.faults if kind is None or f.kind == kind)

    def requests(self, outcome: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if outcome is None or s.outcome == outcome]

    # ---- one request ---------------------------------------------------------------------

    def _choose(self, seen: Seen) -> Fault | None:
        with self._lock:
            self.seen.append(seen)
            for fault in self.faults:
                if fault.take(seen):
                    seen.outcome = fault.kind
                    return fault
        return None

    def _forward(self, handler: Any, method: str, path: str, headers: dict[str, str],
                 body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        """Send the request upstream on the client connection's own upstream connection (kept
        on `handler`, closed with it) and return the answer, the upstream's absolute URLs
        turned into the proxy's."""
        for attempt in (1, 2):  # a kept-alive upstream connection may have been closed meanwhile
            if handler.upstream is None:
                handler.upstream = http.client.HTTPConnection(self.upstream_host, self.upstream_port,
                                                              timeout=self.timeout)
                handler.upstream.connect()
                handler.upstream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle stalls
            try:
                handler.upstream.request(method, path, body=body or None, headers=headers)
                response = handler.upstream.getresponse()
                data = response.read()
                break
            except (http.client.HTTPException, OSError):
                handler.upstream.close()
                handler.upstream = None
                if attempt == 2:
                    raise
        data = data.replace(self.upstream_root.encode(), self.root_url.encode())
        out_headers = [(k, v.replace(self.upstream_root, self.root_url)) for k, v in response.getheaders()
                       if k.lower() not in _HOP_HEADERS]
        return response.status, response.reason, out_headers, data

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in separate writes
            upstream: http.client.HTTPConnection | None = None

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet tests
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Seen(self.command, self.path, body)
                if proxy.latency:
                    time.sleep(proxy.latency)
                fault = proxy._choose(seen)
                if fault is not None and fault.kind == "reset":
                    self._reset()
                    return
                if fault is not None and fault.kind == "stall":
                    proxy._stop.wait(fault.stall_seconds)
                    self.close_connection = True
                    return
                if fault is not None and fault.kind == "status":
                    seen.status = fault.status
                    text = (f'{{"resourceType":"OperationOutcome","issue":[{{"severity":"error","code":"transient",'
                            f'"diagnostics":"fault proxy: HTTP {fault.status}"}}]}}').encode()
                    self._send(fault.status, [("Content-Type", "application/fhir+json"), *fault.headers.items()], text)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_HEADERS}
                headers["Host"] = f"{proxy.upstream_host}:{proxy.upstream_port}"
                if body:
                    body = body.replace(proxy.root_url.encode(), proxy.upstream_root.encode())
                status, reason, out_headers, data = proxy._forward(self, self.command, self.path, headers, body)
                seen.status = status
                if fault is not None and fault.kind == "truncate":
                    self._send(status, out_headers, data[: len(data) // 2])
                elif fault is not None and fault.kind == "truncate_cut":
                    self.send_response(status, reason)
                    for name, value in out_headers:
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self._reset()
                else:
                    self._send(status, out_headers, data, reason)

            def _send(self, status: int, headers: list[tuple[str, str]], data: bytes,
                      reason: str | None = None) -> None:
                self.send_response(status, reason)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                with proxy._lock:
                    proxy.bytes_sent += len(data)

            def _reset(self) -> None:
                """Abort the TCP connection (RST), as a crashing gateway does."""
                try:
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                except OSError:
                    pass
                self.close_connection = True

            def finish(self) -> None:
                if self.upstream is not None:
                    self.upstream.close()
                try:
                    super().finish()
                except OSError:
                    pass  # the connection was aborted on purpose

            do_GET = do_POST = do_PUT = do_DELETE = _handle

        return Handler
