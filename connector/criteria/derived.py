"""Creatinine clearance: measured (24-h urine) if available, else Cockcroft-Gault.

CrCl = (140 - age) x weight[kg] / (72 x serum creatinine[mg/dL]), x 0.85 if female, from the
latest creatinine in the criterion's window and the latest body weight in its own window.
Every input is listed as evidence, after the computed value (reference `Cockcroft-Gault`).
When sex is neither male nor female the result is decided only if both formulas agree.
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
from connector.criteria.demographics import age_evidence, completed_years
from connector.criteria.observations import judge_value, latest_in_window
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


def evaluate_creatinine_clearance(rule: CreatinineClearanceRule, ctx: EvalContext) -> Outcome:
    measured = _quantity_obs(ctx.observations(rule.measured_codes))
    latest_measured = latest_in_window(measured, ctx, rule.window_days)
    if latest_measured is not None:
        as_observation = ObservationRule(rule.measured_codes, rule.comparator, rule.threshold, rule.window_days)
        return judge_value(as_observation, latest_measured)
    return _cockcroft_gault(rule, ctx, measured)


def _cockcroft_gault(rule: CreatinineClearanceRule, ctx: EvalContext, measured: list[ObservationFact]) -> Outcome:
    creatinines = _quantity_obs(ctx.observations(rule.creatinine_codes))
    weights = _quantity_obs(ctx.observations(rule.weight_codes))
    creatinine = latest_in_window(creatinines, ctx, rule.window_days)
    weight = latest_in_window(weights, ctx, rule.weight_window_days)
    birth = ctx.facts.birth_date
    if creatinine is None or weight is None or birth is None:
        stale = [observation_evidence(obs[-1]) for obs, latest in
                 ((measured, None), (creatinines, creatinine), (weights, weight)) if obs and latest is None]
        present = [observation_evidence(o) for o in (creatinine, weight) if o is not None]
        if stale:
            return unknown("stale", present + stale)
        return unknown("no-data", present)
    assert creatinine.quantity is not None and weight.quantity is not None
    inputs = [observation_evidence(creatinine), observation_evidence(weight)]
    age = completed_years(birth, ctx.as_of)
    inputs.append(age_evidence(ctx, age))
    gender = ctx.facts.gender
    inputs.append(Evidence(ctx.facts.reference, gender, None, None))
    if creatinine.quantity.comparator or weight.quantity.comparator:
        return unknown("censored", inputs)
    try:
        scr = convert(creatinine.quantity.value, creatinine.quantity.unit, "mg/dL", rule.creatinine_molar_mass)
        kg = convert(weight.quantity.value, weight.quantity.unit, "kg")
        if scr <= 0:
            return unknown("no-data", inputs)
        results = {female: convert(cockcroft_gault(age, kg, scr, female), "mL/min", rule.threshold.unit)
                   for female in (True, False)}
    except UnitError:
        return unknown("unit", inputs)
    return _decide(rule.threshold, rule.comparator, gender, results, inputs, ctx)


def _decide(threshold: Threshold, comparator: str, gender: str | None, results: dict[bool, float],
            inputs: list[Evidence], ctx: EvalContext) -> Outcome:
    if gender in ("female", "male"):
        value = results[gender == "female"]
        evidence = [Evidence(DERIVED_REFERENCE, shown(value), threshold.unit, ctx.as_of.isoformat())] + inputs
        passed = compare(value, comparator, threshold.value)
        return met("value", evidence) if passed else not_met("value", evidence)
    decisions = {compare(v, comparator, threshold.value) for v in results.values()}
    low, high = sorted(results.values())
    evidence = [Evidence(DERIVED_REFERENCE, f"{shown(low)}-{shown(high)}", threshold.unit,
                         ctx.as_of.isoformat())] + inputs
    if decisions == {True}:
        return met("value", evidence)
    if decisions == {False}:
        return not_met("value", evidence)
    return unknown("no-data", evidence)
