"""Creatinine clearance: measured (24-h urine) if available, else Cockcroft-Gault.

CrCl = (140 - age) x weight[kg] / (72 x serum creatinine[mg/dL]), x 0.85 if female, from the
latest creatinine in the criterion's window and the latest body weight in its own window.
Every input is listed as evidence, after the computed value (reference `Cockcroft-Gault`).
Inputs known only as a span are computed at every end: a partial birthDate at both possible
ages, a sex the formula needs but the record does not give (unknown / other / absent) as both
female and male. The result is decided only when all agree, else `unknown` with reason
`imprecise-date` or `unknown-sex`. A missing input is `no-data`.
"""

from __future__ import annotations

from connector.criteria.base import (
    EvalContext,
    Outcome,
    compare,
    met,
    not_met,
    observation_evidence,
    plain_number,
    unknown,
)
from connector.criteria.demographics import age_evidence, age_span
from connector.criteria.observations import in_window, judge_latest, settle
from connector.facts import ObservationFact
from connector.mapping.model import CreatinineClearanceRule, ObservationRule, Threshold
from connector.results import Evidence
from connector.units import UnitError, convert, round_sig

FEMALE_FACTOR = 0.85
DERIVED_REFERENCE = "Cockcroft-Gault"


def cockcroft_gault(age: int, weight_kg: float, creatinine_mg_dl: float, female: bool) -> float:
    value = (140 - age) * weight_kg / (72 * creatinine_mg_dl)
    return round_sig(value * FEMALE_FACTOR if female else value)


def shown(value: float) -> float | int:
    """A computed clearance as shown to reviewers: 2 decimals (decisions use the full value)."""
    return plain_number(round(value, 2))


def _quantity_obs(obs: list[ObservationFact]) -> list[ObservationFact]:
    return [o for o in obs if o.quantity is not None]


def _value_key(obs: ObservationFact) -> tuple:
    assert obs.quantity is not None
    return obs.quantity.value, obs.quantity.unit, obs.quantity.comparator


def evaluate_creatinine_clearance(rule: CreatinineClearanceRule, ctx: EvalContext) -> Outcome:
    measured = _quantity_obs(ctx.observations(rule.measured_codes))
    if in_window(measured, ctx, rule.window_days):
        as_observation = ObservationRule(rule.measured_codes, rule.comparator, rule.threshold, rule.window_days)
        return judge_latest(as_observation, measured, ctx, rule.window_days)
    return _cockcroft_gault(rule, ctx, measured)


def _cockcroft_gault(rule: CreatinineClearanceRule, ctx: EvalContext, measured: list[ObservationFact]) -> Outcome:
    creatinines = _quantity_obs(ctx.observations(rule.creatinine_codes))
    weights = _quantity_obs(ctx.observations(rule.weight_codes))
    creatinine = settle(in_window(creatinines, ctx, rule.window_days), _value_key)
    weight = settle(in_window(weights, ctx, rule.weight_window_days), _value_key)
    for settled in (creatinine, weight):
        if isinstance(settled, Outcome):
            return settled
    assert not isinstance(creatinine, Outcome) and not isinstance(weight, Outcome)
    ages = age_span(ctx.facts, ctx.as_of)
    if creatinine is None or weight is None or ages is None:
        stale = [observation_evidence(obs[-1]) for obs, latest in
                 ((measured, None), (creatinines, creatinine), (weights, weight)) if obs and latest is None]
        present = [observation_evidence(o) for o in (creatinine, weight) if o is not None]
        if stale:
            return unknown("stale", present + stale)
        return unknown("no-data", present)
    assert creatinine.quantity is not None and weight.quantity is not None
    gender = ctx.facts.gender
    inputs = [observation_evidence(creatinine), observation_evidence(weight), age_evidence(ctx, ages),
              Evidence(ctx.facts.reference, gender, None, None)]
    if creatinine.quantity.comparator or weight.quantity.comparator:
        return unknown("censored", inputs)
    sexes = (gender == "female",) if gender in ("female", "male") else (True, False)
    try:
        scr = convert(creatinine.quantity.value, creatinine.quantity.unit, "mg/dL", rule.creatinine_molar_mass)
        kg = convert(weight.quantity.value, weight.quantity.unit, "kg")
        if scr <= 0:
            return unknown("no-data", inputs)
        results = {(age, female): convert(cockcroft_gault(age, kg, scr, female), "mL/min", rule.threshold.unit)
                   for age in sorted(set(ages)) for female in sexes}
    except UnitError:
        return unknown("unit", inputs)
    return _decide(rule.threshold, rule.comparator, results, inputs, ctx)


def _decide(threshold: Threshold, comparator: str, results: dict[tuple[int, bool], float],
            inputs: list[Evidence], ctx: EvalContext) -> Outcome:
    """Decided when every possible (age, sex) gives the same answer; else why not."""
    decisions = {key: compare(value, comparator, threshold.value) for key, value in results.items()}
    low, high = min(results.values()), max(results.values())
    shown_value: float | int | str = shown(low) if low == high else f"{shown(low)}-{shown(high)}"
    evidence = [Evidence(DERIVED_REFERENCE, shown_value, threshold.unit, ctx.as_of.isoformat())] + inputs
    if set(decisions.values()) == {True}:
        return met("value", evidence)
    if set(decisions.values()) == {False}:
        return not_met("value", evidence)
    by_age_differs = any(len({d for (age, female), d in decisions.items() if female == sex}) > 1
                         for sex in {female for _, female in decisions})
    return unknown("imprecise-date" if by_age_differs else "unknown-sex", evidence)
