"""The CT.gov API v2 client against recorded real responses (served by `responses`)."""

from __future__ import annotations

import random
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses

from connector.errors import SourceError
from connector.registry.client import CtGovClient, RegistryRequestError, SearchQuery, StudyNotFound
from connector.registry.ids import InvalidNctId, normalise_all, normalise_nct_id
from registry_support import API, FakeClock, load, study


def make_client(clock: FakeClock | None = None, **kwargs) -> CtGovClient:
    clock = clock or FakeClock()
    return CtGovClient(API, clock=clock, sleep=clock.sleep, rng=random.Random(1), **kwargs)


def query_of(call) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


@pytest.mark.parametrize("raw, expected", [
    ("NCT05773274", "NCT05773274"), ("nct5773274", "NCT05773274"), ("NcT0005773274", "NCT05773274"),
    (" NCT1 ", "NCT00000001"), ("NCT99999999", "NCT99999999"),
])
def test_nct_ids_normalise(raw, expected):
    assert normalise_nct_id(raw) == expected


@pytest.mark.parametrize("raw", ["NCT0", "NCT123456789", "NTC05773274", "05773274", "NCT-05773274", ""])
def test_bad_nct_ids_are_named(raw):
    with pytest.raises(InvalidNctId, match="not a ClinicalTrials.gov id"):
        normalise_nct_id(raw)


def test_all_bad_ids_named_at_once():
    with pytest.raises(InvalidNctId) as caught:
        normalise_all(["NCT05773274", "bogus", "NCT123456789", "nct5773274"])
    assert "'bogus'" in str(caught.value) and "'NCT123456789'" in str(caught.value)
    assert normalise_all(["nct5773274", "NCT05773274", "NCT1"]) == ["NCT05773274", "NCT00000001"]


@responses.activate
def test_paging_follows_tokens_to_the_end_through_an_empty_page():
    first = load("pages/biomcp__search_phelan_limit5_20260811.json")
    second = load("pages/biomcp__search_phelan_next_20260811.json")
    assert first["nextPageToken"] and second["nextPageToken"]
    url = f"{API}/studies"
    responses.get(url, json=first, match=[responses.matchers.query_param_matcher(
        {"query.term": "phelan", "pageSize": "5", "countTotal": "true"})])
    responses.get(url, json=second, match=[responses.matchers.query_param_matcher(
        {"query.term": "phelan", "pageSize": "5", "pageToken": first["nextPageToken"]})])
    responses.get(url, json={"studies": []}, match=[responses.matchers.query_param_matcher(
        {"query.term": "phelan", "pageSize": "5", "pageToken": second["nextPageToken"]})])
    client = make_client()
    pages = list(client.pages(SearchQuery(term="phelan"), page_size=5))
    assert [len(p.studies) for p in pages] == [5, 5, 0]
    assert pages[0].total_count == first["totalCount"]
    ids = [s["protocolSection"]["identificationModule"]["nctId"] for p in pages for s in p.studies]
    expected = [s["protocolSection"]["identificationModule"]["nctId"] for s in first["studies"] + second["studies"]]
    assert ids == expected
    assert client.stats.requests == 3


@responses.activate
def test_short_page_with_token_does_not_stop_paging():
    short = load("pages/biomcp__search_keytruda_limit3_20260811.json")  # 3 studies, has nextPageToken
    last = load("pages/biomcp__search_nsclc_egfr_l858r_20260811.json")  # no token: the end
    responses.get(f"{API}/studies", json=short)
    responses.get(f"{API}/studies", json=last)
    studies = list(make_client().studies(SearchQuery(term="x"), page_size=100))
    assert len(studies) == len(short["studies"]) + len(last["studies"])
    assert query_of(responses.calls[1])["pageToken"] == [short["nextPageToken"]]


@responses.activate
def test_search_parameters_use_the_api_names():
    responses.get(f"{API}/studies", json={"studies": []})
    query = SearchQuery(ids=["NCT05773274", "NCT00184067"], cond="lung cancer", term="egfr",
                        statuses=["recruiting", "NOT_YET_RECRUITING"],
                        advanced="AREA[LastUpdatePostDate]RANGE[2025-01-01,MAX]")
    list(make_client().pages(query, page_size=5000))
    sent = query_of(responses.calls[0])
    assert sent == {
        "filter.ids": ["NCT05773274|NCT00184067"], "query.cond": ["lung cancer"], "query.term": ["egfr"],
        "filter.overallStatus": ["RECRUITING|NOT_YET_RECRUITING"],
        "filter.advanced": ["AREA[LastUpdatePostDate]RANGE[2025-01-01,MAX]"],
        "pageSize": ["1000"], "countTotal": ["true"],
    }


