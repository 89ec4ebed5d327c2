"""The config file's schema: types, ranges and names checked by pydantic when the file is read.

Why a schema: a cron job must fail at start-up, naming the key, rather than mid-run with a
traceback (`max_retries = "5"`), or silently ignore a misspelt key (`timout = 5`). Values are
strict (TOML has real numbers and booleans: a quoted "30" is a mistake, not a number), URLs need
a scheme, the site country is an ISO 3166-1 alpha-2 code, and no secret is read from the file:
passwords, tokens and keys come from the environment (`password_env`, `token_env`,
`private_key_env`) or from files with their own permissions (`private_key_file`).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from connector.errors import ConfigError

# keys people write for secrets, and where the secret goes instead
SECRET_KEYS = {"password": "password_env", "token": "token_env", "private_key": "private_key_file or private_key_env",
               "client_secret": "private_key_file (SMART Backend Services uses a key pair)"}


def _url(value: str, schemes: tuple[str, ...] = ("http", "https")) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.netloc:
        raise ValueError(f"needs a scheme and host, e.g. {schemes[-1]}://host/path (got {value!r})")
    if parts.password is not None:
        raise ValueError("contains a password: secrets come from the environment, not the config file")
    return value


def _store_url(value: str) -> str:
    if value.startswith(("postgresql://", "postgres://")):
        if urlsplit(value).password is not None:
            raise ValueError("contains a PostgreSQL password: secrets come from the environment, not the config "
                             "file (set PGPASSWORD or use ~/.pgpass, or give the whole URL in TRIAL_CONNECTOR_DB)")
        return value
    if "://" in value and not value.startswith("sqlite:"):
        raise ValueError(f"is neither a SQLite file path nor a postgresql:// URL (got {value!r})")
    return value


def _country(value: str) -> str:
    import pycountry  # ISO 3166-1, kept current by its maintainers

    code = value.strip().upper()
    if len(code) != 2 or pycountry.countries.get(alpha_2=code) is None:
        raise ValueError(f"{value!r} is not an ISO 3166-1 alpha-2 country code (e.g. US, GB, DE)")
    return code


def _narrowing(value: bool | str) -> bool | str:
    if isinstance(value, bool) or value == "auto":
        return value
    raise ValueError(f'must be true, false or "auto" (got {value!r})')


HttpUrl = Annotated[str, AfterValidator(_url)]


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class AuthTable(_Table):
    type: Literal["none", "basic", "bearer", "smart"] = "none"
    username: str | None = None
    password_env: str | None = None
    token_env: str | None = None
    client_id: str | None = None
    private_key_file: str | None = None
    private_key_env: str | None = None
    jwks_file: str | None = None
    key_id: str | None = None
    algorithm: Literal["RS384", "ES384"] = "RS384"
    scope: str | None = None
    token_url: HttpUrl | None = None


class ServerTable(_Table):
    url: HttpUrl
    timeout: float = Field(30.0, gt=0, le=600)
    page_size: int = Field(200, ge=1, le=1000)
    verify_tls: bool = True
    ca_bundle: str | None = None
    max_retries: int = Field(5, ge=0, le=20)
    retry_after_cap: float = Field(120.0, ge=0, le=3600)
    concurrency: int = Field(4, ge=1, le=64)
    narrow_observations: Annotated[bool | str, AfterValidator(_narrowing)] = "auto"  # measured, or pinned
    post_results: bool = False
    auth: AuthTable = Field(default_factory=AuthTable)


class StoreTable(_Table):
    url: Annotated[str, AfterValidator(_store_url)] | None = None


class RegistryTable(_Table):
    api_url: HttpUrl = "https://clinicaltrials.gov/api/v2"
    requests_per_minute: float = Field(50.0, gt=0)


class SiteTable(_Table):
    country: Annotated[str, AfterValidator(_country)] = "US"


class MappingsTable(_Table):
    dir: str | None = None


def _absolute_uri(value: str) -> str:
    if ":" not in value or value.startswith(":"):
        raise ValueError(f"must be an absolute URI (https://... or urn:...), got {value!r}")
    return value


class FhirOutputTable(_Table):
    identifier_system: Annotated[str, AfterValidator(_absolute_uri)] | None = None  # ResearchSubject.identifier
    extension_base: Annotated[str, AfterValidator(_absolute_uri)] | None = None  # our extensions' URLs


class LimitsTable(_Table):
    max_resource_mb: float = Field(64.0, gt=0)  # one resource read from files (an NDJSON line, a .json file)


class ConfigFile(_Table):
    servers: dict[str, ServerTable] = Field(default_factory=dict)
    store: StoreTable = Field(default_factory=StoreTable)
    registry: RegistryTable = Field(default_factory=RegistryTable)
    site: SiteTable = Field(default_factory=SiteTable)
    mappings: MappingsTable = Field(default_factory=MappingsTable)
    limits: LimitsTable = Field(default_factory=LimitsTable)
    fhir_output: FhirOutputTable = Field(default_factory=FhirOutputTable)

    @classmethod
    def parse(cls, raw: dict[str, Any], path: Path) -> "ConfigFile":
        """The checked file, or a ConfigError naming the first problem (file, [table], key)."""
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(f"{path}: {describe(exc.errors()[0], raw)}") from None


def describe(error: Any, raw: dict[str, Any]) -> str:
    """`[servers.hospital] timeout: must be a number, got '30'` and the like."""
    loc = [str(part) for part in error["loc"] if not str(part).startswith(("function-after", "str", "none"))]
    # pydantic inserts union branch names into loc (e.g. 'function-after[...]'); they are not keys
    key = loc[-1] if loc else ""
    table = "[" + ".".join(loc[:-1]) + "]" if len(loc) > 1 else "top level"
    kind = error["type"]
    if kind == "extra_forbidden":
        value = error.get("input")
        if key in SECRET_KEYS:
            return (f"{table}: {key!r} is not read from the config file: secrets come from the environment "
                    f"(use {SECRET_KEYS[key]})")
        what = "table" if isinstance(value, dict) else "key"
        shown = f"[{'.'.join(loc)}]" if what == "table" else repr(key)
        known = _known_names(loc[:-1])
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        meant = ("[" + ".".join([*loc[:-1], close[0]]) + "]" if what == "table" else repr(close[0])) if close else ""
        hint = f" (did you mean {meant}?)" if close else (f" (known: {', '.join(known)})" if known else "")
        return f"{table if what == 'key' else 'top level'}: unknown {what} {shown}{hint}"
    if kind == "missing":
        return f"{table}: {key} is required"
    message = error["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
    return f"{table} {key}: {message}" + ("" if kind == "value_error" else f", got {error.get('input')!r}")


def _known_names(loc: list[str]) -> list[str]:
    """The keys the table at `loc` allows (for "did you mean")."""
    model: type[BaseModel] = ConfigFile
    steps = list(loc)
    while steps:
        step = steps.pop(0)
        if model is ConfigFile and step == "servers":
            if not steps:
                return []
            steps.pop(0)  # the server's own name
            model = ServerTable
            continue
        annotation = model.model_fields[step].annotation if step in model.model_fields else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)
