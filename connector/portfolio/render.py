"""The feasibility report as text: `table` for a terminal, `json` (one document), `csv` (the work
list, one row per item, for a spreadsheet)."""

from __future__ import annotations

import csv
import io
import json
from typing import TYPE_CHECKING

from connector.portfolio.feasibility import Feasibility
from connector.portfolio.worklist import item_counts

if TYPE_CHECKING:
    from connector.portfolio.screening import PortfolioScreen

WORKLIST_COLUMNS = ("patient", "criterion", "reason", "needed", "codes", "window_days", "not_before",
                    "latest_value", "latest_unit", "latest_date", "latest_reference")


def render_json(report: Feasibility) -> str:
    return json.dumps(report.to_json(), indent=2, ensure_ascii=False)


def render_csv(report: Feasibility) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(WORKLIST_COLUMNS)
    for work in report.worklist:
        for item in work.items:
            latest = item.latest or {}
            writer.writerow([work.patient, item.criterion, item.reason, item.needed, " ".join(item.codes),
                             item.window_days if item.window_days is not None else "", item.not_before or "",
                             _cell(latest.get("value")), latest.get("unit") or "", latest.get("date") or "",
                             latest.get("reference") or ""])
    return out.getvalue()


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def render_table(report: Feasibility) -> str:
    statuses = ", ".join(f"{n} {s}" for s, n in report.statuses.items())
    lines = [f"{report.trial}{' ' + report.title if report.title else ''}",
             f"as of {report.as_of or '-'}: {len(report.patients)} screened ({statuses})", "",
             f"{'funnel (mapping order)':<32} {'remaining':>9} {'not met':>8} {'unknown':>8} {'review':>7}",
             f"{'screened':<32} {len(report.patients):>9}"]
    lines += [f"{s.criterion:<32} {s.remaining:>9} {s.not_met:>8} {s.unknown:>8} {s.review:>7}" for s in report.funnel]
    lines.append("")
    if report.worklist:
        lines.append("work list (possible patients: data that would settle their unknowns)")
        for work in report.worklist:
            needs = "; ".join(f"{i.criterion} ({i.reason}{', drawn on/after ' + i.not_before if i.not_before else ''})"
                              for i in work.items)
            lines.append(f"  {work.patient}: {needs}")
        lines.extend(f"  {c['patients']} patient(s) need {c['criterion']}, {c['only_missing']} of them only that"
                     for c in item_counts(report.worklist))
    else:
        lines.append("work list: nothing to request")
    lines.append("")
    if report.changes:
        lines.append(f"new since the last run (run {report.last_run}):")
        lines.extend(f"  {c['patient']}: {c['previous'] or 'new'} -> {c['status']}" for c in report.changes)
    else:
        lines.append("new since the last run: none")
    if report.trend:
        lines.append("trend per run: " + "; ".join(
            f"run {t['run']} ({t['as_of']}): {t['screened']} screened, {t['candidate']} candidate, "
            f"{t['possible']} possible, {t['excluded']} excluded" for t in report.trend))
    return "\n".join(lines)


def render_portfolio_table(screen: "PortfolioScreen") -> str:
    """Per patient, the trials best first: rank, trial, status, score, one-line reason."""
    trials = ", ".join(t.trial for t in screen.trials)
    lines = [f"portfolio of {len(screen.trials)} trial(s) as of {screen.as_of.isoformat()}: {trials}"]
    lines.extend(f"  skipped {s.trial}: {s.note}" for s in screen.skipped)
    for patient in screen.patients:
        lines += ["", patient]
        for position, score in enumerate(screen.ranking(patient), start=1):
            lines.append(f"  {position}. {score.trial}  {score.status:<9} {score.score:>5.2f}  {score.reason}")
    lines += ["", f"{len(screen.patients)} patient(s) screened against {len(screen.trials)} trial(s) from one pull"]
    return "\n".join(lines)