@responses.activate
def test_repeated_page_token_is_an_error_not_a_loop():
    page = {"studies": [], "nextPageToken": "same"}
    responses.get(f"{API}/studies", json=page)
    with pytest.raises(SourceError, match="twice"):
        list(make_client().pages(SearchQuery(term="x")))


@responses.activate
def test_429_then_success_honours_retry_after():
    record = study("NCT05773274")
    url = f"{API}/studies/NCT05773274"
    responses.get(url, status=429, body="Too Many Requests", headers={"Retry-After": "7"})
    responses.get(url, json=record)
    clock = FakeClock()
    fetched = make_client(clock).get_study("nct5773274")
    assert fetched.study == record and fetched.alias_of is None
    assert 7 in clock.sleeps
    assert len(responses.calls) == 2


@responses.activate
def test_retry_after_http_date_and_cap():
    url = f"{API}/studies/NCT05773274"
    responses.get(url, status=503, headers={"Retry-After": "Wed, 21 Oct 2099 07:28:00 GMT"})
    responses.get(url, json=study("NCT05773274"))
    clock = FakeClock()
    make_client(clock, retry_after_cap=90).get_study("NCT05773274")
    assert clock.sleeps == [90]


@responses.activate
def test_5xx_and_connection_errors_retry_then_give_up_with_source_error():
    url = f"{API}/studies/NCT05773274"
    responses.get(url, body=requests.ConnectionError("Connection refused"))
    responses.get(url, status=502)
    responses.get(url, status=500)
    clock = FakeClock()
    with pytest.raises(SourceError, match="HTTP 500 .* 3 times"):
        make_client(clock, max_retries=2, requests_per_minute=1e9).get_study("NCT05773274")
    assert len(responses.calls) == 3
    backoffs = [s for s in clock.sleeps if s > 0.001]
    assert len(backoffs) == 2 and 1 <= backoffs[0] <= 2 <= backoffs[1] <= 4  # exponential, with jitter


@responses.activate
def test_404_plain_text_becomes_not_found_naming_the_id():
    responses.get(f"{API}/studies/NCT00000001", status=404, body="Study not found: NCT00000001",
                  content_type="text/plain")
    with pytest.raises(StudyNotFound, match=r"^NCT00000001: not found"):
        make_client().get_study("NCT1")
    assert len(responses.calls) == 1  # 404 is an answer, not retried


@responses.activate
def test_400_plain_text_names_the_parameter():
    body = "filter.overallStatus: unknown value 'RECRUTING'"
    responses.get(f"{API}/studies", status=400, body=body, content_type="text/plain")
    with pytest.raises(RegistryRequestError) as caught:
        list(make_client().pages(SearchQuery(term="x", statuses=["RECRUTING"])))
    message = str(caught.value)
    assert "HTTP 400" in message and body in message and "filter.overallStatus='RECRUTING'" in message
    assert len(responses.calls) == 1


@responses.activate
def test_301_alias_is_followed_and_recorded():
    record = study("NCT05773274")
    responses.get(f"{API}/studies/NCT01234567", status=301,
                  headers={"Location": "/api/v2/studies/NCT05773274"})
    responses.get(f"{API}/studies/NCT05773274", json=record)
    fetched = make_client().get_study("NCT01234567")
    assert fetched.requested_id == "NCT01234567"
    assert fetched.alias_of == "NCT05773274"
    assert fetched.study == record


@responses.activate
def test_pacing_spaces_requests_by_the_budget():
    responses.get(f"{API}/studies/NCT05773274", json=study("NCT05773274"))
    clock = FakeClock()
    client = make_client(clock, requests_per_minute=30)
    for _ in range(3):
        client.get_study("NCT05773274")
    assert clock.sleeps == [pytest.approx(2.0), pytest.approx(2.0)]


@responses.activate
def test_non_json_answer_is_a_clear_error():
    responses.get(f"{API}/studies/NCT05773274", body="<html>maintenance</html>", content_type="text/html")
    with pytest.raises(SourceError, match="not JSON"):
        make_client().get_study("NCT05773274")
