"""HttpClient: timeouts, retries with backoff and Retry-After, 401 renewal, clear errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests
import responses

from connector.config import ServerConfig
from connector.errors import SourceError
from connector.fhir.http import FhirRequestError, HttpClient, parse_retry_after, redact_url

BASE = "http://127.0.0.1:8090/fhir"
NOW = 1_800_000_000.0  # injected wall clock (epoch seconds)


def outcome(text: str) -> dict:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "processing",
                                                           "diagnostics": text}]}


class Sleeps(list):
    """Records the delays HttpClient asked for instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_client(sleeps: Sleeps, auth=None, jitter: float = 0.5, **server) -> HttpClient:
    config = ServerConfig(name="test", url=BASE, **{"max_retries": 3, "retry_after_cap": 60.0, **server})
    return HttpClient(config, auth=auth, sleep=sleeps, now=lambda: NOW, jitter=lambda: jitter)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@responses.activate
def test_every_request_has_the_configured_timeout_and_tls_setting(sleeps):
    responses.get(f"{BASE}/Patient/1", json={"resourceType": "Patient", "id": "1"})
    client = make_client(sleeps, timeout=7.5, ca_bundle="/etc/ssl/hospital.pem")
    client.get_json("Patient/1")
    kwargs = responses.calls[0].request.req_kwargs
    assert kwargs["timeout"] == 7.5
    assert kwargs["verify"] == "/etc/ssl/hospital.pem"
    assert responses.calls[0].request.headers["Accept"] == "application/fhir+json"


@responses.activate
def test_tls_verification_is_off_only_when_configured(sleeps):
    responses.get(f"{BASE}/metadata", json={})
    make_client(sleeps).get_json("metadata")
    make_client(sleeps, verify_tls=False).get_json("metadata")
    verify_on, verify_off = (c.request.req_kwargs["verify"] for c in responses.calls)
    assert verify_on not in (False, None, "")  # True, or the CA bundle requests found in the environment
    assert verify_off is False


@responses.activate
def test_503_is_retried_with_growing_backoff_then_succeeds(sleeps):
    url = f"{BASE}/Observation"
    for _ in range(3):
        responses.get(url, status=503)
    responses.get(url, json={"resourceType": "Bundle", "type": "searchset"})
    client = make_client(sleeps, jitter=1.0)
    assert client.get_json("Observation")["resourceType"] == "Bundle"
    assert len(responses.calls) == 4
    assert sleeps == [0.5, 1.0, 2.0]  # base 0.5 s doubling; jitter=1 gives the full delay
    assert (client.stats.requests, client.stats.retries) == (4, 3)


@responses.activate
def test_backoff_jitter_spreads_delays_and_is_capped(sleeps):
    client = make_client(sleeps, jitter=0.0)
    client.backoff_max = 4.0
    assert [client.backoff(n) for n in (1, 2, 3, 4, 5, 6)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]


@responses.activate
def test_429_honours_retry_after_seconds(sleeps):
    url = f"{BASE}/Patient"
    responses.get(url, status=429, headers={"Retry-After": "7"})
    responses.get(url, json={"resourceType": "Bundle"})
    make_client(sleeps).get_json("Patient")
    assert sleeps == [7.0]


@responses.activate
def test_429_honours_retry_after_http_date(sleeps):
    url = f"{BASE}/Patient"
    when = datetime.fromtimestamp(NOW, UTC) + timedelta(seconds=42)
    responses.get(url, status=429, headers={"Retry-After": format_datetime(when, usegmt=True)})
    responses.get(url, json={"resourceType": "Bundle"})
    make_client(sleeps).get_json("Patient")
    assert sleeps == [pytest.approx(42.0)]


@responses.activate
def test_retry_after_is_capped(sleeps):
    url = f"{BASE}/Patient"
    responses.get(url, status=503, headers={"Retry-After": "3600"})
    responses.get(url, json={"resourceType": "Bundle"})
    make_client(sleeps, retry_after_cap=30.0).get_json("Patient")
    assert sleeps == [30.0]


