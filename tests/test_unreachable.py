"""One unreachable server fails once and fast (exit 2): DNS failures and refused connections
are not retried like a 503, /metadata is not retried for every patient, and warnings that
would repeat for every client are said once."""

from __future__ import annotations

import logging
import socket
import sys

import pytest
import requests
import responses

from connector.cli import main
from connector.config import ServerConfig
from connector.errors import ServerUnreachable, SourceError
from connector.fhir.http import HttpClient


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again on exit: connecting is refused


class FailingSession(requests.Session):
    def __init__(self, error: Exception):
        super().__init__()
        self.error = error
        self.calls = 0

    def request(self, *args, **kwargs):  # type: ignore[override]
        self.calls += 1
        raise self.error


def client(session: requests.Session | None = None, url: str = "http://fhir.example/r4") -> tuple[HttpClient, list]:
    sleeps: list[float] = []
    return HttpClient(ServerConfig(name="h", url=url, max_retries=5), session, sleep=sleeps.append), sleeps


def test_refused_connection_is_not_retried():
    http, sleeps = client(url=f"http://127.0.0.1:{closed_port()}/fhir")
    with pytest.raises(ServerUnreachable, match=r"metadata: connection refused \(not retried: check the server URL\)"):
        http.request("GET", "metadata")
    assert sleeps == [] and http.stats.requests == 1


def test_dns_failure_is_not_retried():
    name_error = requests.exceptions.ConnectionError(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    session = FailingSession(name_error)
    http, sleeps = client(session)
    with pytest.raises(ServerUnreachable, match="host name not found"):
        http.request("GET", "metadata")
    assert session.calls == 1 and sleeps == []


def test_a_reset_connection_and_a_503_are_still_retried():
    session = FailingSession(requests.exceptions.ConnectionError(ConnectionResetError(104, "Connection reset by peer")))
    http, sleeps = client(session)
    with pytest.raises(ServerUnreachable, match="gave up after 6 attempts"):
        http.request("GET", "metadata")
    assert session.calls == 6 and len(sleeps) == 5
    with responses.RequestsMock() as mocked:
        mocked.get("http://fhir.example/r4/metadata", status=503)
        http, sleeps = client()
        with pytest.raises(SourceError, match="HTTP 503 \\(gave up after 6 attempts\\)"):
            http.request("GET", "metadata")
        assert len(sleeps) == 5


def test_screen_of_many_patients_on_a_dead_server_fails_once_with_exit_2(monkeypatch, capsys):
    url = f"http://127.0.0.1:{closed_port()}/fhir"
    patients = [arg for pid in ("a", "b", "c", "d") for arg in ("--patient", pid)]
    monkeypatch.setattr(sys, "argv", ["trial-connector", "screen", "--trial", "NCT05773274", "--source", url,
                                      *patients])
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    assert exited.value.code == 2 and out == ""
    assert err == f"error: GET {url}/metadata: connection refused (not retried: check the server URL)\n"


def test_a_repeating_warning_is_said_once(caplog):
    caplog.set_level(logging.WARNING)
    server = ServerConfig(name="warn-once-test", url="https://fhir.example/r4", verify_tls=False)
    for _ in range(4):  # as four workers or four runs in one process would
        HttpClient(server).close()
    said = [r.getMessage() for r in caplog.records if "verification is OFF" in r.getMessage()]
    assert said == ["TLS certificate verification is OFF for server warn-once-test (verify_tls = false)"]
