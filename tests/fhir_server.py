"""A real FHIR R4 server (sekmet-fhir) for integration tests, on 127.0.0.1 only.

Usage (the pytest fixtures in tests/conftest.py do this for you)::

    with FhirTestServer(tmp_path) as server:          # auth none
        server.load([patient, observation, ...])      # or a Bundle / an NDJSON file
        FhirClient(server.server_config()) ...

    key = ClientKey.generate("RS384")                 # SMART Backend Services enforced
    with FhirTestServer(tmp_path, smart_clients=[key.registration("connector")], token_lifetime=3) as s:
        config = s.server_config(auth=key.auth_config("connector", tmp_path))

Each server is a direct child process with a fresh data directory, on a free port; `stop()`
terminates it and waits. Settings follow ../shared/fhir-server.md. Known quirks: offset paging
can repeat/skip entries when data changes mid-read; unknown search parameters are ignored
unless `Prefer: handling=strict`; an ES384 assertion for an RSA-registered client gets a 500;
with SMART enforced, a `batch` POST needs a create (`c`) scope even when it holds only reads, so
a read-only client gets 403 and the connector falls back to one search per type.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import requests
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from connector.config import AuthConfig, ServerConfig

HOST = "127.0.0.1"
HARNESS_CLIENT = "test-harness"  # the SMART client the harness itself loads data with
MAX_ENTRIES_PER_BUNDLE = 900  # sekmet handles ~1000-entry transactions; stay under
_START_CMD = "import sys; from sekmet.cli import app; sys.argv = ['sekmet', *sys.argv[1:]]; app()"


def sekmet_available() -> bool:
    try:
        import sekmet  # noqa: F401
    except ImportError:
        return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class ClientKey:
    """A SMART client's key pair, made in the test: the private PEM for the connector, the
    public JWK for the server's client registration."""

    algorithm: str
    private_pem: bytes
    public_jwk: dict[str, Any]

    @classmethod
    def generate(cls, algorithm: str = "RS384", kid: str | None = None) -> ClientKey:
        if algorithm.startswith("ES"):
            key: Any = ec.generate_private_key(ec.SECP384R1())
            jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        jwk.update({"alg": algorithm, "use": "sig", "kid": kid or f"test-{algorithm.lower()}"})
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        return cls(algorithm, pem, jwk)

    @property
    def kid(self) -> str:
        return self.public_jwk["kid"]

    def registration(self, client_id: str, scopes: str = "system/*.rs") -> dict[str, Any]:
        """The server-side `smart_clients` entry for this key."""
        return {"client_id": client_id, "jwks": {"keys": [self.public_jwk]}, "scopes": scopes}

    def write_pem(self, directory: Path, name: str | None = None) -> Path:
        path = Path(directory) / (name or f"{self.kid}.pem")
        path.write_bytes(self.private_pem)
        path.chmod(0o600)
        return path

    def auth_config(self, client_id: str, directory: Path, scope: str = "system/*.rs") -> AuthConfig:
        """The connector's [auth] settings for this key (PEM written into `directory`)."""
        return AuthConfig(type="smart", client_id=client_id, private_key_file=str(self.write_pem(directory)),
                          key_id=self.kid, algorithm=self.algorithm, scope=scope)


