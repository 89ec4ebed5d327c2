"""Evaluate a trial mapping for one patient: criteria outcomes, overall status, arm options.

Polarity and review rules live here, not in the evaluators:
- exclusion criteria describe what disqualifies, so a found exclusion is `not_met` and an
  absent one `met` (e.g. no brain metastases on record -> met, reason no-record);
- `review_if_found` turns a found exclusion into unknown/manual (treated brain metastases are
  allowed, so a person decides); `defer_if_not_met` does the same for a failed inclusion when a
  condition applies or a person must check whether it does (bilirubin >= 1.5 x ULN with
  Gilbert's syndrome, or a Condition whose text names it);
- an exclusion whose only matches are unconfirmed diagnoses goes to review (unknown/manual);
- an evaluator that fails unexpectedly yields unknown/`error` for that criterion only, named
  in the patient's errors (never with patient values): one bad record never sinks a run;
- a patient with errors is never a `candidate` (what could not be read may exclude them);
- a patient deceased on or before the screening date is `excluded`, every criterion `not_met`
  with reason `deceased`, and no arm option is offered.
"""

from __future__ import annotations

import logging
from datetime import date

from connector.criteria import EvalContext, Outcome, evaluate_rule
from connector.criteria.base import unknown
from connector.facts import PatientFacts
from connector.mapping.model import Arm, Criterion, Mapping
from connector.results import (
    MET,
    NOT_MET,
    UNKNOWN,
    ArmResult,
    CriterionResult,
    Evidence,
    ExcludedOption,
    PatientResult,
    overall_status,
)

log = logging.getLogger(__name__)


def evaluate_patient(mapping: Mapping, facts: PatientFacts, as_of: date, site_country: str = "US") -> PatientResult:
    if facts.deceased_by(as_of):
        return _deceased(mapping, facts)
    ctx = EvalContext(facts, as_of, site_country)
    errors = list(facts.errors)
    criteria = tuple(_safe_criterion(criterion, ctx, errors) for criterion in mapping.criteria)
    arms = tuple(_safe_arm(arm, ctx, errors) for arm in mapping.arms)
    return PatientResult(facts.reference, overall_status(criteria, bool(errors)), criteria, arms, tuple(errors),
                         draft=mapping.is_draft)


def _deceased(mapping: Mapping, facts: PatientFacts) -> PatientResult:
    """Nothing about a dead patient is reported as eligible: every criterion not met, no option."""
    evidence = (Evidence(facts.reference, "deceased", None,
                         facts.deceased_on.isoformat() if facts.deceased_on else None),)
    criteria = tuple(CriterionResult(c.id, NOT_MET, "deceased", evidence) for c in mapping.criteria)
    arms = tuple(ArmResult(arm.label, (), tuple(ExcludedOption(o.name, "patient deceased") for o in arm.options))
                 for arm in mapping.arms)
    return PatientResult(facts.reference, overall_status(criteria), criteria, arms, tuple(facts.errors),
                         draft=mapping.is_draft)


def _safe_criterion(criterion: Criterion, ctx: EvalContext, errors: list[str]) -> CriterionResult:
    try:
        return evaluate_criterion(criterion, ctx)
    except Exception as exc:  # noqa: BLE001 - one criterion's failure must not lose the others
        # no traceback: exception messages may quote patient values
        log.warning("criterion %s failed for %s: %s", criterion.id, ctx.facts.reference, type(exc).__name__)
        errors.append(f"criterion {criterion.id!r}: could not be evaluated ({type(exc).__name__})")
        return CriterionResult(criterion.id, UNKNOWN, "error")


def evaluate_criterion(criterion: Criterion, ctx: EvalContext) -> CriterionResult:
    raw = evaluate_rule(criterion.rule, ctx)
    outcome = _apply_polarity(criterion, raw)
    if outcome.status == NOT_MET and criterion.type == "inclusion" and criterion.defer_if_not_met is not None:
        deferral = evaluate_rule(criterion.defer_if_not_met, ctx)
        if deferral.status == MET or (deferral.status == UNKNOWN and deferral.reason == "manual"):
            outcome = unknown("manual", outcome.evidence + deferral.evidence)
    if _cites_conflict(outcome, ctx):
        outcome = unknown("conflict", outcome.evidence)
    return CriterionResult(criterion.id, outcome.status, outcome.reason, outcome.evidence)


def _cites_conflict(outcome: Outcome, ctx: EvalContext) -> bool:
    """Whether the outcome rests on a record that came in conflicting copies (connector.versions)."""
    if not ctx.facts.conflicted:
        return False
    return any("/".join(e.reference.split("/")[:2]) in ctx.facts.conflicted for e in outcome.evidence)


def _apply_polarity(criterion: Criterion, raw: Outcome) -> Outcome:
    if criterion.type == "exclusion" and raw.status == UNKNOWN and raw.reason == "unconfirmed":
        return unknown("manual", raw.evidence)
    if criterion.type == "inclusion" or raw.status == UNKNOWN:
        return raw
    if raw.status == MET:  # the disqualifying finding is present
        if criterion.review_if_found:
            return unknown("manual", raw.evidence)
        return Outcome(NOT_MET, raw.reason, raw.evidence)
    return Outcome(MET, raw.reason, raw.evidence)


def _safe_arm(arm: Arm, ctx: EvalContext, errors: list[str]) -> ArmResult:
    try:
        return evaluate_arm(arm, ctx)
    except Exception as exc:  # noqa: BLE001
        log.warning("arm %r failed for %s: %s", arm.label, ctx.facts.reference, type(exc).__name__)
        errors.append(f"arm {arm.label!r}: could not be evaluated ({type(exc).__name__})")
        return ArmResult(arm.label, (), tuple(ExcludedOption(o.name, "could not be evaluated") for o in arm.options))


def evaluate_arm(arm: Arm, ctx: EvalContext) -> ArmResult:
    """Allowed options, and for each excluded one why (with the records behind it)."""
    allowed: list[str] = []
    excluded: list[ExcludedOption] = []
    for option in arm.options:
        why = None
        for requirement in option.requires:
            result = evaluate_rule(requirement.rule, ctx)
            if result.status != MET:
                why = requirement.why if result.status == NOT_MET else f"{requirement.why} (undetermined: {result.reason})"
                break
        if why is None:
            for exclusion in option.unless:
                result = evaluate_rule(exclusion.rule, ctx)
                if result.status == MET:
                    refs = ", ".join(dict.fromkeys(e.reference for e in result.evidence))
                    why = f"{exclusion.why} ({refs})" if refs else exclusion.why
                    break
        if why is None:
            allowed.append(option.name)
        else:
            excluded.append(ExcludedOption(option.name, why))
    return ArmResult(arm.label, tuple(allowed), tuple(excluded))
