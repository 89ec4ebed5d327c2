"""Fault suite: `trial-connector screen` and the FHIR client against the real FHIR server
behind a fault-injecting proxy (tests/fault_proxy.py).

Each run either ends with exactly the results of a clean run, or reports exactly which
patients failed and why (exit 3) while every other patient's result is unchanged; for
scheduled runs (`run`), nothing already stored is lost and a rerun completes the store. Retry
waits stay short through the config (`retry_after_cap`, small Retry-After values).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sqlite3
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from connector.cli import main
from connector.config import ServerConfig
from connector.fhir.client import FhirClient
from connector.sources.fhir_rest import RestSource
from fault_proxy import Fault, FaultProxy, Seen
from fhir_server import FhirTestServer
from test_screen_cli import AS_OF, EXAMPLES, EXPECTED, run_cli

pytestmark = pytest.mark.server

# a mix of outcomes; net13 has 6 administrations, so its medication search spans pages
PATIENTS = ("net01", "net04", "net05", "net06", "net09", "net13")
PAGE_SIZE = 2  # small pages: every patient's searches follow Bundle.link[next]


@pytest.fixture(scope="module")
def cohort_server(fhir_server_factory) -> FhirTestServer:
    """A server of our own holding the example cohort (the session server has the same ids)."""
    server = fhir_server_factory()
    for path in sorted(EXAMPLES.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data["resourceType"] == "Bundle":  # the lone malformed Observation is refused by servers
            server.load(data)
    return server


@pytest.fixture
def proxy(cohort_server: FhirTestServer) -> Iterator[FaultProxy]:
    with FaultProxy(cohort_server.root_url) as running:
        yield running


@pytest.fixture(autouse=True)
def no_store_in_cwd(monkeypatch, tmp_path):
    monkeypatch.setenv("TRIAL_CONNECTOR_DB", str(tmp_path / "absent.db"))


def write_config(directory: Path, proxy: FaultProxy, **settings: object) -> Path:
    """A config naming the proxied server `flaky`, with short waits and timeouts."""
    values = {"page_size": PAGE_SIZE, "timeout": 10.0, "max_retries": 3, "retry_after_cap": 0.2, **settings}
    lines = ["[servers.flaky]", f'url = "{proxy.url("/fhir")}"']
    lines += [f"{name} = {json.dumps(value)}" for name, value in values.items()]
    path = directory / "connector.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def screen(monkeypatch, capsys, config: Path, patients=PATIENTS) -> tuple[int, dict | None, str]:
    args = [arg for pid in patients for arg in ("--patient", pid)]
    code, out, err = run_cli(monkeypatch, capsys, "--config", str(config), "screen", "--trial", "NCT05773274",
                             "--source", "flaky", "--as-of", AS_OF, "--format", "json", *args)
    return code, (json.loads(out) if out.strip() else None), err


def by_patient(report: dict) -> dict[str, dict]:
    return {p["patient"].split("/")[1]: p for p in report["patients"]}


@pytest.fixture(scope="module")
def clean(cohort_server, tmp_path_factory) -> dict[str, dict]:
    """Every patient's full result from a fault-free run through the proxy: the reference."""
    with pytest.MonkeyPatch.context() as monkeypatch, FaultProxy(cohort_server.root_url) as running:
        config = write_config(tmp_path_factory.mktemp("clean"), running)
        code, report, err = _screen_outside_capsys(monkeypatch, config)
        assert code == 0, err
        assert running.requests() and all(s.outcome == "passed" for s in running.requests())
        # paging went through the proxy: next links were rewritten to its address
        assert any("_offset=" in s.path for s in running.requests())
    return by_patient(report)


def _screen_outside_capsys(monkeypatch, config: Path) -> tuple[int, dict, str]:
    """screen() for a module fixture (capsys is function-scoped): capture by redirecting."""
    out, err = io.StringIO(), io.StringIO()
    monkeypatch.setenv("TRIAL_CONNECTOR_DB", str(config.parent / "absent.db"))
    monkeypatch.setattr(sys, "argv", ["trial-connector", "--config", str(config), "screen", "--trial", "NCT05773274",
                                      "--source", "flaky", "--as-of", AS_OF, "--format", "json",
                                      *[a for pid in PATIENTS for a in ("--patient", pid)]])
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exited:
        main()
    return exited.value.code, json.loads(out.getvalue()), err.getvalue()


def assert_same_as_clean(report: dict, clean: dict[str, dict], failed: set[str] = frozenset()) -> None:
    got = by_patient(report)
    assert set(got) == set(PATIENTS) - set(failed)
    for pid, result in got.items():
        assert result == clean[pid], pid


