"""Helpers for the registry tests: the real CT.gov records copied into tests/fixtures/ctgov/,
a fake clock for pacing, and running the CLI exactly as `trial-connector` does (via main()).
"""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner

FIXTURES = Path(__file__).parent / "fixtures" / "ctgov"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "ctgov"  # /work/shared/ctgov when present
API = "http://127.0.0.1:8765/api/v2"  # responses intercepts; nothing leaves the machine anyway


def load(relative: str) -> Any:
    return json.loads((FIXTURES / relative).read_text(encoding="utf-8"))


def study(nct_id: str) -> dict[str, Any]:
    return load(f"studies/{nct_id}.json")


def fixture_studies() -> list[Path]:
    return sorted((FIXTURES / "studies").glob("*.json"))


def with_status(record: dict[str, Any], status: str) -> dict[str, Any]:
    changed = copy.deepcopy(record)
    changed["protocolSection"]["statusModule"]["overallStatus"] = status
    return changed


def with_criteria(record: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    changed = copy.deepcopy(record)
    module = changed["protocolSection"]["eligibilityModule"]
    assert old in module["eligibilityCriteria"]
    module["eligibilityCriteria"] = module["eligibilityCriteria"].replace(old, new, 1)
    return changed


class FakeClock:
    """monotonic() and sleep() for the client: sleeping advances time, and is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


def run_cli(args: list[str], env: dict[str, str | None] | None = None) -> CliResult:
    """Run `trial-connector ARGS` in-process through connector.cli.main (error lines, exit codes)."""
    from connector.cli import main

    runner = CliRunner()
    base_env: dict[str, str | None] = {"CTGOV_API_URL": None, "TRIAL_CONNECTOR_DB": None}
    base_env.update(env or {})
    code = 0
    with runner.isolation(env=base_env) as (out, err, _):
        saved = sys.argv
        sys.argv = ["trial-connector", *args]
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            sys.argv = saved
        stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    return CliResult(code, stdout, stderr)


def fast_config(tmp_path: Path) -> Path:
    """A config whose request budget makes pacing waits negligible in CLI tests."""
    path = tmp_path / "trial-connector.toml"
    path.write_text('[registry]\nrequests_per_minute = 600000\n', encoding="utf-8")
    return path
