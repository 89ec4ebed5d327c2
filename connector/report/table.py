"""The `--format table` output: one block per patient, one line per computed criterion.

✓ met, ✗ not met, ? unknown (with its reason); under every unknown / not met criterion, what
would settle it (connector.report.hints) and the criterion's registry text. Criteria only a person can decide are the same for
every patient: each patient shows their count, and the list (with the criterion text) is
printed once per trial. Lines wrap at the terminal width; evidence shows the reference and the
value as recorded (units as people write them), so a reviewer can find it in the chart.
`--summary` prints one line per patient instead (connector.report.summary).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from datetime import date

from connector.mapping.model import ManualRule, Mapping
from connector.report.console import Console
from connector.report.display import quantity
from connector.report.hints import Hint, criterion_text, patient_hints
from connector.report.tally import Tally, count
from connector.results import MET, NOT_MET, CriterionResult, Evidence, PatientResult, ScreenReport

SYMBOLS = {MET: "✓", NOT_MET: "✗"}
OUTCOME_COLOURS = {MET: "green", NOT_MET: "red"}
STATUS_COLOURS = {"candidate": "green", "possible": "yellow", "excluded": "red"}
MAX_EVIDENCE_SHOWN = 4
MAX_ID_WIDTH = 24
EVIDENCE_BELOW_UNDER = 30  # fewer columns left than this: evidence goes on its own lines
INDENT = "      "


def format_evidence(evidence: Evidence) -> str:
    shown = quantity(evidence.value, evidence.unit)
    when = f" ({evidence.date})" if evidence.date else ""
    return f"{evidence.reference}: {shown}{when}" if shown else f"{evidence.reference}{when}"


def manual_only(mapping: Mapping) -> list[str]:
    """Ids of the criteria only a person decides (the same for every patient)."""
    return [c.id for c in mapping.criteria if isinstance(c.rule, ManualRule)]


def wrap(console: Console, text: str, first: str, rest: str = INDENT) -> list[str]:
    """Wrap to the console's width, measured in the characters it will really print (an ASCII
    console's `>=` is two); long references are broken rather than overflow the line."""
    first, rest = console.fit(first), console.fit(rest)
    return textwrap.wrap(console.fit(text), max(console.width, len(first) + 10), initial_indent=first,
                         subsequent_indent=rest, break_long_words=True, break_on_hyphens=False) or [first.rstrip()]


class TableLayout:
    """Column widths for one report, so every patient's block lines up."""

    def __init__(self, report: ScreenReport, review: set[str], console: Console) -> None:
        computed = [c for p in report.patients for c in p.criteria if c.id not in review]
        self.id_width = min(MAX_ID_WIDTH, max((len(c.id) for c in computed), default=8))
        self.reason_width = max((len(c.reason) for c in computed), default=6)
        self.console = console

    def criterion_lines(self, result: CriterionResult, type_: str, hint: Hint | None) -> list[str]:
        console, width = self.console, self.console.width
        symbol = console.fit(SYMBOLS.get(result.outcome, "?"))
        outcome = "review" if result.reason == "manual" else result.outcome
        head = f"  {symbol} {result.id:<{self.id_width}} {type_[:4]:<4} {outcome:<7} {result.reason:<{self.reason_width}} "
        colour = OUTCOME_COLOURS.get(result.outcome, "yellow")
        styled = (f"  {console.style(symbol, fg=colour)} {result.id:<{self.id_width}} {type_[:4]:<4} "
                  f"{console.style(f'{outcome:<7}', fg=colour)} {result.reason:<{self.reason_width}} ")
        shown = "; ".join(format_evidence(e) for e in result.evidence[:MAX_EVIDENCE_SHOWN])
        if len(result.evidence) > MAX_EVIDENCE_SHOWN:
            shown += f" (+{len(result.evidence) - MAX_EVIDENCE_SHOWN} more)"
        if len(head.rstrip()) > width:  # a very narrow terminal: no columns, everything wrapped
            lines = wrap(console, f"{symbol} {result.id} {type_[:4]} {outcome} {result.reason}", "  ", INDENT)
            lines.extend(wrap(console, shown, INDENT) if shown else [])
        elif not shown:
            lines = [styled.rstrip()]
        elif width - len(head) >= EVIDENCE_BELOW_UNDER:
            lines = wrap(console, shown, head, " " * len(head))
            lines[0] = styled + lines[0][len(head):]
        else:
            lines = [styled.rstrip(), *wrap(console, shown, INDENT)]
        if hint:
            arrow = console.fit(INDENT + "→ ")
            lines.extend(wrap(console, hint.hint, arrow, " " * len(arrow)))
            if hint.text and hint.text not in hint.hint:  # the protocol's wording, for the chart review
                lines.extend(wrap(console, f"“{hint.text}”", " " * len(arrow), " " * (len(arrow) + 1)))
        return lines


