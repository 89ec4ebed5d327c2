"""Authentication to FHIR servers: none, HTTP basic, a static bearer token, or SMART Backend
Services (OAuth 2 client_credentials with a signed `private_key_jwt` client assertion).

Hospital servers for unattended pre-screens use SMART Backend Services: no user is present,
so the connector proves its identity with a private key whose public half the hospital
registered. Secrets (passwords, tokens, keys) are held only in memory, never in a repr, a
log line or an error message.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from connector.config import AuthConfig, ServerConfig
from connector.errors import ConfigError, SourceError
from connector.fhir.http import FhirRequestError, HttpClient
from connector.fhir.scopes import default_read_scope
from connector.log_once import warn_once

log = logging.getLogger(__name__)

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = ("RS384", "ES384")  # the two SMART Backend Services requires servers to accept
ASSERTION_LIFETIME = 240  # seconds; the spec allows at most 300, this leaves room for clock skew
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


class AuthError(SourceError):
    """The server would not authenticate us (token endpoint refused, no token URL found...)."""


class NoAuth:
    name = "none"

    def authorization(self, http: HttpClient) -> str | None:
        return None

    def invalidate(self) -> bool:
        return False


class BasicAuth:
    """HTTP basic: the header is built once; the password never leaves this object."""

    name = "basic"

    def __init__(self, username: str, password: str):
        self.username = username
        self._header = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()

    def authorization(self, http: HttpClient) -> str | None:
        return self._header

    def invalidate(self) -> bool:
        return False  # the same password will not work better a second time

    def __repr__(self) -> str:
        return f"BasicAuth(username={self.username!r}, password=***)"


class BearerAuth:
    """A static bearer token issued out of band (e.g. by a hospital's API gateway)."""

    name = "bearer"

    def __init__(self, token: str):
        self._header = f"Bearer {token}"

    def authorization(self, http: HttpClient) -> str | None:
        return self._header

    def invalidate(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "BearerAuth(token=***)"


def jwk_thumbprint(public_key: Any) -> str:
    """RFC 7638 thumbprint: a stable default `kid` when the configuration names none."""
    if isinstance(public_key, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public_key, as_dict=True)
        members = {"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}
    else:
        jwk = ECAlgorithm.to_jwk(public_key, as_dict=True)
        members = {"crv": jwk["crv"], "kty": "EC", "x": jwk["x"], "y": jwk["y"]}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def public_jwks(private_key: Any, kid: str | None = None) -> dict[str, Any]:
    """The JWK Set to register with the EHR for a private key: its public half only, with the
    `kid` and `alg` the connector's client assertions carry (default kid: the RFC 7638 thumbprint)."""
    public = private_key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        jwk, alg = RSAAlgorithm.to_jwk(public, as_dict=True), "RS384"
    else:
        jwk, alg = ECAlgorithm.to_jwk(public, as_dict=True), "ES384"
    jwk.update(kid=kid or jwk_thumbprint(public), alg=alg, use="sig", key_ops=["verify"])
    return {"keys": [jwk]}


def warn_if_readable_by_others(path: Path) -> None:
    """A private key other local users can read is a leaked key: say so (once), naming the fix."""
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return
    if mode & 0o077:
        warn_once(log, "private key file %s is readable by other users (mode %04o): chmod 600 %s", path, mode, path)


def check_key_matches(key: Any, algorithm: str, where: str) -> None:
    """RS384 needs an RSA private key, ES384 an EC key on P-384: say so before the server does."""
    if algorithm not in ALGORITHMS:
        raise ConfigError(f"{where}: algorithm {algorithm!r} is not supported (use {' or '.join(ALGORITHMS)})")
    if algorithm == "RS384" and not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"{where}: RS384 needs an RSA private key")
    if algorithm == "ES384" and not (isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"):
        raise ConfigError(f"{where}: ES384 needs an EC private key on curve P-384")


def load_pem_key(pem: bytes, where: str) -> Any:
    """A private key from PEM text; the error names where it came from, never its content."""
    try:
        return serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"{where}: not an unencrypted PEM private key") from None


def load_jwks_key(path: Path, key_id: str | None, algorithm: str) -> tuple[Any, str | None]:
    """(private key, its kid) from a JWK set file: the key named `key_id`, else the first
    private key usable with `algorithm`."""
    try:
        keys = json.loads(path.read_text(encoding="utf-8")).get("keys")
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{path}: cannot read the JWK set ({exc.__class__.__name__})") from None
    if not isinstance(keys, list):
        raise ConfigError(f"{path}: a JWK set needs a 'keys' list")
    family = "RSA" if algorithm.startswith("RS") else "EC"
    for i, jwk in enumerate(keys):
        if not isinstance(jwk, dict) or "d" not in jwk:
            continue  # public keys cannot sign
        if key_id is not None and jwk.get("kid") != key_id:
            continue
        if key_id is None and (jwk.get("kty") != family or jwk.get("alg", algorithm) != algorithm):
            continue
        try:
            return jwt.PyJWK(jwk).key, jwk.get("kid")
        except jwt.PyJWTError:
            raise ConfigError(f"{path}: keys[{i}] is not a valid private JWK") from None
    wanted = f"kid {key_id!r}" if key_id else f"an {algorithm} key"
    raise ConfigError(f"{path}: no private key with {wanted} in the JWK set")


class SmartBackendAuth:
    """SMART Backend Services: a signed client assertion buys an access token, which is cached
    and renewed shortly before it expires, and once more when the server answers 401."""

    name = "smart"

    def __init__(
        self,
        *,
        client_id: str,
        private_key: Any,
        algorithm: str,
        kid: str,
        scope: str,
        base_url: str,
        token_url: str | None = None,
        now: Callable[[], float] = time.time,
    ):
        check_key_matches(private_key, algorithm, f"SMART client {client_id}")
        self.client_id = client_id
        self._key = private_key
        self.algorithm = algorithm
        self.kid = kid
        self.scope = scope
        self.base_url = base_url.rstrip("/")
        self.token_url = token_url
        self._now = now
        self._token: str | None = None
        self._expires_at = 0.0
        self.granted_scope: str | None = None
        self.expires_in: float | None = None
        self.tokens_fetched = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SmartBackendAuth(client_id={self.client_id!r}, algorithm={self.algorithm}, kid={self.kid!r})"

    def authorization(self, http: HttpClient) -> str | None:
        with self._lock:
            if self._token is None or self._now() >= self._expires_at:
                self._fetch_token(http)
            return f"Bearer {self._token}"

    def invalidate(self) -> bool:
        with self._lock:
            self._token = None
        return True

    def client_assertion(self, token_url: str) -> str:
        """A fresh single-use assertion: iss = sub = client_id, aud = token URL, unique jti."""
        now = int(self._now())
        claims = {"iss": self.client_id, "sub": self.client_id, "aud": token_url,
                  "exp": now + ASSERTION_LIFETIME, "jti": uuid.uuid4().hex}
        return jwt.encode(claims, self._key, algorithm=self.algorithm, headers={"kid": self.kid, "typ": "JWT"})

    def discover_token_url(self, http: HttpClient) -> str:
        """`[base]/.well-known/smart-configuration`, else the CapabilityStatement's oauth-uris."""
        if self.token_url:
            return self.token_url
        try:
            config = http.get_json(f"{self.base_url}/.well-known/smart-configuration", authenticate=False,
                                   headers={"Accept": "application/json"})
            if isinstance(config, dict) and isinstance(config.get("token_endpoint"), str):
                self.token_url = config["token_endpoint"]
                return self.token_url
        except FhirRequestError as exc:
            log.info("no SMART configuration at %s/.well-known/smart-configuration (HTTP %d)",
                     self.base_url, exc.status)
        statement = http.get_json(f"{self.base_url}/metadata", authenticate=False)
        found = token_url_from_capabilities(statement)
        if not found:
            raise AuthError(f"{self.base_url}: no SMART token endpoint found (neither .well-known/smart-configuration "
                            "nor the CapabilityStatement names one); set token_url in the server's [auth]")
        self.token_url = found
        return found

    def _fetch_token(self, http: HttpClient) -> None:
        token_url = self.discover_token_url(http)

        def form() -> str:  # rebuilt for every attempt: a jti must never be replayed
            return urlencode({"grant_type": "client_credentials", "scope": self.scope,
                              "client_assertion_type": ASSERTION_TYPE,
                              "client_assertion": self.client_assertion(token_url)})

        try:
            response = http.request("POST", token_url, authenticate=False, data_factory=form,
                                    headers={"Content-Type": "application/x-www-form-urlencoded",
                                             "Accept": "application/json"})
        except FhirRequestError as exc:
            raise AuthError(f"SMART token request for client {self.client_id} refused: {exc}") from None
        except SourceError as exc:
            # some servers answer 500 when the key type differs from the registered one
            hint = (f" (check that {self.algorithm} and the key match the key registered for this client)"
                    if "HTTP 500" in str(exc) else "")
            raise AuthError(f"SMART token request for client {self.client_id} failed: {exc}{hint}") from None
        body = http.json(response)
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthError(f"SMART token response from {token_url} has no access_token")
        token_type = body.get("token_type", "bearer")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise AuthError(f"SMART token response from {token_url}: unsupported token_type {token_type!r}")
        expires_in = body.get("expires_in")
        if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)) or expires_in <= 0:
            expires_in = 300.0  # the spec says servers SHOULD send it; 5 minutes is its usual value
        # renew a little early so a token does not expire between being attached and being checked
        margin = min(60.0, expires_in / 5)
        self._token = token
        self._expires_at = self._now() + expires_in - margin
        self.expires_in = float(expires_in)
        self.granted_scope = body.get("scope") if isinstance(body.get("scope"), str) else None
        self.tokens_fetched += 1
        log.info("SMART access token for client %s (expires in %.0f s, scope %s)", self.client_id, expires_in,
                 self.granted_scope or self.scope)


