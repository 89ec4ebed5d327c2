"""Config mistakes, read-only commands and global options, through the real entry point: every
error is one line naming what and where, with the documented exit code, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from cohort_support import clean_cohort
from registry_support import run_cli

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "patients"
SERVER = '[servers.hospital]\nurl = "https://fhir.hospital.example/r4"\n'


@pytest.fixture(autouse=True)
def elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("text, message", [
    (SERVER + 'timeout = "30"\n', "[servers.hospital] timeout: must be a valid number, got '30'"),
    (SERVER + 'max_retries = "5"\n', "[servers.hospital] max_retries: must be a valid integer, got '5'"),
    (SERVER + "concurrency = 0\n", "[servers.hospital] concurrency: must be greater than or equal to 1, got 0"),
    (SERVER + 'verify_tls = "no"\n', "[servers.hospital] verify_tls: must be a valid boolean, got 'no'"),
    (SERVER + "timout = 5\n", "[servers.hospital]: unknown key 'timout' (did you mean 'timeout'?)"),
    ('[servrs.hospital]\nurl = "https://x.example"\n', "top level: unknown table [servrs] (did you mean [servers]?)"),
    ('[servers.hospital]\nurl = "fhir.hospital.example/r4"\n',
     "[servers.hospital] url: needs a scheme and host, e.g. https://host/path (got 'fhir.hospital.example/r4')"),
    ("[servers.hospital]\ntimeout = 5\n", "[servers.hospital]: url is required"),
    (SERVER + '[servers.hospital.auth]\ntype = "smrt"\n',
     "[servers.hospital.auth] type: must be 'none', 'basic', 'bearer' or 'smart', got 'smrt'"),
    (SERVER + '[servers.hospital.auth]\nscpe = "system/*.rs"\n',
     "[servers.hospital.auth]: unknown key 'scpe' (did you mean 'scope'?)"),
    (SERVER + '[servers.hospital.auth]\ntype = "basic"\nusername = "svc"\npassword = "hunter2"\n',
     "[servers.hospital.auth]: 'password' is not read from the config file: secrets come from the environment "
     "(use password_env)"),
    ('[store]\nurl = "postgresql://tc:hunter2@db.example/tc"\n',
     "[store] url: contains a PostgreSQL password: secrets come from the environment"),
    ('[site]\ncountry = "XX"\n', "[site] country: 'XX' is not an ISO 3166-1 alpha-2 country code"),
    ('[site]\ncountry = 840\n', "[site] country: must be a valid string, got 840"),
    ('[registry]\napi_url = "ftp://ctgov.example"\n', "[registry] api_url: needs a scheme and host"),
    ("[site\n", "invalid TOML"),
])
def test_config_mistakes_are_one_line_errors_naming_file_table_and_key(tmp_path, text, message):
    config = tmp_path / "site.toml"
    config.write_text(text, encoding="utf-8")
    for args in (["--config", str(config), "servers", "list"], ["mappings", "list", "--config", str(config)]):
        result = run_cli(args)
        assert result.exit_code == 1, result.stdout
        assert result.stderr.startswith(f"error: {config}: ") and message in result.stderr
        assert result.stderr.count("\n") == 1 and "hunter2" not in result.stderr


def test_the_default_config_file_is_checked_before_any_command_runs(tmp_path):
    (tmp_path / "trial-connector.toml").write_text(SERVER + 'max_retries = "5"\n', encoding="utf-8")
    result = run_cli(["screen", "--trial", "NCT05773274", "--source", str(EXAMPLES), "--as-of", "2026-11-16"])
    assert result.exit_code == 1 and result.stdout == ""  # nothing screened before the config was checked
    assert "trial-connector.toml: [servers.hospital] max_retries" in result.stderr


def test_a_valid_config_is_read_with_mappings_dir_relative_to_the_file(tmp_path):
    folder = tmp_path / "etc"
    (folder / "maps").mkdir(parents=True)
    (folder / "maps" / "NCT05773274.yaml").write_text((ROOT / "mappings" / "NCT05773274.yaml").read_text())
    (folder / "tc.toml").write_text(SERVER + 'timeout = 12.5\nmax_retries = 2\n[site]\ncountry = "gb"\n'
                                    '[mappings]\ndir = "maps"\n', encoding="utf-8")
    listed = run_cli(["mappings", "list", "--config", str(folder / "tc.toml")])
    assert listed.exit_code == 0 and "etc/maps/NCT05773274.yaml  (used)" in listed.stdout
    from connector.config import load_config

    config = load_config(folder / "tc.toml")
    assert (config.site_country, config.servers["hospital"].timeout, config.servers["hospital"].max_retries) == \
        ("GB", 12.5, 2)


@pytest.mark.parametrize("args", [["results", "--trial", "NCT05773274"],
                                  ["history", "p1", "--trial", "NCT05773274"],
                                  ["registry", "show", "NCT05773274"],
                                  ["registry", "changes", "NCT05773274"]])
def test_read_only_commands_never_create_a_store(tmp_path, args):
    result = run_cli([*args, "--db", str(tmp_path / "missing.db")])
    assert result.exit_code == 1
    assert result.stderr == (f"error: store {tmp_path / 'missing.db'} does not exist (a `run` or `registry sync` "
                             "creates it; or give --db / TRIAL_CONNECTOR_DB / [store] url)\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.postgres
def test_read_only_commands_never_create_tables_in_postgres(store_url):
    if not store_url.startswith("postgresql"):
        pytest.skip("PostgreSQL variant only")
    result = run_cli(["results", "--trial", "NCT05773274", "--db", store_url])
    assert result.exit_code == 1 and "does not exist: the database has no trial-connector tables" in result.stderr


@pytest.mark.parametrize("value", ["nct5773274", "NCT05773274", " NCT0005773274 "])
def test_one_nct_id_rule_for_every_command(tmp_path, value):
    db = str(tmp_path / "s.db")
    ran = run_cli(["run", "--trial", value, "--source", str(clean_cohort(tmp_path / "cohort")), "--as-of", "2026-11-16", "--db", db])
    assert ran.exit_code == 0, ran.stderr
    shown = run_cli(["results", "--trial", value, "--format", "json", "--db", db])
    assert shown.exit_code == 0 and '"trial": "NCT05773274"' in shown.stdout
    assert run_cli(["history", "net01", "--trial", value, "--db", db]).exit_code == 0
    assert run_cli(["mappings", "show", value]).exit_code == 0


@pytest.mark.parametrize("command", ["screen", "run", "results", "history"])
def test_an_invalid_nct_id_is_named_the_same_way_by_every_command(command):
    args = {"screen": ["--source", str(EXAMPLES)], "run": ["--source", str(EXAMPLES)], "results": [],
            "history": ["p1"]}[command]
    result = run_cli([command, *args, "--trial", "NCT-5773274"])
    assert result.exit_code == 1
    assert result.stderr == ("error: --trial 'NCT-5773274' is not a ClinicalTrials.gov id (expected NCT followed by "
                             "up to 8 digits, e.g. NCT05773274)\n")


def test_global_options_work_after_the_subcommand(tmp_path, caplog):
    config = tmp_path / "tc.toml"
    config.write_text('[store]\nurl = "from-config.db"\n', encoding="utf-8")
    cohort = str(clean_cohort(tmp_path / "cohort"))
    infos = []
    for args in (["-v", "--config", str(config), "--db", str(tmp_path / "a.db"), "run"],
                 ["run", "-v", "--config", str(config), "--db", str(tmp_path / "b.db")]):
        caplog.clear()
        result = run_cli([*args, "--trial", "NCT05773274", "--source", cohort, "--as-of", "2026-11-16"])
        assert result.exit_code == 0, result.stderr
        infos.append(any(r.levelname == "INFO" for r in caplog.records))  # -v took effect
    assert infos == [True, True]
    assert (tmp_path / "a.db").exists() and (tmp_path / "b.db").exists()
    grouped = run_cli(["servers", "list", "--config", str(config)])
    assert grouped.exit_code == 0 and "no servers configured" in grouped.stdout
    via_config = run_cli(["run", "--trial", "NCT05773274", "--source", cohort, "--as-of", "2026-11-16",
                          "--config", str(config)])
    assert via_config.exit_code == 0 and Path("from-config.db").exists()


def test_as_of_help_says_iso_date():
    for command in ("screen", "run"):
        assert "ISO date" in run_cli([command, "--help"]).stdout
