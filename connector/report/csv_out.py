"""The CSV outputs.

`csv`: one row per patient: its status, one column per criterion (outcome, with the reason for
unknowns), so a spreadsheet can filter by any criterion, the error count, and `to settle`: what
would settle each computed unknown / not_met criterion (`id: hint`, joined by ` | `).

`csv-criteria`: one row per patient and criterion, with the criterion's text, the threshold and
window a value must meet, and what would settle it as separate fields: the coordinator's work list.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from datetime import date

from connector.mapping.model import Mapping
from connector.report.display import number
from connector.report.hints import patient_hints
from connector.report.json_out import criterion_fields
from connector.report.table import format_evidence, manual_only
from connector.results import UNKNOWN, PatientResult

CRITERIA_COLUMNS = ["patient", "status", "as_of", "criterion", "type", "outcome", "reason", "text", "comparator",
                    "threshold", "unit", "relative_to", "window_days", "action", "dated_from", "latest_value",
                    "latest_unit", "latest_date", "latest_reference", "hint", "evidence"]


def render_csv(results: Iterable[PatientResult], criterion_ids: list[str] | None = None,
               extra: dict[str, dict[str, str]] | None = None, mapping: Mapping | None = None,
               as_of_for: Callable[[PatientResult], date] | None = None) -> str:
    """`extra`: more per-patient columns (name -> {patient reference -> value}) placed after status;
    with `mapping` and `as_of_for`, the `to settle` column."""
    results = list(results)
    if criterion_ids is None:
        criterion_ids = list(dict.fromkeys(c.id for r in results for c in r.criteria))
    extra = extra or {}
    settle = mapping is not None and as_of_for is not None
    manual = set(manual_only(mapping)) if mapping is not None else set()
    criteria = {c.id: c for c in mapping.criteria} if mapping is not None else {}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["patient", "status", *extra, *criterion_ids, "errors", *(["to settle"] if settle else [])])
    for result in results:
        by_id = {c.id: c for c in result.criteria}
        cells = []
        for cid in criterion_ids:
            c = by_id.get(cid)
            cells.append("" if c is None else f"{c.outcome} ({c.reason})" if c.outcome == UNKNOWN else c.outcome)
        row = [result.patient, result.status, *(col.get(result.patient, "") for col in extra.values()),
               *cells, len(result.errors)]
        if settle:
            assert as_of_for is not None
            hints = patient_hints(criteria, result.criteria, as_of_for(result))
            row.append(" | ".join(f"{cid}: {h.hint}" for cid, h in hints.items() if cid not in manual))
        writer.writerow(row)
    return out.getvalue()


def render_criteria_csv(results: Iterable[PatientResult], mapping: Mapping,
                        as_of_for: Callable[[PatientResult], date]) -> str:
    """One row per patient x criterion (see the module docstring); empty cells for what does not apply."""
    fields = criterion_fields(mapping)
    criteria = {c.id: c for c in mapping.criteria}
    out = io.StringIO()
    writer = csv.DictWriter(out, CRITERIA_COLUMNS, lineterminator="\n", restval="", extrasaction="ignore")
    writer.writeheader()
    for result in results:
        as_of = as_of_for(result)
        hints = patient_hints(criteria, result.criteria, as_of)
        for c in result.criteria:
            known = fields.get(c.id, {})
            threshold = known.get("threshold") or {}
            hint = hints.get(c.id)
            row = {k: v for k, v in (hint.to_json() if hint else {}).items() if v is not None}
            row.update({
                "patient": result.patient, "status": result.status, "as_of": as_of.isoformat(), "criterion": c.id,
                "type": criteria[c.id].type if c.id in criteria else "", "outcome": c.outcome, "reason": c.reason,
                "text": known.get("text") or "", "window_days": known.get("window_days") or "",
                "evidence": "; ".join(format_evidence(e) for e in c.evidence),
            })
            if threshold:
                row.update(comparator=threshold["comparator"], threshold=number(threshold["value"]),
                           unit=threshold["unit"] or "", relative_to=threshold["relative_to"] or "")
            writer.writerow(row)
    return out.getvalue()
