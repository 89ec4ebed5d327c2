"""`trial-connector report`: the feasibility funnel, work list, changes and trend from the store,
checked against a recomputation from the stored results and hand-checked patients; the HTML
page opened in a real headless Chromium."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from connector.cli import cli
from connector.errors import EXIT_PARTIAL
from connector.mapping import load_mapping

ROOT = Path(__file__).resolve().parents[1]
AS_OF = "2026-11-16"
TRIAL = "NCT05773274"
PHI = ("Okafor", "Adaeze", "1968-03-14", "MRN-100201", "Haraldsen", "MRN-100219")


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), standalone_mode=False, catch_exceptions=True)
    code = result.return_value if isinstance(result.return_value, int) else 0
    if result.exception is not None:
        return getattr(result.exception, "exit_code", 1), result.stdout, result.stderr + str(result.exception)
    return code, result.stdout, result.stderr


def lab(rid: str, loinc: str, value: float, unit: str) -> dict:
    return {"resourceType": "Observation", "id": rid, "status": "final", "subject": {"reference": "Patient/net02"},
            "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
            "effectiveDateTime": "2026-11-10T08:00:00Z",
            "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """Two runs of the whole portfolio: the example cohort, then net02's missing blood counts arrive."""
    root = tmp_path_factory.mktemp("report")
    data = root / "data"
    data.mkdir()
    for path in [*(ROOT / "examples" / "patients").glob("*.json"), *(ROOT / "examples" / "portfolio").glob("*.json")]:
        shutil.copy(path, data)
    db = str(root / "store.db")
    code, out, err = invoke("run", "--trial", "all", "--source", str(data), "--as-of", AS_OF, "--db", db)
    assert code == EXIT_PARTIAL, err  # net11's malformed Observation is a resource error, on purpose
    (data / "net02-new-labs.json").write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": lab("net02-anc", "751-8", 2.9, "10*9/L")},
        {"resource": lab("net02-plt", "777-3", 190, "10*9/L")}]}), encoding="utf-8")
    code, out, err = invoke("run", "--source", str(data), "--since", "auto", "--as-of", AS_OF, "--db", db)
    assert code == 0, err
    assert "incremental" in out
    return db


def report_json(db: str, trial: str = TRIAL) -> dict:
    code, out, err = invoke("report", "--trial", trial, "--format", "json", "--db", db)
    assert code == 0, err
    return json.loads(out)


def stored_results(db: str, trial: str) -> list[dict]:
    code, out, err = invoke("results", "--trial", trial, "--format", "json", "--db", db)
    assert code == 0, err
    return json.loads(out)["patients"]


@pytest.mark.parametrize("trial", ["NCT05773274", "NCT04267848", "NCT05147467"])
def test_funnel_equals_a_recomputation_from_stored_results(store, trial):
    report = report_json(store, trial)
    patients = stored_results(store, trial)
    ids = [c.id for c in load_mapping(ROOT / "mappings" / f"{trial}.yaml").criteria]
    assert [s["criterion"] for s in report["funnel"]] == ids
    remaining = {p["patient"]: {c["id"]: (c["outcome"], c["reason"]) for c in p["criteria"]} for p in patients}
    assert report["screened"] == len(patients) == 21
    for step in report["funnel"]:
        here = {pid: outcomes[step["criterion"]] for pid, outcomes in remaining.items()}
        removed = {pid for pid, (outcome, _) in here.items() if outcome == "not_met"}
        assert step["not_met"] == len(removed), step
        assert step["unknown"] == sum(1 for o, r in here.values() if o == "unknown" and r != "manual"), step
        assert step["review"] == sum(1 for o, r in here.values() if o == "unknown" and r == "manual"), step
        remaining = {pid: o for pid, o in remaining.items() if pid not in removed}
        assert step["remaining"] == len(remaining), step
    statuses = {s: sum(1 for p in patients if p["status"] == s) for s in ("candidate", "possible", "excluded")}
    assert report["statuses"] == statuses
    # nobody remains who is excluded, and every candidate and possible remains
    assert report["funnel"][-1]["remaining"] == statuses["candidate"] + statuses["possible"]


def test_worklist_items_on_hand_checked_patients(store):
    report = report_json(store)
    work = {w["patient"]: {i["criterion"]: i for i in w["items"]} for w in report["worklist"]}
    # net02 got its blood counts in the second run: a candidate now, off the work list
    assert "Patient/net02" not in work
    assert set(work) == {"Patient/net03", "Patient/net11", "Patient/net18"}
    net03 = work["Patient/net03"]
    assert set(net03) == {"hemoglobin", "neutrophils", "platelets"}
    hb = net03["hemoglobin"]
    assert hb["reason"] == "stale" and hb["window_days"] == 28 and hb["not_before"] == "2026-10-19"
    assert hb["latest"] == {"reference": "Observation/net03-hb", "value": 12.4, "unit": "g/dL", "date": "2026-10-02"}
    assert "http://loinc.org|718-7" in hb["codes"]
    assert work["Patient/net11"]["hemoglobin"]["reason"] == "no-data"
    assert work["Patient/net11"]["hemoglobin"]["latest"] is None
    bilirubin = work["Patient/net18"]["bilirubin"]
    assert bilirubin["reason"] == "no-reference-range" and bilirubin["latest"]["reference"] == "Observation/net18-bili"
    counts = {c["criterion"]: c for c in report["worklist_counts"]}
    assert counts["hemoglobin"] == {"criterion": "hemoglobin", "patients": 2, "only_missing": 1}
    assert counts["bilirubin"] == {"criterion": "bilirubin", "patients": 1, "only_missing": 1}
    assert counts["neutrophils"]["only_missing"] == 0
    # the same items as CSV, one row each
    code, out, _ = invoke("report", "--trial", TRIAL, "--format", "csv", "--db", store)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert sorted((r["patient"], r["criterion"]) for r in rows) == sorted(
        (p, c) for p, items in work.items() for c in items)
    assert next(r for r in rows if r["patient"] == "Patient/net03" and r["criterion"] == "platelets")[
        "latest_date"] == "2026-10-02"
    lung = {w["patient"]: w for w in report_json(store, "NCT04267848")["worklist"]}
    assert [i["criterion"] for i in lung["Patient/lung19"]["items"]] == ["ast"]


