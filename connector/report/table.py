"""The `--format table` output: one block per patient, one line per computed criterion.

✓ met, ✗ not met, ? unknown (with its reason); criteria that only a person can decide are
listed together on one "to review" line so the computed ones stay readable. Evidence shows the
reference and the value as recorded, so a reviewer can find it in the chart.
"""

from __future__ import annotations

import textwrap
from collections import Counter

from connector.mapping.model import ManualRule, Mapping
from connector.results import MET, NOT_MET, STATUSES, CriterionResult, Evidence, PatientResult, ScreenReport

SYMBOLS = {MET: "✓", NOT_MET: "✗"}
MAX_EVIDENCE_SHOWN = 4
WIDTH = 100


def format_evidence(evidence: Evidence) -> str:
    value = "" if evidence.value is None else f" {evidence.value}"
    unit = f" {evidence.unit}" if evidence.unit else ""
    when = f" ({evidence.date})" if evidence.date else ""
    return f"{evidence.reference}:{value}{unit}{when}" if value or unit else f"{evidence.reference}{when}"


def criterion_line(result: CriterionResult, type_: str) -> str:
    symbol = SYMBOLS.get(result.outcome, "?")
    shown = "; ".join(format_evidence(e) for e in result.evidence[:MAX_EVIDENCE_SHOWN])
    more = f" (+{len(result.evidence) - MAX_EVIDENCE_SHOWN} more)" if len(result.evidence) > MAX_EVIDENCE_SHOWN else ""
    outcome = "review" if result.reason == "manual" else result.outcome
    return f"  {symbol} {result.id:<24} {type_[:4]:<5} {outcome:<8} {result.reason:<18} {shown}{more}".rstrip()


def render_patient(patient: PatientResult, mapping: Mapping) -> list[str]:
    draft = "  (DRAFT mapping, not reviewed)" if patient.draft else ""
    lines = [f"{patient.patient}  {patient.status.upper()}{draft}"]
    manual_only = {c.id for c in mapping.criteria if isinstance(c.rule, ManualRule)}
    types = {c.id: c.type for c in mapping.criteria}
    review: list[str] = []
    for result in patient.criteria:
        if result.id in manual_only:
            review.append(result.id)
        else:
            lines.append(criterion_line(result, types.get(result.id, "")))
    if review:
        lines.extend(textwrap.wrap(", ".join(review), WIDTH, initial_indent="  ? to review (manual): ",
                                   subsequent_indent="      "))
    for arm in patient.arms:
        options = ", ".join(arm.options) if arm.options else "(none)"
        lines.append(f"  arm {arm.label}: {options}")
        lines.extend(f"      not {e.option}: {e.why}" for e in arm.excluded_options)
    lines.extend(f"  error: {error}" for error in patient.errors)
    return lines


def render_table(report: ScreenReport, mapping: Mapping) -> str:
    draft = ", a DRAFT: results are unreviewed" if report.mapping_status == "draft" else ""
    lines = [f"{report.trial} as of {report.as_of.isoformat()} (mapping {report.mapping_file}{draft})", ""]
    for patient in report.patients:
        lines.extend(render_patient(patient, mapping))
        lines.append("")
    counts = Counter(p.status for p in report.patients)
    summary = ", ".join(f"{counts.get(s, 0)} {s}" for s in STATUSES)
    lines.append(f"{len(report.patients)} patient(s): {summary}")
    return "\n".join(lines)
