"""`trial-connector screen`: pre-screen patients of one source against one trial, now.

Local sources (files) are screened whole by default; a FHIR server needs `--patient` (whole
populations are the scheduled run's job). A patient whose data cannot be read is reported on
stderr by id and the others are still screened: exit 3 then, 0 when all went well, 1 for
usage or mapping errors.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

import click

from connector.errors import EXIT_OK, EXIT_PARTIAL, ConnectorError
from connector.evaluation import evaluate_patient
from connector.commands.options import command_config, db_option, store_url, trial_id
from connector.mapping import data_needs, load_trial_mapping
from connector.mapping.loader import display_name
from connector.results import ScreenReport
from connector.trial_record import criteria_hash_warning, stored_criteria_text_at

log = logging.getLogger(__name__)


@click.command()
@click.option("--trial", required=True, help="NCT id, e.g. NCT05773274.")
@click.option("--source", "source_arg", required=True,
              help="FHIR base URL, configured server name, or a local path (Bundles, resources, NDJSON).")
@click.option("--patient", "patient_ids", multiple=True, help="Patient id to screen (repeatable).")
@click.option("--as-of", "as_of", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Screening date YYYY-MM-DD (default: today).")
@click.option("--format", "output_format", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--mapping", "mapping_path", type=click.Path(path_type=Path), default=None,
              help="Mapping file (default: mappings/<NCT>.yaml).")
@click.option("--site-country", default=None, help="Screening site's country code (default: config [site] country, US).")
@click.option("--trial-record", type=click.Path(path_type=Path), default=None,
              help="CT.gov API v2 record to check the mapping's criteria hash against "
                   "(default: the trial as synced in the store, else examples/ctgov/<NCT>.json).")
@db_option
@click.pass_context
def screen(ctx: click.Context, trial: str, source_arg: str, patient_ids: tuple[str, ...], as_of, output_format: str,
           mapping_path: Path | None, site_country: str | None, trial_record: Path | None, db: str | None) -> int:
    """Pre-screen patients for one trial: each criterion met / not met / unknown, with evidence."""
    from connector.sources import open_source  # the source layer pulls in HTTP only when needed

    trial = trial_id(trial)
    screening_date: date = as_of.date() if as_of else date.today()
    path, mapping = load_trial_mapping(trial, mapping_path)
    name = display_name(path)
    warning = criteria_hash_warning(mapping, name, stored_criteria_text_at(store_url(ctx, db), trial), trial_record)
    if warning:
        click.echo(f"warning: {warning}", err=True)

    config = command_config(ctx)
    country = (site_country or config.site_country or "US").upper()
    source = open_source(source_arg, config)
    if not source.is_local and not patient_ids:
        raise ConnectorError(f"{source.describe()}: give --patient ID (whole server populations are screened "
                             "by the scheduled run, not by screen)")

    report = ScreenReport(trial, name, mapping.criteria_hash, screening_date)
    failed = 0
    needs = data_needs(mapping, screening_date)
    for patient_id, item in source.iter_facts(needs, list(patient_ids) or None):
        if isinstance(item, ConnectorError):
            failed += 1
            click.echo(f"error: Patient/{patient_id}: {item}", err=True)
            continue
        try:
            report.patients.append(evaluate_patient(mapping, item, screening_date, country))
        except Exception as exc:  # noqa: BLE001 - one patient's data never sinks the others
            failed += 1
            reason = str(exc) if isinstance(exc, ConnectorError) else f"unexpected {exc.__class__.__name__}"
            click.echo(f"error: Patient/{patient_id}: {reason}", err=True)
    if source.errors:
        click.echo(f"warning: {len(source.errors)} problem(s) reading {source.describe()}; "
                   "data in them was not screened", err=True)
    log.info("screened %d patient(s) for %s, %d failed", len(report.patients), trial, failed)

    if output_format == "json":
        from connector.report.json_out import render_json

        click.echo(render_json(report))
    else:
        from connector.report.table import render_table

        click.echo(render_table(report, mapping))
    return EXIT_PARTIAL if failed or source.errors else EXIT_OK
