"""Age, sex, site country and the all_of / any_of / not combinations (Kleene logic)."""

from __future__ import annotations

from datetime import date

import pytest

from connector.codes import CodeSet
from connector.criteria import EvalContext, evaluate_rule
from connector.criteria.demographics import completed_years
from connector.mapping.model import AgeRule, AllOf, AnyOf, ConditionRule, ManualRule, Not, SexRule, SiteCountryRule
from engine_helpers import AS_OF, condition, patient, with_facts


def ctx(facts=None, country="US"):
    return EvalContext(facts or patient(), AS_OF, country)


@pytest.mark.parametrize("birth, expected", [
    (date(2008, 11, 16), "met"),       # 18th birthday on the screening date
    (date(2008, 11, 17), "not_met"),   # turns 18 tomorrow
    (date(1950, 2, 28), "met"),
])
def test_age_in_completed_years(birth, expected):
    result = evaluate_rule(AgeRule(min_years=18), ctx(patient(birth=birth)))
    assert (result.status, result.reason) == (expected, "demographics")
    assert result.evidence[0].unit == "a" and result.evidence[0].value == completed_years(birth, AS_OF)


def test_leap_day_birthday():
    assert completed_years(date(2008, 2, 29), date(2026, 2, 28)) == 17
    assert completed_years(date(2008, 2, 29), date(2026, 3, 1)) == 18


def test_max_age_and_missing_birth_date():
    assert evaluate_rule(AgeRule(max_years=65), ctx(patient(birth=date(1950, 1, 1)))).status == "not_met"
    assert evaluate_rule(AgeRule(min_years=18), ctx(patient(birth=None))).reason == "no-data"


def test_sex():
    rule = SexRule(frozenset({"female"}))
    assert evaluate_rule(rule, ctx(patient(gender="female"))).status == "met"
    assert evaluate_rule(rule, ctx(patient(gender="male"))).status == "not_met"
    assert evaluate_rule(rule, ctx(patient(gender=None))).reason == "no-data"


def test_site_country():
    rule = SiteCountryRule(frozenset({"US"}))
    assert (evaluate_rule(rule, ctx(country="US")).status, evaluate_rule(rule, ctx(country="ca")).status) == ("met", "not_met")


MET = ConditionRule((CodeSet.of("icd-10-cm", ["A01"]),))
NOT_MET = ConditionRule((CodeSet.of("icd-10-cm", ["B02"]),))
UNKNOWN = ManualRule()
FACTS = with_facts(patient(), condition("a", "A01"))


@pytest.mark.parametrize("rule, expected", [
    (AllOf((MET, MET)), "met"),
    (AllOf((MET, UNKNOWN)), "unknown"),
    (AllOf((UNKNOWN, NOT_MET)), "not_met"),
    (AnyOf((NOT_MET, MET)), "met"),
    (AnyOf((NOT_MET, UNKNOWN)), "unknown"),
    (AnyOf((NOT_MET, NOT_MET)), "not_met"),
    (AnyOf((UNKNOWN, MET)), "met"),
    (Not(MET), "not_met"),
    (Not(NOT_MET), "met"),
    (Not(UNKNOWN), "unknown"),
])
def test_kleene_logic(rule, expected):
    assert evaluate_rule(rule, ctx(FACTS)).status == expected


def test_combinations_keep_the_deciding_evidence_and_reason():
    result = evaluate_rule(AnyOf((NOT_MET, MET)), ctx(FACTS))
    assert result.reason == "record" and [e.reference for e in result.evidence] == ["Condition/a"]
    nothing = evaluate_rule(AnyOf((NOT_MET, NOT_MET)), ctx(FACTS))
    assert nothing.reason == "no-record"
