"""Medication history over MedicationStatement, MedicationRequest and MedicationAdministration.

A medication matches on its codes (e.g. RxNorm ingredients) or on its text: case-insensitive
containment of any listed name or synonym, because EHRs often send local codes with text.
Void records (entered-in-error, cancelled, not-taken, not-done, draft) are not doses.

Counting administrations: administrations and statements form one history (cycles given
elsewhere are often known only from a MedicationStatement, later ones administered here), one
cycle per calendar day, so an administration and a statement of the same day are one event.
Requests (orders) count only when the record has neither administrations nor statements of the
drug (all some EHRs send): an order is not proof that a dose was given. "Within a period of N
days" is any rolling window of N days in the patient's history: first and last day less than
N days apart (52 weeks = 364 days).
"""

from __future__ import annotations

from datetime import date

from connector.codes import first_match, normalize_text
from connector.criteria.base import EvalContext, Outcome, medication_evidence, met, not_met, unknown
from connector.facts import MedicationFact
from connector.mapping.model import Administrations, MedicationRule
from connector.results import Evidence
from connector.units import UnitError, convert, round_sig

VOID_STATUSES = frozenset({"entered-in-error", "cancelled", "not-taken", "not-done", "draft"})
MAX_EVIDENCE = 10


def medication_matches(rule: MedicationRule, med: MedicationFact) -> bool:
    if first_match(rule.codes, med.codes) is not None:
        return True
    texts = [normalize_text(name) for name in med.names]
    return any(name in text for name in rule.names for text in texts)


def matching_events(rule: MedicationRule, ctx: EvalContext) -> list[MedicationFact]:
    """Matching, non-void events dated on or before the screening date (undated ones kept)."""
    return [m for m in ctx.facts.medications
            if m.status not in VOID_STATUSES
            and (m.effective is None or m.effective <= ctx.as_of)
            and medication_matches(rule, m)]


def evaluate_medication(rule: MedicationRule, ctx: EvalContext) -> Outcome:
    events = matching_events(rule, ctx)
    if not events:
        return not_met("no-record")
    if rule.administrations is None:
        events.sort(key=lambda m: m.effective or date.min)
        return met("record", [medication_evidence(m) for m in events[-MAX_EVIDENCE:]])
    return judge_administrations(rule.administrations, events)


_KIND_RANK = {"administration": 2, "statement": 1, "request": 0}


def cycles(events: list[MedicationFact]) -> tuple[dict[date, MedicationFact], list[MedicationFact]]:
    """One event per day (an administration with a dose preferred as its evidence), plus the
    undated ones; requests only when nothing was recorded as given."""
    given = [e for e in events if e.kind != "request"]
    by_day: dict[date, MedicationFact] = {}
    undated = []
    for event in given or events:
        if event.effective is None:
            undated.append(event)
        elif event.effective not in by_day or _preferred(event) > _preferred(by_day[event.effective]):
            by_day[event.effective] = event
    return dict(sorted(by_day.items())), undated


def _preferred(event: MedicationFact) -> tuple[int, bool]:
    return _KIND_RANK.get(event.kind, 0), event.dose is not None


def windows(days: list[date], period_days: int) -> list[list[date]]:
    """For each day, the days from it that fall in one period starting there."""
    return [[d for d in days[i:] if (d - start).days < period_days] for i, start in enumerate(days)]


def judge_administrations(rule: Administrations, events: list[MedicationFact]) -> Outcome:
    by_day, undated = cycles(events)
    all_evidence = [medication_evidence(by_day[d]) for d in by_day] + [medication_evidence(e) for e in undated]
    total = len(by_day) + len(undated)
    if rule.max_total is not None and total > rule.max_total:
        return not_met("count", all_evidence)
    periods = windows(list(by_day), rule.period_days)
    best = max(periods, key=len, default=[])
    if len(best) in rule.counts:
        return met("count", [medication_evidence(by_day[d]) for d in best])
    if rule.dose is not None:
        dose = judge_dose(rule, by_day, periods)
        if dose is not None:
            return dose
    return not_met("count", all_evidence)


def judge_dose(rule: Administrations, by_day: dict[date, MedicationFact],
               periods: list[list[date]]) -> Outcome | None:
    """met `dose` when some period's cumulative dose is within tolerance of a target; unknown
    `unit` when an unconvertible dose might have decided it; None otherwise."""
    target = rule.dose
    assert target is not None
    converted: dict[date, float] = {}
    unit_problems: list[Evidence] = []
    for day, event in by_day.items():
        if event.dose is None:
            continue
        try:
            converted[day] = convert(event.dose.value, event.dose.unit, target.unit)
        except UnitError:
            unit_problems.append(medication_evidence(event))
    for period in periods:
        total = round_sig(sum(converted.get(d, 0.0) for d in period))
        if any(round_sig(abs(total - value)) <= round_sig(target.tolerance * value) for value in target.values):
            return met("dose", [medication_evidence(by_day[d]) for d in period if d in converted])
    if unit_problems:
        return unknown("unit", unit_problems)
    return None
