"""What would settle an `unknown` or `not_met` criterion: the coordinator's next step.

For every criterion that is not met, a Hint says, from the mapping's rule, the outcome and its
evidence, what the criterion needs ("needs hemoglobin >= 80 g/L dated 2026-10-19 or later;
latest 2026-10-02: 12.4 g/dL"), with the same facts as fields a program can sort and group by:
what is measured, the comparator and threshold a value must satisfy for the criterion to be
*met* (inverted for exclusions: "QTc > 470 ms excludes" needs QTc <= 470 ms), the window, the
first date a new value counts from, the latest value on record, and an `action`:

- `measure`: no usable value in the window (no-data, stale): a new test/record would decide it;
- `fix-data`: a value is there but cannot be compared (unit, no reference range, censored, error);
- `review`: a person decides from the chart (manual criteria, findings deferred to review);
- `record`: something that must be on record is not (a diagnosis, a birth date, prior therapy);
- `excluded`: the record as it stands rules the patient out (a value or a finding).

Hints are computed when results are shown, never stored: they read only the mapping, the
result and its date, so stored results of any age get them too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import Any

from connector.mapping.model import (
    AgeRule,
    AllOf,
    AnyOf,
    CodedObservationRule,
    ConditionRule,
    CreatinineClearanceRule,
    Criterion,
    ManualRule,
    MedicationRule,
    Not,
    ObservationRule,
    Rule,
    SexRule,
    SiteCountryRule,
)
from connector.report.display import human_unit, number, quantity
from connector.results import MET, NOT_MET, REASONS, CriterionResult, Evidence

MEASURE, FIX_DATA, REVIEW, RECORD, EXCLUDED = "measure", "fix-data", "review", "record", "excluded"
ACTIONS = (MEASURE, FIX_DATA, REVIEW, RECORD, EXCLUDED)
INVERTED = {"<": ">=", "<=": ">", ">": "<=", ">=": "<"}
DERIVED_REFERENCES = frozenset({"Cockcroft-Gault"})
MAX_EVIDENCE_NAMED = 3
JUDGED_REASONS = frozenset({"value", "unit", "no-reference-range", "censored"})  # one value was compared


@dataclass(frozen=True)
class Requirement:
    """What a value must satisfy for the criterion to be met, and how recent it must be."""

    what: str
    comparator: str | None = None
    threshold: float | None = None
    unit: str | None = None  # UCUM, as in the mapping
    relative_to: str | None = None  # "uln": the threshold is a multiple of the lab's upper limit
    window_days: int | None = None
    second_window_days: int | None = None  # derived values: the body weight's own window

    def statement(self) -> str:
        """`hemoglobin >= 80 g/L`, `bilirubin < 1.5 x ULN`, or just `ecog` without a threshold."""
        if self.comparator is None or self.threshold is None:
            return self.what
        amount = f"{number(self.threshold)} x ULN" if self.relative_to == "uln" else quantity(self.threshold, self.unit)
        return f"{self.what} {self.comparator} {amount}"


@dataclass(frozen=True)
class Hint:
    """One criterion's "what would settle it", as fields and as one sentence (`hint`)."""

    criterion: str
    type: str  # inclusion | exclusion
    text: str
    outcome: str
    reason: str
    action: str
    what: str
    comparator: str | None
    threshold: float | None
    unit: str | None
    relative_to: str | None
    window_days: int | None
    dated_from: str | None  # YYYY-MM-DD: the oldest date a value may have to count
    latest_reference: str | None
    latest_value: float | int | str | None
    latest_unit: str | None
    latest_date: str | None
    hint: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def criterion_text(criterion: Criterion) -> str:
    return " ".join(criterion.texts)


def requirement(criterion: Criterion) -> Requirement:
    """The criterion's measurable requirement (threshold, window) as far as its rule states one."""
    what = describe(criterion)
    found = _requirement_of(criterion.rule, what, criterion.type == "exclusion")
    return found if found is not None else Requirement(what)


