"""Screen patients against a portfolio of trials from ONE pull.

The data needs of every trial's mapping are merged (connector.needs.DataNeeds.merge), the
source is read once with them, and each patient's facts are evaluated against every mapping.
The result keeps, per trial, the patients' results exactly as a single-trial screen gives them
(errors included: a record only another trial reads is no error of this trial's, see
PatientFacts.seen_by), and ranks each patient's trials with connector.portfolio.scoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import reduce
from typing import Any

from connector.errors import ConnectorError
from connector.evaluation import evaluate_patient
from connector.mapping import data_needs
from connector.needs import DataNeeds
from connector.portfolio.scoring import TrialScore, rank, score_result
from connector.portfolio.trials import PortfolioTrial, Skipped
from connector.results import PatientResult


@dataclass
class PortfolioScreen:
    as_of: date
    trials: list[PortfolioTrial]
    skipped: list[Skipped] = field(default_factory=list)
    patients: list[str] = field(default_factory=list)  # "Patient/ID", in source order
    results: dict[str, dict[str, PatientResult]] = field(default_factory=dict)  # trial -> patient -> result
    errors: list[tuple[str, str]] = field(default_factory=list)  # (patient id, message)

    def ranking(self, patient: str) -> list[TrialScore]:
        """The patient's trials, best first."""
        return rank(score_result(t.mapping, self.results[t.trial][patient]) for t in self.trials)

    def to_json(self) -> dict[str, Any]:
        """Per trial its scores and its patients' results exactly as a single-trial screen gives them."""
        from connector.report.json_out import annotated_patients

        rankings = {p: self.ranking(p) for p in self.patients}
        order = [s.trial for s in rankings[self.patients[0]]] if len(self.patients) == 1 else [
            t.trial for t in self.trials]
        by_id = {t.trial: t for t in self.trials}
        trials = []
        for trial_id in order:
            trial = by_id[trial_id]
            scores = []
            for patient in self.patients:
                ranked = rankings[patient]
                position = next(i for i, s in enumerate(ranked) if s.trial == trial_id)
                scores.append({"patient": patient, "rank": position + 1, **ranked[position].to_json()})
            entry: dict[str, Any] = {
                "trial": trial_id, "title": trial.mapping.title, "registry_status": trial.registry_status,
                "mapping": {"file": trial.entry.name, "source": trial.entry.source,
                            "criteria_hash": trial.mapping.criteria_hash},
                "score": scores[0]["score"] if len(scores) == 1 else None,
                "scores": scores,
                "patients": annotated_patients([self.results[trial_id][p] for p in self.patients], trial.mapping,
                                               lambda _patient: self.as_of),
            }
            trials.append(entry)
        return {"as_of": self.as_of.isoformat(), "trials": trials,
                "ranking": [{"patient": p, "trials": [s.trial for s in rankings[p]]} for p in self.patients],
                "skipped": [s.to_json() for s in self.skipped],
                "errors": [{"patient": f"Patient/{pid}", "message": m} for pid, m in self.errors]}


def merged_needs(trials: Sequence[PortfolioTrial], as_of: date) -> DataNeeds:
    """What every trial together needs fetched: one pull serves them all."""
    return reduce(DataNeeds.merge, (data_needs(t.mapping, as_of) for t in trials))


def screen_portfolio(trials: list[PortfolioTrial], source: Any, as_of: date, site_country: str,
                     patient_ids: list[str] | None = None, skipped: list[Skipped] | None = None) -> PortfolioScreen:
    """Read `source` once (connector.sources.PatientSource) and evaluate every trial per patient."""
    if not trials:
        raise ConnectorError("no trial to screen: no usable mapping found" + (
            f" ({len(skipped)} skipped: " + "; ".join(f"{s.trial}: {s.note}" for s in skipped) + ")"
            if skipped else ""))
    screen = PortfolioScreen(as_of, trials, list(skipped or []), results={t.trial: {} for t in trials})
    needs = [data_needs(t.mapping, as_of) for t in trials]  # each trial sees only errors about what it reads
    for patient_id, item in source.iter_facts(merged_needs(trials, as_of), patient_ids):
        if isinstance(item, ConnectorError):
            screen.errors.append((patient_id, str(item)))
            continue
        for trial, trial_needs in zip(trials, needs):
            result = evaluate_patient(trial.mapping, item.seen_by(trial_needs), as_of, site_country)
            screen.results[trial.trial][result.patient] = result
        screen.patients.append(item.reference)
    return screen