def token_url_from_capabilities(statement: Any) -> str | None:
    """The token URL a CapabilityStatement advertises in rest.security's oauth-uris extension."""
    if not isinstance(statement, dict):
        return None
    for rest in statement.get("rest") or []:
        security = rest.get("security") if isinstance(rest, dict) else None
        for ext in (security or {}).get("extension") or []:
            if isinstance(ext, dict) and ext.get("url") == OAUTH_URIS:
                for sub in ext.get("extension") or []:
                    if isinstance(sub, dict) and sub.get("url") == "token" and isinstance(sub.get("valueUri"), str):
                        return sub["valueUri"]
    return None


def _smart_key(auth: AuthConfig, where: str) -> tuple[Any, str | None]:
    sources = [s for s in (auth.private_key_file, auth.private_key_env, auth.jwks_file) if s]
    if len(sources) != 1:
        raise ConfigError(f"{where}: SMART auth needs exactly one of private_key_file, private_key_env, jwks_file")
    if auth.private_key_file:
        path = Path(auth.private_key_file).expanduser()
        warn_if_readable_by_others(path)
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read private_key_file {path} ({exc.strerror or exc})") from None
        return load_pem_key(pem, f"{where}: private_key_file {path}"), None
    if auth.private_key_env:
        pem_text = auth.secret(auth.private_key_env) or ""
        return load_pem_key(pem_text.encode(), f"{where}: environment variable {auth.private_key_env}"), None
    warn_if_readable_by_others(Path(auth.jwks_file).expanduser())  # type: ignore[arg-type]
    return load_jwks_key(Path(auth.jwks_file).expanduser(), auth.key_id, auth.algorithm)  # type: ignore[arg-type]