def test_changes_since_last_run_and_trend(store):
    report = report_json(store)
    assert report["new_since_last_run"] == [{"patient": "Patient/net02", "status": "candidate",
                                             "previous": "possible"}]
    first, second = report["trend"]
    assert first["screened"] == 21 and second["screened"] == 1 and second["candidate"] == 1
    assert report["last_run"] == second["run"]
    code, table, _ = invoke("report", "--trial", TRIAL, "--db", store)
    assert "Patient/net02: possible -> candidate" in table
    assert re.search(r"^gepnet_diagnosis\s+17\s+4\s+0\s+0$", table, re.M)


class _Dom(HTMLParser):
    """The funnel table's rows (data-criterion -> remaining/not met/unknown cells) and status counts."""

    def __init__(self) -> None:
        super().__init__()
        self.funnel: dict[str, list[str]] = {}
        self.counts: dict[str, str] = {}
        self._row: str | None = None
        self._cell: str | None = None
        self._in_funnel = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self._in_funnel = a.get("id") == "funnel"
        if tag == "tr" and self._in_funnel and a.get("data-criterion"):
            self._row = a["data-criterion"]
            self.funnel[self._row] = []
        if tag == "td":
            self._cell = a.get("data-count") or ("row" if self._row else None)
            if self._row:
                self.funnel[self._row].append("")

    def handle_data(self, data: str) -> None:
        if self._cell == "row" and self._row:
            self.funnel[self._row][-1] += data.strip()
        elif self._cell:
            self.counts[self._cell] = self.counts.get(self._cell, "") + data.strip()

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._cell = None
        if tag == "tr":
            self._row = None
        if tag == "table":
            self._in_funnel = False


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(chromium() is None, reason="Chromium is not installed (apt-get install -y chromium; .ci/run does)")
def test_html_report_in_headless_chromium(store, tmp_path):
    page = tmp_path / "report.html"
    code, _, err = invoke("report", "--trial", TRIAL, "--format", "html", "--out", str(page), "--db", store)
    assert code == 0, err
    html = page.read_text(encoding="utf-8")
    assert not any(s in html for s in PHI), "no names, birth dates or MRNs: the store does not hold them"
    assert "<script" not in html and not re.search(r'(?:src|href)="(?!#|data:)', html), "nothing to fetch"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'p'}",
             "--enable-logging=stderr", "--v=0", "--window-size=1280,1600"]
    env = {**os.environ, "HOME": str(tmp_path)}
    shot = tmp_path / "report.png"
    dom = subprocess.run([chromium(), *flags, f"--screenshot={shot}", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120, env=env)  # one launch does both
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Refused to" in line]
    assert console == [], console  # no console errors, no blocked loads (the CSP forbids any)
    parsed = _Dom()
    parsed.feed(dom.stdout)
    report = report_json(store)
    assert parsed.funnel["screened"][1] == str(report["screened"])
    for step in report["funnel"]:
        cells = parsed.funnel[step["criterion"]]
        assert cells[1:5] == [str(step["remaining"]), str(step["not_met"]), str(step["unknown"]),
                              str(step["review"])], step
    assert parsed.counts == {"screened": "21", **{k: str(v) for k, v in report["statuses"].items()}}
    assert "<svg" in dom.stdout  # the chart was inlined and parsed
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one


def test_html_escapes_what_the_store_holds():
    """Values come from hospital data: markup in them is shown as text, never run."""
    from datetime import date

    from connector.mapping import load_mapping
    from connector.portfolio.funnel import funnel
    from connector.portfolio.html import render_html
    from connector.portfolio.feasibility import CriterionInfo, Feasibility
    from connector.portfolio.worklist import worklist
    from connector.results import CriterionResult, Evidence, PatientResult

    mapping = load_mapping(ROOT / "mappings" / "NCT05147467.yaml")
    evil = "<script>alert(1)</script>"
    patient = PatientResult("Patient/p1", "possible", tuple(
        CriterionResult(c.id, "unknown", "stale" if c.id == "ecog" else "manual",
                        (Evidence("Observation/x", evil, "<img src=x onerror=alert(2)>", "2026-01-01"),) if c.id == "ecog" else ())
        for c in mapping.criteria))
    report = Feasibility(mapping.trial, evil, "2026-11-16",
                         [CriterionInfo(c.id, c.type, c.texts[0]) for c in mapping.criteria], [patient],
                         funnel([c.id for c in mapping.criteria], [patient]),
                         worklist(mapping, [patient], date(2026, 11, 16)))
    html = render_html(report)
    assert evil not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
