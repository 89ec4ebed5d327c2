"""A trial's feasibility from the store: statuses, funnel, work list, what changed, trend per run.

Built only from stored results and run bookkeeping (no pull), so `report` can run any time
after `run` and always agrees with `results`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from connector.mapping.model import Mapping
from connector.portfolio.funnel import FunnelStep, funnel
from connector.portfolio.worklist import PatientWork, item_counts, worklist
from connector.results import CANDIDATE, POSSIBLE, STATUSES, PatientResult
from connector.scheduled import records
from connector.store import Store


@dataclass(frozen=True)
class CriterionInfo:
    id: str
    type: str
    text: str


@dataclass
class Feasibility:
    trial: str
    title: str | None
    as_of: str | None
    criteria: list[CriterionInfo]
    patients: list[PatientResult]
    funnel: list[FunnelStep]
    worklist: list[PatientWork]
    last_run: int | None = None
    changes: list[dict[str, Any]] = field(default_factory=list)
    trend: list[dict[str, Any]] = field(default_factory=list)

    @property
    def statuses(self) -> dict[str, int]:
        counts = Counter(p.status for p in self.patients)
        return {s: counts.get(s, 0) for s in STATUSES}

    def shortlist(self) -> list[PatientResult]:
        """Candidates, then possibles: the patients a coordinator looks at."""
        order = {CANDIDATE: 0, POSSIBLE: 1}
        return sorted((p for p in self.patients if p.status in order), key=lambda p: (order[p.status], p.patient))

    def to_json(self) -> dict[str, Any]:
        return {
            "trial": self.trial, "title": self.title, "as_of": self.as_of,
            "screened": len(self.patients), "statuses": self.statuses,
            "funnel": [s.to_json() for s in self.funnel],
            "worklist": [w.to_json() for w in self.worklist],
            "worklist_counts": item_counts(self.worklist),
            "last_run": self.last_run,
            "new_since_last_run": self.changes,
            "trend": self.trend,
            "patients": [p.to_json() for p in self.shortlist()],
        }


def build_feasibility(store: Store, trial: str, mapping: Mapping | None) -> Feasibility:
    rows = records.latest_results(store, trial)
    patients = [PatientResult.from_json(r["result"]) for r in rows]
    last = records.latest_run_of_trial(store, trial)
    as_of = last.as_of if last else max((r["as_of"] for r in rows), default=None)
    criteria = _criteria(mapping, patients)
    ids = [c.id for c in criteria]
    screening_date = date.fromisoformat(as_of) if as_of else date.today()
    work = worklist(mapping, patients, screening_date) if mapping is not None else []
    return Feasibility(trial, mapping.title if mapping else None, as_of, criteria, patients, funnel(ids, patients),
                       work, last.id if last else None, _changes(store, trial, last), run_trend(store, trial))


def _criteria(mapping: Mapping | None, patients: list[PatientResult]) -> list[CriterionInfo]:
    """The mapping's criteria in order; without a mapping, the order the stored results have."""
    if mapping is not None:
        return [CriterionInfo(c.id, c.type, c.texts[0] if c.texts else c.id) for c in mapping.criteria]
    ids = dict.fromkeys(c.id for p in patients for c in p.criteria)
    return [CriterionInfo(cid, "", cid) for cid in ids]


def _changes(store: Store, trial: str, last: records.RunRow | None) -> list[dict[str, Any]]:
    """Patients whose status first appeared or changed in the trial's last finished run."""
    if last is None:
        return []
    rows = store.fetchall(
        "SELECT patient_id, status, previous_status FROM status_history WHERE trial = ? AND run_id = ?"
        " AND (previous_status IS NULL OR previous_status <> status) ORDER BY patient_id", (trial, last.id))
    return [{"patient": f"Patient/{r['patient_id']}", "status": r["status"], "previous": r["previous_status"]}
            for r in rows]


def run_trend(store: Store, trial: str) -> list[dict[str, Any]]:
    """Per finished run of the trial: patients screened in it and their statuses."""
    rows = store.fetchall(
        "SELECT h.run_id, r.as_of, h.status, COUNT(*) AS n FROM status_history h JOIN runs r ON r.id = h.run_id"
        " WHERE h.trial = ? AND r.status IN (?, ?) GROUP BY h.run_id, r.as_of, h.status ORDER BY h.run_id",
        (trial, *records.SUCCEEDED))
    runs: dict[int, dict[str, Any]] = {}
    for row in rows:
        run = runs.setdefault(int(row["run_id"]), {"run": int(row["run_id"]), "as_of": row["as_of"], "screened": 0,
                                                   **{s: 0 for s in STATUSES}})
        run[row["status"]] = int(row["n"])
        run["screened"] += int(row["n"])
    return list(runs.values())
