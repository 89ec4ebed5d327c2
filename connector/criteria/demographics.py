"""Age, sex and site country: facts from the Patient resource and the screening site.

Evidence for age is the age itself (completed years), never the birth date: a birth date is
PHI and the reviewer can open the Patient resource if needed. A partial birthDate ("1960",
"1960-05") is every day of that span: an age limit is decided only when the youngest and the
oldest possible ages agree, else `unknown` / `imprecise-date` with the age range as evidence.
"""

from __future__ import annotations

from datetime import date

from connector.criteria.base import EvalContext, Outcome, met, not_met, unknown
from connector.facts import PatientFacts
from connector.mapping.model import AgeRule, SexRule, SiteCountryRule
from connector.results import Evidence


def completed_years(birth: date, on: date) -> int:
    """Age in completed years on a date (a birthday counts from that day)."""
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def age_span(facts: PatientFacts, on: date) -> tuple[int, int] | None:
    """(youngest, oldest) possible age in completed years on a date; None without a birthDate."""
    span = facts.birth_span
    if span is None:
        return None
    earliest, latest = span
    return completed_years(latest, on), completed_years(earliest, on)


def age_evidence(ctx: EvalContext, years: int | tuple[int, int]) -> Evidence:
    if isinstance(years, tuple):
        youngest, oldest = years
        value: int | str = youngest if youngest == oldest else f"{youngest}-{oldest}"
    else:
        value = years
    return Evidence(ctx.facts.reference, value, "a", ctx.as_of.isoformat())


def evaluate_age(rule: AgeRule, ctx: EvalContext) -> Outcome:
    ages = age_span(ctx.facts, ctx.as_of)
    if ages is None:
        return unknown("no-data")
    evidence = [age_evidence(ctx, ages)]
    decisions = {_age_fits(rule, years) for years in ages}
    if decisions == {True}:
        return met("demographics", evidence)
    if decisions == {False}:
        return not_met("demographics", evidence)
    return unknown("imprecise-date", evidence)


def _age_fits(rule: AgeRule, years: int) -> bool:
    return (rule.min_years is None or years >= rule.min_years) and (rule.max_years is None or years <= rule.max_years)


def evaluate_sex(rule: SexRule, ctx: EvalContext) -> Outcome:
    gender = ctx.facts.gender
    if gender is None:
        return unknown("no-data")
    evidence = [Evidence(ctx.facts.reference, gender, None, None)]
    return met("demographics", evidence) if gender in rule.allowed else not_met("demographics", evidence)


def evaluate_site_country(rule: SiteCountryRule, ctx: EvalContext) -> Outcome:
    return met("site") if ctx.site_country.upper() in rule.countries else not_met("site")
