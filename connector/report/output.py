"""One place that writes a report to stdout in the format asked for, fitted to the console.

Shared by `screen` and `results` so both offer the same formats, `--summary` and encoding
fallback: the table is transliterated where the console cannot encode a character, JSON uses
`\\uXXXX` escapes instead (still the same data), CSV is transliterated like the table.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import click

from connector.errors import ConfigError
from connector.mapping.model import Mapping
from connector.report.console import Console
from connector.report.tally import Tally
from connector.results import PatientResult, ScreenReport

FORMATS = ("table", "json", "csv", "csv-criteria")


def summary_option(function: Callable) -> Callable:
    return click.option("--summary", is_flag=True,
                        help="Table format: one line per patient (what decided each status), then the totals.")(function)


def check_summary(output_format: str, summary: bool) -> None:
    if summary and output_format != "table":
        raise ConfigError(f"--summary is a table layout; drop it, or drop --format {output_format}")


def write_report(output_format: str, report: ScreenReport, mapping: Mapping, *, summary: bool = False,
                 tally: Tally | None = None, as_of_for: Callable[[PatientResult], date] | None = None) -> None:
    """`as_of_for`: each patient's own screening date (stored results), else the report's."""
    console = Console.detect()
    per_patient = as_of_for or (lambda _patient: report.as_of)
    if output_format == "json":
        from connector.report.json_out import annotated

        click.echo(console.json(annotated(report, mapping, per_patient)))
    elif output_format == "csv":
        from connector.report.csv_out import render_csv

        ids = [c.id for c in mapping.criteria]
        screened = {"as_of": {p.patient: per_patient(p).isoformat() for p in report.patients}}
        console.echo(render_csv(report.patients, ids, screened, mapping, per_patient), nl=False)
    elif output_format == "csv-criteria":
        from connector.report.csv_out import render_criteria_csv

        console.echo(render_criteria_csv(report.patients, mapping, per_patient), nl=False)
    elif summary:
        from connector.report.summary import render_summary

        console.echo(render_summary(report, mapping, console, tally))
    else:
        from connector.report.table import render_table

        console.echo(render_table(report, mapping, console, as_of_for, tally))
