"""When a stored result may change with no new data: the date to re-screen it.

Criteria look back over windows ("hemoglobin within 28 days"), count administrations over
rolling periods, and compare ages. With the same data, a result can only change when a fact
leaves (or, if dated in the future, enters) such a window, or on a birthday when an age limit
applies. This computes the earliest such date, conservatively: every windowed fact counts
against every window of the mapping, so some results are re-screened without need, never late.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

from connector.facts import PatientFacts
from connector.mapping.model import (
    AgeRule,
    CodedObservationRule,
    CreatinineClearanceRule,
    Mapping,
    MedicationRule,
    ObservationRule,
)
from connector.mapping.needs import all_rules


def mapping_windows(mapping: Mapping) -> tuple[set[int], set[int], bool]:
    """(observation windows, medication periods, has an age rule) in days."""
    observation: set[int] = set()
    medication: set[int] = set()
    age = False
    for rule in all_rules(mapping):
        if isinstance(rule, (ObservationRule, CodedObservationRule)):
            observation.add(rule.window_days)
        elif isinstance(rule, CreatinineClearanceRule):
            observation.update({rule.window_days, rule.weight_window_days})
        elif isinstance(rule, MedicationRule) and rule.administrations is not None:
            medication.add(rule.administrations.period_days)
        elif isinstance(rule, AgeRule):
            age = True
    return observation, medication, age


def rescreen_on(mapping: Mapping, facts: PatientFacts, as_of: date) -> date | None:
    """The first day after `as_of` on which this patient's result may differ, or None (never)."""
    observation, medication, age = mapping_windows(mapping)
    candidates: list[date] = []
    candidates += _window_ends((o.effective for o in facts.observations), observation, as_of)
    candidates += _window_ends((m.effective for m in facts.medications), medication, as_of)
    if age and facts.birth_date is not None:
        candidates.append(_next_birthday(facts.birth_date, as_of))
    return min(candidates) if candidates else None


def _window_ends(dates: Iterable[date | None], windows: set[int], as_of: date) -> list[date]:
    found: list[date] = []
    if not windows:
        return found
    for day in dates:
        if day is None:
            continue
        if day > as_of:
            found.append(day)  # enters the look-back once that day comes
            continue
        for window in windows:
            leaves = day + timedelta(days=window + 1)
            if leaves > as_of:
                found.append(leaves)
    return found


def _next_birthday(birth: date, as_of: date) -> date:
    for year in (as_of.year, as_of.year + 1):
        try:
            day = birth.replace(year=year)
        except ValueError:  # 29 February
            day = date(year, 3, 1)
        if day > as_of:
            return day
    return as_of + timedelta(days=366)  # pragma: no cover
