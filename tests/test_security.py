"""Security checks end to end: no PHI in output or logs at the most verbose level (from files
and from the real FHIR server), the store file is private (0600), TLS verification stays on
unless configured off, credentials never reach the output, mapping content is never executed.

test_screen_cli.py checks PHI at -vv in-process on the example cohort; here the same PHI
list is widened with the Synthea fixtures' names, birth dates, identifiers, phone numbers
and addresses, and the real processes are run at -vvv (urllib3's own debug lines included).
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import logging
import os
import re
import ssl
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from connector.config import ServerConfig, load_config
from connector.fhir import auth as smart_auth
from connector.fhir.http import HttpClient
from fault_proxy import FaultProxy
from fhir_server import ClientKey, FhirTestServer
from test_screen_cli import AS_OF, EXAMPLES, EXPECTED, ROOT, phi_strings, run_cli

SYNTHEA = Path(__file__).parent / "fixtures" / "synthea"
SEED_MAPPING = ROOT / "mappings" / "NCT05773274.yaml"
JWT_LIKE = re.compile(r"eyJ[\w-]{8,}\.[\w-]{8,}")  # any JWT: client assertions and access tokens


def synthea_resources() -> list[dict]:
    return [json.loads(line) for f in sorted(SYNTHEA.glob("*.ndjson"))
            for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]


def synthea_patient_ids() -> list[str]:
    return [r["id"] for r in synthea_resources() if r["resourceType"] == "Patient"]


def synthea_phi() -> set[str]:
    """Every name, birth date, identifier, phone number and address line of the Synthea patients
    (resource ids are not PHI: reports name patients by them)."""
    found: set[str] = set()
    for patient in (r for r in synthea_resources() if r["resourceType"] == "Patient"):
        found.add(patient["birthDate"])
        found.update(i["value"] for i in patient.get("identifier", []) if i["value"] != patient["id"])
        for name in patient.get("name", []):
            found.add(name["family"])
            found.update(name.get("given", []))
        found.update(t["value"] for t in patient.get("telecom", []))
        found.update(line for a in patient.get("address", []) for line in a.get("line", []))
    return found


def all_phi() -> set[str]:
    phi = phi_strings() | synthea_phi()
    assert len(phi) > 80
    return phi


def run_process(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The installed entry point as a user runs it (its own stderr logging, urllib3 included)."""
    return subprocess.run([sys.executable, "-m", "connector", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env={**os.environ, **(env or {})})


def screen_args(source: str, *patients: str, fmt: str = "json") -> list[str]:
    return ["screen", "--trial", "NCT05773274", "--source", source, "--as-of", AS_OF, "--format", fmt,
            *[a for p in patients for a in ("--patient", p)]]


@pytest.fixture(autouse=True)
def no_store_in_cwd(monkeypatch, tmp_path):
    monkeypatch.setenv("TRIAL_CONNECTOR_DB", str(tmp_path / "absent.db"))


@pytest.fixture(scope="module")
def cohort_server(fhir_server_factory) -> FhirTestServer:
    """A server of our own: the example cohort and the Synthea fixture patients."""
    server = fhir_server_factory()
    for path in sorted(EXAMPLES.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if data["resourceType"] == "Bundle":
            server.load(data)
    server.load(synthea_resources())
    return server


# ---- no PHI at -vvv ------------------------------------------------------------------------

def assert_no_phi(text: str) -> None:
    leaked = sorted(s for s in all_phi() if s in text)
    assert leaked == []


def test_no_phi_at_vvv_screening_files(tmp_path):
    source = tmp_path / "files"
    source.mkdir()
    for path in EXAMPLES.glob("*.json"):
        (source / path.name).write_bytes(path.read_bytes())
    for path in SYNTHEA.glob("*.ndjson"):
        (source / path.name).write_bytes(path.read_bytes())
    texts = []
    for fmt in ("json", "table"):
        proc = run_process("-vvv", *screen_args(str(source), fmt=fmt))
        assert proc.returncode == 0, proc.stderr[-2000:]
        texts.append(proc.stdout + proc.stderr)
    assert "INFO connector.commands.screen: screened 22 patient(s)" in texts[0]  # verbose logging was on
    assert all(pid in texts[0] for pid in [*EXPECTED, *synthea_patient_ids()])  # every patient was screened
    assert_no_phi("\n".join(texts))


@pytest.mark.server
def test_no_phi_at_vvv_screening_the_real_server(cohort_server):
    patients = [*EXPECTED, *synthea_patient_ids()]
    texts = []
    for fmt in ("json", "table"):
        proc = run_process("-vvv", *screen_args(cohort_server.base_url, *patients, fmt=fmt))
        assert proc.returncode == 0, proc.stderr[-2000:]
        texts.append(proc.stdout + proc.stderr)
    assert "urllib3.connectionpool" in texts[0] and "DEBUG" in texts[0]
    assert all(f"Patient/{pid}" in texts[0] for pid in patients)
    # the server's answers carried the PHI: it must have been dropped on the way
    assert "Okafor" in cohort_server.get("Patient/net01").text
    assert_no_phi("\n".join(texts))


@pytest.mark.server
def test_no_phi_in_errors_about_a_patient(cohort_server):
    """A patient that cannot be screened is named by id only, even at -vvv."""
    proc = run_process("-vvv", *screen_args(cohort_server.base_url, "net01", "nobody-here"))
    assert proc.returncode == 3
    assert "error: Patient/nobody-here:" in proc.stderr
    assert_no_phi(proc.stdout + proc.stderr)


# ---- the store is private -------------------------------------------------------------------

@pytest.mark.parametrize("command", [
    ["registry", "import", str(ROOT / "examples" / "ctgov" / "NCT05773274.json")],
    ["run", "--trial", "NCT05773274", "--source", str(EXAMPLES), "--as-of", AS_OF],
], ids=["registry-import", "run"])
def test_store_file_is_created_mode_0600_whatever_the_umask(tmp_path, command):
    db = tmp_path / "store.db"
    proc = subprocess.run([sys.executable, "-m", "connector", *command, "--db", str(db)], capture_output=True,
                          text=True, timeout=120, preexec_fn=lambda: os.umask(0))
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    for side in tmp_path.glob("store.db?*"):  # lock, WAL/SHM/journal files when present
        assert stat.S_IMODE(side.stat().st_mode) & 0o077 == 0, side.name


# ---- TLS ------------------------------------------------------------------------------------

def test_tls_verification_is_on_unless_configured_off(tmp_path):
    assert ServerConfig(name="x", url="https://127.0.0.1:1/fhir").verify is True
    config = tmp_path / "c.toml"
    config.write_text('[servers.a]\nurl = "https://127.0.0.1:1/fhir"\n'
                      '[servers.b]\nurl = "https://127.0.0.1:1/fhir"\nca_bundle = "/etc/ca.pem"\n'
                      '[servers.c]\nurl = "https://127.0.0.1:1/fhir"\nverify_tls = false\n', encoding="utf-8")
    loaded = load_config(config)
    assert [loaded.servers[n].verify for n in "abc"] == [True, "/etc/ca.pem", False]
    assert load_config(None).server("https://127.0.0.1:1/fhir").verify is True  # ad-hoc URLs too


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (cert PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture
def https_server(cohort_server, self_signed) -> Iterator[FaultProxy]:
    """The cohort server behind an HTTPS front with a self-signed certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*self_signed)
    with FaultProxy(cohort_server.root_url, ssl_context=context) as front:
        yield front


def tls_config(directory: Path, url: str, **settings: object) -> Path:
    lines = ["[servers.tls]", f'url = "{url}"', "max_retries = 0"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    path = directory / "tls.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.server
def test_self_signed_https_server_is_refused_by_default(https_server, tmp_path, monkeypatch, capsys):
    config = tls_config(tmp_path, https_server.url("/fhir"))
    code, out, err = run_cli(monkeypatch, capsys, "--config", str(config), *screen_args("tls", "net01"))
    assert code == 2 and out == ""  # the server as a whole is refused, once, before any patient
    assert err.startswith("error: GET https://127.0.0.1:") and "TLS verification failed" in err
    assert not https_server.requests()  # nothing was sent over the unverified connection


@pytest.mark.server
@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_https_with_the_ca_bundle_or_verification_off(https_server, self_signed, tmp_path, monkeypatch, capsys,
                                                      caplog):
    caplog.set_level(logging.WARNING)
    config = tls_config(tmp_path, https_server.url("/fhir"), ca_bundle=str(self_signed[0]))
    code, out, err = run_cli(monkeypatch, capsys, "--config", str(config), *screen_args("tls", "net01"))
    assert code == 0, err
    assert json.loads(out)["patients"][0]["status"] == EXPECTED["net01"]["status"]
    assert "verification is OFF" not in caplog.text
    config = tls_config(tmp_path, https_server.url("/fhir"), verify_tls=False)
    code, out, err = run_cli(monkeypatch, capsys, "--config", str(config), *screen_args("tls", "net01"))
    assert code == 0, err
    assert "TLS certificate verification is OFF for server tls (verify_tls = false)" in caplog.text


def test_every_request_is_sent_with_verification_on(monkeypatch):
    sent = []

    def fake_request(self, method, url, **kwargs):
        sent.append(kwargs.get("verify"))
        raise requests.exceptions.SSLError("certificate verify failed")

    monkeypatch.setattr(requests.Session, "request", fake_request)
    client = HttpClient(ServerConfig(name="x", url="https://127.0.0.1:9/fhir", max_retries=0))
    with pytest.raises(Exception, match="TLS verification failed"):
        client.request("GET", "metadata")
    assert sent == [True]


# ---- credentials never reach the output ----------------------------------------------------

@pytest.fixture(scope="module")
def smart_cohort(fhir_server_factory) -> FhirTestServer:
    """A SMART-enforcing server of our own (client `connector`, RS384) with the example cohort."""
    key = ClientKey.generate("RS384", kid="sec-rs384")
    server = fhir_server_factory(smart_clients=[key.registration("connector")])
    server.client_keys["connector"] = key
    for path in sorted(EXAMPLES.glob("0*.json")):
        server.load(json.loads(path.read_text(encoding="utf-8")))
    return server


def smart_config(directory: Path, server: FhirTestServer, **auth: str) -> Path:
    key = server.client_keys["connector"]
    settings = {"type": "smart", "client_id": "connector", "key_id": key.kid, "algorithm": key.algorithm, **auth}
    lines = ["[servers.smart]", f'url = "{server.base_url}"', "[servers.smart.auth]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    path = directory / "smart.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def pem_lines(pem: bytes) -> list[str]:
    return [line for line in pem.decode().splitlines() if line and not line.startswith("-----")]


@pytest.mark.server
def test_smart_tokens_assertions_and_keys_never_appear_at_vvv(smart_cohort, tmp_path, monkeypatch, capsys, caplog):
    """In-process, so the test can see the very tokens and assertions the connector used."""
    issued: list[str] = []
    real_fetch, real_assertion = smart_auth.SmartBackendAuth._fetch_token, smart_auth.SmartBackendAuth.client_assertion

    def fetch(self, http):
        real_fetch(self, http)
        issued.append(self._token)

    def assertion(self, token_url):
        value = real_assertion(self, token_url)
        issued.append(value)
        return value

    monkeypatch.setattr(smart_auth.SmartBackendAuth, "_fetch_token", fetch)
    monkeypatch.setattr(smart_auth.SmartBackendAuth, "client_assertion", assertion)
    caplog.set_level(logging.DEBUG)
    key = smart_cohort.client_keys["connector"]
    config = smart_config(tmp_path, smart_cohort, private_key_file=str(key.write_pem(tmp_path)))
    code, out, err = run_cli(monkeypatch, capsys, "-vvv", "--config", str(config),
                             *screen_args("smart", "net01", "net04"))
    assert code == 0, err
    assert len(issued) >= 2 and all(len(s) > 100 for s in issued)  # an assertion and a token at least
    text = out + err + caplog.text
    assert "SMART access token for client connector" in caplog.text  # the token step was logged...
    assert [s for s in issued if s in text] == []  # ...but never the token or the assertion
    assert [line for line in pem_lines(key.private_pem) if line in text] == []
    assert not JWT_LIKE.search(text)


@pytest.mark.server
def test_smart_key_from_the_environment_stays_secret_at_vvv(smart_cohort):
    key = smart_cohort.client_keys["connector"]
    config = smart_config(smart_cohort.workdir, smart_cohort, private_key_env="TC_TEST_SMART_KEY")
    proc = run_process("-vvv", "--config", str(config), *screen_args("smart", "net01"),
                       env={"TC_TEST_SMART_KEY": key.private_pem.decode()})
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout + proc.stderr
    assert "Authorization" not in text and "Bearer" not in text and not JWT_LIKE.search(text)
    assert [line for line in pem_lines(key.private_pem) if line in text] == []


@pytest.mark.server
@pytest.mark.parametrize("auth", [
    {"type": "bearer", "token_env": "TC_TEST_SECRET"},
    {"type": "basic", "username": "screening", "password_env": "TC_TEST_SECRET"},
])
def test_static_credentials_never_appear_at_vvv(cohort_server, tmp_path, auth):
    secret = "s3cr3t-Value-0f-a-Hospital-Credential"
    lines = ["[servers.static]", f'url = "{cohort_server.base_url}"', "max_retries = 0", "[servers.static.auth]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in auth.items()]
    config = tmp_path / "static.toml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ok = run_process("-vvv", "--config", str(config), *screen_args("static", "net01"), env={"TC_TEST_SECRET": secret})
    assert ok.returncode == 0, ok.stderr[-2000:]
    # and when the server is unreachable, the error names the server, never the credential
    config.write_text(config.read_text().replace(cohort_server.base_url, "http://127.0.0.1:9/fhir"))
    down = run_process("-vvv", "--config", str(config), *screen_args("static", "net01"),
                       env={"TC_TEST_SECRET": secret})
    assert down.returncode == 2 and "error: GET http://127.0.0.1:9/fhir/metadata: connection refused" in down.stderr
    for proc in (ok, down):
        text = proc.stdout + proc.stderr
        assert secret not in text and "Authorization" not in text


# ---- mapping content is data ----------------------------------------------------------------

@pytest.mark.parametrize("tag", [
    '!!python/object/apply:os.system ["touch {marker}"]',
    '!!python/object/new:subprocess.check_output [["touch", "{marker}"]]',
    "!!python/name:os.system",
    "!!python/module:os",
])
def test_python_yaml_tags_in_a_mapping_are_refused_not_run(monkeypatch, capsys, tmp_path, tag):
    marker = tmp_path / "executed"
    bad = tmp_path / "tagged.yaml"
    bad.write_text(SEED_MAPPING.read_text(encoding="utf-8").replace(
        "    min_years: 18\n", f"    min_years: {tag.format(marker=marker)}\n", 1), encoding="utf-8")
    code, out, err = run_cli(monkeypatch, capsys, "screen", "--trial", "NCT05773274", "--source", str(EXAMPLES),
                             "--as-of", AS_OF, "--mapping", str(bad))
    assert code == 1 and out == ""
    tag_line = SEED_MAPPING.read_text(encoding="utf-8").splitlines().index("    min_years: 18") + 1
    assert err.startswith(f"error: {bad}: invalid YAML: line {tag_line} column ")
    assert "could not determine a constructor" in err
    assert err.count("\n") == 1
    assert not marker.exists()


def test_expression_like_strings_in_a_mapping_stay_strings(monkeypatch, capsys, tmp_path):
    """No field is evaluated: code in a value is a type error, reported, and never run."""
    marker = tmp_path / "executed"
    bad = tmp_path / "expr.yaml"
    bad.write_text(SEED_MAPPING.read_text(encoding="utf-8").replace(
        "    min_years: 18\n", f"    min_years: \"__import__('os').system('touch {marker}') or 18\"\n", 1),
        encoding="utf-8")
    code, out, err = run_cli(monkeypatch, capsys, "screen", "--trial", "NCT05773274", "--source", str(EXAMPLES),
                             "--as-of", AS_OF, "--mapping", str(bad))
    assert code == 1 and out == ""
    assert "criterion 'age': $.criteria[0].min_years:" in err and "is not of type" in err
    assert not marker.exists()
