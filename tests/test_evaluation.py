"""One patient through the whole seed mapping: status rules, polarity, arms, JSON shape."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from connector.codes import RXNORM
from connector.criteria import EvalContext
from connector.evaluation import evaluate_arm, evaluate_patient
from connector.mapping import load_mapping
from connector.results import CriterionResult, PatientResult, ScreenReport, overall_status
from engine_helpers import AS_OF, condition, med, obs, patient, with_facts

ROOT = Path(__file__).resolve().parents[1]
RESULT_SCHEMA = json.loads((ROOT / "schemas" / "result.schema.json").read_text(encoding="utf-8"))
LU = "Lutathera"


@pytest.fixture(scope="module")
def mapping():
    return load_mapping(ROOT / "mappings" / "NCT05773274.yaml")


def eligible(gender="male", **overrides):
    """A patient meeting every computable criterion; overrides replace or drop items by key."""
    items = {
        "net": condition("net", "C7A.012"),
        "lu": [med(f"lu{i}", LU, 900 - i * 56) for i in range(4)],
        "ecog": obs("ecog", "89247-1", 20, 1.0, None),
        "hb": obs("hb", "718-7", 5, 12.0, "g/dL"),
        "anc": obs("anc", "751-8", 5, 3.0, "10*9/L"),
        "plt": obs("plt", "777-3", 5, 200, "10*3/uL"),
        "bili": obs("bili", "1975-2", 5, 0.6, "mg/dL", high=1.2),
        "scr": obs("scr", "2160-0", 5, 0.9, "mg/dL"),
        "wt": obs("wt", "29463-7", 5, 75, "kg"),
    }
    items.update(overrides)
    flat = []
    for value in items.values():
        flat.extend(value if isinstance(value, list) else [value] if value is not None else [])
    return with_facts(patient(gender=gender), *flat)


def test_status_rule():
    met = CriterionResult("a", "met", "value")
    manual = CriterionResult("b", "unknown", "manual")
    stale = CriterionResult("c", "unknown", "stale")
    failed = CriterionResult("d", "not_met", "value")
    assert overall_status([met, manual]) == "candidate"
    assert overall_status([met, manual, stale]) == "possible"
    assert overall_status([met, stale, failed]) == "excluded"
    assert overall_status([manual, failed]) == "excluded"


def test_eligible_patient_is_a_candidate_with_manual_criteria_listed(mapping):
    result = evaluate_patient(mapping, eligible(), AS_OF)
    assert result.status == "candidate"
    assert [c.id for c in result.criteria] == [c.id for c in mapping.criteria]
    review = {c.id for c in result.for_review()}
    assert {"consent", "recist_progression", "contraception"} <= review
    assert result.criterion("hemoglobin").outcome == "met"


def test_missing_lab_makes_possible_and_failed_lab_excludes(mapping):
    assert evaluate_patient(mapping, eligible(anc=None), AS_OF).status == "possible"
    assert evaluate_patient(mapping, eligible(hb=obs("hb", "718-7", 40, 12.0, "g/dL")), AS_OF).status == "possible"
    assert evaluate_patient(mapping, eligible(hb=obs("hb", "718-7", 5, 7.9, "g/dL")), AS_OF).status == "excluded"


def test_deferred_review_never_lowers_the_status(mapping):
    facts = eligible(brain=condition("bm", "C79.31"), hf=condition("hf", "I50.9"),
                     gil=condition("gil", "E80.4"), bili=obs("bili", "1975-2", 5, 2.5, "mg/dL", high=1.2))
    result = evaluate_patient(mapping, facts, AS_OF)
    assert result.status == "candidate"
    for cid in ("no_brain_metastases", "no_uncontrolled_chf", "bilirubin"):
        assert (result.criterion(cid).outcome, result.criterion(cid).reason) == ("unknown", "manual")


def test_exclusion_found_is_not_met(mapping):
    facts = eligible(alpha=med("ac", "225Ac-DOTATATE", 100, kind="statement"))
    result = evaluate_patient(mapping, facts, AS_OF)
    assert result.status == "excluded"
    assert result.criterion("no_targeted_alpha").evidence[0].reference == "MedicationStatement/ac"


def test_history_without_record(mapping):
    result = evaluate_patient(mapping, eligible(net=None, lu=[]), AS_OF)
    assert (result.criterion("gepnet_diagnosis").outcome, result.criterion("gepnet_diagnosis").reason) == ("not_met", "no-record")
    assert (result.criterion("prior_prrt").outcome, result.criterion("prior_prrt").reason) == ("not_met", "no-record")
    assert (result.criterion("no_targeted_alpha").outcome, result.criterion("no_targeted_alpha").reason) == ("met", "no-record")


def test_parse_errors_are_carried_to_the_result(mapping):
    facts = eligible()
    facts.errors.append("Observation/x: valueQuantity.value: expected a number, got a string")
    assert evaluate_patient(mapping, facts, AS_OF).errors == tuple(facts.errors)


def test_a_failing_evaluator_loses_only_its_criterion(mapping, monkeypatch, caplog):
    from connector.criteria import _LEAF_EVALUATORS
    from connector.mapping.model import ObservationRule

    def broken(rule, ctx):
        raise ZeroDivisionError("boom with a value 12.0")

    monkeypatch.setitem(_LEAF_EVALUATORS, ObservationRule, broken)
    result = evaluate_patient(mapping, eligible(), AS_OF)
    assert (result.criterion("hemoglobin").outcome, result.criterion("hemoglobin").reason) == ("unknown", "error")
    assert result.criterion("age").outcome == "met"
    assert "criterion 'hemoglobin': could not be evaluated (ZeroDivisionError)" in result.errors
    assert not any("12.0" in e for e in result.errors)
    assert "hemoglobin" in caplog.text and "12.0" not in caplog.text


def arm2(mapping, facts, country="US"):
    return evaluate_arm(mapping.arms[1], EvalContext(facts, AS_OF, country))


def test_arm_two_default_options(mapping):
    arm = arm2(mapping, eligible())
    assert arm.label == "Arm II (everolimus)"
    assert arm.options == ("everolimus", "cabozantinib")
    assert [e.option for e in arm.excluded_options] == ["sunitinib"]
    assert "pancreatic" in arm.excluded_options[0].why


def test_cabozantinib_only_in_the_united_states(mapping):
    arm = arm2(mapping, eligible(), country="CA")
    assert "cabozantinib" not in arm.options
    assert any(e.option == "cabozantinib" and "United States" in e.why for e in arm.excluded_options)


@pytest.mark.parametrize("net, allowed", [
    (condition("net", "C25.4"), True),
    (condition("net", "C7A.8", sites=("15776009",)), True),
    (condition("net", "C7A.00"), False),   # unspecified site does not establish pancreatic origin
    (condition("net", "C7A.8"), False),
])
def test_sunitinib_only_for_pancreatic_net(mapping, net, allowed):
    assert ("sunitinib" in arm2(mapping, eligible(net=net)).options) is allowed


@pytest.mark.parametrize("drug", [med("v", "pazopanib 800 mg", 300, kind="statement"),
                                  med("v", "Avastin", 300, kind="request"),
                                  med("v", None, 300, kind="request", code=(RXNORM, "357977"))])
def test_prior_vegf_inhibitor_removes_sunitinib(mapping, drug):
    arm = arm2(mapping, eligible(net=condition("net", "C25.4"), vegf=drug))
    assert "sunitinib" not in arm.options
    why = next(e.why for e in arm.excluded_options if e.option == "sunitinib")
    assert why.startswith("prior VEGF inhibitor") and drug.source.reference in why


@pytest.mark.parametrize("name", ["everolimus 10 mg", "Sirolimus", "TEMSIROLIMUS 25 MG IV"])
def test_prior_mtor_inhibitor_removes_everolimus(mapping, name):
    arm = arm2(mapping, eligible(mtor=med("m", name, 300, kind="statement")))
    assert "everolimus" not in arm.options


def test_void_prior_drug_does_not_remove_an_option(mapping):
    arm = arm2(mapping, eligible(mtor=med("m", "everolimus", 300, kind="request", status="entered-in-error")))
    assert "everolimus" in arm.options


def test_json_shape_validates_and_round_trips(mapping):
    patients = [evaluate_patient(mapping, eligible(), AS_OF),
                evaluate_patient(mapping, eligible(gender="female", hb=None, scr=obs("s", "2160-0", 50, 1, "mg/dL")), AS_OF)]
    report = ScreenReport("NCT05773274", "mappings/NCT05773274.yaml", mapping.criteria_hash, AS_OF, patients)
    data = json.loads(json.dumps(report.to_json()))
    jsonschema.validate(data, RESULT_SCHEMA)
    assert set(data) == {"trial", "mapping", "as_of", "patients"}
    assert set(data["patients"][0]) == {"patient", "status", "criteria", "arms", "errors"}
    assert set(data["patients"][0]["criteria"][0]) == {"id", "outcome", "reason", "evidence"}
    assert set(data["patients"][0]["criteria"][0]["evidence"][0]) == {"reference", "value", "unit", "date"}
    assert ScreenReport.from_json(data) == report
    assert PatientResult.from_json(data["patients"][1]) == patients[1]


def test_schema_rejects_a_reason_that_does_not_fit_the_outcome():
    bad = {"trial": "NCT05773274", "mapping": {"file": "m", "criteria_hash": "0" * 64}, "as_of": "2026-11-16",
           "patients": [{"patient": "Patient/p", "status": "possible", "errors": [], "arms": [],
                         "criteria": [{"id": "x", "outcome": "met", "reason": "stale", "evidence": []}]}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, RESULT_SCHEMA)
