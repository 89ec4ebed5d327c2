"""The work list: for each `possible` patient, the missing or stale data that would settle its
`unknown`s, grouped per patient so a coordinator can request one panel, and counted per item
across the trial ("3 patients are one neutrophils away").

An item is the criterion's hint (connector.report.hints: the window, the first date a value
counts from, the latest value on record), plus what to obtain in the coordinator's words and the
codes the criterion reads, for the request.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from connector.codes import CodeSet
from connector.mapping.model import (
    CodedObservationRule,
    ConditionRule,
    CreatinineClearanceRule,
    Criterion,
    Mapping,
    MedicationRule,
    ObservationRule,
)
from connector.mapping.needs import rules_within
from connector.portfolio.scoring import waiting_for_data
from connector.report.hints import Hint, patient_hints
from connector.results import POSSIBLE, PatientResult

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
    hint: Hint
    codes: tuple[str, ...]  # "system|code"

    @property
    def criterion(self) -> str:
        return self.hint.criterion

    @property
    def reason(self) -> str:
        return self.hint.reason

    @property
    def needed(self) -> str:
        return WHAT_IS_NEEDED.get(self.reason, "data that decides the criterion")

    @property
    def window_days(self) -> int | None:
        return self.hint.window_days

    @property
    def not_before(self) -> str | None:
        """YYYY-MM-DD: the earliest day a value may have been drawn on to count (the hint's `dated_from`)."""
        return self.hint.dated_from

    @property
    def latest(self) -> dict[str, Any] | None:
        """The latest evidence on record (reference, value, unit, date), as the hint names it."""
        h = self.hint
        if h.latest_reference is None:
            return None
        return {"reference": h.latest_reference, "value": h.latest_value, "unit": h.latest_unit, "date": h.latest_date}

    def to_json(self) -> dict[str, Any]:
        return {"criterion": self.criterion, "text": self.hint.text, "reason": self.reason, "needed": self.needed,
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
        hints = patient_hints(criteria, tuple(c for c in patient.criteria if waiting_for_data(c)), as_of)
        items = [WorkItem(hint, codes_read(criteria[cid])) for cid, hint in hints.items()]
        if items:
            work.append(PatientWork(patient.patient, items))
    return sorted(work, key=lambda w: (len(w.items), w.patient))


def item_counts(work: Sequence[PatientWork]) -> list[dict[str, Any]]:
    """Per criterion: patients missing it, and those for whom it is the only item (one away)."""
    total = Counter(i.criterion for w in work for i in w.items)
    only = Counter(w.items[0].criterion for w in work if len(w.items) == 1)
    return [{"criterion": cid, "patients": n, "only_missing": only.get(cid, 0)}
            for cid, n in sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))]


def codes_read(criterion: Criterion) -> tuple[str, ...]:
    """The codes a criterion reads ("system|code"), for the coordinator's request."""
    codes: list[str] = []
    for rule in rules_within(criterion.rule):
        sets: tuple[CodeSet, ...] = ()
        if isinstance(rule, (ObservationRule, CodedObservationRule, ConditionRule, MedicationRule)):
            sets = rule.codes
        elif isinstance(rule, CreatinineClearanceRule):
            sets = rule.measured_codes + rule.creatinine_codes + rule.weight_codes
        codes.extend(f"{cs.system}|{code}" for cs in sets for code in sorted(cs.codes))
    return tuple(dict.fromkeys(codes))
