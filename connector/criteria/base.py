"""What every criterion evaluator shares: the outcome type, the patient context, evidence helpers.

An evaluator answers "does the rule's statement hold for this patient?" as met / not_met /
unknown with a reason and evidence. Inclusion/exclusion polarity and review deferrals are
applied afterwards by connector.evaluation, so evaluators stay small and reusable in arms.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Callable

from connector.codes import CodeSet, first_match
from connector.facts import Coding, ConditionFact, MedicationFact, Moment, ObservationFact, PatientFacts, Quantity
from connector.results import MET, NOT_MET, UNKNOWN, Evidence


@dataclass(frozen=True)
class Outcome:
    status: str  # met | not_met | unknown
    reason: str
    evidence: tuple[Evidence, ...] = ()


def met(reason: str, evidence: list[Evidence] | tuple[Evidence, ...] = ()) -> Outcome:
    return Outcome(MET, reason, tuple(evidence))


def not_met(reason: str, evidence: list[Evidence] | tuple[Evidence, ...] = ()) -> Outcome:
    return Outcome(NOT_MET, reason, tuple(evidence))


def unknown(reason: str, evidence: list[Evidence] | tuple[Evidence, ...] = ()) -> Outcome:
    return Outcome(UNKNOWN, reason, tuple(evidence))


@dataclass
class EvalContext:
    """One patient at one screening date; caches code lookups shared by several criteria."""

    facts: PatientFacts
    as_of: date
    site_country: str = "US"
    _obs_cache: dict[tuple[CodeSet, ...], list[ObservationFact]] = field(default_factory=dict, repr=False)

    def window_start(self, days: int) -> date:
        """A window of N days is [as_of - N days, as_of]."""
        return self.as_of - timedelta(days=days)

    def observations(self, codes: tuple[CodeSet, ...]) -> list[ObservationFact]:
        """Observations with a matching code, dated on or before the screening date, oldest first.

        Later values did not exist at the screening date; undated ones cannot be placed in a window.
        """
        found = self._obs_cache.get(codes)
        if found is None:
            found = [o for o in self.facts.observations
                     if o.effective is not None and o.effective <= self.as_of and first_match(codes, o.codes)]
            found.sort(key=lambda o: moment_of(o).earliest)  # for display only: "latest" is fhirtime.latest_group
            self._obs_cache[codes] = found
        return found


def moment_of(obs: ObservationFact) -> Moment:
    """The instants an Observation stands for (its whole recorded day when no time was parsed)."""
    if obs.moment is not None:
        return obs.moment
    assert obs.effective is not None
    start = datetime.combine(obs.effective, time(), timezone.utc)
    return Moment(start, start + timedelta(days=1, microseconds=-1))


def iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def plain_number(value: float) -> float | int:
    """80.0 -> 80 in evidence, so values read as they were recorded."""
    return int(value) if float(value).is_integer() and abs(value) < 1e15 else value


def quantity_evidence(reference: str, quantity: Quantity | None, day: date | None) -> Evidence:
    if quantity is None:
        return Evidence(reference, None, None, iso(day))
    value: float | int | str = plain_number(quantity.value)
    if quantity.comparator:
        value = f"{quantity.comparator}{value}"
    return Evidence(reference, value, quantity.unit, iso(day))


def coding_label(coding: Coding) -> str:
    return coding.display or coding.code or ""


def observation_evidence(obs: ObservationFact) -> Evidence:
    if obs.quantity is not None:
        return quantity_evidence(obs.source.reference, obs.quantity, obs.effective)
    if obs.value_codes:
        return Evidence(obs.source.reference, coding_label(obs.value_codes[0]), None, iso(obs.effective))
    return Evidence(obs.source.reference, obs.value_text, None, iso(obs.effective))


def condition_evidence(condition: ConditionFact, coding: Coding | None) -> Evidence:
    value = coding.code if coding is not None else condition.text
    return Evidence(condition.source.reference, value, None, iso(condition.onset or condition.recorded))


def medication_evidence(med: MedicationFact) -> Evidence:
    if med.dose is not None:
        return quantity_evidence(med.source.reference, med.dose, med.effective)
    label = med.names[0] if med.names else next((c.code for c in med.codes if c.code), None)
    return Evidence(med.source.reference, label, None, iso(med.effective))


COMPARATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


def compare(value: float, comparator: str, threshold: float, value_comparator: str | None = None) -> bool | None:
    """`value comparator threshold`; for a censored value (`<5`, `>=100`) None when undecidable.

    A value reported as `<v` only says the true value lies below v: the test is decided
    only when every possible true value gives the same answer.
    """
    if not value_comparator:
        return COMPARATORS[comparator](value, threshold)
    inclusive = value_comparator in ("<=", ">=")
    if value_comparator in ("<", "<="):  # true value in (-inf, v) or (-inf, v]
        if comparator == ">=":
            possible = value >= threshold if inclusive else value > threshold
            return None if possible else False
        if comparator == ">":
            return None if value > threshold else False
        if comparator == "<":
            certain = value < threshold or (not inclusive and value <= threshold)
            return True if certain else None
        return True if value <= threshold else None  # "<="
    # true value in (v, inf) or [v, inf)
    if comparator == "<=":
        possible = value <= threshold if inclusive else value < threshold
        return None if possible else False
    if comparator == "<":
        return None if value < threshold else False
    if comparator == ">":
        certain = value > threshold or (not inclusive and value >= threshold)
        return True if certain else None
    return True if value >= threshold else None  # ">="
