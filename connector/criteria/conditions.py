"""Diagnoses on record (Condition): history criteria, so no match means `no-record`.

A Condition counts when one of its codings is in the code sets and none is in the exclusion
sets (so `C7A.090` bronchus is excluded even though `C7A.0` matches by prefix). `active`
means clinicalStatus active/recurrence/relapse, or absent (absence says nothing).
Conditions dated after the screening date did not exist yet and are ignored.

verificationStatus: `refuted` / `entered-in-error` records were dropped when read;
`provisional` / `differential` / `unconfirmed` ones do not decide: only such matches -> unknown
`unconfirmed` (an exclusion sends that to review, see connector.evaluation).
A Condition with no code in the criterion's systems whose text (or local display) contains
one of the criterion's `names` -> unknown `manual`: a person reads it, never a silent no-record.
"""

from __future__ import annotations

from connector.codes import first_match, normalize_text
from connector.criteria.base import EvalContext, Outcome, condition_evidence, met, not_met, unknown
from connector.facts import Coding, ConditionFact
from connector.mapping.model import ConditionRule

ACTIVE_STATUSES = frozenset({"active", "recurrence", "relapse"})
UNCONFIRMED_STATUSES = frozenset({"provisional", "differential", "unconfirmed"})
MAX_EVIDENCE = 10


def _current(rule: ConditionRule, ctx: EvalContext) -> list[ConditionFact]:
    """Conditions that existed at the screening date, in the clinical status the rule asks for."""
    found = []
    for condition in ctx.facts.conditions:
        when = condition.onset or condition.recorded
        if when is not None and when > ctx.as_of:
            continue
        if rule.clinical_status == "active" and condition.clinical_status not in ACTIVE_STATUSES | {None}:
            continue
        found.append(condition)
    return found


def matching_conditions(rule: ConditionRule, ctx: EvalContext) -> list[tuple[ConditionFact, Coding]]:
    found = []
    for condition in _current(rule, ctx):
        coding = first_match(rule.codes, condition.codes)
        if coding is None or first_match(rule.exclude_codes, condition.codes) is not None:
            continue
        if rule.body_sites and first_match(rule.body_sites, condition.body_sites) is None:
            continue
        found.append((condition, coding))
    return found


def text_only_conditions(rule: ConditionRule, ctx: EvalContext) -> list[ConditionFact]:
    """Conditions carrying no code in the rule's systems whose text names what the rule seeks."""
    if not rule.names:
        return []
    systems = {cs.system for cs in rule.codes}
    found = []
    for condition in _current(rule, ctx):
        if any(c.system in systems for c in condition.codes):
            continue
        texts = [normalize_text(t) for t in (condition.text, *(c.display for c in condition.codes)) if t]
        if any(name in text for name in rule.names for text in texts):
            found.append(condition)
    return found


def evaluate_condition(rule: ConditionRule, ctx: EvalContext) -> Outcome:
    found = matching_conditions(rule, ctx)
    confirmed = [(c, coding) for c, coding in found if c.verification_status not in UNCONFIRMED_STATUSES]
    if confirmed:
        return met("record", [condition_evidence(c, coding) for c, coding in confirmed[:MAX_EVIDENCE]])
    if found:
        return unknown("unconfirmed", [condition_evidence(c, coding) for c, coding in found[:MAX_EVIDENCE]])
    by_text = text_only_conditions(rule, ctx)
    if by_text:
        return unknown("manual", [condition_evidence(c, None) for c in by_text[:MAX_EVIDENCE]])
    return not_met("no-record")