AnyAuth = NoAuth | BasicAuth | BearerAuth | SmartBackendAuth


def build_auth(server: ServerConfig, now: Callable[[], float] = time.time) -> AnyAuth:
    """The Auth object for a configured server; configuration mistakes are ConfigErrors."""
    auth = server.auth
    where = f"server {server.name} [auth]"
    kind = (auth.type or "none").lower()
    if kind == "none":
        return NoAuth()
    if kind == "basic":
        if not auth.username or not auth.password_env:
            raise ConfigError(f"{where}: basic auth needs username and password_env")
        return BasicAuth(auth.username, auth.secret(auth.password_env) or "")
    if kind == "bearer":
        if not auth.token_env:
            raise ConfigError(f"{where}: bearer auth needs token_env (the variable holding the token)")
        return BearerAuth(auth.secret(auth.token_env) or "")
    if kind == "smart":
        if not auth.client_id:
            raise ConfigError(f"{where}: SMART auth needs client_id")
        key, jwk_kid = _smart_key(auth, where)
        check_key_matches(key, auth.algorithm, where)
        kid = auth.key_id or jwk_kid or jwk_thumbprint(key.public_key())
        return SmartBackendAuth(client_id=auth.client_id, private_key=key, algorithm=auth.algorithm, kid=kid,
                                scope=auth.scope or default_read_scope(), base_url=server.url, token_url=auth.token_url, now=now)
    raise ConfigError(f"{where}: unknown auth type {auth.type!r} (use none, basic, bearer or smart)")
