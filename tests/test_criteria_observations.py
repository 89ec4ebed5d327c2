"""Lab and score criteria of the seed mapping at every boundary the trial text states."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.codes import LOINC, SNOMED
from connector.criteria import EvalContext
from connector.evaluation import evaluate_criterion
from connector.mapping import load_mapping
from engine_helpers import AS_OF, condition, obs, patient, with_facts

MAPPING = Path(__file__).resolve().parents[1] / "mappings" / "NCT05773274.yaml"


@pytest.fixture(scope="module")
def mapping():
    return load_mapping(MAPPING)


def run(mapping, criterion_id, *items, gender="female"):
    facts = with_facts(patient(gender=gender), *items)
    return evaluate_criterion(mapping.criterion(criterion_id), EvalContext(facts, AS_OF))


def outcome(result):
    return result.outcome, result.reason


@pytest.mark.parametrize("value, unit, expected", [
    (80, "g/L", "met"), (79, "g/L", "not_met"), (79.9, "g/L", "not_met"),
    (8.0, "g/dL", "met"), (7.9, "g/dL", "not_met"), (8000, "mg/dL", "met"), (800, "mg/dL", "not_met"),
])
def test_hemoglobin_boundary(mapping, value, unit, expected):
    result = run(mapping, "hemoglobin", obs("hb", "718-7", 3, value, unit))
    assert outcome(result) == (expected, "value")
    assert result.evidence[0].reference == "Observation/hb"
    assert (result.evidence[0].value, result.evidence[0].unit) == (value, unit)  # as recorded, not converted


@pytest.mark.parametrize("value, unit, expected", [
    (999, "/uL", "not_met"), (1000, "/uL", "met"), (1000, "/mm3", "met"), (999, "/mm3", "not_met"),
    (1.0, "10*9/L", "met"), (0.99, "10*9/L", "not_met"), (1.0, "10*3/uL", "met"), (1.0, "x10^9/L", "met"),
])
def test_neutrophil_boundary(mapping, value, unit, expected):
    assert outcome(run(mapping, "neutrophils", obs("anc", "751-8", 3, value, unit))) == (expected, "value")


def test_neutrophils_second_loinc_code_counts(mapping):
    assert outcome(run(mapping, "neutrophils", obs("anc", "26499-4", 3, 1.5, "10*9/L"))) == ("met", "value")


@pytest.mark.parametrize("value, unit, expected", [
    (80, "10*3/uL", "met"), (79, "10*3/uL", "not_met"), (80, "10*9/L", "met"), (80000, "/uL", "met"),
    (80, "K/uL", "met"),
])
def test_platelet_boundary(mapping, value, unit, expected):
    assert outcome(run(mapping, "platelets", obs("plt", "777-3", 3, value, unit))) == (expected, "value")


@pytest.mark.parametrize("days, expected", [(0, ("met", "value")), (28, ("met", "value")), (29, ("unknown", "stale"))])
def test_window_is_28_days_inclusive(mapping, days, expected):
    result = run(mapping, "hemoglobin", obs("hb", "718-7", days, 12.0, "g/dL"))
    assert outcome(result) == expected
    assert result.evidence[0].reference == "Observation/hb"  # a stale value is still shown


def test_latest_value_in_window_decides(mapping):
    older_good, newer_bad = obs("hb1", "718-7", 20, 12.0, "g/dL"), obs("hb2", "718-7", 2, 7.5, "g/dL")
    result = run(mapping, "hemoglobin", older_good, newer_bad)
    assert outcome(result) == ("not_met", "value")
    assert [e.reference for e in result.evidence] == ["Observation/hb2"]
    assert outcome(run(mapping, "hemoglobin", newer_bad, obs("hb3", "718-7", 1, 9.0, "g/dL"))) == ("met", "value")


def test_values_after_the_screening_date_are_ignored(mapping):
    result = run(mapping, "hemoglobin", obs("hb", "718-7", 5, 12.0, "g/dL"), obs("later", "718-7", -3, 5.0, "g/dL"))
    assert outcome(result) == ("met", "value")


def test_stale_reports_the_latest_old_value(mapping):
    result = run(mapping, "platelets", obs("old", "777-3", 200, 50, "10*3/uL"), obs("older", "777-3", 60, 150, "10*3/uL"))
    assert outcome(result) == ("unknown", "stale")
    assert [e.reference for e in result.evidence] == ["Observation/older"]


def test_no_data(mapping):
    assert outcome(run(mapping, "hemoglobin")) == ("unknown", "no-data")
    assert outcome(run(mapping, "hemoglobin", obs("other", "2345-7", 3, 5.0, "mmol/L"))) == ("unknown", "no-data")


@pytest.mark.parametrize("unit", ["U/L", "mg", "g/dq", None])
def test_unconvertible_unit_is_unknown_unit(mapping, unit):
    result = run(mapping, "hemoglobin", obs("hb", "718-7", 3, 8.0, unit))
    assert outcome(result) == ("unknown", "unit")
    assert result.evidence[0].reference == "Observation/hb"


@pytest.mark.parametrize("value, expected", [(8.0, "met"), (4.97, "met"), (4.95, "not_met")])
def test_hemoglobin_in_mmol_per_litre_uses_the_monomer_molar_mass(mapping, value, expected):
    # 1 mmol/L = 16.1145 g/L (16,114.5 g/mol), so the 80 g/L threshold is 4.964 mmol/L
    assert outcome(run(mapping, "hemoglobin", obs("hb", "59260-0", 3, value, "mmol/L")))[0] == expected


@pytest.mark.parametrize("value, high, expected", [
    (1.49, 1.0, "met"), (1.5, 1.0, "not_met"), (1.79, 1.2, "met"), (1.8, 1.2, "not_met"), (0.3, 1.2, "met"),
])
def test_bilirubin_relative_to_uln(mapping, value, high, expected):
    result = run(mapping, "bilirubin", obs("bili", "1975-2", 3, value, "mg/dL", high=high))
    assert outcome(result) == (expected, "value")


def test_bilirubin_molar_value_against_mass_uln(mapping):
    # 30 umol/L = 1.754 mg/dL; ULN 1.2 mg/dL -> 1.46 x ULN -> met; 31 umol/L -> 1.51 x ULN
    assert run(mapping, "bilirubin", obs("b", "14631-6", 3, 30, "umol/L", high=1.2, high_unit="mg/dL")).outcome == "met"
    assert run(mapping, "bilirubin", obs("b", "14631-6", 3, 31, "umol/L", high=1.2, high_unit="mg/dL")).outcome == "not_met"
    assert run(mapping, "bilirubin", obs("b", "14631-6", 3, 31, "umol/L", high=21)).outcome == "met"


def test_bilirubin_without_reference_range(mapping):
    result = run(mapping, "bilirubin", obs("bili", "1975-2", 3, 0.5, "mg/dL"))
    assert outcome(result) == ("unknown", "no-reference-range")
    assert result.evidence[0].reference == "Observation/bili"


def test_gilberts_syndrome_defers_a_high_bilirubin_to_review(mapping):
    high = obs("bili", "1975-2", 3, 2.4, "mg/dL", high=1.2)
    gilbert = condition("gil", "E80.4")
    result = run(mapping, "bilirubin", high, gilbert)
    assert outcome(result) == ("unknown", "manual")
    assert {e.reference for e in result.evidence} == {"Observation/bili", "Condition/gil"}
    assert outcome(run(mapping, "bilirubin", high)) == ("not_met", "value")
    assert outcome(run(mapping, "bilirubin", obs("bili", "1975-2", 3, 0.9, "mg/dL", high=1.2), gilbert)) == ("met", "value")


@pytest.mark.parametrize("comparator, value, expected", [
    ("<", 0.2, ("met", "value")),      # <0.2 mg/dL with ULN 1.2 is certainly < 1.5 x ULN
    (">", 5, ("not_met", "value")),  # >5 is certainly >= 1.5 x ULN
    ("<", 3, ("unknown", "censored")),
])
def test_censored_values(mapping, comparator, value, expected):
    result = run(mapping, "bilirubin", obs("bili", "1975-2", 3, value, "mg/dL", high=1.2, comparator=comparator))
    assert outcome(result) == expected
    assert result.evidence[0].value == f"{comparator}{value}"


@pytest.mark.parametrize("item, expected", [
    (obs("e", "89247-1", 10, 2.0, None), "met"),
    (obs("e", "89247-1", 10, 3.0, None), "not_met"),
    (obs("e", "89247-1", 10, 0.0, "{score}"), "met"),
    (obs("e", "89247-1", 10, answer=(LOINC, "LA9624-3")), "met"),
    (obs("e", "89247-1", 10, answer=(LOINC, "LA9625-0")), "not_met"),
    (obs("e", "89247-1", 10, answer=(LOINC, "LA9627-6")), "not_met"),
    (obs("e", "89247-1", 10, answer=(SNOMED, "422894000")), "met"),
    (obs("e", "89247-1", 10, answer=(SNOMED, "423053003")), "not_met"),
])
def test_ecog_integer_or_answer_codes(mapping, item, expected):
    assert outcome(run(mapping, "ecog", item)) == (expected, "value")


def test_ecog_window_is_90_days_and_unknown_answers_are_no_data(mapping):
    assert outcome(run(mapping, "ecog", obs("e", "89247-1", 90, 1.0, None))) == ("met", "value")
    assert outcome(run(mapping, "ecog", obs("e", "89247-1", 91, 1.0, None))) == ("unknown", "stale")
    assert outcome(run(mapping, "ecog", obs("e", "89247-1", 5, answer=(LOINC, "LA0000-0")))) == ("unknown", "no-data")


PREGNANT = (SNOMED, "77386006")
NOT_PREGNANT = (SNOMED, "60001007")


@pytest.mark.parametrize("items, expected", [
    ([obs("p", "82810-3", 28, answer=PREGNANT)], ("not_met", "record")),
    ([obs("p", "82810-3", 3, answer=(LOINC, "LA15173-0"))], ("not_met", "record")),
    ([obs("p", "82810-3", 29, answer=PREGNANT)], ("met", "no-record")),  # older records are not evidence
    ([obs("p", "82810-3", 3, answer=NOT_PREGNANT)], ("met", "record")),
    ([obs("p", "82810-3", 20, answer=PREGNANT), obs("q", "82810-3", 2, answer=NOT_PREGNANT)], ("met", "record")),
    ([obs("h", "2106-3", 5, answer=(LOINC, "LA6576-8"))], ("not_met", "record")),
    ([obs("h", "2118-8", 5, answer=(SNOMED, "10828004"))], ("not_met", "record")),
    ([obs("h", "2118-8", 5, text="POSITIVE")], ("not_met", "record")),
    ([obs("h", "2118-8", 5, text="negative")], ("met", "record")),
    ([], ("met", "no-record")),
])
def test_not_pregnant(mapping, items, expected):
    assert outcome(run(mapping, "not_pregnant", *items)) == expected


def test_male_patient_without_pregnancy_data_is_not_pregnant(mapping):
    assert outcome(run(mapping, "not_pregnant", gender="male")) == ("met", "demographics")


def test_pregnant_status_or_positive_hcg_either_excludes(mapping):
    result = run(mapping, "not_pregnant", obs("p", "82810-3", 3, answer=NOT_PREGNANT),
                 obs("h", "2106-3", 1, answer=(LOINC, "LA6576-8")))
    assert outcome(result) == ("not_met", "record")
    assert "Observation/h" in [e.reference for e in result.evidence]
