"""The criteria engine: one evaluator per rule kind, chosen from a dispatch table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connector.criteria import combinators
from connector.criteria.base import EvalContext, Outcome
from connector.criteria.conditions import evaluate_condition
from connector.criteria.demographics import evaluate_age, evaluate_sex, evaluate_site_country
from connector.criteria.derived import evaluate_creatinine_clearance
from connector.criteria.manual import evaluate_manual
from connector.criteria.medications import evaluate_medication
from connector.criteria.observations import evaluate_coded_observation, evaluate_observation
from connector.mapping.model import (
    AgeRule,
    AllOf,
    AnyOf,
    CodedObservationRule,
    ConditionRule,
    CreatinineClearanceRule,
    ManualRule,
    MedicationRule,
    Not,
    ObservationRule,
    Rule,
    SexRule,
    SiteCountryRule,
)

_LEAF_EVALUATORS: dict[type, Callable[[Any, EvalContext], Outcome]] = {
    AgeRule: evaluate_age,
    SexRule: evaluate_sex,
    SiteCountryRule: evaluate_site_country,
    ConditionRule: evaluate_condition,
    ObservationRule: evaluate_observation,
    CodedObservationRule: evaluate_coded_observation,
    MedicationRule: evaluate_medication,
    CreatinineClearanceRule: evaluate_creatinine_clearance,
    ManualRule: evaluate_manual,
}
_COMBINATORS: dict[type, Callable[[Any, EvalContext, Callable[[Rule, EvalContext], Outcome]], Outcome]] = {
    AllOf: combinators.evaluate_all_of,
    AnyOf: combinators.evaluate_any_of,
    Not: combinators.evaluate_not,
}


def evaluate_rule(rule: Rule, ctx: EvalContext) -> Outcome:
    """Does the rule's statement hold for this patient at ctx.as_of? (met / not_met / unknown)"""
    leaf = _LEAF_EVALUATORS.get(type(rule))
    if leaf is not None:
        return leaf(rule, ctx)
    return _COMBINATORS[type(rule)](rule, ctx, evaluate_rule)


__all__ = ["EvalContext", "Outcome", "evaluate_rule"]