def error_lines(err: str) -> dict[str, str]:
    """`error: Patient/<id>: <why>` lines on stderr, by patient id."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^error: Patient/([\w.-]+): (.+)$", err, re.M)}


def on_patient(pid: str, *, page: bool = False) -> Callable[[Seen], bool]:
    """Matches the requests of one patient: the batch POST naming it, or (page=True) only its
    later pages (`_offset=` in a rewritten next link)."""
    def match(seen: Seen) -> bool:
        text = seen.path + seen.body.decode("utf-8", "replace")
        return f"patient={pid}" in text and (not page or "_offset=" in seen.path)
    return match


def test_the_clean_reference_run_has_the_designed_outcomes(clean):
    assert {pid: r["status"] for pid, r in clean.items()} == {pid: EXPECTED[pid]["status"] for pid in PATIENTS}


def test_429_with_retry_after_is_waited_out(proxy, clean, monkeypatch, capsys, tmp_path):
    proxy.script(Fault("status", status=429, headers={"Retry-After": "1"}, match=on_patient("net04"), times=2),
                 Fault("status", status=429, headers={"Retry-After": "0"}, match=on_patient("net13", page=True)))
    code, report, err = screen(monkeypatch, capsys, write_config(tmp_path, proxy))
    assert code == 0, err
    assert proxy.fired("status") == 3
    assert_same_as_clean(report, clean)


def test_503_bursts_are_retried(proxy, clean, monkeypatch, capsys, tmp_path):
    # every third request starts a burst of two 503s (no Retry-After: our own backoff)
    proxy.script(Fault("status", status=503, match="POST", skip=1, times=2),
                 Fault("status", status=503, match=on_patient("net06", page=True), times=2),
                 Fault("status", status=502, match="GET /fhir/metadata", times=1))
    code, report, err = screen(monkeypatch, capsys, write_config(tmp_path, proxy))
    assert code == 0, err
    assert proxy.fired("status") == 5
    assert_same_as_clean(report, clean)


def test_connection_resets_are_retried(proxy, clean, monkeypatch, capsys, tmp_path):
    proxy.script(Fault("reset", match=on_patient("net01")),
                 Fault("reset", match=on_patient("net13", page=True), times=2))
    code, report, err = screen(monkeypatch, capsys, write_config(tmp_path, proxy))
    assert code == 0, err
    assert proxy.fired("reset") == 3
    assert_same_as_clean(report, clean)


def test_a_stalled_response_times_out_and_is_retried(proxy, clean, monkeypatch, capsys, tmp_path):
    proxy.script(Fault("stall", match=on_patient("net05"), stall_seconds=10))
    code, report, err = screen(monkeypatch, capsys, write_config(tmp_path, proxy, timeout=1.0))
    assert code == 0, err
    assert proxy.fired("stall") == 1
    assert_same_as_clean(report, clean)


def test_a_body_cut_off_midway_is_retried(proxy, clean, monkeypatch, capsys, tmp_path):
    # Content-Length announces the whole Bundle, the connection drops after half of it
    proxy.script(Fault("truncate_cut", match=on_patient("net09")),
                 Fault("truncate_cut", match=on_patient("net13", page=True)))
    code, report, err = screen(monkeypatch, capsys, write_config(tmp_path, proxy))
    assert code == 0, err
    assert proxy.fired("truncate_cut") == 2
    assert_same_as_clean(report, clean)


def test_truncated_json_fails_only_that_patient_naming_why(proxy, clean, monkeypatch, capsys, tmp_path):
    # a complete HTTP answer whose JSON is cut: not a network error, so the patient fails, clearly
    proxy.script(Fault("truncate", match=on_patient("net05")))
    code, report, err = screen(monkeypatch, capsys, write_config(tmp_path, proxy))
    assert code == 3
    errors = error_lines(err)
    assert set(errors) == {"net05"}
    assert "response is not valid JSON" in errors["net05"] and "/fhir" in errors["net05"]
    assert_same_as_clean(report, clean, failed={"net05"})
    # the failure was the proxy's: screening that patient again gives its clean result
    code, again, _ = screen(monkeypatch, capsys, write_config(tmp_path, proxy), patients=("net05",))
    assert code == 0 and by_patient(again)["net05"] == clean["net05"]


def test_a_next_link_that_404s_midway_fails_only_that_patient(proxy, clean, monkeypatch, capsys, tmp_path):
    proxy.script(Fault("status", status=404, match=on_patient("net13", page=True), skip=1))
    code, report, err = screen(monkeypatch, capsys, write_config(tmp_path, proxy))
    assert code == 3
    assert proxy.fired("status") == 1
    errors = error_lines(err)
    assert set(errors) == {"net13"}
    # the failed page is named (long URLs are shortened in messages)
    assert "HTTP 404" in errors["net13"] and "patient=net13" in errors["net13"]
    assert_same_as_clean(report, clean, failed={"net13"})


def test_retries_spent_on_one_patient_fail_only_that_patient(proxy, clean, monkeypatch, capsys, tmp_path):
    proxy.script(Fault("status", status=503, match=on_patient("net06"), times=100))
    code, report, err = screen(monkeypatch, capsys, write_config(tmp_path, proxy, max_retries=1))
    assert code == 3
    errors = error_lines(err)
    assert set(errors) == {"net06"}
    assert "HTTP 503 (gave up after 2 attempts)" in errors["net06"]
    assert "fault proxy: HTTP 503" in errors["net06"]  # the server's diagnostics are passed on
    assert_same_as_clean(report, clean, failed={"net06"})


def test_a_server_whose_metadata_stays_down_fails_once_with_exit_2(proxy, monkeypatch, capsys, tmp_path):
    """Retries spent on /metadata mean the server is unusable: the screen stops once, exit 2,
    naming the server, instead of retrying /metadata for every patient; no search is sent."""
    proxy.script(Fault("status", status=503, match="/fhir/metadata", times=100))
    code, report, err = screen(monkeypatch, capsys, write_config(tmp_path, proxy, max_retries=1))
    assert code == 2 and report is None
    assert err.count("error: ") == 1
    assert err.strip().endswith("/fhir/metadata: HTTP 503 (gave up after 2 attempts): fault proxy: HTTP 503")
    assert [s.path for s in proxy.requests()] == ["/fhir/metadata"] * 2


def test_rest_source_lists_every_patient_through_faults(proxy, cohort_server):
    """FhirClient paging of the Patient list survives a reset, a 429 and a 503 on its pages."""
    config = ServerConfig(name="flaky", url=proxy.url("/fhir"), page_size=3, timeout=10.0, max_retries=3,
                          retry_after_cap=0.2)
    proxy.script(Fault("reset", match="GET /fhir/Patient", skip=1),
                 Fault("status", status=429, headers={"Retry-After": "0"}, match="_offset=6"),
                 Fault("status", status=503, match="_offset=12", times=2))
    source = RestSource(FhirClient(config))
    try:
        got = list(source.patient_ids())
    finally:
        source.close()
    assert proxy.fired() == 4
    assert sorted(got) == sorted(EXPECTED)
    assert source.stats.retries >= 4


# ---- scheduled runs: what is stored survives the faults ------------------------------------

def stored_results(db: Path) -> dict[str, tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT patient_id, status, result FROM patient_results").fetchall()
    return {pid: (status, result) for pid, status, result in rows}


def scheduled_run(monkeypatch, capsys, config: Path, db: Path) -> tuple[int, str]:
    code, _, err = run_cli(monkeypatch, capsys, "--config", str(config), "run", "--trial", "NCT05773274",
                           "--source", "flaky", "--as-of", AS_OF, "--db", str(db))
    return code, err


def test_scheduled_run_through_faults_then_rerun_equals_a_clean_run(proxy, monkeypatch, capsys, tmp_path):
    config = write_config(tmp_path, proxy)
    code, err = scheduled_run(monkeypatch, capsys, config, tmp_path / "clean.db")
    assert code == 0, err
    clean_store = stored_results(tmp_path / "clean.db")
    assert sorted(clean_store) == sorted(EXPECTED)

    faulty = tmp_path / "faulty.db"
    proxy.script(Fault("status", status=429, headers={"Retry-After": "0"}, match=on_patient("net01")),
                 Fault("reset", match=on_patient("net05")),
                 Fault("status", status=503, match=on_patient("net09", page=True), times=2),
                 Fault("truncate_cut", match="GET /fhir/Patient"),
                 Fault("status", status=404, match=on_patient("net13", page=True), skip=1))
    code, err = scheduled_run(monkeypatch, capsys, config, faulty)
    assert code == 3
    assert proxy.fired() == 6
    assert "Patient/net13" in err and "HTTP 404" in err
    stored = stored_results(faulty)
    assert {pid: stored[pid] for pid in stored if pid != "net13"} == \
        {pid: clean_store[pid] for pid in clean_store if pid != "net13"}
    # the fault is gone: the next run completes the store, identical to the clean one
    proxy.reset()
    code, err = scheduled_run(monkeypatch, capsys, config, faulty)
    assert code == 0, err
    assert stored_results(faulty) == clean_store


def test_a_failed_patient_keeps_its_stored_result(proxy, monkeypatch, capsys, tmp_path):
    config = write_config(tmp_path, proxy, max_retries=1)
    db = tmp_path / "store.db"
    code, err = scheduled_run(monkeypatch, capsys, config, db)
    assert code == 0, err
    before = stored_results(db)
    proxy.script(Fault("status", status=503, match=on_patient("net06"), times=100))
    code, err = scheduled_run(monkeypatch, capsys, config, db)
    assert code == 3
    assert "Patient/net06" in err and "HTTP 503" in err
    assert stored_results(db) == before  # nothing already stored was lost or overwritten