def render_patient(patient: PatientResult, mapping: Mapping, layout: TableLayout, as_of: date) -> list[str]:
    console = layout.console
    status = console.style(patient.status.upper(), fg=STATUS_COLOURS.get(patient.status), bold=True)
    draft = "  (DRAFT mapping, not reviewed)" if patient.draft else ""
    lines = [f"{patient.patient}  {status}{draft}"]
    review = set(manual_only(mapping))
    types = {c.id: c.type for c in mapping.criteria}
    hints = patient_hints({c.id: c for c in mapping.criteria}, patient.criteria, as_of)
    to_review = 0
    for result in patient.criteria:
        if result.id in review and result.reason == "manual":
            to_review += 1
            continue
        lines.extend(layout.criterion_lines(result, types.get(result.id, ""), hints.get(result.id)))
    if to_review:
        lines.append(f"  ? to review (manual): {count(to_review, 'criterion', 'criteria')}, listed once below")
    for arm in patient.arms:
        options = ", ".join(arm.options) if arm.options else "(none)"
        lines.extend(wrap(console, options, f"  arm {arm.label}: "))
        for excluded in arm.excluded_options:
            lines.extend(wrap(console, excluded.why, f"{INDENT}not {excluded.option}: ", INDENT + "  "))
    for error in patient.errors:
        lines.extend(wrap(console, error, "  error: ", INDENT))
    return lines


def review_list(mapping: Mapping, console: Console) -> list[str]:
    """The criteria a person decides for every patient of the trial, with their text, once."""
    ids = manual_only(mapping)
    if not ids:
        return []
    lines = wrap(console, f"To review (manual) for every patient of {mapping.trial}: "
                          f"{count(len(ids), 'criterion', 'criteria')}", "", "  ")
    for criterion in (mapping.criterion(i) for i in ids):
        lines.extend(wrap(console, criterion_text(criterion), f"  ? {criterion.id}: ", INDENT))
    return lines


def render_table(report: ScreenReport, mapping: Mapping, console: Console | None = None,
                 as_of_for: Callable[[PatientResult], date] | None = None, tally: Tally | None = None) -> str:
    """The whole report; `as_of_for` gives each stored result's own screening date (`results`)."""
    console = console or Console()
    layout = TableLayout(report, set(manual_only(mapping)), console)
    lines = title(report, console)
    lines.append("")
    for patient in report.patients:
        as_of = as_of_for(patient) if as_of_for else report.as_of
        lines.extend(render_patient(patient, mapping, layout, as_of))
        lines.append("")
    if report.patients:
        lines.extend(review_list(mapping, console))
        lines.append("")
    lines.extend(totals(tally or Tally.of(report.patients), console))
    return "\n".join(lines)


def title(report: ScreenReport, console: Console) -> list[str]:
    draft = ", a DRAFT: results are unreviewed" if report.mapping_status == "draft" else ""
    return wrap(console, f"{report.trial} as of {report.as_of.isoformat()} (mapping {report.mapping_file}{draft})",
                "", "  ")


def totals(tally: Tally, console: Console) -> list[str]:
    return [line for text in tally.lines() for line in wrap(console, text, "", "  ")]
