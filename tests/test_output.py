"""What coordinators read: table width, colour, units, console encodings, --summary, JSON/CSV
fields, and summary counts that say what they count (with errors in the exit code)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from connector.cli import cli
from connector.mapping import load_mapping
from connector.report.console import Console, fit, terminal_width, wants_colour
from connector.report.display import human_unit, quantity
from connector.report.table import render_table
from connector.results import ScreenReport

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "patients"
TRIAL = "NCT05773274"
AS_OF = "2026-11-16"
SCREEN = ["screen", "--trial", TRIAL, "--source", str(EXAMPLES), "--as-of", AS_OF]
ANSI = re.compile(r"\x1b\[[0-9;]*m")
RESULT_SCHEMA = json.loads((ROOT / "schemas" / "result.schema.json").read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def no_store_in_cwd(monkeypatch, tmp_path):
    monkeypatch.setenv("TRIAL_CONNECTOR_DB", str(tmp_path / "absent.db"))
    monkeypatch.delenv("NO_COLOR", raising=False)


def invoke(*args: str, columns: int = 100, charset: str = "utf-8") -> tuple[int, str, str]:
    """The CLI in-process; `charset` is the encoding stdout declares (as a console's would)."""
    result = CliRunner(env={"COLUMNS": str(columns)}, charset=charset).invoke(cli, list(args), standalone_mode=False)
    code = result.return_value if isinstance(result.return_value, int) else 0
    if result.exception is not None:
        code = getattr(result.exception, "exit_code", 1)
    return code, result.stdout, result.stderr


def process(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "connector", *args], capture_output=True, timeout=120,
                          env={**os.environ, **env}, cwd=ROOT)


def blocks(out: str) -> dict[str, str]:
    """Each patient's block of the table, by patient reference."""
    found = {}
    for block in out.split("\n\n"):
        first = block.splitlines()[0] if block.strip() else ""
        if first.startswith("Patient/"):
            found[first.split()[0]] = block
    return found


# ---- table ------------------------------------------------------------------------------------

@pytest.mark.parametrize("columns", [60, 80, 132])
def test_table_fits_the_terminal_width(columns):
    code, out, _ = invoke(*SCREEN, columns=columns)
    assert code == 3  # net11's malformed Observation
    longest = max(len(line) for line in out.splitlines())
    assert longest <= columns, [line for line in out.splitlines() if len(line) > columns][:3]
    assert longest > columns - 15  # the width is used, not a fixed narrow layout
    assert "MedicationAdministration/net01-lu4" in out  # wrapped, not cut


def test_units_as_people_write_them_and_hints_under_unknowns():
    _, out, _ = invoke(*SCREEN, "--patient", "net03", "--patient", "net04")
    net03, net04 = blocks(out)["Patient/net03"], blocks(out)["Patient/net04"]
    assert "Patient/net03: 64 years (2026-11-16)" in net03 and " a (" not in net03
    assert "3.1 × 10⁹/L (2026-10-02)" in net03 and "212 × 10³/µL" in net03 and "10*9/L" not in out
    assert re.search(r"\? hemoglobin .*unknown .*stale", net03)
    hint = re.search(r"→ needs hemoglobin >= 80 g/L dated 2026-10-19 or later; latest 12\.4 g/dL on 2026-10-02", net03)
    assert hint, net03
    assert "→ needs hemoglobin >= 80 g/L dated 2026-10-19 or later; latest 7.9 g/dL on 2026-11-07" in net04
    assert "“Hemoglobin >= 80 g/L (>= 8.0 g/dL) (measured within 28 days prior to enrollment)”" in net04
    assert "→" not in "".join(line for line in net03.splitlines() if line.lstrip().startswith("✓"))


def test_manual_review_list_is_a_count_per_patient_and_listed_once_per_trial():
    mapping = load_mapping(ROOT / "mappings" / f"{TRIAL}.yaml")
    manual = [c for c in mapping.criteria if c.rule.kind == "manual"]
    _, out, _ = invoke(*SCREEN)
    patients = blocks(out)
    assert len(patients) == 18
    for block in patients.values():
        assert f"? to review (manual): {len(manual)} criteria, listed once below" in block
        assert "consent" not in block
    assert out.count(f"To review (manual) for every patient of {TRIAL}: {len(manual)} criteria") == 1
    for criterion in manual:
        assert out.count(f"? {criterion.id}: ") == 1
    assert "? consent: Patient consent must be appropriately obtained" in out
    assert re.search(r"\? bilirubin .*review .*manual", patients["Patient/net05"])  # a finding, not manual-only


