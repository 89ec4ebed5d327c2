"""Configuration: one TOML file (`--config`, default `./trial-connector.toml`) plus environment
variables for secrets, so that a config file can be shared without leaking credentials.

Example::

    [servers.hospital]
    url = "https://fhir.example.org/r4"
    timeout = 30          # seconds, per request
    page_size = 200       # _count
    verify_tls = true     # default; false only when the user says so
    ca_bundle = "/etc/ssl/hospital-ca.pem"
    max_retries = 5
    retry_after_cap = 120 # seconds: longest Retry-After we will sleep
    concurrency = 4
    narrow_observations = "auto" # code=/date=ge on Observation searches: true, false, or measured (auto)
    post_results = false  # true when `results --post` writes ResearchSubjects here

    [servers.hospital.auth]
    type = "smart"        # none | basic | bearer | smart
    client_id = "connector"
    private_key_file = "/etc/trial-connector/key.pem"   # or jwks_file
    # private_key_env = "HOSPITAL_KEY"                  # PEM text from the environment
    algorithm = "RS384"   # or ES384
    # scope = "..."     # default: read scopes of every type the connector reads (`servers check` lists them)
    # token_url = "..."   # else discovered at [base]/.well-known/smart-configuration
    # basic: username + password_env;  bearer: token_env

    [store]
    url = "trial-connector.db"   # or postgresql://...

    [registry]
    api_url = "https://clinicaltrials.gov/api/v2"
    requests_per_minute = 50

    [site]
    country = "US"        # ISO 3166-1 alpha-2

    [mappings]
    dir = "mappings"      # relative to this file; searched after --mapping/--mappings, before the bundled ones

The file is checked when it is read (connector.config_file): wrong types, out-of-range values,
URLs without a scheme, unknown tables or keys and secrets written into the file are errors
naming the key.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from connector.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("trial-connector.toml")
DEFAULT_CTGOV_API = "https://clinicaltrials.gov/api/v2"


@dataclass
class AuthConfig:
    """How to authenticate to one server. Secrets are read from the environment by name."""

    type: str = "none"  # none | basic | bearer | smart
    username: str | None = None
    password_env: str | None = None
    token_env: str | None = None
    client_id: str | None = None
    private_key_file: str | None = None
    private_key_env: str | None = None
    jwks_file: str | None = None
    key_id: str | None = None
    algorithm: str = "RS384"
    scope: str | None = None  # None: the read scopes of every type the connector reads (connector.fhir.scopes)
    token_url: str | None = None

    def secret(self, env_name: str | None) -> str | None:
        """Read a secret from the environment; raises naming the variable, never its value."""
        if not env_name:
            return None
        value = os.environ.get(env_name)
        if value is None:
            raise ConfigError(f"environment variable {env_name} is not set (needed for {self.type} auth)")
        return value


@dataclass
class ServerConfig:
    """One named FHIR server."""

    name: str
    url: str
    timeout: float = 30.0
    page_size: int = 200
    verify_tls: bool = True
    ca_bundle: str | None = None
    max_retries: int = 5
    retry_after_cap: float = 120.0
    concurrency: int = 4
    # Send `code=`/`date=ge` on Observation searches. Fewer bytes, but some servers answer such
    # searches slowly (bench/README.md): "auto" times both ways on the first patients of a run
    # and keeps the faster (connector.fhir.narrowing); true/false pin it.
    narrow_observations: bool | str = "auto"
    post_results: bool = False  # `results --post` writes here: `servers check` then wants write scopes too
    auth: AuthConfig = field(default_factory=AuthConfig)

    @property
    def verify(self) -> bool | str:
        """The value for requests' `verify=`: a CA bundle path, or the on/off switch."""
        if not self.verify_tls:
            return False
        return self.ca_bundle or True


@dataclass
class Config:
    servers: dict[str, ServerConfig] = field(default_factory=dict)
    store_url: str | None = None
    registry_api_url: str = DEFAULT_CTGOV_API
    registry_requests_per_minute: float = 50.0
    site_country: str = "US"
    max_resource_bytes: int = 64 * 1024 * 1024  # [limits] max_resource_mb: one resource read from files
    mappings_dir: Path | None = None  # [mappings] dir, relative to the config file
    output_identifier_system: str | None = None  # [fhir_output] identifier_system (ResearchSubject.identifier)
    output_extension_base: str | None = None  # [fhir_output] extension_base (our extensions' URLs)
    path: Path | None = None

    def server(self, url_or_name: str) -> ServerConfig:
        """A configured server by name, or an ad-hoc one for a bare URL (default settings)."""
        if url_or_name in self.servers:
            return self.servers[url_or_name]
        if url_or_name.startswith(("http://", "https://")):
            return ServerConfig(name=url_or_name, url=url_or_name.rstrip("/"))
        known = ", ".join(sorted(self.servers)) or "none configured"
        raise ConfigError(f"unknown FHIR server {url_or_name!r} (known: {known}); give a URL or a configured name")


def load_config(path: str | Path | None = None) -> Config:
    """Read and check the TOML config. A missing default file gives the defaults; a missing named
    file is an error. Every mistake is one ConfigError naming the file, the table and the key."""
    explicit = path is not None
    cfg_path = Path(path) if explicit else DEFAULT_CONFIG_PATH
    if not cfg_path.exists():
        if explicit:
            raise ConfigError(f"config file {cfg_path} not found")
        return _apply_env(Config())
    try:
        raw = tomllib.loads(cfg_path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{cfg_path}: invalid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{cfg_path}: cannot read: {exc}") from None
    from connector.config_file import ConfigFile  # pydantic is imported only when there is a file

    checked = ConfigFile.parse(raw, cfg_path)
    config = Config(path=cfg_path)
    for name, server in checked.servers.items():
        settings = server.model_dump(exclude={"auth"})
        settings["url"] = settings["url"].rstrip("/")  # one spelling of the base URL (run identity, links)
        config.servers[name] = ServerConfig(name=name, auth=AuthConfig(**server.auth.model_dump()), **settings)
    config.store_url = checked.store.url
    config.registry_api_url = checked.registry.api_url.rstrip("/")
    config.registry_requests_per_minute = checked.registry.requests_per_minute
    config.site_country = checked.site.country
    config.max_resource_bytes = int(checked.limits.max_resource_mb * 1024 * 1024)
    config.output_identifier_system = checked.fhir_output.identifier_system
    config.output_extension_base = checked.fhir_output.extension_base
    if checked.mappings.dir:
        config.mappings_dir = cfg_path.parent / checked.mappings.dir
    return _apply_env(config)


def _apply_env(config: Config) -> Config:
    """Environment overrides that scheduled jobs use instead of editing the file."""
    if os.environ.get("CTGOV_API_URL"):
        config.registry_api_url = os.environ["CTGOV_API_URL"].rstrip("/")
    return config


def resolve_store_url(cli_value: str | None, config: Config) -> str:
    """`--db`, else env TRIAL_CONNECTOR_DB, else `[store] url`, else ./trial-connector.db."""
    return cli_value or os.environ.get("TRIAL_CONNECTOR_DB") or config.store_url or "trial-connector.db"
