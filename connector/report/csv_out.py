"""The `--format csv` output: one row per patient, its status, then one column per criterion
(outcome, with the reason for unknowns), so a spreadsheet can filter by any criterion."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from connector.results import UNKNOWN, PatientResult


def render_csv(results: Iterable[PatientResult], criterion_ids: list[str] | None = None,
               extra: dict[str, dict[str, str]] | None = None) -> str:
    """`extra`: more per-patient columns (name -> {patient reference -> value}) placed after status."""
    results = list(results)
    if criterion_ids is None:
        criterion_ids = list(dict.fromkeys(c.id for r in results for c in r.criteria))
    extra = extra or {}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["patient", "status", *extra, *criterion_ids, "errors"])
    for result in results:
        by_id = {c.id: c for c in result.criteria}
        cells = []
        for cid in criterion_ids:
            c = by_id.get(cid)
            cells.append("" if c is None else f"{c.outcome} ({c.reason})" if c.outcome == UNKNOWN else c.outcome)
        writer.writerow([result.patient, result.status, *(col.get(result.patient, "") for col in extra.values()),
                         *cells, len(result.errors)])
    return out.getvalue()