def describe(criterion: Criterion) -> str:
    """`creatinine_clearance` -> `creatinine clearance`; exclusions drop a leading no_/not_."""
    name = criterion.id
    if criterion.type == "exclusion":
        for prefix in ("no_", "not_"):
            if name.startswith(prefix) and len(name) > len(prefix):
                name = name[len(prefix):]
                break
    return name.replace("_", " ")


def _requirement_of(rule: Rule, what: str, inverted: bool) -> Requirement | None:
    if isinstance(rule, (ObservationRule, CreatinineClearanceRule)):
        comparator = INVERTED[rule.comparator] if inverted else rule.comparator
        threshold = rule.threshold
        return Requirement(what, comparator, threshold.value, threshold.unit,
                           "uln" if threshold.relative_to_uln else None, rule.window_days,
                           rule.weight_window_days if isinstance(rule, CreatinineClearanceRule) else None)
    if isinstance(rule, CodedObservationRule):
        return Requirement(what, window_days=rule.window_days)
    if isinstance(rule, AgeRule) and (rule.min_years is None) != (rule.max_years is None):
        low = rule.min_years is not None
        comparator, value = (">=", rule.min_years) if low else ("<=", rule.max_years)
        if inverted:
            comparator = INVERTED[comparator]
        return Requirement("age", comparator, value, "a")
    if isinstance(rule, Not):
        return _requirement_of(rule.rule, what, not inverted)
    if isinstance(rule, (AllOf, AnyOf)):
        parts = [r for r in (_requirement_of(child, what, inverted) for child in rule.rules) if r is not None]
        with_threshold = [r for r in parts if r.threshold is not None]
        if len(with_threshold) == 1:
            return with_threshold[0]
        windows = {r.window_days for r in parts}
        if parts and len(windows) == 1:
            return Requirement(what, window_days=windows.pop())
    return None


def hint_for(criterion: Criterion, result: CriterionResult, as_of: date) -> Hint | None:
    """What would settle this result; None when the criterion is met."""
    if result.outcome == MET:
        return None
    need = requirement(criterion)
    dated_from = (as_of - timedelta(days=need.window_days)).isoformat() if need.window_days is not None else None
    latest = latest_evidence(result.evidence, decided=result.reason in JUDGED_REASONS)
    action, sentence = _explain(criterion, result, need, dated_from, latest, as_of)
    return Hint(
        criterion=criterion.id, type=criterion.type, text=criterion_text(criterion), outcome=result.outcome,
        reason=result.reason, action=action, what=need.what, comparator=need.comparator,
        threshold=need.threshold, unit=need.unit, relative_to=need.relative_to, window_days=need.window_days,
        dated_from=dated_from,
        latest_reference=latest.reference if latest else None, latest_value=latest.value if latest else None,
        latest_unit=latest.unit if latest else None, latest_date=latest.date if latest else None,
        hint=sentence)


def latest_evidence(evidence: tuple[Evidence, ...], decided: bool = False) -> Evidence | None:
    """The value the outcome was judged on (`decided`: evaluators list it first, a computed one
    included), else the newest recorded fact behind the outcome (not the age)."""
    if decided and evidence:
        return evidence[0]
    recorded = [e for e in evidence if e.reference not in DERIVED_REFERENCES and not e.reference.startswith("Patient/")]
    dated = [e for e in recorded if e.date]
    if dated:
        return max(dated, key=lambda e: e.date or "")
    return recorded[0] if recorded else None


def shown(evidence: Evidence) -> str:
    """`12.4 g/dL on 2026-10-02` (the value as people write the unit)."""
    value = quantity(evidence.value, evidence.unit)
    when = f" on {evidence.date}" if evidence.date else ""
    return f"{value}{when}" if value else f"{evidence.reference}{when}"