def test_colour_only_on_a_tty(monkeypatch):
    _, out, _ = invoke(*SCREEN, "--patient", "net04")
    assert not ANSI.search(out)  # CliRunner's stdout is not a terminal

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert wants_colour(Tty()) and not wants_colour(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not wants_colour(Tty())
    monkeypatch.delenv("NO_COLOR")
    report = ScreenReport.from_json(json.loads(invoke(*SCREEN, "--patient", "net04", "--format", "json")[1]))
    mapping = load_mapping(ROOT / "mappings" / f"{TRIAL}.yaml")
    coloured = render_table(report, mapping, Console(80, colour=True))
    assert ANSI.search(coloured) and "\x1b[31m✗\x1b[0m hemoglobin" in coloured
    assert ANSI.sub("", coloured) == render_table(report, mapping, Console(80, colour=False))


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_colour_and_width_on_a_real_terminal():
    """On a 72-column terminal (no COLUMNS set) the table is coloured and fits those 72 columns."""
    import fcntl
    import struct
    import termios

    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 72, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS")} | {"TERM": "xterm"}
    try:
        proc = subprocess.run([sys.executable, "-m", "connector", *SCREEN, "--patient", "net04"],
                              stdout=follower, stderr=subprocess.PIPE, timeout=120, cwd=ROOT, env=env)
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert proc.returncode == 0, proc.stderr
    out = b"".join(chunks).decode("utf-8").replace("\r\n", "\n")
    assert ANSI.search(out)  # (not a terminal: no colour, test_colour_only_on_a_tty)
    plain = ANSI.sub("", out)
    assert max(len(line) for line in plain.splitlines()) <= 72 and "needs hemoglobin >= 80 g/L" in plain


def test_width_without_a_terminal(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    assert terminal_width(io.StringIO()) == 100  # a pipe or a file: a readable default
    monkeypatch.setenv("COLUMNS", "70")
    assert terminal_width(io.StringIO()) == 70


@pytest.mark.parametrize("encoding", ["ascii", "cp1252", "latin-1"])
def test_any_console_encoding_gets_a_readable_table(encoding):
    code, out, err = invoke(*SCREEN, "--patient", "net03", "--patient", "net04", columns=80, charset=encoding)
    assert code == 0, err
    out.encode(encoding)  # nothing the console cannot print
    assert max(len(line) for line in out.splitlines()) <= 80
    assert re.search("(x|×) 10\\^9/L", out) and "needs hemoglobin >= 80 g/L dated 2026-10-19 or later" in out
    assert re.search(r"^  \+ age ", out, re.M) and re.search(r"^  x hemoglobin ", out, re.M)
    assert "-> needs" in out


def test_ascii_console_end_to_end():
    """A real process whose stdout is ASCII (cron mail, PYTHONIOENCODING=ascii) prints the table."""
    proc = process(*SCREEN, "--patient", "net03", PYTHONIOENCODING="ascii", COLUMNS="80")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode("ascii")
    assert "3.1 x 10^9/L" in out and "212 x 10^3/uL" in out and max(len(x) for x in out.splitlines()) <= 80


def test_ascii_console_json_and_csv_stay_whole():
    code, out, err = invoke(*SCREEN, "--patient", "net03", "--format", "json", charset="ascii")
    assert code == 0, err
    report = json.loads(out)  # \u escapes: the same data
    neutrophils = next(c for c in report["patients"][0]["criteria"] if c["id"] == "neutrophils")
    assert "1 × 10⁹/L" in neutrophils["hint"]
    code, out, err = invoke(*SCREEN, "--patient", "net03", "--format", "csv-criteria", charset="ascii")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert any("x 10^9/L" in r["hint"] for r in rows)


def test_ascii_fallback_spells_what_it_cannot_encode():
    assert fit("✓ ≥ 3.1 × 10⁹/L µmol/L 10¹²/L é", "ascii") == "+ >= 3.1 x 10^9/L umol/L 10^12/L e"
    assert fit("10³/µL ≥", "cp1252") == "10³/µL >="  # only what cp1252 lacks is replaced
    assert fit("plain", "ascii") == "plain"


@pytest.mark.parametrize("ucum, shown", [
    ("a", "years"), ("10*9/L", "10⁹/L"), ("10*3/uL", "10³/µL"), ("umol/L", "µmol/L"), ("g/dL", "g/dL"),
    ("{cells}/uL", "cells/µL"), ("mL/min", "mL/min"), ("mm[Hg]", "mmHg"), ("Cel", "°C"), (None, ""),
    ("10*12/L", "10¹²/L"), ("ug/mL", "µg/mL"), ("mg/dL", "mg/dL"),
])
def test_human_units(ucum, shown):
    assert human_unit(ucum) == shown


def test_quantities_read_as_written():
    assert quantity(3.1, "10*9/L") == "3.1 × 10⁹/L" and quantity(80.0, "g/L") == "80 g/L"
    assert quantity(58, "a") == "58 years" and quantity("Not pregnant", None) == "Not pregnant"


# ---- --summary --------------------------------------------------------------------------------

def test_summary_is_one_line_per_patient_within_the_width():
    code, out, _ = invoke(*SCREEN, "--summary", columns=80)
    assert code == 3
    lines = [line for line in out.splitlines() if line.startswith("Patient/")]
    assert len(lines) == 18 and max(len(line) for line in out.splitlines()) <= 80
    by_patient = {line.split()[0]: line for line in lines}
    assert re.fullmatch(r"Patient/net04\s+EXCLUDED\s+not met: hemoglobin", by_patient["Patient/net04"])
    assert by_patient["Patient/net02"].endswith("unknown: neutrophils (no-data), platelets (no-data)")
    assert by_patient["Patient/net07"].endswith("review: no_brain_metastases, no_uncontrolled_chf")
    assert by_patient["Patient/net11"].endswith("unknown: hemoglobin (no-data); 1 error")
    assert by_patient["Patient/net01"].endswith("CANDIDATE  all computable criteria met")
    assert "18 patients screened: 6 candidates, 4 possible, 8 excluded" in out


def test_summary_cuts_a_long_line_and_says_how_much_is_left_out():
    _, out, _ = invoke(*SCREEN, "--patient", "net03", "--summary", columns=64)
    [line] = [line for line in out.splitlines() if line.startswith("Patient/")]
    assert len(line) <= 64 and re.search(r"\(\+[12] more\)$", line) and "hemoglobin (stale)" in line


def test_summary_is_a_table_layout():
    code, _, err = invoke(*SCREEN, "--summary", "--format", "json")
    assert code == 1


def test_results_summary_and_formats(tmp_path):
    db = str(tmp_path / "r.db")
    assert invoke("run", "--trial", TRIAL, "--source", str(EXAMPLES), "--as-of", AS_OF, "--db", db)[0] == 3
    code, out, _ = invoke("results", "--trial", TRIAL, "--summary", "--db", db)
    assert code == 0 and len([line for line in out.splitlines() if line.startswith("Patient/")]) == 18
    code, out, _ = invoke("results", "--trial", TRIAL, "--format", "csv", "--db", db)
    rows = {r["patient"]: r for r in csv.DictReader(io.StringIO(out))}
    assert rows["Patient/net03"]["hemoglobin"] == "unknown (stale)"
    assert "hemoglobin: needs hemoglobin >= 80 g/L dated 2026-10-19 or later" in rows["Patient/net03"]["to settle"]
    assert rows["Patient/net01"]["to settle"] == ""  # manual-only criteria are not repeated per patient


# ---- JSON and CSV fields ----------------------------------------------------------------------

def test_json_carries_text_threshold_window_and_hint():
    code, out, _ = invoke(*SCREEN, "--format", "json")
    report = json.loads(out)
    jsonschema.validate(report, RESULT_SCHEMA)
    by_patient = {p["patient"]: {c["id"]: c for c in p["criteria"]} for p in report["patients"]}
    hb = by_patient["Patient/net03"]["hemoglobin"]
    assert hb["text"].startswith("Hemoglobin >= 80 g/L")
    assert hb["threshold"] == {"comparator": ">=", "value": 80, "unit": "g/L", "relative_to": None}
    assert hb["window_days"] == 28
    assert hb["hint"] == "needs hemoglobin >= 80 g/L dated 2026-10-19 or later; latest 12.4 g/dL on 2026-10-02"
    assert hb["settle"] == {"action": "measure", "what": "hemoglobin", "dated_from": "2026-10-19",
                            "latest_reference": "Observation/net03-hb", "latest_value": 12.4,
                            "latest_unit": "g/dL", "latest_date": "2026-10-02"}
    met = by_patient["Patient/net01"]["hemoglobin"]
    assert met["hint"] is None and met["settle"] is None and met["window_days"] == 28
    bili = by_patient["Patient/net18"]["bilirubin"]
    assert bili["threshold"]["relative_to"] == "uln" and bili["settle"]["action"] == "fix-data"
    assert by_patient["Patient/net01"]["consent"]["settle"]["action"] == "review"
    # the stored form is unchanged: the extra fields are read back without complaint
    assert ScreenReport.from_json(report).patients[0].criteria[0].id == "age"


def test_csv_criteria_is_a_row_per_patient_and_criterion():
    code, out, _ = invoke(*SCREEN, "--format", "csv-criteria")
    rows = list(csv.DictReader(io.StringIO(out)))
    mapping = load_mapping(ROOT / "mappings" / f"{TRIAL}.yaml")
    assert len(rows) == 18 * len(mapping.criteria)
    row = next(r for r in rows if r["patient"] == "Patient/net04" and r["criterion"] == "hemoglobin")
    assert (row["outcome"], row["comparator"], row["threshold"], row["unit"], row["window_days"]) == \
        ("not_met", ">=", "80", "g/L", "28")
    assert row["text"].startswith("Hemoglobin >= 80 g/L") and row["action"] == "excluded"
    assert row["dated_from"] == "2026-10-19" and row["latest_date"] == "2026-11-07" and row["latest_value"] == "7.9"
    assert row["hint"].startswith("needs hemoglobin >= 80 g/L") and "Observation/net04-hb" in row["evidence"]
    met = next(r for r in rows if r["patient"] == "Patient/net01" and r["criterion"] == "hemoglobin")
    assert met["hint"] == "" and met["action"] == ""
    code, out, _ = invoke(*SCREEN, "--patient", "net02", "--format", "csv")
    [wide] = list(csv.DictReader(io.StringIO(out)))
    assert wide["as_of"] == AS_OF and wide["neutrophils"] == "unknown (no-data)"
    assert wide["to settle"].split(" | ") == [
        "neutrophils: needs neutrophils >= 1 × 10⁹/L dated 2026-10-19 or later; none on record",
        "platelets: needs platelets >= 80 × 10⁹/L dated 2026-10-19 or later; none on record"]


# ---- counts and errors ------------------------------------------------------------------------

def test_screen_counts_each_kind_of_error_and_exits_3(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("01-clear-candidate.json", "11-possible-malformed-resource.json",
                 "11-possible-malformed-observation.json"):
        shutil.copy(EXAMPLES / name, folder / name)
    (folder / "broken.json").write_text("{not json", encoding="utf-8")
    code, out, err = invoke("screen", "--trial", TRIAL, "--source", str(folder), "--as-of", AS_OF,
                            "--patient", "net01", "--patient", "net11", "--patient", "nobody")
    assert code == 3
    assert "2 patients screened: 1 candidate, 1 possible, 0 excluded" in out
    errors = " ".join(out[out.index("errors: "):].split())  # wrapped at the width: joined back
    assert errors.startswith("errors: 1 resource error in 1 screened patient")
    assert "1 patient not screened" in errors and "1 source problem" in errors
    code, out, _ = invoke("screen", "--trial", TRIAL, "--source", str(EXAMPLES), "--as-of", AS_OF,
                          "--patient", "net01")
    assert code == 0 and out.rstrip().endswith("1 patient screened: 1 candidate, 0 possible, 0 excluded\nno errors")


def test_run_counts_patients_per_trial_not_patient_x_trial(tmp_path, monkeypatch):
    """Two trials over 18 patients: 18 screened, and each trial's counts add up to 18."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mappings").mkdir()
    text = (ROOT / "mappings" / f"{TRIAL}.yaml").read_text(encoding="utf-8")
    (tmp_path / "mappings" / "NCT00000001.yaml").write_text(text.replace(f"trial: {TRIAL}", "trial: NCT00000001"),
                                                            encoding="utf-8")
    shutil.copy(ROOT / "mappings" / f"{TRIAL}.yaml", tmp_path / "mappings")
    code, out, _ = invoke("run", "--trial", TRIAL, "--trial", "NCT00000001", "--source", str(EXAMPLES),
                          "--mappings", "mappings", "--as-of", AS_OF, "--db", str(tmp_path / "two.db"))
    assert code == 3, out
    lines = out.splitlines()
    assert lines[0] == "run 1, full, as of 2026-11-16: screened 18 patients against 2 trials"
    for trial in (TRIAL, "NCT00000001"):
        assert any(line.startswith(f"  {trial}: 6 candidates, 4 possible, 8 excluded; 18 new or changed since the "
                                   "last run (mapping ") for line in lines)
    assert lines[-1] == "errors: 1 resource error in 1 screened patient (see its errors)"  # once, not per trial


def test_per_patient_as_of_for_stored_results(tmp_path):
    """`results` gives each stored result the window of the date it was screened on."""
    db = str(tmp_path / "r.db")
    invoke("run", "--trial", TRIAL, "--source", str(EXAMPLES), "--as-of", "2026-11-20", "--patient", "net03",
           "--db", db)
    code, out, _ = invoke("results", "--trial", TRIAL, "--format", "json", "--db", db)
    hb = next(c for c in json.loads(out)["patients"][0]["criteria"] if c["id"] == "hemoglobin")
    assert hb["settle"]["dated_from"] == (date(2026, 11, 20) - (date(2026, 11, 16) - date(2026, 10, 19))).isoformat()


# ---- the README's first command ---------------------------------------------------------------

def test_readme_first_command_states_the_date_it_pins():
    """The first command pins --as-of; the date is stated next to it, and it is the cohort's own."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("```sh\n", 1)[1].split("```", 1)[0]
    first = block.splitlines()[0]
    pinned = re.search(r"--as-of (\d{4}-\d{2}-\d{2})", first).group(1)
    after = readme.split("```", 2)[2].split("\n\n", 2)[1]  # the paragraph right after the commands
    assert f"dated relative to **{pinned}**" in after and "without `--as-of`" in after
    cohort = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    assert f"**Screening date: {pinned}.** All clinical dates are relative to it" in cohort
    args = first.split("&& ", 1)[1].split()[1:]
    code, out, _ = invoke(*args)
    assert code == 3 and "18 patients screened" in out  # the command works, and exits 3 as the README says


def test_run_counts_resource_errors_on_both_stores(store_url, tmp_path):
    """The resource-error count reads stored results (JSON text differs between SQLite and PostgreSQL)."""
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("01-clear-candidate.json", "04-excluded-low-hemoglobin.json", "11-possible-malformed-resource.json",
                 "11-possible-malformed-observation.json"):
        shutil.copy(EXAMPLES / name, folder / name)
    code, out, _ = invoke("run", "--trial", TRIAL, "--source", str(folder), "--as-of", AS_OF, "--db", store_url)
    assert code == 3
    assert f"  {TRIAL}: 1 candidate, 1 possible, 1 excluded; 3 new or changed since the last run" in out
    assert out.rstrip().endswith("errors: 1 resource error in 1 screened patient (see its errors)")
    (folder / "11-possible-malformed-observation.json").unlink()
    code, out, _ = invoke("run", "--trial", TRIAL, "--source", str(folder), "--as-of", AS_OF, "--db", store_url)
    assert code == 0 and out.rstrip().endswith("no errors")
