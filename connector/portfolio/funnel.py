"""A trial's feasibility funnel (attrition per criterion, as OHDSI ATLAS shows per inclusion rule).

Step 0 is every patient screened. Each criterion, in mapping order, then removes the patients
still remaining whose outcome there is `not_met`: `remaining` is who is left after it,
`not_met` how many it removed, `unknown` how many of those still remaining before it are
unknown there for want of data, `review` how many are unknown because a person must decide.
Counts use only stored results, so the funnel can always be recomputed from the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from connector.portfolio.scoring import MANUAL
from connector.results import NOT_MET, UNKNOWN, PatientResult


@dataclass(frozen=True)
class FunnelStep:
    criterion: str
    remaining: int
    not_met: int
    unknown: int
    review: int

    def to_json(self) -> dict[str, Any]:
        return {"criterion": self.criterion, "remaining": self.remaining, "not_met": self.not_met,
                "unknown": self.unknown, "review": self.review}


def funnel(criterion_ids: Sequence[str], patients: Sequence[PatientResult]) -> list[FunnelStep]:
    """One step per criterion id (mapping order); a criterion a result lacks counts as unknown."""
    remaining = list(patients)
    steps: list[FunnelStep] = []
    for cid in criterion_ids:
        outcomes = [_outcome(p, cid) for p in remaining]
        removed = sum(1 for o, _ in outcomes if o == NOT_MET)
        unknown = sum(1 for o, r in outcomes if o == UNKNOWN and r != MANUAL)
        review = sum(1 for o, r in outcomes if o == UNKNOWN and r == MANUAL)
        remaining = [p for p, (o, _) in zip(remaining, outcomes) if o != NOT_MET]
        steps.append(FunnelStep(cid, len(remaining), removed, unknown, review))
    return steps


def _outcome(patient: PatientResult, criterion_id: str) -> tuple[str, str]:
    try:
        result = patient.criterion(criterion_id)
    except KeyError:  # a result stored with an older mapping
        return UNKNOWN, "no-data"
    return result.outcome, result.reason
