"""Auth: basic/bearer from the environment, SMART Backend Services assertions, token caching,
discovery and renewal, and secrets kept out of reprs and errors."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import jwt
import pytest
import responses
from cryptography.hazmat.primitives import serialization

from connector.config import AuthConfig, ServerConfig
from connector.errors import ConfigError
from connector.fhir.auth import (
    ASSERTION_TYPE,
    AuthError,
    BasicAuth,
    BearerAuth,
    NoAuth,
    SmartBackendAuth,
    build_auth,
    jwk_thumbprint,
)
from connector.fhir.http import HttpClient
from fhir_server import ClientKey

BASE = "http://127.0.0.1:8090/fhir"
TOKEN_URL = "http://127.0.0.1:8090/auth/token"


class Clock:
    def __init__(self, start: float = 1_800_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def rsa_key() -> ClientKey:
    return ClientKey.generate("RS384", kid="k-rsa")


@pytest.fixture(scope="module")
def ec_key() -> ClientKey:
    return ClientKey.generate("ES384", kid="k-ec")


def server(auth: AuthConfig, **settings) -> ServerConfig:
    return ServerConfig(name="hospital", url=BASE, auth=auth, **{"max_retries": 2, **settings})


def smart(key: ClientKey, clock: Clock, token_url: str | None = TOKEN_URL,
          scope: str = "system/*.rs") -> SmartBackendAuth:
    private = serialization.load_pem_private_key(key.private_pem, password=None)
    return SmartBackendAuth(client_id="connector", private_key=private, algorithm=key.algorithm, kid=key.kid,
                            scope=scope, base_url=BASE, token_url=token_url, now=clock)


def http_for(auth, clock: Clock) -> HttpClient:
    return HttpClient(server(AuthConfig()), auth=auth, sleep=lambda s: None, now=clock, jitter=lambda: 0.5)


def token_reply(token: str = "tok-1", expires_in: int = 300, **extra) -> dict:
    return {"access_token": token, "token_type": "bearer", "expires_in": expires_in, "scope": "system/*.rs", **extra}


def decode_assertion(call, key: ClientKey) -> tuple[dict, dict]:
    form = parse_qs(call.request.body)
    assert form["grant_type"] == ["client_credentials"]
    assert form["client_assertion_type"] == [ASSERTION_TYPE]
    assertion = form["client_assertion"][0]
    public = jwt.PyJWK(key.public_jwk).key
    claims = jwt.decode(assertion, public, algorithms=[key.algorithm], audience=TOKEN_URL,
                        options={"verify_exp": False})
    return jwt.get_unverified_header(assertion), claims | {"scope": form["scope"][0]}


# ---- none / basic / bearer --------------------------------------------------------------

def test_no_auth_sends_nothing():
    assert isinstance(build_auth(server(AuthConfig())), NoAuth)


def test_basic_auth_reads_the_password_from_the_environment(monkeypatch):
    monkeypatch.setenv("FHIR_PW", "s3cret-pw")
    auth = build_auth(server(AuthConfig(type="basic", username="svc", password_env="FHIR_PW")))
    assert isinstance(auth, BasicAuth)
    assert auth.authorization(None) == "Basic c3ZjOnMzY3JldC1wdw=="  # base64("svc:s3cret-pw")
    assert "s3cret" not in repr(auth)


def test_bearer_token_from_the_environment(monkeypatch):
    monkeypatch.setenv("FHIR_TOKEN", "tok-abc")
    auth = build_auth(server(AuthConfig(type="bearer", token_env="FHIR_TOKEN")))
    assert isinstance(auth, BearerAuth) and auth.authorization(None) == "Bearer tok-abc"
    assert "tok-abc" not in repr(auth) and auth.invalidate() is False


def test_missing_secret_names_the_variable_not_a_value(monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    with pytest.raises(ConfigError, match="NOT_SET_ANYWHERE is not set"):
        build_auth(server(AuthConfig(type="bearer", token_env="NOT_SET_ANYWHERE")))


def test_unknown_auth_type_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown auth type 'kerberos'"):
        build_auth(server(AuthConfig(type="kerberos")))


# ---- SMART keys --------------------------------------------------------------------------

def test_smart_key_from_pem_file_with_thumbprint_kid(tmp_path, rsa_key):
    pem = rsa_key.write_pem(tmp_path)
    auth = build_auth(server(AuthConfig(type="smart", client_id="connector", private_key_file=str(pem))))
    assert isinstance(auth, SmartBackendAuth)
    expected = jwk_thumbprint(serialization.load_pem_private_key(rsa_key.private_pem, None).public_key())
    assert auth.kid == expected and len(expected) == 43


def test_smart_key_from_environment(monkeypatch, ec_key):
    monkeypatch.setenv("SMART_KEY", ec_key.private_pem.decode())
    auth = build_auth(server(AuthConfig(type="smart", client_id="c", private_key_env="SMART_KEY",
                                        algorithm="ES384", key_id="k-ec")))
    assert isinstance(auth, SmartBackendAuth) and auth.kid == "k-ec" and auth.algorithm == "ES384"


def test_smart_key_from_jwks_file_picked_by_kid(tmp_path, rsa_key, ec_key):
    def private_jwk(key: ClientKey) -> dict:
        loaded = serialization.load_pem_private_key(key.private_pem, None)
        algo = jwt.algorithms.RSAAlgorithm if key.algorithm == "RS384" else jwt.algorithms.ECAlgorithm
        return {**algo.to_jwk(loaded, as_dict=True), "kid": key.kid, "alg": key.algorithm}

    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [rsa_key.public_jwk, private_jwk(rsa_key), private_jwk(ec_key)]}))
    auth = build_auth(server(AuthConfig(type="smart", client_id="c", jwks_file=str(jwks), algorithm="ES384")))
    assert auth.kid == "k-ec"
    auth = build_auth(server(AuthConfig(type="smart", client_id="c", jwks_file=str(jwks), key_id="k-rsa")))
    assert auth.kid == "k-rsa" and auth.algorithm == "RS384"
    with pytest.raises(ConfigError, match="no private key with kid 'nope'"):
        build_auth(server(AuthConfig(type="smart", client_id="c", jwks_file=str(jwks), key_id="nope")))


def test_key_and_algorithm_must_match(tmp_path, rsa_key):
    pem = rsa_key.write_pem(tmp_path)
    with pytest.raises(ConfigError, match="ES384 needs an EC private key on curve P-384"):
        build_auth(server(AuthConfig(type="smart", client_id="c", private_key_file=str(pem), algorithm="ES384")))


def test_bad_key_file_is_named_without_content(tmp_path):
    bad = tmp_path / "key.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nAAAA-not-a-key\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError) as err:
        build_auth(server(AuthConfig(type="smart", client_id="c", private_key_file=str(bad))))
    assert str(bad) in str(err.value) and "AAAA" not in str(err.value)


def test_smart_needs_exactly_one_key_source(tmp_path):
    with pytest.raises(ConfigError, match="exactly one of"):
        build_auth(server(AuthConfig(type="smart", client_id="c")))


# ---- SMART token flow --------------------------------------------------------------------

@pytest.mark.parametrize("key_name", ["rsa_key", "ec_key"])
@responses.activate
def test_client_assertion_follows_smart_backend_services(request, key_name):
    key: ClientKey = request.getfixturevalue(key_name)
    clock = Clock()
    responses.post(TOKEN_URL, json=token_reply())
    auth = smart(key, clock)
    assert auth.authorization(http_for(auth, clock)) == "Bearer tok-1"
    header, claims = decode_assertion(responses.calls[0], key)
    assert header["alg"] == key.algorithm and header["kid"] == key.kid
    assert claims["iss"] == claims["sub"] == "connector"
    assert claims["aud"] == TOKEN_URL
    assert 0 < claims["exp"] - clock.now <= 300
    assert claims["scope"] == "system/*.rs"


def test_every_assertion_has_a_unique_jti(rsa_key):
    auth = smart(rsa_key, Clock())
    public = jwt.PyJWK(rsa_key.public_jwk).key
    jtis = {jwt.decode(auth.client_assertion(TOKEN_URL), public, algorithms=["RS384"], audience=TOKEN_URL,
                       options={"verify_exp": False})["jti"] for _ in range(20)}
    assert len(jtis) == 20


@responses.activate
def test_token_is_cached_and_renewed_before_expiry(rsa_key):
    clock = Clock()
    responses.post(TOKEN_URL, json=token_reply("tok-1", expires_in=300))
    responses.post(TOKEN_URL, json=token_reply("tok-2", expires_in=300))
    auth = smart(rsa_key, clock)
    http = http_for(auth, clock)
    assert auth.authorization(http) == "Bearer tok-1"
    clock.now += 200
    assert auth.authorization(http) == "Bearer tok-1"
    assert len(responses.calls) == 1
    clock.now += 45  # 245 s: within the last minute of the token's life -> renewed early
    assert auth.authorization(http) == "Bearer tok-2"
    assert len(responses.calls) == 2 and auth.tokens_fetched == 2


@responses.activate
def test_token_url_is_discovered_from_smart_configuration(rsa_key):
    clock = Clock()
    discovered = "http://127.0.0.1:8090/oauth2/token"
    responses.get(f"{BASE}/.well-known/smart-configuration", json={"token_endpoint": discovered})
    responses.post(discovered, json=token_reply())
    auth = smart(rsa_key, clock, token_url=None)
    auth.authorization(http_for(auth, clock))
    assert auth.token_url == discovered
    public = jwt.PyJWK(rsa_key.public_jwk).key
    assertion = parse_qs(responses.calls[1].request.body)["client_assertion"][0]
    assert jwt.decode(assertion, public, algorithms=["RS384"], audience=discovered,
                      options={"verify_exp": False})["aud"] == discovered


@responses.activate
def test_token_url_falls_back_to_capability_statement(rsa_key):
    clock = Clock()
    responses.get(f"{BASE}/.well-known/smart-configuration", status=404)
    security = {"extension": [{"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                               "extension": [{"url": "token", "valueUri": TOKEN_URL}]}]}
    responses.get(f"{BASE}/metadata", json={"resourceType": "CapabilityStatement",
                                            "rest": [{"mode": "server", "security": security}]})
    responses.post(TOKEN_URL, json=token_reply())
    auth = smart(rsa_key, clock, token_url=None)
    assert auth.authorization(http_for(auth, clock)) == "Bearer tok-1"
    assert auth.token_url == TOKEN_URL


@responses.activate
def test_no_token_url_anywhere_is_a_clear_error(rsa_key):
    clock = Clock()
    responses.get(f"{BASE}/.well-known/smart-configuration", status=404)
    responses.get(f"{BASE}/metadata", json={"resourceType": "CapabilityStatement", "rest": []})
    auth = smart(rsa_key, clock, token_url=None)
    with pytest.raises(AuthError, match="no SMART token endpoint found"):
        auth.authorization(http_for(auth, clock))


@responses.activate
def test_refused_token_request_explains_without_secrets(rsa_key):
    clock = Clock()
    responses.post(TOKEN_URL, status=401, json={"error": "invalid_client",
                                                "error_description": "client_assertion verification failed"})
    auth = smart(rsa_key, clock)
    with pytest.raises(AuthError) as err:
        auth.authorization(http_for(auth, clock))
    message = str(err.value)
    assert "invalid_client; client_assertion verification failed" in message and "HTTP 401" in message
    assertion = parse_qs(responses.calls[0].request.body)["client_assertion"][0]
    assert assertion not in message and "PRIVATE KEY" not in message
    assert err.value.exit_code == 2


@responses.activate
def test_token_request_retry_uses_a_fresh_assertion(rsa_key):
    clock = Clock()
    responses.post(TOKEN_URL, status=503)
    responses.post(TOKEN_URL, json=token_reply())
    auth = smart(rsa_key, clock)
    auth.authorization(http_for(auth, clock))
    jtis = [decode_assertion(call, rsa_key)[1]["jti"] for call in responses.calls]
    assert len(jtis) == 2 and jtis[0] != jtis[1]


@responses.activate
def test_token_response_without_access_token_is_an_error(rsa_key):
    clock = Clock()
    responses.post(TOKEN_URL, json={"token_type": "bearer"})
    auth = smart(rsa_key, clock)
    with pytest.raises(AuthError, match="has no access_token"):
        auth.authorization(http_for(auth, clock))


@responses.activate
def test_401_from_fhir_server_renews_the_token_once(rsa_key):
    clock = Clock()
    responses.post(TOKEN_URL, json=token_reply("tok-1"))
    responses.post(TOKEN_URL, json=token_reply("tok-2"))
    responses.get(f"{BASE}/Patient", status=401, headers={"WWW-Authenticate": 'Bearer realm="x"'})
    responses.get(f"{BASE}/Patient", json={"resourceType": "Bundle"})
    auth = smart(rsa_key, clock)
    http = http_for(auth, clock)
    assert http.get_json("Patient") == {"resourceType": "Bundle"}
    searches = [c for c in responses.calls if c.request.method == "GET"]
    assert [c.request.headers["Authorization"] for c in searches] == ["Bearer tok-1", "Bearer tok-2"]
    assert auth.tokens_fetched == 2


def test_smart_repr_has_no_key_material(rsa_key):
    text = repr(smart(rsa_key, Clock()))
    assert "connector" in text and "PRIVATE" not in text and "_key" not in text
