"""Creatinine clearance: measured first, else Cockcroft-Gault with every input as evidence."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from connector.criteria import EvalContext
from connector.criteria.derived import cockcroft_gault
from connector.evaluation import evaluate_criterion
from connector.mapping import load_mapping
from engine_helpers import AS_OF, obs, patient, with_facts

MAPPING = Path(__file__).resolve().parents[1] / "mappings" / "NCT05773274.yaml"


@pytest.fixture(scope="module")
def mapping():
    return load_mapping(MAPPING)


def born(age: int) -> date:
    return date(AS_OF.year - age, 1, 1)


def run(mapping, *items, gender="male", age=60):
    facts = with_facts(patient(gender=gender, birth=born(age) if age is not None else None), *items)
    return evaluate_criterion(mapping.criterion("creatinine_clearance"), EvalContext(facts, AS_OF))


def scr(value=1.0, unit="mg/dL", days=5, code="2160-0"):
    return obs("scr", code, days, value, unit)


def weight(value=70, unit="kg", days=30):
    return obs("wt", "29463-7", days, value, unit)


def test_formula():
    assert cockcroft_gault(60, 70, 1.0, female=False) == pytest.approx(77.7777777778)
    assert cockcroft_gault(60, 70, 1.0, female=True) == pytest.approx(77.7777777778 * 0.85)


def test_computed_value_and_every_input_are_evidence(mapping):
    result = run(mapping, scr(), weight())
    assert (result.outcome, result.reason) == ("met", "value")
    refs = [e.reference for e in result.evidence]
    assert refs == ["Cockcroft-Gault", "Observation/scr", "Observation/wt", "Patient/p1", "Patient/p1"]
    assert result.evidence[0].value == 77.78 and result.evidence[0].unit == "mL/min"
    assert (result.evidence[1].value, result.evidence[1].unit) == (1, "mg/dL")
    assert (result.evidence[3].value, result.evidence[3].unit) == (60, "a")
    assert result.evidence[4].value == "male"
    assert all("-01-01" not in str(e.value) for e in result.evidence)  # birth date never shown


def test_female_factor_decides(mapping):
    # 70 y, 60 kg, SCr 1.0: 58.3 mL/min for a man, 49.6 for a woman
    assert run(mapping, scr(), weight(60), gender="male", age=70).outcome == "met"
    female = run(mapping, scr(), weight(60), gender="female", age=70)
    assert (female.outcome, female.reason) == ("not_met", "value")
    assert female.evidence[0].value == 49.58


def test_threshold_is_strictly_greater_than_50(mapping):
    # (140 - 50) x 40 / 72 = 50.0 exactly
    assert run(mapping, scr(), weight(40), age=50).outcome == "not_met"
    assert run(mapping, scr(), weight(40.1), age=50).outcome == "met"


def test_molar_creatinine_and_pound_weight(mapping):
    result = run(mapping, scr(88.4, "umol/L", code="14682-9"), weight(154.324, "[lb_av]"))
    assert result.outcome == "met"
    assert result.evidence[0].value == pytest.approx(77.78, abs=0.05)
    assert (result.evidence[1].value, result.evidence[1].unit) == (88.4, "umol/L")  # as recorded


def test_synthea_blood_creatinine_code_counts(mapping):
    assert run(mapping, scr(code="38483-4"), weight()).outcome == "met"


def test_measured_clearance_in_window_wins(mapping):
    measured = obs("crcl", "2164-2", 10, 45, "mL/min")
    result = run(mapping, measured, scr(), weight())
    assert (result.outcome, result.reason) == ("not_met", "value")
    assert [e.reference for e in result.evidence] == ["Observation/crcl"]
    assert run(mapping, obs("crcl", "2164-2", 10, 51, "mL/min")).outcome == "met"


def test_stale_measured_falls_back_to_cockcroft_gault(mapping):
    result = run(mapping, obs("crcl", "2164-2", 40, 45, "mL/min"), scr(), weight())
    assert result.outcome == "met" and result.evidence[0].reference == "Cockcroft-Gault"


@pytest.mark.parametrize("items, expected", [
    ((scr(days=28), weight(days=90)), ("met", "value")),
    ((scr(days=29), weight()), ("unknown", "stale")),
    ((scr(), weight(days=91)), ("unknown", "stale")),
    ((scr(),), ("unknown", "no-data")),
    ((), ("unknown", "no-data")),
])
def test_input_windows(mapping, items, expected):
    assert (run(mapping, *items).outcome, run(mapping, *items).reason) == expected


def test_stale_input_is_shown(mapping):
    result = run(mapping, scr(days=40), weight())
    assert {e.reference for e in result.evidence} == {"Observation/scr", "Observation/wt"}


def test_missing_birth_date_is_no_data(mapping):
    assert (run(mapping, scr(), weight(), age=None).reason) == "no-data"


@pytest.mark.parametrize("weight_kg, expected", [(70, "met"), (40, "not_met"), (50, "unknown")])
def test_unknown_sex_decides_only_when_both_formulas_agree(mapping, weight_kg, expected):
    # 60 y, SCr 1.0: 70 kg -> 66.1/77.8 (both > 50); 40 kg -> 37.8/44.4; 50 kg -> 47.2 female, 55.6 male
    result = run(mapping, scr(), weight(weight_kg), gender="unknown")
    assert result.outcome == expected


def test_unconvertible_creatinine_unit(mapping):
    assert run(mapping, scr(1.0, "mg"), weight()).reason == "unit"
