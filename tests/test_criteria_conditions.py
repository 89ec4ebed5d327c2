"""Diagnosis criteria of the seed mapping: code sets, prefixes, exclusions, review deferrals."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.codes import SNOMED
from connector.criteria import EvalContext
from connector.evaluation import evaluate_criterion
from connector.mapping import load_mapping
from engine_helpers import AS_OF, condition, patient, with_facts

MAPPING = Path(__file__).resolve().parents[1] / "mappings" / "NCT05773274.yaml"


@pytest.fixture(scope="module")
def mapping():
    return load_mapping(MAPPING)


def run(mapping, criterion_id, *items):
    return evaluate_criterion(mapping.criterion(criterion_id), EvalContext(with_facts(patient(), *items), AS_OF))


@pytest.mark.parametrize("code, expected", [
    ("C7A.012", ("met", "record")),     # ileum
    ("C7A012", ("met", "record")),      # without the dot
    ("c7a.00", ("met", "record")),      # unspecified site still counts for the diagnosis
    ("C7A.092", ("met", "record")),     # stomach
    ("C7A.8", ("met", "record")),
    ("C25.4", ("met", "record")),
    ("C7A.090", ("not_met", "no-record")),  # bronchus and lung
    ("C7A.091", ("not_met", "no-record")),  # thymus
    ("C7A.093", ("not_met", "no-record")),  # kidney
    ("C7A.1", ("not_met", "no-record")),    # poorly differentiated
    ("C25.0", ("not_met", "no-record")),    # exocrine pancreas head
])
def test_gepnet_diagnosis_codes(mapping, code, expected):
    result = run(mapping, "gepnet_diagnosis", condition("c", code))
    assert (result.outcome, result.reason) == expected
    if expected[0] == "met":
        assert result.evidence[0].reference == "Condition/c" and result.evidence[0].value == code


def test_icd_codes_via_oid_system(mapping):
    result = run(mapping, "gepnet_diagnosis", condition("c", "C7A.012", "urn:oid:2.16.840.1.113883.6.90"))
    assert result.outcome == "met"


def test_excluded_site_wins_within_one_condition_and_other_conditions_still_count(mapping):
    lung = condition("lung", "C7A.090")
    assert run(mapping, "gepnet_diagnosis", lung).outcome == "not_met"
    result = run(mapping, "gepnet_diagnosis", lung, condition("ileum", "C7A.012"))
    assert result.outcome == "met" and [e.reference for e in result.evidence] == ["Condition/ileum"]


def test_diagnosis_after_screening_date_is_ignored(mapping):
    assert run(mapping, "gepnet_diagnosis", condition("c", "C7A.012", days=-10)).outcome == "not_met"


def test_resolved_diagnosis_still_counts_as_history(mapping):
    assert run(mapping, "gepnet_diagnosis", condition("c", "C7A.012", status="resolved")).outcome == "met"


@pytest.mark.parametrize("item", [condition("m", "C79.31"), condition("m", "94225005", SNOMED)])
def test_brain_metastases_go_to_review_with_evidence(mapping, item):
    result = run(mapping, "no_brain_metastases", item)
    assert (result.outcome, result.reason) == ("unknown", "manual")
    assert result.evidence[0].reference == "Condition/m"


def test_no_brain_metastases_on_record_is_met(mapping):
    result = run(mapping, "no_brain_metastases", condition("x", "C79.51"))
    assert (result.outcome, result.reason) == ("met", "no-record")


@pytest.mark.parametrize("item, expected", [
    (condition("hf", "I50.9"), ("unknown", "manual")),
    (condition("hf", "I50.22"), ("unknown", "manual")),
    (condition("hf", "88805009", SNOMED), ("unknown", "manual")),
    (condition("hf", "42343007", SNOMED, status=None), ("unknown", "manual")),
    (condition("hf", "I50.9", status="resolved"), ("met", "no-record")),
    (condition("hf", "I10"), ("met", "no-record")),
])
def test_heart_failure(mapping, item, expected):
    result = run(mapping, "no_uncontrolled_chf", item)
    assert (result.outcome, result.reason) == expected
