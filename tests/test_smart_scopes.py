"""SMART scopes computed from the mappings, granted-scope comparison, `servers jwks`, key file modes."""

from __future__ import annotations

import json
import logging
from datetime import date
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from connector.fhir.auth import jwk_thumbprint, warn_if_readable_by_others
from connector.fhir.scopes import default_read_scope, missing_scopes, needed_scopes
from connector.mapping import data_needs, load_mapping
from registry_support import run_cli

SEED = Path(__file__).resolve().parents[1] / "mappings" / "NCT05773274.yaml"


def test_needed_scopes_follow_the_mapping():
    types = data_needs(load_mapping(SEED), date(2026, 11, 16)).resource_types
    scopes = needed_scopes(types)
    assert "system/Patient.rs" in scopes and "system/Observation.rs" in scopes
    assert ("system/Medication.rs" in scopes) == bool(types & {"MedicationRequest", "MedicationStatement",
                                                                "MedicationAdministration"})
    assert not any(s.endswith(".cu") for s in scopes)
    assert needed_scopes(["Observation"]) == ["system/Observation.rs", "system/Patient.rs"]
    assert needed_scopes(["Observation"], post_results=True)[-2:] == ["system/ResearchStudy.cu",
                                                                      "system/ResearchSubject.cu"]
    assert set(needed_scopes(types)) <= set(default_read_scope().split())


@pytest.mark.parametrize("granted, missing", [
    ("system/*.rs", []),
    ("system/*.read", []),
    ("system/*.*", []),
    ("system/Patient.rs system/Observation.read", []),
    ("system/Patient.r system/Observation.rs", ["system/Patient.rs"]),  # read without search
    ("system/Patient.rs", ["system/Observation.rs"]),
    ("patient/*.rs system/Patient.cruds", ["system/Observation.rs"]),  # patient/ scopes do not count
])
def test_granted_scopes_in_v1_and_v2_syntax(granted, missing):
    assert missing_scopes(["system/Patient.rs", "system/Observation.rs"], granted) == missing


def test_write_scope_is_checked_when_results_are_posted():
    needed = needed_scopes(["Observation"], post_results=True)
    assert missing_scopes(needed, "system/*.rs") == ["system/ResearchStudy.cu", "system/ResearchSubject.cu"]
    assert missing_scopes(needed, "system/*.rs system/ResearchStudy.write system/ResearchSubject.cu") == []


@pytest.mark.parametrize("kind", ["rsa", "ec"])
def test_servers_jwks_publishes_the_public_key_with_the_kid_the_client_sends(tmp_path, kind):
    key = (rsa.generate_private_key(65537, 2048) if kind == "rsa" else ec.generate_private_key(ec.SECP384R1()))
    pem = tmp_path / "k.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    pem.chmod(0o600)
    result = run_cli(["servers", "jwks", str(pem)])
    assert result.exit_code == 0 and result.stderr == ""
    (jwk,) = json.loads(result.stdout)["keys"]
    assert jwk["kid"] == jwk_thumbprint(key.public_key()) and jwk["alg"] == ("RS384" if kind == "rsa" else "ES384")
    assert "d" not in jwk  # never the private part
    token = jwt.encode({"sub": "x"}, key, algorithm=jwk["alg"])
    assert jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=[jwk["alg"]])["sub"] == "x"  # it is the same key pair
    named = json.loads(run_cli(["servers", "jwks", str(pem), "--kid", "hospital-2026"]).stdout)
    assert named["keys"][0]["kid"] == "hospital-2026"


def test_servers_jwks_errors_name_the_file(tmp_path):
    bad = tmp_path / "not-a-key.pem"
    bad.write_text("hello", encoding="utf-8")
    result = run_cli(["servers", "jwks", str(bad)])
    assert result.exit_code == 1 and result.stderr.startswith(f"error: {bad}") and "\n" == result.stderr[-1]
    missing = run_cli(["servers", "jwks", str(tmp_path / "nope.pem")])
    assert missing.exit_code == 1 and "nope.pem" in missing.stderr


def test_a_private_key_readable_by_others_is_warned_about(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    key = tmp_path / "open.pem"
    key.write_text("x", encoding="utf-8")
    key.chmod(0o644)
    warn_if_readable_by_others(key)
    warn_if_readable_by_others(key)  # said once
    said = [r.getMessage() for r in caplog.records]
    assert said == [f"private key file {key} is readable by other users (mode 0644): chmod 600 {key}"]
    private = tmp_path / "private.pem"
    private.write_text("x", encoding="utf-8")
    private.chmod(0o600)
    warn_if_readable_by_others(private)
    assert len(caplog.records) == 1
