"""The seed mapping for NCT05773274 accounts for every bullet of the registry text."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from connector.mapping import criteria_hash, criteria_text_of, hash_mismatch_warning, load_mapping
from connector.mapping.model import ArmOption, ManualRule

ROOT = Path(__file__).resolve().parents[1]
RECORD = json.loads((Path(__file__).parent / "fixtures" / "ctgov" / "NCT05773274.json").read_text(encoding="utf-8"))
REQUIRED_IDS = {"age", "gepnet_diagnosis", "prior_prrt", "no_targeted_alpha", "ecog", "hemoglobin", "neutrophils",
                "platelets", "bilirubin", "creatinine_clearance", "not_pregnant", "no_brain_metastases",
                "no_uncontrolled_chf"}


@pytest.fixture(scope="module")
def mapping():
    return load_mapping(ROOT / "mappings" / "NCT05773274.yaml")


def unescape(text: str) -> str:
    """Registry markdown escapes (`\\>`, `=\\<`, `10\\^9`) removed, whitespace folded."""
    return re.sub(r"\s+", " ", text.replace("\\", "")).strip()


def bullets(text: str) -> list[str]:
    return [unescape(line[2:]) for line in text.splitlines() if line.startswith("* ")]


def test_required_ids(mapping):
    assert REQUIRED_IDS <= {c.id for c in mapping.criteria}


def test_every_bullet_is_covered_and_every_text_is_quoted_verbatim(mapping):
    text = criteria_text_of(RECORD)
    registry = unescape(text)
    quotes = [unescape(t) for c in mapping.criteria for t in c.texts if not t.startswith("minimumAge:")]
    for quote in quotes:
        assert quote in registry, f"not in the registry text: {quote[:60]}"
    all_bullets = bullets(text)
    assert len(all_bullets) == 28  # 23 inclusion + 5 exclusion bullets
    uncovered = [b[:70] for b in all_bullets if not any(q in b for q in quotes)]
    assert uncovered == []


def test_age_comes_from_the_registry_minimum_age(mapping):
    assert RECORD["protocolSection"]["eligibilityModule"]["minimumAge"] == "18 Years"
    assert mapping.criterion("age").rule.min_years == 18


def test_hash_is_of_the_registry_text(mapping):
    text = criteria_text_of(RECORD)
    assert mapping.criteria_hash == criteria_hash(text)
    assert hash_mismatch_warning(mapping.criteria_hash, "m.yaml", text, "record.json") is None
    warning = hash_mismatch_warning(mapping.criteria_hash, "m.yaml", text + " ", "record.json")
    assert warning and "m.yaml" in warning and "record.json" in warning and "review the mapping" in warning


def test_criteria_hash_definition():
    assert criteria_hash("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert criteria_hash("é") == __import__("hashlib").sha256("é".encode("utf-8")).hexdigest()


def test_exclusions_and_reviews(mapping):
    assert mapping.criterion("no_brain_metastases").review_if_found
    assert mapping.criterion("no_uncontrolled_chf").review_if_found
    assert mapping.criterion("not_pregnant").type == "exclusion"
    assert mapping.criterion("bilirubin").defer_if_not_met is not None
    assert isinstance(mapping.criterion("consent").rule, ManualRule)


def test_arm_labels_are_the_registry_labels_and_options_lower_case(mapping):
    labels = [a["label"] for a in RECORD["protocolSection"]["armsInterventionsModule"]["armGroups"]]
    assert [arm.label for arm in mapping.arms] == labels
    options: list[ArmOption] = [o for arm in mapping.arms for o in arm.options]
    assert all(o.name == o.name.lower() for o in options)
    assert [o.name for o in mapping.arms[1].options] == ["everolimus", "sunitinib", "cabozantinib"]
