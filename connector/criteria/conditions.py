"""Diagnoses on record (Condition): history criteria, so no match means `no-record`.

A Condition counts when one of its codings is in the code sets and none is in the exclusion
sets (so `C7A.090` bronchus is excluded even though `C7A.0` matches by prefix). `active`
means clinicalStatus active/recurrence/relapse, or absent (absence says nothing).
Conditions dated after the screening date did not exist yet and are ignored.
"""

from __future__ import annotations

from connector.codes import first_match
from connector.criteria.base import EvalContext, Outcome, condition_evidence, met, not_met
from connector.facts import Coding, ConditionFact
from connector.mapping.model import ConditionRule

ACTIVE_STATUSES = frozenset({"active", "recurrence", "relapse"})
MAX_EVIDENCE = 10


def matching_conditions(rule: ConditionRule, ctx: EvalContext) -> list[tuple[ConditionFact, Coding]]:
    found = []
    for condition in ctx.facts.conditions:
        when = condition.onset or condition.recorded
        if when is not None and when > ctx.as_of:
            continue
        if rule.clinical_status == "active" and condition.clinical_status not in ACTIVE_STATUSES | {None}:
            continue
        coding = first_match(rule.codes, condition.codes)
        if coding is None or first_match(rule.exclude_codes, condition.codes) is not None:
            continue
        if rule.body_sites and first_match(rule.body_sites, condition.body_sites) is None:
            continue
        found.append((condition, coding))
    return found


def evaluate_condition(rule: ConditionRule, ctx: EvalContext) -> Outcome:
    found = matching_conditions(rule, ctx)
    if not found:
        return not_met("no-record")
    return met("record", [condition_evidence(c, coding) for c, coding in found[:MAX_EVIDENCE]])
