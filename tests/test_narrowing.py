"""narrow_observations = "auto": the client times narrowed and plain Observation searches on the
first patients and keeps the faster; true/false pin it; `servers check` reports the choice."""

from __future__ import annotations

import json
import time

import pytest
import responses

from connector.config import ConfigError, load_config
from connector.fhir.narrowing import SAMPLES, NarrowingChoice
from test_fhir_client import BASE, NEEDS, BatchServer, client, mock_metadata, obs, res, searchset


class SlowWhenNarrowed(BatchServer):
    """A server whose narrowed (or plain) Observation searches take `delay` seconds more."""

    def __init__(self, slow_narrowed: bool, delay: float = 0.03):
        super().__init__({"Patient": searchset([res("Patient", "p1")]), "Observation": searchset([obs("o1")])})
        self.slow_narrowed = slow_narrowed
        self.delay = delay

    def __call__(self, request):
        narrowed = any("code=" in e["request"]["url"] for e in json.loads(request.body)["entry"])
        if narrowed == self.slow_narrowed:
            time.sleep(self.delay)
        return super().__call__(request)


def narrowed_flags(server: BatchServer) -> list[bool]:
    return [any(u.startswith("Observation?") and "code=" in u for u in urls) for urls in server.requests]


@pytest.mark.parametrize("slow_narrowed", [True, False], ids=["narrowed-slow", "plain-slow"])
@responses.activate
def test_auto_keeps_the_faster_way_after_timing_both(slow_narrowed):
    mock_metadata()
    server = SlowWhenNarrowed(slow_narrowed)
    responses.add_callback(responses.POST, BASE, callback=server)
    c = client()
    for _ in range(2 * SAMPLES + 4):
        c.patient_resources("p1", NEEDS)
    flags = narrowed_flags(server)
    assert flags[: 2 * SAMPLES].count(True) == flags[: 2 * SAMPLES].count(False) == SAMPLES  # both measured
    assert flags[2 * SAMPLES:] == [not slow_narrowed] * 4  # then only the faster way
    assert c.narrowing.chosen is (not slow_narrowed)
    assert ("plain" if slow_narrowed else "narrowed") in c.narrowing.describe()


@pytest.mark.parametrize("setting", [True, False])
@responses.activate
def test_a_pinned_setting_is_never_second_guessed(setting):
    mock_metadata()
    server = SlowWhenNarrowed(slow_narrowed=setting)
    responses.add_callback(responses.POST, BASE, callback=server)
    c = client(narrow_observations=setting)
    for _ in range(2 * SAMPLES + 1):
        c.patient_resources("p1", NEEDS)
    assert narrowed_flags(server) == [setting] * (2 * SAMPLES + 1)
    assert "pinned" in c.narrowing.describe()


def test_choice_by_median_not_by_one_outlier():
    choice = NarrowingChoice("auto", samples=3)
    for seconds in (0.010, 0.011, 0.900):  # one narrowed fetch hit a hiccup
        choice.record(True, seconds)
    assert choice.chosen is None  # plain not measured yet
    for seconds in (0.020, 0.021, 0.019):
        choice.record(False, seconds)
    assert choice.chosen is True


@pytest.mark.parametrize("value, expected", [("true", True), ("false", False), ('"auto"', "auto"), (None, "auto")])
def test_config_accepts_true_false_auto(tmp_path, value, expected):
    line = f"narrow_observations = {value}\n" if value else ""
    path = tmp_path / "c.toml"
    path.write_text(f'[servers.h]\nurl = "http://127.0.0.1:1/fhir"\n{line}')
    assert load_config(path).servers["h"].narrow_observations == expected


def test_config_refuses_other_values(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[servers.h]\nurl = "http://127.0.0.1:1/fhir"\nnarrow_observations = "sometimes"\n')
    with pytest.raises(ConfigError, match="narrow_observations: must be true, false or \"auto\""):
        load_config(path)


@pytest.mark.server
def test_servers_check_measures_and_reports_the_choice(fhir_server, tmp_path):
    from test_fhir_integration import run_cli, synthea_resources

    fhir_server.load(synthea_resources())  # sekmet: narrowed searches are its slow ones (bench/README.md)
    result = run_cli("servers", "check", fhir_server.base_url, "--trial", "NCT05773274", "--format", "json",
                     cwd=tmp_path)
    report = json.loads(result.stdout)
    assert report["observation_searches"].startswith(("plain (auto: median", "narrowed (auto: median"))
    assert f"over {SAMPLES} patients each" in report["observation_searches"]
    text = run_cli("servers", "check", fhir_server.base_url, cwd=tmp_path).stdout
    assert "Observation searches: auto: not measured yet" in text
