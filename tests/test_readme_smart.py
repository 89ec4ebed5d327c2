"""The README's Configuration and SMART sections, followed literally against the real FHIR
server with SMART Backend Services enforced: make the key with the README's command, publish
it with `servers jwks`, register it with the README's scope line, write the README's config
(only the server URL and the key's path changed), then `servers check` and screen a patient.

A server of its own (about 2 s to start) because the key is made by the README's commands
and must be registered before the server starts, as an EHR registers a client.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
PATIENT = ROOT / "examples" / "patients" / "01-clear-candidate.json"


def section(title: str) -> str:
    start = README.index(f"\n{title}\n")
    following = re.search(r"\n#{2,3} ", README[start + len(title) + 2:])
    return README[start: start + len(title) + 2 + (following.start() if following else len(README))]


def fenced(text: str, language: str) -> str:
    match = re.search(rf"```{language}\n(.*?)```", text, re.DOTALL)
    assert match, f"no ```{language} block"
    return match.group(1)


def sh(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    bin_dir = str(Path(sys.executable).parent)  # the trial-connector of this environment
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("TRIAL_CONNECTOR_DB", None)
    return subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.server
def test_readme_configuration_and_smart_sections_screen_a_patient(fhir_server_factory, tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (the README's key command needs it)")
    config_text = fenced(section("## Configuration"), "toml")
    commands = fenced(section("### SMART Backend Services setup"), "sh").strip().splitlines()
    make_key, publish, check, screen = commands

    assert sh(make_key, tmp_path).returncode == 0
    published = sh(publish, tmp_path)
    assert published.returncode == 0 and published.stderr == "", published.stderr  # mode 0600: no warning
    jwks = json.loads((tmp_path / "smart-jwks.json").read_text())
    assert [set(k) >= {"kid", "kty", "n", "e", "alg"} and "d" not in k for k in jwks["keys"]] == [True]

    scope = re.search(r'^scope = "([^"]+)"', config_text, re.MULTILINE).group(1)
    client_id = re.search(r'^client_id = "([^"]+)"', config_text, re.MULTILINE).group(1)
    server = fhir_server_factory(smart_clients=[{"client_id": client_id, "jwks": jwks, "scopes": scope}])
    server.load(json.loads(PATIENT.read_text(encoding="utf-8")))

    config = (config_text.replace("https://fhir.hospital.example/r4", server.base_url)
              .replace("/etc/trial-connector/smart-key.pem", str(tmp_path / "smart-key.pem")))
    (tmp_path / "trial-connector.toml").write_text(config, encoding="utf-8")
    (tmp_path / "mappings").mkdir()  # [mappings] dir of the README's config: empty, the bundled one is used

    checked = sh(check, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "auth (smart): ok" in checked.stdout and "read access: ok" in checked.stdout
    assert "SMART scopes the mappings need: system/Condition.rs" in checked.stdout

    screened = sh(screen.replace("PATIENT_ID", "net01") + " --as-of 2026-11-16 --format json", tmp_path)
    assert screened.returncode == 0, screened.stderr
    report = json.loads(screened.stdout)
    assert [(p["patient"], p["status"]) for p in report["patients"]] == [("Patient/net01", "candidate")]


@pytest.mark.server
def test_servers_check_names_the_scopes_a_token_lacks(smart_fhir_server, tmp_path):
    """The README's old example (no Medication* scopes): auth works, but the mappings need more."""
    from registry_support import run_cli

    key = smart_fhir_server.client_keys["connector"]
    config = tmp_path / "tc.toml"
    config.write_text(f'''[servers.smart]
url = "{smart_fhir_server.base_url}"
max_retries = 1
[servers.smart.auth]
type = "smart"
client_id = "connector"
private_key_file = "{key.write_pem(tmp_path)}"
key_id = "{key.kid}"
scope = "system/Patient.rs system/Observation.rs system/Condition.rs"
''', encoding="utf-8")
    result = run_cli(["--config", str(config), "servers", "check", "smart", "--format", "json"])
    assert result.exit_code == 2, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["auth"]["status"] == "failed"
    assert "system/MedicationRequest.rs" in report["auth"]["missing_scopes"]
    assert "system/Patient.rs" not in report["auth"]["missing_scopes"]
