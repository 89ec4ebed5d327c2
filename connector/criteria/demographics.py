"""Age, sex and site country: facts from the Patient resource and the screening site.

Evidence for age is the age itself (completed years), never the birth date: a birth date is
PHI and the reviewer can open the Patient resource if needed.
"""

from __future__ import annotations

from datetime import date

from connector.criteria.base import EvalContext, Outcome, met, not_met, unknown
from connector.mapping.model import AgeRule, SexRule, SiteCountryRule
from connector.results import Evidence


def completed_years(birth: date, on: date) -> int:
    """Age in completed years on a date (a birthday counts from that day)."""
    return on.year - birth.year - ((on.month, on.day) < (birth.month, birth.day))


def age_evidence(ctx: EvalContext, years: int) -> Evidence:
    return Evidence(ctx.facts.reference, years, "a", ctx.as_of.isoformat())


def evaluate_age(rule: AgeRule, ctx: EvalContext) -> Outcome:
    if ctx.facts.birth_date is None:
        return unknown("no-data")
    years = completed_years(ctx.facts.birth_date, ctx.as_of)
    evidence = [age_evidence(ctx, years)]
    if rule.min_years is not None and years < rule.min_years:
        return not_met("demographics", evidence)
    if rule.max_years is not None and years > rule.max_years:
        return not_met("demographics", evidence)
    return met("demographics", evidence)


def evaluate_sex(rule: SexRule, ctx: EvalContext) -> Outcome:
    gender = ctx.facts.gender
    if gender is None:
        return unknown("no-data")
    evidence = [Evidence(ctx.facts.reference, gender, None, None)]
    return met("demographics", evidence) if gender in rule.allowed else not_met("demographics", evidence)


def evaluate_site_country(rule: SiteCountryRule, ctx: EvalContext) -> Outcome:
    return met("site") if ctx.site_country.upper() in rule.countries else not_met("site")
