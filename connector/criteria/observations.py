"""Lab values and scores (Observation): the latest value in the window decides.

- window of N days = effective date in [as_of - N, as_of];
- only values before the window -> unknown `stale`, with the latest of them as evidence;
- nothing -> unknown `no-data`; unconvertible unit -> unknown `unit`;
- `x ULN` thresholds use that Observation's own referenceRange.high (no default ULN: labs
  differ) -> unknown `no-reference-range` without one;
- coded answers may stand for numbers (ECOG LA9622-7..LA9627-6 = 0..5).
"""

from __future__ import annotations

from connector.codes import first_match, normalize_text
from connector.criteria.base import (
    EvalContext,
    Outcome,
    compare,
    met,
    not_met,
    observation_evidence,
    unknown,
)
from connector.facts import ObservationFact
from connector.mapping.model import CodedObservationRule, ObservationRule
from connector.units import UnitError, convert, round_sig


def numeric_value(obs: ObservationFact, rule: ObservationRule) -> tuple[float, str | None, str | None] | None:
    """(value, unit, comparator) of an Observation, or None when it carries no usable number."""
    if obs.quantity is not None:
        return obs.quantity.value, obs.quantity.unit, obs.quantity.comparator
    for answer in rule.answers:
        if first_match(answer.codes, obs.value_codes):
            return answer.value, None, None
    return None


def latest_in_window(candidates: list[ObservationFact], ctx: EvalContext, window_days: int) -> ObservationFact | None:
    """The newest candidate in the window (candidates are sorted oldest first)."""
    start = ctx.window_start(window_days)
    in_window = [o for o in candidates if o.effective is not None and o.effective >= start]
    return in_window[-1] if in_window else None


def evaluate_observation(rule: ObservationRule, ctx: EvalContext) -> Outcome:
    candidates = [o for o in ctx.observations(rule.codes) if numeric_value(o, rule) is not None]
    if not candidates:
        return unknown("no-data")
    latest = latest_in_window(candidates, ctx, rule.window_days)
    if latest is None:
        return unknown("stale", [observation_evidence(candidates[-1])])
    return judge_value(rule, latest)


def judge_value(rule: ObservationRule, obs: ObservationFact) -> Outcome:
    """Compare one Observation's value with the rule's threshold (absolute or x ULN)."""
    value, unit, value_comparator = numeric_value(obs, rule)  # type: ignore[misc]
    evidence = [observation_evidence(obs)]
    try:
        if rule.threshold.relative_to_uln:
            high = obs.reference_high
            if high is None or high.value <= 0:
                return unknown("no-reference-range", evidence)
            in_high_unit = convert(value, unit, high.unit if high.unit is not None else unit, rule.molar_mass)
            subject = round_sig(in_high_unit / high.value)
        else:
            subject = convert(value, unit, rule.threshold.unit, rule.molar_mass)
    except UnitError:
        return unknown("unit", evidence)
    decided = compare(subject, rule.comparator, rule.threshold.value, value_comparator)
    if decided is None:
        return unknown("censored", evidence)
    return met("value", evidence) if decided else not_met("value", evidence)


def answers_match(rule: CodedObservationRule, obs: ObservationFact) -> bool:
    if first_match(rule.answers, obs.value_codes) is not None:
        return True
    return bool(obs.value_text) and normalize_text(obs.value_text or "") in rule.texts


def evaluate_coded_observation(rule: CodedObservationRule, ctx: EvalContext) -> Outcome:
    """Does the latest coded answer in the window count (e.g. pregnant, hCG positive)?

    With `when_missing: absent`, nothing in the window means the finding is absent
    (`no-record`) and older records are not evidence; otherwise `stale` / `no-data`.
    """
    candidates = [o for o in ctx.observations(rule.codes) if o.value_codes or o.value_text]
    latest = latest_in_window(candidates, ctx, rule.window_days)
    if latest is None:
        if rule.when_missing == "absent":
            return not_met("no-record")
        if candidates:
            return unknown("stale", [observation_evidence(candidates[-1])])
        return unknown("no-data")
    evidence = [observation_evidence(latest)]
    return met("record", evidence) if answers_match(rule, latest) else not_met("record", evidence)
