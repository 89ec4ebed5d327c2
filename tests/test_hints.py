"""What would settle each unknown / not_met result: fields and sentence, per rule kind and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.codes import ICD10CM, LOINC, CodeSet
from connector.criteria import EvalContext
from connector.evaluation import evaluate_criterion
from connector.mapping import load_mapping
from connector.mapping.model import (
    Administrations,
    AgeRule,
    AnyOf,
    CodedObservationRule,
    ConditionRule,
    Criterion,
    ManualRule,
    MedicationRule,
    ObservationRule,
    SiteCountryRule,
    Threshold,
)
from connector.report.hints import ACTIONS, hint_for, patient_hints, requirement
from connector.results import CriterionResult, Evidence
from engine_helpers import AS_OF, condition, med, obs, patient, with_facts

ROOT = Path(__file__).resolve().parents[1]
HB = ObservationRule((CodeSet.of(LOINC, ["718-7"]),), ">=", Threshold(80, "g/L"), 28)


def criterion(cid: str, rule, type_: str = "inclusion", **extra) -> Criterion:
    return Criterion(cid, type_, (f"text of {cid}",), rule, **extra)


def settle(crit: Criterion, *items, gender="female", birth=None, country="US"):
    facts = with_facts(patient(gender=gender, **({"birth": birth} if birth else {})), *items)
    result = evaluate_criterion(crit, EvalContext(facts, AS_OF, country))
    return result, hint_for(crit, result, AS_OF)


def test_stale_lab_names_threshold_window_and_latest_date():
    result, hint = settle(criterion("hemoglobin", HB), obs("hb", "718-7", 45, 12.4, "g/dL"))
    assert result.reason == "stale"
    assert hint.action == "measure"
    assert (hint.comparator, hint.threshold, hint.unit, hint.window_days) == (">=", 80, "g/L", 28)
    assert hint.dated_from == "2026-10-19" and hint.latest_date == "2026-10-02"
    assert hint.latest_reference == "Observation/hb" and hint.latest_value == 12.4
    assert hint.hint.startswith("needs hemoglobin >= 80 g/L dated 2026-10-19 or later; latest 12.4 g/dL on 2026-10-02")
    assert hint.text == "text of hemoglobin" and hint.criterion == "hemoglobin"


def test_window_start_follows_the_screening_date_and_window():
    rule = ObservationRule((CodeSet.of(LOINC, ["751-8"]),), ">=", Threshold(1.0, "10*9/L"), 14)
    _, hint = settle(criterion("neutrophils", rule))
    assert hint.dated_from == "2026-11-02" and hint.latest_date is None
    assert hint.hint == "needs neutrophils >= 1 × 10⁹/L dated 2026-11-02 or later; none on record"


def test_value_that_fails_says_it_does_not_meet_the_threshold():
    result, hint = settle(criterion("hemoglobin", HB), obs("hb", "718-7", 9, 7.9, "g/dL"))
    assert result.outcome == "not_met" and hint.action == "excluded"
    assert hint.latest_value == 7.9 and hint.latest_date == "2026-11-07"
    assert "needs hemoglobin >= 80 g/L dated 2026-10-19 or later; latest 7.9 g/dL on 2026-11-07" in hint.hint


def test_exclusion_threshold_is_stated_as_what_is_needed():
    qtc = ObservationRule((CodeSet.of(LOINC, ["8636-3"]),), ">", Threshold(470, "ms"), 60)
    result, hint = settle(criterion("qtc_prolonged", qtc, "exclusion"), obs("q", "8636-3", 3, 490, "ms"))
    assert result.outcome == "not_met"
    assert hint.comparator == "<=" and hint.threshold == 470
    assert hint.hint.startswith("needs qtc prolonged <= 470 ms dated 2026-09-17 or later; latest 490 ms")


@pytest.mark.parametrize("item, reason, words", [
    (obs("hb", "718-7", 3, 12, "mmol/s"), "unit", "in a unit convertible to g/L"),
    (obs("hb", "718-7", 3, 5, "g/dL", comparator=">"), "censored", "needs an exact value"),
])
def test_values_that_cannot_be_compared_ask_to_fix_the_data(item, reason, words):
    result, hint = settle(criterion("hemoglobin", HB), item)
    assert result.reason == reason and hint.action == "fix-data"
    assert words in hint.hint and hint.latest_reference == "Observation/hb"


def test_missing_reference_range_for_a_uln_threshold():
    rule = ObservationRule((CodeSet.of(LOINC, ["1975-2"]),), "<", Threshold(1.5, None, True), 28)
    _, hint = settle(criterion("bilirubin", rule), obs("b", "1975-2", 3, 0.9, "mg/dL"))
    assert hint.relative_to == "uln" and hint.action == "fix-data"
    assert "bilirubin < 1.5 x ULN" in hint.hint and "referenceRange.high" in hint.hint


def test_manual_and_review_deferred_findings_go_to_a_person():
    _, manual = settle(criterion("consent", ManualRule()))
    assert manual.action == "review" and manual.hint == "a person checks the chart: text of consent"
    brain = ConditionRule((CodeSet.of(ICD10CM, ["C79.31"]),))
    result, found = settle(criterion("no_brain_metastases", brain, "exclusion", review_if_found=True),
                           condition("bm", "C79.31"))
    assert result.reason == "manual" and found.action == "review"
    assert found.hint.startswith("found Condition/bm: C79.31 (2025-10-12); a person decides") and found.what == "brain metastases"


def test_missing_diagnosis_and_excluding_record():
    net = ConditionRule((CodeSet.of(ICD10CM, ["C7A.0"], prefix=True),))
    _, missing = settle(criterion("diagnosis", net))
    assert missing.action == "record" and missing.hint.endswith("none found")
    alpha = MedicationRule(names=("225ac",))
    _, found = settle(criterion("no_alpha", alpha, "exclusion"), med("a1", "225Ac-DOTATATE", 30))
    assert found.action == "excluded" and "MedicationAdministration/a1" in found.hint


def test_administration_count_says_how_many_are_needed_and_found():
    rule = MedicationRule(names=("lutathera",), administrations=Administrations(364, frozenset({3, 4}), max_total=4))
    _, hint = settle(criterion("prior_prrt", rule), *[med(f"l{i}", "Lutathera", 600 - 50 * i) for i in range(6)])
    assert hint.hint.startswith("needs 3 or 4 administrations within 364 days, at most 4 in all; found 6")


def test_age_site_and_coded_answers():
    _, young = settle(criterion("age", AgeRule(min_years=18)), birth=AS_OF.replace(year=2015))
    assert (young.comparator, young.threshold, young.unit) == (">=", 18, "a")
    assert young.hint == "needs age >= 18 years; recorded 11 years"
    _, site = settle(criterion("us_only", SiteCountryRule(frozenset({"US"}))), country="DE")
    assert site.hint == "needs a screening site in US"
    ecog = CodedObservationRule((CodeSet.of(LOINC, ["89247-1"]),), (CodeSet.of(LOINC, ["LA9622-7"]),), 90)
    _, coded = settle(criterion("ecog0", ecog))
    assert coded.window_days == 90 and coded.dated_from == "2026-08-18" and coded.action == "measure"


def test_composite_rule_keeps_its_shared_window():
    preg = CodedObservationRule((CodeSet.of(LOINC, ["82810-3"]),), (CodeSet.of(LOINC, ["LA15173-0"]),), 28)
    hcg = CodedObservationRule((CodeSet.of(LOINC, ["2106-3"]),), (CodeSet.of(LOINC, ["LA6576-8"]),), 28)
    rule = AnyOf((preg, hcg))
    assert requirement(criterion("pregnant", rule)).window_days == 28
    crit = criterion("not_pregnant", rule, "exclusion")
    _, hint = settle(crit, obs("p", "82810-3", 5, answer=(LOINC, "LA15173-0")))
    assert hint.action == "excluded" and "Observation/p" in hint.hint and hint.what == "pregnant"


def test_met_has_no_hint_and_every_hint_has_a_known_action():
    _, none = settle(criterion("hemoglobin", HB), obs("hb", "718-7", 3, 12, "g/dL"))
    assert none is None
    mapping = load_mapping(ROOT / "mappings" / "NCT05773274.yaml")
    results = tuple(CriterionResult(c.id, "unknown", reason) for c in mapping.criteria
                    for reason in ("no-data", "error"))
    for reason_results in (results[::2], results[1::2]):
        hints = patient_hints({c.id: c for c in mapping.criteria}, reason_results, AS_OF)
        assert set(hints) == {c.id for c in mapping.criteria}
        assert all(h.action in ACTIONS and h.hint for h in hints.values())


@pytest.mark.parametrize("reason, action, words", [
    ("preliminary", "measure", "needs a final result: hemoglobin >= 80 g/L dated 2026-10-19 or later"),
    ("indefinite", "measure", "needs a definite answer"),
    ("conflict", "fix-data", "results at the same time disagree (Observation/hb"),
    ("unconfirmed", "review", "a person confirms the diagnosis"),
    ("imprecise-date", "record", "needs a full date"),
    ("unknown-sex", "record", "needs the patient's sex"),
    ("some-new-reason", "fix-data", "some-new-reason: text of hemoglobin"),
])
def test_every_kind_of_open_result_has_a_next_step(reason, action, words):
    """Reasons the record leaves open (hospital-data realism adds some) get a step, never "ruled out"."""
    result = CriterionResult("hemoglobin", "unknown", reason, (Evidence("Observation/hb", 12.4, "g/dL", "2026-11-07"),))
    hint = hint_for(criterion("hemoglobin", HB), result, AS_OF)
    assert hint.action == action and words in hint.hint and "ruled out" not in hint.hint


def test_deceased_patient_is_excluded_with_that_reason():
    hint = hint_for(criterion("age", AgeRule(min_years=18)), CriterionResult("age", "not_met", "deceased"), AS_OF)
    assert hint.action == "excluded" and hint.hint == "the patient died on or before the screening date"
