"""all_of / any_of / not over tri-state outcomes (Kleene logic).

all_of: not_met if any child is, else unknown if any child is, else met.
any_of: met if any child is, else unknown if any child is, else not_met (`no-record` when every
child found nothing). The deciding children's evidence and first reason are kept.
"""

from __future__ import annotations

from collections.abc import Callable

from connector.criteria.base import EvalContext, Outcome
from connector.mapping.model import AllOf, AnyOf, Not, Rule
from connector.results import MET, NOT_MET, UNKNOWN

Evaluate = Callable[[Rule, EvalContext], Outcome]


def _merge(status: str, chosen: list[Outcome]) -> Outcome:
    evidence = tuple(e for outcome in chosen for e in outcome.evidence)
    reasons = [o.reason for o in chosen]
    reason = next((r for r in reasons if r != "no-record"), reasons[0])
    return Outcome(status, reason, tuple(dict.fromkeys(evidence)))


def _decide(outcomes: list[Outcome], precedence: tuple[str, str], otherwise: str) -> Outcome:
    """The first status of `precedence` that any child has decides; else `otherwise`."""
    for status in precedence:
        chosen = [o for o in outcomes if o.status == status]
        if chosen:
            return _merge(status, chosen)
    return _merge(otherwise, outcomes)


def evaluate_all_of(rule: AllOf, ctx: EvalContext, evaluate: Evaluate) -> Outcome:
    """One child not met sinks it; else one unknown leaves it unknown."""
    return _decide([evaluate(child, ctx) for child in rule.rules], (NOT_MET, UNKNOWN), MET)


def evaluate_any_of(rule: AnyOf, ctx: EvalContext, evaluate: Evaluate) -> Outcome:
    """One child met carries it; else one unknown leaves it unknown."""
    return _decide([evaluate(child, ctx) for child in rule.rules], (MET, UNKNOWN), NOT_MET)


def evaluate_not(rule: Not, ctx: EvalContext, evaluate: Evaluate) -> Outcome:
    inner = evaluate(rule.rule, ctx)
    flipped = {MET: NOT_MET, NOT_MET: MET}.get(inner.status, UNKNOWN)
    return Outcome(flipped, inner.reason, inner.evidence)