@pytest.mark.parametrize("value, expected", [("120", 120.0), ("0", 0.0), ("garbage", None), ("", None),
                                             ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)])
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value, NOW) == expected


@pytest.mark.parametrize("status", [408, 500, 502, 504])
@responses.activate
def test_other_transient_statuses_are_retried(sleeps, status):
    url = f"{BASE}/Condition"
    responses.get(url, status=status)
    responses.get(url, json={"resourceType": "Bundle"})
    make_client(sleeps).get_json("Condition")
    assert len(responses.calls) == 2 and len(sleeps) == 1


@responses.activate
def test_connection_reset_is_retried(sleeps):
    url = f"{BASE}/Patient"
    responses.get(url, body=requests.ConnectionError(ConnectionResetError(104, "Connection reset by peer")))
    responses.get(url, json={"resourceType": "Bundle"})
    client = make_client(sleeps)
    assert client.get_json("Patient") == {"resourceType": "Bundle"}
    assert len(sleeps) == 1 and client.stats.requests == 2


@responses.activate
def test_timeouts_spend_the_retries_then_fail_naming_url_without_phi(sleeps):
    url = f"{BASE}/Patient"
    responses.get(url, body=requests.exceptions.ReadTimeout("read timeout"))
    client = make_client(sleeps, max_retries=2)
    with pytest.raises(SourceError) as err:
        client.get_json("Patient", params={"identifier": "MRN|12345678", "_count": "10"})
    message = str(err.value)
    assert len(responses.calls) == 3 and len(sleeps) == 2
    assert message.startswith(f"GET {BASE}/Patient?identifier=***&_count=10: read timed out")
    assert "12345678" not in message and "3 attempts" in message


@responses.activate
def test_retries_spent_on_503_name_method_url_status_and_diagnostics(sleeps):
    responses.post(BASE, status=503, json=outcome("database is restarting"))
    client = make_client(sleeps, max_retries=1)
    with pytest.raises(SourceError) as err:
        client.post_json(BASE, {"resourceType": "Bundle", "type": "batch"})
    assert not isinstance(err.value, FhirRequestError)
    assert str(err.value) == f"POST {BASE}: HTTP 503 (gave up after 2 attempts): database is restarting"
    assert err.value.exit_code == 2


@responses.activate
def test_client_errors_are_not_retried_and_carry_status_and_diagnostics(sleeps):
    responses.get(f"{BASE}/Observation", status=400,
                  json={"resourceType": "OperationOutcome",
                        "issue": [{"severity": "error", "code": "not-supported",
                                   "details": {"text": "Unknown search parameter 'date'"}}]})
    client = make_client(sleeps)
    with pytest.raises(FhirRequestError) as err:
        client.get_json("Observation", params={"date": "ge2024-01-01"})
    assert len(responses.calls) == 1 and sleeps == []
    assert err.value.status == 400
    assert err.value.diagnostics == "Unknown search parameter 'date'"
    assert "HTTP 400" in str(err.value) and "Unknown search parameter 'date'" in str(err.value)


@responses.activate
def test_malformed_json_names_the_url(sleeps):
    responses.get(f"{BASE}/Patient/1", body="<html>proxy error</html>", content_type="text/html")
    with pytest.raises(SourceError) as err:
        make_client(sleeps).get_json("Patient/1")
    assert f"GET {BASE}/Patient/1: response is not valid JSON" in str(err.value)
    assert "text/html" in str(err.value)


class CountingAuth:
    """A stand-in Auth: hands out numbered tokens, renews when told to."""

    name = "fake"

    def __init__(self, renewable: bool = True):
        self.issued = 0
        self.current: str | None = None
        self.renewable = renewable
        self.invalidations = 0

    def authorization(self, http):
        if self.current is None:
            self.issued += 1
            self.current = f"Bearer token-{self.issued}"
        return self.current

    def invalidate(self) -> bool:
        self.invalidations += 1
        if self.renewable:
            self.current = None
        return self.renewable


