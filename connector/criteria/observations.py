"""Lab values and scores (Observation): the latest result in the window decides.

- window of N days = effective date as recorded in [as_of - N, as_of];
- "latest" compares full instants (fhirtime.latest_group): results at the same instant that
  decide differently -> unknown `conflict`, both as evidence; never broken by id or order;
- only `final`/`amended`/`corrected` (or no status) are results; a later `preliminary` /
  `registered` one that decides differently (or with no result to agree with) -> unknown
  `preliminary`, both as evidence;
- only values before the window -> unknown `stale`, with the latest of them as evidence;
- nothing -> unknown `no-data`; unconvertible unit -> unknown `unit`;
- `x ULN` thresholds use the result's own reference range that applies to this patient
  (criteria.ranges) -> unknown `no-reference-range` without one;
- coded answers may stand for numbers (ECOG LA9622-7..LA9627-6 = 0..5); "unknown" answers
  never override a definite one (coded_observation).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

from connector.codes import LOINC, SNOMED, first_match, normalize_text
from connector.criteria.base import (
    EvalContext,
    Outcome,
    compare,
    met,
    moment_of,
    not_met,
    observation_evidence,
    unknown,
)
from connector.criteria.ranges import applicable_range
from connector.facts import ObservationFact
from connector.fhirtime import latest_group
from connector.mapping.model import CodedObservationRule, ObservationRule
from connector.units import UnitError, convert, round_sig

RESULT_STATUSES = frozenset({None, "final", "amended", "corrected"})
NULL_FLAVOR = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
# Answers that say nothing: LOINC LA4489-6 "Unknown" and SNOMED CT 261665006 "Unknown
# (qualifier value)" (both seen as pregnancy-status answers in public FHIR value sets), HL7
# NullFlavor UNK/ASKU/NASK/NAV/NI.
INDEFINITE_ANSWERS = frozenset({
    (LOINC, "LA4489-6"), (SNOMED, "261665006"),
    (NULL_FLAVOR, "UNK"), (NULL_FLAVOR, "ASKU"), (NULL_FLAVOR, "NASK"), (NULL_FLAVOR, "NAV"), (NULL_FLAVOR, "NI"),
})
INDEFINITE_TEXTS = frozenset({"unknown", "not known", "don t know", "unk", "asked but unknown"})
POSITIVE_FLAGS = frozenset({"H", "HH", "HU", "POS", "DET", "A", "AA"})
NEGATIVE_FLAGS = frozenset({"N", "NEG", "ND", "L", "LL", "LU"})


def numeric_value(obs: ObservationFact, rule: ObservationRule) -> tuple[float, str | None, str | None] | None:
    """(value, unit, comparator) of an Observation, or None when it carries no usable number."""
    if obs.quantity is not None:
        return obs.quantity.value, obs.quantity.unit, obs.quantity.comparator
    for answer in rule.answers:
        if first_match(answer.codes, obs.value_codes):
            return answer.value, None, None
    return None


def in_window(candidates: list[ObservationFact], ctx: EvalContext, window_days: int) -> list[ObservationFact]:
    start = ctx.window_start(window_days)
    return [o for o in candidates if o.effective is not None and o.effective >= start]


def settle(candidates: list[ObservationFact], key: Callable[[ObservationFact], Hashable]
           ) -> ObservationFact | Outcome | None:
    """The result that decides among `candidates` (all in the window), or why none does.

    `key` says what an Observation decides (e.g. met/not_met): the latest final results must
    agree (else `conflict`), and a later preliminary one must agree with them (else
    `preliminary`). None when there is nothing at all.
    """
    if not candidates:
        return None
    finals = [o for o in candidates if o.status in RESULT_STATUSES]
    newest = _by_reference(latest_group(finals, moment_of))
    if len({key(o) for o in newest}) > 1:
        return unknown("conflict", [observation_evidence(o) for o in newest])
    chosen = newest[0] if newest else None
    later = [o for o in _by_reference(latest_group(candidates, moment_of)) if o.status not in RESULT_STATUSES]
    if later and (chosen is None or any(key(o) != key(chosen) for o in later)):
        shown = ([chosen] if chosen else []) + later
        return unknown("preliminary", [observation_evidence(o) for o in shown])
    return chosen


def _by_reference(items: list[ObservationFact]) -> list[ObservationFact]:
    """A fixed order for evidence only (never used to decide)."""
    return sorted(items, key=lambda o: o.source.reference)


def evaluate_observation(rule: ObservationRule, ctx: EvalContext) -> Outcome:
    candidates = [o for o in ctx.observations(rule.codes) if numeric_value(o, rule) is not None]
    if not candidates:
        return unknown("no-data")
    return judge_latest(rule, candidates, ctx, rule.window_days)


def judge_latest(rule: ObservationRule, candidates: list[ObservationFact], ctx: EvalContext,
                 window_days: int) -> Outcome:
    """The latest result in the window judged against the rule; `stale` when all are older."""
    decided = settle(in_window(candidates, ctx, window_days), lambda o: judge_value(rule, o, ctx).status)
    if decided is None:
        return unknown("stale", [observation_evidence(candidates[-1])])
    return decided if isinstance(decided, Outcome) else judge_value(rule, decided, ctx)


def judge_value(rule: ObservationRule, obs: ObservationFact, ctx: EvalContext) -> Outcome:
    """Compare one Observation's value with the rule's threshold (absolute or x ULN)."""
    value, unit, value_comparator = numeric_value(obs, rule)  # type: ignore[misc]
    evidence = [observation_evidence(obs)]
    try:
        if rule.threshold.relative_to_uln:
            reference_range = applicable_range(obs, ctx.facts, obs.effective or ctx.as_of)
            high = reference_range.high if reference_range else None
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


def coded_verdict(rule: CodedObservationRule, obs: ObservationFact, ctx: EvalContext) -> bool | None:
    """True: the answer counts (e.g. positive); False: a definite other answer; None: says nothing.

    A quantitative result (e.g. hCG in IU/L) counts when flagged high/positive by its
    `interpretation`, or, without a flag, when above the range that applies to the patient.
    """
    if any((c.system, c.code) in INDEFINITE_ANSWERS for c in obs.value_codes):
        return None
    if first_match(rule.answers, obs.value_codes) is not None:
        return True
    if obs.value_codes:
        return False
    if obs.value_text:
        text = normalize_text(obs.value_text)
        if text in rule.texts:
            return True
        return None if text in INDEFINITE_TEXTS else False
    if obs.quantity is not None:
        return _quantity_verdict(obs, ctx)
    return None


def _quantity_verdict(obs: ObservationFact, ctx: EvalContext) -> bool | None:
    flags = {c.code for c in obs.interpretation if c.system in (INTERPRETATION, None)}
    if flags & POSITIVE_FLAGS:
        return True
    if flags & NEGATIVE_FLAGS:
        return False
    reference_range = applicable_range(obs, ctx.facts, obs.effective or ctx.as_of)
    high = reference_range.high if reference_range else None
    assert obs.quantity is not None
    if high is None:
        return None
    try:
        value = convert(obs.quantity.value, obs.quantity.unit, high.unit if high.unit else obs.quantity.unit)
    except UnitError:
        return None
    return compare(value, ">", high.value, obs.quantity.comparator)


def _is_answer(obs: ObservationFact) -> bool:
    return bool(obs.value_codes or obs.value_text or obs.quantity is not None)


def evaluate_coded_observation(rule: CodedObservationRule, ctx: EvalContext) -> Outcome:
    """Does the latest definite answer in the window count (e.g. pregnant, hCG positive)?

    "Unknown" answers never override an earlier definite one in the window; with only such
    answers -> unknown `indefinite`. With `when_missing: absent`, nothing in the window means
    the finding is absent (`no-record`) and older records are not evidence; otherwise
    `stale` / `no-data`.
    """
    candidates = [o for o in ctx.observations(rule.codes) if _is_answer(o)]
    recent = in_window(candidates, ctx, rule.window_days)
    if not recent:
        if rule.when_missing == "absent":
            return not_met("no-record")
        if candidates:
            return unknown("stale", [observation_evidence(candidates[-1])])
        return unknown("no-data")
    verdicts = {id(o): coded_verdict(rule, o, ctx) for o in recent}
    definite = [o for o in recent if verdicts[id(o)] is not None]
    if not definite:
        return unknown("indefinite", [observation_evidence(o) for o in _by_reference(latest_group(recent, moment_of))])
    decided = settle(definite, lambda o: verdicts[id(o)])
    if isinstance(decided, Outcome):
        return decided
    assert decided is not None
    evidence = [observation_evidence(decided)]
    return met("record", evidence) if verdicts[id(decided)] else not_met("record", evidence)
