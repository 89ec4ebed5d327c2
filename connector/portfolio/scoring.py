"""A score per trial that orders a patient's trial list and that a person can explain.

score = met / computable inclusion criteria (criteria a rule decides, not `manual` ones), and
0.0 when any criterion is `not_met`: an excluded trial always ranks last (TrialGPT ranks the same
way). Ties go to the trial with fewer `unknown`s still waiting for data, then to the trial id,
so the order is stable. `reason` is the one line that says why.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from connector.mapping.model import ManualRule, Mapping
from connector.results import EXCLUDED, MET, NOT_MET, UNKNOWN, CriterionResult, PatientResult

MANUAL = "manual"
SHOWN_IN_REASON = 3


@dataclass(frozen=True)
class TrialScore:
    """One trial's standing for one patient."""

    trial: str
    status: str
    score: float  # 0..1
    met: int  # computable inclusion criteria met
    computable: int  # computable inclusion criteria
    not_met: tuple[str, ...]  # criterion ids
    unknown: tuple[str, ...]  # criterion ids unknown for want of data (not those deferred to a person)
    reason: str

    def sort_key(self) -> tuple[bool, float, int, str]:
        return (self.status == EXCLUDED, -self.score, len(self.unknown), self.trial)

    def to_json(self) -> dict[str, Any]:
        return {"trial": self.trial, "status": self.status, "score": self.score, "met": self.met,
                "computable_inclusion": self.computable, "not_met": list(self.not_met),
                "unknown": list(self.unknown), "reason": self.reason}


def computable_ids(mapping: Mapping) -> list[str]:
    """Criteria a rule decides (everything except `kind: manual`), in mapping order."""
    return [c.id for c in mapping.criteria if not isinstance(c.rule, ManualRule)]


def waiting_for_data(result: CriterionResult) -> bool:
    """An `unknown` that data could settle (not one deferred to a person)."""
    return result.outcome == UNKNOWN and result.reason != MANUAL


def score_result(mapping: Mapping, result: PatientResult) -> TrialScore:
    computable = set(computable_ids(mapping))
    inclusion = [c.id for c in mapping.criteria if c.type == "inclusion" and c.id in computable]
    outcomes = {c.id: c for c in result.criteria}
    met = sum(1 for cid in inclusion if cid in outcomes and outcomes[cid].outcome == MET)
    not_met = tuple(c.id for c in result.criteria if c.outcome == NOT_MET)
    unknown = tuple(c.id for c in result.criteria if c.id in computable and waiting_for_data(c))
    score = 0.0 if not_met else round(met / len(inclusion), 4) if inclusion else 1.0
    return TrialScore(mapping.trial, result.status, score, met, len(inclusion), not_met, unknown,
                      _reason(result, met, len(inclusion), not_met, unknown))


def _reason(result: PatientResult, met: int, computable: int, not_met: tuple[str, ...],
            unknown: tuple[str, ...]) -> str:
    outcomes = {c.id: c for c in result.criteria}

    def listed(ids: tuple[str, ...]) -> str:
        shown = ", ".join(f"{cid} ({outcomes[cid].reason})" for cid in ids[:SHOWN_IN_REASON])
        return shown + (f" and {len(ids) - SHOWN_IN_REASON} more" if len(ids) > SHOWN_IN_REASON else "")

    if not_met:
        return f"not met: {listed(not_met)}"
    share = f"{met}/{computable} computable inclusion criteria met"
    if unknown:
        return f"{share}; unknown: {listed(unknown)}"
    review = len(result.for_review())
    return f"{share}; {review} to review by a person" if review else share


def rank(scores: Iterable[TrialScore]) -> list[TrialScore]:
    """Best first: not excluded, higher score, fewer unknowns, then trial id."""
    return sorted(scores, key=TrialScore.sort_key)
