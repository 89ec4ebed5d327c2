"""`trial-connector mappings list|show|check`, and the partial-mapping warning on every screen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cohort_support import clean_cohort
from registry_support import run_cli

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "mappings" / "NCT05773274.yaml"
EXAMPLES = ROOT / "examples" / "patients"
CHF_BULLET = "congestive heart failure"


@pytest.fixture(autouse=True)
def elsewhere(tmp_path, monkeypatch):
    """Run from a folder holding nothing of the repository's (as a deployed tool would)."""
    monkeypatch.chdir(tmp_path)


def partial_mapping(folder: Path) -> Path:
    """The seed mapping without its congestive-heart-failure exclusion."""
    document = yaml.safe_load(SEED.read_text(encoding="utf-8"))
    document["criteria"] = [c for c in document["criteria"] if c["id"] != "no_uncontrolled_chf"]
    folder.mkdir(exist_ok=True)
    path = folder / "NCT05773274.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return path


def test_list_shows_every_mapping_in_search_order_with_shadowing(tmp_path):
    mine = partial_mapping(tmp_path / "site")
    (tmp_path / "site" / "broken.yaml").write_text("trial: [\n", encoding="utf-8")
    result = run_cli(["mappings", "list", "--mappings", str(tmp_path / "site"), "--format", "json"])
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    others = [r for r in rows if r["source"] == "bundled" and r["file"] != str(SEED)]  # the portfolio's trials
    assert others and {r["state"] for r in others} == {"used"}
    rows = [r for r in rows if r not in others]
    assert [(r["file"], r["source"], r["state"][:8]) for r in rows] == [
        ("site/NCT05773274.yaml", "--mappings", "used"),
        ("site/broken.yaml", "--mappings", "unusable"),
        (str(SEED), "bundled", "shadowed")]
    assert rows[0]["sha256"] != rows[2]["sha256"] and mine.exists()
    table = run_cli(["mappings", "list"]).stdout
    assert "NCT05773274" in table and "bundled" in table and "(used)" in table


def test_show_names_file_source_hash_and_criteria(tmp_path):
    result = run_cli(["mappings", "show", "nct05773274"])
    assert result.exit_code == 0, result.stderr
    assert f"file: {SEED} (bundled)" in result.stdout and "sha256: " in result.stdout
    assert "hemoglobin" in result.stdout and "inclusion" in result.stdout
    raw = run_cli(["mappings", "show", str(SEED), "--raw"])
    assert raw.stdout == SEED.read_text(encoding="utf-8")
    missing = run_cli(["mappings", "show", "NCT09999999"])
    assert missing.exit_code == 1 and "error: no mapping for NCT09999999" in missing.stderr


def test_check_reports_valid_and_complete():
    result = run_cli(["mappings", "check", str(SEED)])
    assert result.exit_code == 0, result.stderr
    assert "valid mapping of NCT05773274" in result.stdout
    assert "28 of 28 registry bullets accounted for" in result.stdout
    assert result.stderr == ""


def test_check_lists_the_bullets_a_partial_mapping_leaves_out(tmp_path):
    path = partial_mapping(tmp_path / "site")
    result = run_cli(["mappings", "check", str(path)])
    assert result.exit_code == 0
    assert "27 of 28 registry bullets accounted for" in result.stdout
    assert "no criterion accounts for exclusion bullet:" in result.stderr and CHF_BULLET in result.stderr.lower()
    assert run_cli(["mappings", "check", "--strict", str(path)]).exit_code == 1


def test_check_names_what_is_wrong_in_an_invalid_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SEED.read_text(encoding="utf-8").replace("system: loinc", "system: lonic", 1), encoding="utf-8")
    result = run_cli(["mappings", "check", str(bad), str(SEED)])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: bad.yaml: criterion '")
    assert "lonic" in result.stderr
    assert "valid mapping of NCT05773274" in result.stdout  # the good file is still checked


def test_a_partial_mapping_warns_on_every_screen(tmp_path):
    site = partial_mapping(tmp_path / "site").parent
    cohort = str(clean_cohort(tmp_path / "cohort"))
    for args in (["screen", "--patient", "net01"], ["run", "--db", str(tmp_path / "s.db")]):
        result = run_cli([args[0], "--trial", "NCT05773274", "--source", cohort, "--as-of", "2026-11-16",
                          "--mappings", str(site), *args[1:]])
        assert result.exit_code == 0, result.stderr
        assert "warning: mapping site/NCT05773274.yaml is partial: 27 of 28 registry bullets" in result.stderr
    clean = run_cli(["screen", "--trial", "NCT05773274", "--source", cohort, "--as-of", "2026-11-16",
                     "--patient", "net01"])
    assert clean.exit_code == 0 and "partial" not in clean.stderr


def test_mapping_source_mistakes_are_one_line_errors(tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text(SEED.read_text(encoding="utf-8").replace("trial: NCT05773274", "trial: NCT01234567"))
    base = ["screen", "--trial", "NCT05773274", "--source", str(EXAMPLES), "--as-of", "2026-11-16"]
    cases = [
        (["--mapping", str(other)], "error: --mapping other.yaml maps NCT01234567, not NCT05773274\n"),
        (["--mapping", "nope.yaml"], "error: mapping file nope.yaml not found\n"),
        (["--mappings", "nowhere"], "error: mapping folder nowhere (--mappings) not found\n"),
    ]
    for extra, message in cases:
        result = run_cli([*base, *extra])
        assert (result.exit_code, result.stdout, result.stderr) == (1, "", message)
    run = run_cli(["run", "--trial", "NCT09999999", "--source", str(EXAMPLES), "--db", str(tmp_path / "s.db")])
    assert run.exit_code == 1 and run.stderr.startswith("error: no mapping for NCT09999999 in ")
    assert "(give --mapping FILE or --mappings DIR, or set [mappings] dir in the config)" in run.stderr