def _named(evidence: tuple[Evidence, ...]) -> str:
    """`Condition/c1: C79.31 (2025-01-04)`, at most a few, for "found ..." sentences."""
    items = []
    for e in evidence[:MAX_EVIDENCE_NAMED]:
        value = quantity(e.value, e.unit)
        items.append(f"{e.reference}" + (f": {value}" if value else "") + (f" ({e.date})" if e.date else ""))
    more = len(evidence) - MAX_EVIDENCE_NAMED
    return ", ".join(items) + (f" and {more} more" if more > 0 else "")


def _dated(need: Requirement, dated_from: str | None, as_of: date) -> str:
    """`hemoglobin >= 80 g/L dated 2026-10-19 or later` (with a derived value's second window)."""
    text = need.statement()
    if dated_from is not None:
        text += f" dated {dated_from} or later"
    if need.second_window_days is not None:
        weight_from = (as_of - timedelta(days=need.second_window_days)).isoformat()
        text += f" (measured, or computed from a creatinine dated {dated_from} or later and a weight dated {weight_from} or later)"
    return text


def _explain(criterion: Criterion, result: CriterionResult, need: Requirement, dated_from: str | None,
             latest: Evidence | None, as_of: date) -> tuple[str, str]:
    """(action, sentence) for one unknown / not_met result."""
    reason, rule, text = result.reason, criterion.rule, criterion_text(criterion)
    latest_part = f"; latest {shown(latest)}" if latest is not None else ""
    if reason == "manual":
        if isinstance(rule, ManualRule):
            return REVIEW, f"a person checks the chart: {text}"
        found = f"found {_named(result.evidence)}; " if result.evidence else ""
        return REVIEW, f"{found}a person decides: {text}"
    if reason == "error":
        return FIX_DATA, "could not be evaluated (see the patient's errors); correct the record and screen again"
    if reason in ("no-data", "stale"):
        return _missing(criterion, result, need, dated_from, latest_part, as_of)
    if reason == "unit":
        target = human_unit(need.unit) or "the criterion's unit"
        return FIX_DATA, f"needs {need.what} in a unit convertible to {target}{latest_part} (unit not convertible)"
    if reason == "no-reference-range":
        return FIX_DATA, (f"needs {_dated(need, dated_from, as_of)} with the lab's upper limit of normal "
                          f"(referenceRange.high){latest_part} (no reference range)")
    if reason == "censored":
        return FIX_DATA, f"needs an exact value: {_dated(need, dated_from, as_of)}{latest_part} (reported as a bound)"
    if result.outcome == NOT_MET:
        return _not_met(criterion, result, need, dated_from, latest_part, as_of)
    return _open(criterion, result, need, dated_from, latest_part, as_of)


def _open(criterion: Criterion, result: CriterionResult, need: Requirement, dated_from: str | None,
          latest_part: str, as_of: date) -> tuple[str, str]:
    """The other unknowns: the record says something, but not enough to decide."""
    reason, text = result.reason, criterion_text(criterion)
    statement = _dated(need, dated_from, as_of) if need.threshold is not None or need.window_days else text
    if reason == "preliminary":
        return MEASURE, f"needs a final result: {statement}{latest_part} (preliminary)"
    if reason == "indefinite":
        return MEASURE, f"needs a definite answer: {statement}{latest_part} (answer unknown)"
    if reason == "conflict":
        return FIX_DATA, f"results at the same time disagree ({_named(result.evidence)}); needs a corrected one: {statement}"
    if reason == "unconfirmed":
        return REVIEW, f"a person confirms the diagnosis ({_named(result.evidence)}, not confirmed): {text}"
    if reason == "imprecise-date":
        return RECORD, f"needs a full date (the record has only part of it) to decide: {text}"
    if reason == "unknown-sex":
        return RECORD, f"needs the patient's sex (Patient.gender): the answer differs by sex: {text}"
    why = REASONS.get(reason, reason)
    return FIX_DATA, f"{why}: {text}{latest_part}"


