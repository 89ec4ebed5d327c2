"""`trial-connector screen`: pre-screen patients of one source against one trial, or against every
available trial (the portfolio: no `--trial`, or `--trial all`) from one pull, now.

Local sources (files) are screened whole by default; a FHIR server needs `--patient` (whole
populations are the scheduled run's job). A patient whose data cannot be read is reported on
stderr by id and the others are still screened. Exit 3 when anything could not be read (a
patient, a resource of a screened patient, a file of the source: counted apart in the summary),
0 when all went well, 1 for usage or mapping errors.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

import click

from connector import api
from connector.commands.options import (ALL_TRIALS, command_config, db_option, mapping_options, mapping_sources,
                                        store_url, trial_option)
from connector.commands.portfolio import portfolio_options
from connector.errors import EXIT_OK, EXIT_PARTIAL, ConfigError, ConnectorError
from connector.mapping.catalog import check_explicit_files
from connector.mapping.drafts import ALLOW_DRAFT_HELP, check_draft
from connector.report.output import FORMATS, check_summary, summary_option, write_report
from connector.report.tally import Tally
from connector.trial_record import coverage_warning, criteria_hash_warning, reference_text, stored_criteria_text_at

log = logging.getLogger(__name__)


@click.command()
@trial_option(portfolio=True)
@click.option("--source", "source_arg", required=True,
              help="FHIR base URL, configured server name, or a local path (Bundles, resources, NDJSON).")
@click.option("--patient", "patient_ids", multiple=True, help="Patient id to screen (repeatable).")
@click.option("--as-of", "as_of", type=click.DateTime(formats=["%Y-%m-%d"]), default=None, metavar="ISO-DATE",
              help="Screening date as an ISO date, YYYY-MM-DD (default: today).")
@click.option("--format", "output_format", type=click.Choice([*FORMATS, "fhir"]), default="table", show_default=True,
              help="table (for people), json, csv (a row per patient), csv-criteria (a row per patient and "
                   "criterion); fhir: a searchset Bundle of ResearchStudy for one patient (the portfolio).")
@summary_option
@mapping_options
@portfolio_options
@click.option("--site-country", default=None, help="Screening site's country code (default: config [site] country, US).")
@click.option("--trial-record", type=click.Path(path_type=Path), default=None,
              help="CT.gov API v2 record to check the mapping's criteria hash against "
                   "(default: the trial as synced in the store, else the record bundled with the mapping).")
@click.option("--allow-draft", is_flag=True, help=ALLOW_DRAFT_HELP)
@db_option
@click.pass_context
def screen(ctx: click.Context, trial: str | None, source_arg: str, patient_ids: tuple[str, ...], as_of,
           output_format: str, mapping_files: tuple[Path, ...], mapping_dirs: tuple[Path, ...],
           include_not_recruiting: bool, site_country: str | None, trial_record: Path | None, db: str | None,
           summary: bool, allow_draft: bool = False) -> int:
    """Pre-screen patients for one trial, or rank every available trial for them (the portfolio)."""
    check_summary(output_format, summary)
    sources = mapping_sources(ctx, mapping_files, mapping_dirs)
    if trial in (None, ALL_TRIALS) or output_format == "fhir":
        from connector.commands.portfolio import screen_many

        if output_format.startswith("csv") or summary:
            raise ConfigError("a portfolio screen (no --trial, or --trial all) prints a table, json or fhir; "
                              "give --trial NCT... for csv or --summary")

        return screen_many(ctx, trial, source_arg, list(patient_ids) or None,
                           as_of.date() if as_of else date.today(), output_format, sources,
                           include_not_recruiting, allow_draft, site_country, db)
    check_explicit_files([trial], sources)
    loaded = api.load_mapping(trial, sources=sources)
    check_draft(loaded.mapping, loaded.file, allow_draft)
    stored_text = stored_criteria_text_at(store_url(ctx, db), trial)
    for warning in mapping_warnings(loaded, stored_text, trial_record):
        click.echo(f"warning: {warning}", err=True)

    if not patient_ids and not Path(source_arg).exists():
        raise ConnectorError(f"{source_arg}: give --patient ID for a FHIR server (whole server populations are "
                             "screened by the scheduled run, not by screen)")
    config = command_config(ctx)
    country = (site_country or config.site_country or "US").upper()
    outcome = api.screen_source(source_arg, loaded, patient_ids=patient_ids, site_country=country, config=config,
                                as_of=as_of.date() if as_of else date.today())
    for patient_id, message in outcome.patient_errors:
        click.echo(f"error: Patient/{patient_id}: {message}", err=True)
    if outcome.source_errors:
        click.echo(f"warning: {len(outcome.source_errors)} problem(s) reading {outcome.source_name}; "
                   "data in them was not screened", err=True)
    report = outcome.report
    log.info("screened %d patient(s) for %s, %d failed", len(report.patients), trial, len(outcome.patient_errors))

    tally = Tally.of(report.patients, not_screened=len(outcome.patient_errors),
                     source_problems=len(outcome.source_errors))
    write_report(output_format, report, loaded.mapping, summary=summary, tally=tally)
    return EXIT_PARTIAL if tally.has_errors else EXIT_OK


def mapping_warnings(loaded: api.TrialMapping, stored_text: str | None, trial_record: Path | None = None) -> list[str]:
    """What the user must know before trusting a screen with this mapping: whether it was written
    from other registry text than the trial's current one, and whether it covers all of it."""
    reference = reference_text(loaded.trial, stored_text, trial_record)
    warnings = [criteria_hash_warning(loaded.mapping, loaded.file, stored_text, trial_record),
                coverage_warning(loaded.mapping, loaded.file, reference)]
    return [w for w in warnings if w]