@responses.activate
def test_401_renews_the_credential_once_and_retries(sleeps):
    url = f"{BASE}/Patient"
    responses.get(url, status=401, json=outcome("Access token expired"))
    responses.get(url, json={"resourceType": "Bundle"})
    auth = CountingAuth()
    make_client(sleeps, auth=auth).get_json("Patient")
    assert [c.request.headers["Authorization"] for c in responses.calls] == ["Bearer token-1", "Bearer token-2"]
    assert auth.invalidations == 1 and sleeps == []


@responses.activate
def test_a_second_401_is_an_error_without_the_token(sleeps):
    responses.get(f"{BASE}/Patient", status=401, json=outcome("Access token expired"))
    auth = CountingAuth()
    with pytest.raises(FhirRequestError) as err:
        make_client(sleeps, auth=auth).get_json("Patient")
    assert err.value.status == 401 and len(responses.calls) == 2
    assert "token-" not in str(err.value) and "Access token expired" in str(err.value)


@responses.activate
def test_static_credentials_are_not_retried_on_401(sleeps):
    responses.get(f"{BASE}/Patient", status=401)
    with pytest.raises(FhirRequestError):
        make_client(sleeps, auth=CountingAuth(renewable=False)).get_json("Patient")
    assert len(responses.calls) == 1


@responses.activate
def test_unauthenticated_requests_send_no_credentials(sleeps):
    responses.get(f"{BASE}/metadata", json={"resourceType": "CapabilityStatement"})
    auth = CountingAuth()
    make_client(sleeps, auth=auth).get_json("metadata", authenticate=False)
    assert "Authorization" not in responses.calls[0].request.headers and auth.issued == 0


@responses.activate
def test_stats_count_requests_and_bytes(sleeps):
    responses.get(f"{BASE}/a", body=b"x" * 100, content_type="application/json")
    responses.get(f"{BASE}/b", body=b'{"k": 1}', content_type="application/json")
    client = make_client(sleeps)
    client.request("GET", "a")
    before = client.stats.snapshot()
    client.request("GET", "b")
    assert (client.stats.requests, client.stats.bytes) == (2, 108)
    assert client.stats.requests - before.requests == 1


@responses.activate
def test_request_works_for_any_url_with_streaming_and_range(sleeps):
    file_url = "http://127.0.0.1:8090/bulk-files/job/Patient.ndjson"
    responses.get(file_url, body=b'{"resourceType":"Patient"}\n', status=206,
                  headers={"Content-Length": "27", "Content-Range": "bytes 0-26/100"})
    response = make_client(sleeps).request("GET", file_url, stream=True, headers={"Range": "bytes=0-"},
                                            authenticate=False)
    assert response.status_code == 206
    assert responses.calls[0].request.headers["Range"] == "bytes=0-"
    assert b"".join(response.iter_content(8)) == b'{"resourceType":"Patient"}\n'


def test_data_factory_builds_a_fresh_body_per_attempt(sleeps):
    bodies = iter(["first", "second"])
    with responses.RequestsMock() as mock:
        mock.post(f"{BASE}/token", status=503)
        mock.post(f"{BASE}/token", json={"ok": True})
        make_client(sleeps).request("POST", "token", data_factory=lambda: next(bodies))
        assert [c.request.body for c in mock.calls] == ["first", "second"]


def test_redact_url_keeps_only_harmless_values():
    url = "https://user:secret@fhir.example.org:8443/r4/Patient?identifier=MRN%7C999&name=Smith&_count=5#x"
    assert redact_url(url) == "https://fhir.example.org:8443/r4/Patient?identifier=***&name=***&_count=5"
    assert redact_url(f"{BASE}/Observation?patient=p1&code=http://loinc.org|718-7&access_token=abc") == (
        f"{BASE}/Observation?patient=p1&code=http://loinc.org|718-7&access_token=***")


@responses.activate
def test_tls_failures_are_not_retried_and_say_what_to_do(sleeps):
    responses.get(f"{BASE}/metadata", body=requests.exceptions.SSLError("certificate verify failed"))
    with pytest.raises(SourceError) as err:
        make_client(sleeps).get_json("metadata")
    assert len(responses.calls) == 1 and sleeps == []
    assert "TLS verification failed" in str(err.value) and "ca_bundle" in str(err.value)