def _missing(criterion: Criterion, result: CriterionResult, need: Requirement, dated_from: str | None,
             latest_part: str, as_of: date) -> tuple[str, str]:
    """no-data / stale: what record would decide it."""
    rule = criterion.rule
    if isinstance(rule, AgeRule):
        return RECORD, f"needs the patient's birth date to check {criterion_text(criterion)}"
    if isinstance(rule, SexRule):
        return RECORD, "needs the patient's sex (Patient.gender)"
    none = "" if latest_part else "; none on record"
    if need.window_days is None and need.threshold is None:
        return MEASURE, f"needs data for: {criterion_text(criterion)}{latest_part or none}"
    return MEASURE, f"needs {_dated(need, dated_from, as_of)}{latest_part or none}"


def _not_met(criterion: Criterion, result: CriterionResult, need: Requirement, dated_from: str | None,
             latest_part: str, as_of: date) -> tuple[str, str]:
    rule, text = _leaf(criterion.rule), criterion_text(criterion)
    if result.reason == "value" and need.threshold is not None:
        return EXCLUDED, f"needs {_dated(need, dated_from, as_of)}{latest_part} (does not meet it)"
    if result.reason == "demographics":
        value = shown_value(result.evidence)
        return EXCLUDED, f"needs {need.statement() if need.threshold is not None else text}; recorded {value}"
    if result.reason == "deceased":
        return EXCLUDED, "the patient died on or before the screening date"
    if result.reason == "site" and isinstance(rule, SiteCountryRule):
        return EXCLUDED, f"needs a screening site in {', '.join(sorted(rule.countries))}"
    if result.reason == "no-record":
        return RECORD, f"needs {_on_record(rule)} on record: {text}; none found"
    if result.reason in ("count", "dose") and isinstance(rule, MedicationRule) and rule.administrations:
        plan = rule.administrations
        counts = " or ".join(str(c) for c in sorted(plan.counts))
        needed = f"{counts} administrations within {plan.period_days} days"
        if plan.max_total is not None:
            needed += f", at most {plan.max_total} in all"
        if plan.dose is not None:
            doses = " or ".join(number(v) for v in plan.dose.values)
            needed += f" (or a cumulative {doses} {human_unit(plan.dose.unit)} +/- {number(plan.dose.tolerance * 100)}%)"
        return EXCLUDED, f"needs {needed}; found {_day_count(result.evidence)} on record"
    if result.evidence:
        return EXCLUDED, f"ruled out by {_named(result.evidence)}: {text}"
    return EXCLUDED, f"not met: {text}"


def shown_value(evidence: tuple[Evidence, ...]) -> str:
    return quantity(evidence[0].value, evidence[0].unit) if evidence else "nothing"


def _day_count(evidence: tuple[Evidence, ...]) -> str:
    days = {e.date for e in evidence if e.date}
    return f"{len(days)} administration day(s)" if days else f"{len(evidence)} record(s)"


def _leaf(rule: Rule) -> Rule:
    """A combinator of one rule stands for that rule (for wording)."""
    while isinstance(rule, (AllOf, AnyOf)) and len(rule.rules) == 1:
        rule = rule.rules[0]
    return rule


def _on_record(rule: Rule) -> str:
    if isinstance(rule, ConditionRule):
        return "a matching diagnosis (Condition)"
    if isinstance(rule, MedicationRule):
        return "a matching medication"
    if isinstance(rule, (AllOf, AnyOf)):
        return "a matching record"
    return "a record"


def patient_hints(criteria: dict[str, Criterion], results: tuple[CriterionResult, ...], as_of: date) -> dict[str, Hint]:
    """Hints of one patient's results by criterion id (criteria the mapping no longer has are skipped)."""
    found = {}
    for result in results:
        criterion = criteria.get(result.id)
        if criterion is None:
            continue
        hint = hint_for(criterion, result, as_of)
        if hint is not None:
            found[result.id] = hint
    return found


__all__ = ["ACTIONS", "Hint", "Requirement", "criterion_text", "hint_for", "patient_hints", "requirement"]