class FhirTestServer:
    """One sekmet-fhir process. Give `smart_clients` (see ClientKey.registration) to enforce
    SMART Backend Services; `token_lifetime` in seconds (small values test renewal)."""

    def __init__(self, workdir: Path, *, smart_clients: list[dict[str, Any]] | None = None,
                 token_lifetime: int = 300, enforce_scopes: bool = True, startup_timeout: float = 60.0):
        self.workdir = Path(workdir)
        self.smart_clients = smart_clients or []
        self.token_lifetime = token_lifetime
        self.enforce_scopes = enforce_scopes
        self.startup_timeout = startup_timeout
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._log = None
        self._admin_key: ClientKey | None = None
        self.client_keys: dict[str, ClientKey] = {}  # client_id -> key, for servers made by the fixtures

    # ---- addresses -----------------------------------------------------------------------

    @property
    def root_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/fhir"

    @property
    def token_url(self) -> str:
        return f"{self.root_url}/auth/token"

    @property
    def smart(self) -> bool:
        return bool(self.smart_clients)

    def smart_auth(self, client_id: str, directory: Path, scope: str = "system/*.rs") -> AuthConfig:
        """The connector's SMART [auth] for one of `client_keys` (its PEM written into `directory`)."""
        return self.client_keys[client_id].auth_config(client_id, directory, scope)

    def server_config(self, name: str = "test", auth: AuthConfig | None = None, **settings: Any) -> ServerConfig:
        """A connector ServerConfig for this server (fast-failing retries unless overridden)."""
        settings.setdefault("max_retries", 1)
        settings.setdefault("timeout", 30.0)
        return ServerConfig(name=name, url=self.base_url, auth=auth or AuthConfig(), **settings)

    # ---- life cycle ----------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        auth: dict[str, Any] = {"types": ["none"]}
        if self.smart:
            # the harness loads data as its own SMART client, so SMART is the only way in
            self._admin_key = self._admin_key or ClientKey.generate("RS384", kid="harness")
            clients = [*self.smart_clients, self._admin_key.registration(HARNESS_CLIENT, scopes="system/*.*")]
            auth = {"types": ["smart"], "token_lifetime": self.token_lifetime,
                    "enforce_scopes": self.enforce_scopes, "smart_clients": clients}
        return {
            "base_url": self.base_url,
            "host": HOST,
            "port": self.port,
            "data_dir": str(self.workdir / "data"),
            "simulator": {"enabled": False},
            "log_inbound": False,
            "server_auth": auth,
            "own_private_key_path": str(self.workdir / "keys" / "sekmet_private.pem"),
        }

    def start(self) -> FhirTestServer:
        if not sekmet_available():
            raise RuntimeError("sekmet-fhir is not installed (pip install -e '.[test]')")
        self.workdir.mkdir(parents=True, exist_ok=True)
        last_error = ""
        for _ in range(3):  # a free port can be taken between choosing and binding it
            self.port = free_port()
            config = self.workdir / "settings.yaml"
            config.write_text(yaml.safe_dump(self.settings()))
            self._log = (self.workdir / "server.log").open("wb")
            self.process = subprocess.Popen([sys.executable, "-c", _START_CMD, "serve", "-c", str(config)],
                                            cwd=self.workdir, stdout=self._log, stderr=subprocess.STDOUT)
            if self._wait_ready():
                return self
            last_error = self.log_tail()
            self.stop()
        raise RuntimeError(f"sekmet-fhir did not start; log tail:\n{last_error}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                if requests.get(f"{self.base_url}/metadata", timeout=2).status_code == 200:
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=10)
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, chars: int = 3000) -> str:
        path = self.workdir / "server.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def __enter__(self) -> FhirTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- data ----------------------------------------------------------------------------

    def admin_headers(self) -> dict[str, str]:
        """Headers for the harness's own requests (with a fresh SMART token when enforced)."""
        headers = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
        if self._admin_key is not None:
            headers["Authorization"] = f"Bearer {self.access_token(HARNESS_CLIENT, self._admin_key, 'system/*.*')}"
        return headers

    def access_token(self, client_id: str, key: ClientKey, scope: str = "system/*.rs") -> str:
        """A SMART access token obtained independently of the connector (for checks)."""
        now = int(time.time())
        assertion = jwt.encode({"iss": client_id, "sub": client_id, "aud": self.token_url, "exp": now + 120,
                                "jti": os.urandom(12).hex()},
                               serialization.load_pem_private_key(key.private_pem, password=None),
                               algorithm=key.algorithm, headers={"kid": key.kid})
        response = requests.post(self.token_url, timeout=30, data={
            "grant_type": "client_credentials", "scope": scope,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion})
        response.raise_for_status()
        return response.json()["access_token"]

    def load(self, data: dict[str, Any] | Iterable[dict[str, Any]] | Path) -> int:
        """Store resources with PUT (client ids kept) in transaction Bundles of < 1000 entries.

        `data`: a Bundle (its entries' resources), an iterable of resources, or a path to a
        .json Bundle/resource or an .ndjson file. Returns the number of resources stored.
        """
        resources = list(_resources_of(data))
        for i in range(0, len(resources), MAX_ENTRIES_PER_BUNDLE):
            chunk = resources[i:i + MAX_ENTRIES_PER_BUNDLE]
            bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
                {"fullUrl": f"{self.base_url}/{r['resourceType']}/{r['id']}", "resource": r,
                 "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in chunk]}
            response = requests.post(self.base_url, data=json.dumps(bundle), headers=self.admin_headers(), timeout=120)
            if response.status_code != 200:
                raise RuntimeError(f"loading {len(chunk)} resources failed: HTTP {response.status_code} "
                                   f"{response.text[:1000]}")
        return len(resources)

    def get(self, path: str, **params: Any) -> requests.Response:
        """A plain GET with the harness's credentials, to check what the server holds."""
        return requests.get(f"{self.base_url}/{path.lstrip('/')}", params=params, headers=self.admin_headers(),
                            timeout=30)


def _resources_of(data: dict[str, Any] | Iterable[dict[str, Any]] | Path) -> Iterable[dict[str, Any]]:
    if isinstance(data, (str, Path)):
        path = Path(data)
        text = path.read_text(encoding="utf-8")
        if path.name.endswith(".ndjson"):
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        data = json.loads(text)
    if isinstance(data, dict):
        if data.get("resourceType") == "Bundle":
            return [e["resource"] for e in data.get("entry") or [] if isinstance(e, dict) and "resource" in e]
        return [data]
    return data
