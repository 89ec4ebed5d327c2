"""The work list: for each `possible` patient, the missing or stale data that would settle its
`unknown`s, grouped per patient so a coordinator can request one panel, and counted per item
across the trial ("3 patients are one neutrophils away").

An item names the criterion, what to obtain (the codes the criterion reads), the window the
value must fall in and the earliest date it may have been drawn on for the screening date
(`not_before` = as-of date - window), with the latest value on record when there is one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from connector.codes import CodeSet
from connector.mapping.model import (
    AllOf,
    AnyOf,
    CodedObservationRule,
    ConditionRule,
    CreatinineClearanceRule,
    Criterion,
    Mapping,
    MedicationRule,
    Not,
    ObservationRule,
    Rule,
)
from connector.portfolio.scoring import waiting_for_data
from connector.results import POSSIBLE, CriterionResult, PatientResult

WHAT_IS_NEEDED = {
    "no-data": "a value (none on record)",
    "stale": "a new value (the latest is older than the window)",
    "no-reference-range": "the value's reference range (upper limit of normal)",
    "unit": "a value in a unit that converts to the criterion's",
    "censored": "an exact value (the one on record is reported as <x or >x)",
    "error": "a readable record (the one on record could not be evaluated)",
}


@dataclass(frozen=True)
class WorkItem:
    criterion: str
    text: str
    reason: str
    needed: str
    codes: tuple[str, ...]  # "system|code"
    window_days: int | None
    not_before: str | None  # YYYY-MM-DD
    latest: dict[str, Any] | None  # the latest evidence on record (reference, value, unit, date)

    def to_json(self) -> dict[str, Any]:
        return {"criterion": self.criterion, "text": self.text, "reason": self.reason, "needed": self.needed,
                "codes": list(self.codes), "window_days": self.window_days, "not_before": self.not_before,
                "latest": self.latest}


@dataclass
class PatientWork:
    patient: str  # as stored: "Patient/ID"
    items: list[WorkItem] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"patient": self.patient, "items": [i.to_json() for i in self.items]}


def worklist(mapping: Mapping, patients: Sequence[PatientResult], as_of: date) -> list[PatientWork]:
    """Work per `possible` patient (ordered by fewest items first, then patient reference)."""
    criteria = {c.id: c for c in mapping.criteria}
    work = []
    for patient in patients:
        if patient.status != POSSIBLE:
            continue
        items = [work_item(criteria[c.id], c, as_of) for c in patient.criteria
                 if c.id in criteria and waiting_for_data(c)]
        if items:
            work.append(PatientWork(patient.patient, items))
    return sorted(work, key=lambda w: (len(w.items), w.patient))


def item_counts(work: Sequence[PatientWork]) -> list[dict[str, Any]]:
    """Per criterion: patients missing it, and those for whom it is the only item (one away)."""
    total = Counter(i.criterion for w in work for i in w.items)
    only = Counter(w.items[0].criterion for w in work if len(w.items) == 1)
    return [{"criterion": cid, "patients": n, "only_missing": only.get(cid, 0)}
            for cid, n in sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))]


def work_item(criterion: Criterion, result: CriterionResult, as_of: date) -> WorkItem:
    codes, window = _codes_and_window(criterion.rule)
    latest = result.evidence[0].to_json() if result.evidence else None
    return WorkItem(criterion.id, criterion.texts[0] if criterion.texts else criterion.id, result.reason,
                    WHAT_IS_NEEDED.get(result.reason, "data that decides the criterion"),
                    codes, window, (as_of - timedelta(days=window)).isoformat() if window is not None else None,
                    latest)


def _codes_and_window(rule: Rule) -> tuple[tuple[str, ...], int | None]:
    """The codes a criterion reads and its (smallest) window, for the coordinator's request."""
    codes: list[str] = []
    windows: list[int] = []
    for part in _walk(rule):
        sets: tuple[CodeSet, ...] = ()
        if isinstance(part, (ObservationRule, CodedObservationRule)):
            sets = part.codes
            windows.append(part.window_days)
        elif isinstance(part, CreatinineClearanceRule):
            sets = part.measured_codes + part.creatinine_codes + part.weight_codes
            windows.append(part.window_days)
        elif isinstance(part, (ConditionRule, MedicationRule)):
            sets = part.codes
        codes.extend(f"{cs.system}|{code}" for cs in sets for code in sorted(cs.codes))
    return tuple(dict.fromkeys(codes)), min(windows) if windows else None


def _walk(rule: Rule) -> Iterator[Rule]:
    yield rule
    if isinstance(rule, (AllOf, AnyOf)):
        for sub in rule.rules:
            yield from _walk(sub)
    elif isinstance(rule, Not):
        yield from _walk(rule.rule)
