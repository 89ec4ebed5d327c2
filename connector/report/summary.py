"""`--summary`: one line per patient, for long lists (hundreds of patients at a glance).

    Patient/net03  POSSIBLE   unknown: hemoglobin (stale), neutrophils (stale)
    Patient/net04  EXCLUDED   not met: hemoglobin
    Patient/net07  CANDIDATE  review: no_brain_metastases, no_uncontrolled_chf

Each line names what decided the status (not met first, then unknown, then findings a person
must review) and is cut to the terminal width with `+N more`; criteria a person decides for
every patient are counted once at the end, then the totals.
"""

from __future__ import annotations

from connector.mapping.model import Mapping
from connector.report.console import Console
from connector.report.table import STATUS_COLOURS, manual_only, title, totals, wrap
from connector.report.tally import Tally, count
from connector.results import NOT_MET, UNKNOWN, PatientResult, ScreenReport

STATUS_WIDTH = len("CANDIDATE")


Groups = list[tuple[str, list[str]]]


def deciding(patient: PatientResult, review: set[str]) -> Groups:
    """(`not met`, ids), (`unknown`, `id (reason)`s), (`review`, ids): what decided the status."""
    not_met = [c.id for c in patient.criteria if c.outcome == NOT_MET]
    unknown = [f"{c.id} ({c.reason})" for c in patient.criteria if c.outcome == UNKNOWN and c.reason != "manual"]
    found = [c.id for c in patient.criteria if c.reason == "manual" and c.id not in review]
    return [(label, ids) for label, ids in (("not met", not_met), ("unknown", unknown), ("review", found)) if ids]


def fit_line(start: str, groups: Groups, suffix: str, width: int) -> str:
    """`start` + the groups + `suffix`, dropping items from the end (`+N more`) until it fits;
    when not even one item fits, how many there are per group (`unknown: 3`)."""
    items = [(label, item) for label, ids in groups for item in ids]
    for keep in range(len(items), 0, -1):
        more = f" (+{len(items) - keep} more)" if keep < len(items) else ""
        line = start + _join(items[:keep]) + more + suffix
        if len(line) <= width:
            return line
    return start + "; ".join(f"{label}: {len(ids)}" for label, ids in groups) + suffix


def _join(items: list[tuple[str, str]]) -> str:
    grouped: dict[str, list[str]] = {}
    for label, item in items:
        grouped.setdefault(label, []).append(item)
    return "; ".join(f"{label}: {', '.join(ids)}" for label, ids in grouped.items())


def summary_line(patient: PatientResult, review: set[str], patient_width: int, console: Console) -> str:
    status = f"{patient.status.upper():<{STATUS_WIDTH}}"
    start = f"{patient.patient:<{patient_width}}  {status}  "
    groups = deciding(patient, review)
    suffix = f"; {count(len(patient.errors), 'error')}" if patient.errors else ""
    suffix, start = console.fit(suffix), console.fit(start)
    groups = [(label, [console.fit(i) for i in ids]) for label, ids in groups]
    line = fit_line(start, groups, suffix, console.width) if groups else start + "all computable criteria met" + suffix
    styled = console.style(status, fg=STATUS_COLOURS.get(patient.status), bold=True)
    return line.replace(status, styled, 1)


def render_summary(report: ScreenReport, mapping: Mapping, console: Console | None = None,
                   tally: Tally | None = None) -> str:
    console = console or Console()
    review = set(manual_only(mapping))
    width = max((len(p.patient) for p in report.patients), default=0)
    lines = [*title(report, console), ""]
    lines.extend(summary_line(p, review, width, console) for p in report.patients)
    lines.append("")
    if report.patients and review:
        lines.extend(wrap(console, f"+ {count(len(review), 'criterion', 'criteria')} a person reviews for every "
                                   "patient (listed without --summary)", "", "  "))
    lines.extend(totals(tally or Tally.of(report.patients), console))
    return "\n".join(lines)
