"""`trial-connector run`: the scheduled pre-screen of a whole population (cron-friendly).

The summary counts patients (never patient x trial): screened, then per trial how many got
each status and how many are new or changed, then the errors by kind (connector.report.tally).
Exit codes: 0 done, 3 done with errors (patients not screened, records of screened patients
that could not be read, source problems), 2 source unreachable after retries or answering
short (see README "Failure behaviour"), 4 another run holds the lock, 1 usage/mapping errors.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import click

from connector.commands.options import (ALL_TRIALS, command_config, db_option, mapping_options, mapping_sources,
                                        open_command_store, trial_option)
from connector.commands.portfolio import portfolio_options, portfolio_trials
from connector.mapping.catalog import check_explicit_files
from connector.errors import EXIT_OK, EXIT_PARTIAL, ConfigError
from connector.mapping.drafts import ALLOW_DRAFT_HELP, check_draft
from connector.pipeline import RunOptions, RunOutcome, ScheduledRun, TrialSpec
from connector.report.tally import Tally, count, statuses
from connector.scheduled import records
from connector.scheduled.progress import Progress
from connector.store import Store
from connector.trial_record import coverage_warning, criteria_hash_warning, reference_text, stored_criteria_text

INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?$")
SHOWN_ERRORS = 20


@click.command()
@trial_option(multiple=True, portfolio=True)
@click.option("--source", "source_arg", required=True,
              help="FHIR base URL, configured server name, or a local folder/file of FHIR data.")
@click.option("--since", default=None, metavar="auto|INSTANT",
              help="Incremental: 'auto' = since the last successful run (first run screens everyone), "
                   "or an ISO instant. Without it everyone is screened.")
@click.option("--bulk", is_flag=True, help="Read the server through Bulk Data $export instead of per-patient REST.")
@click.option("--group", default=None, help="Only members of this Group (REST) / Group-level export (--bulk).")
@click.option("--patient", "patient_ids", multiple=True, help="Only these patient ids (repeatable).")
@click.option("--as-of", "as_of", type=click.DateTime(formats=["%Y-%m-%d"]), default=None, metavar="ISO-DATE",
              help="Screening date as an ISO date, YYYY-MM-DD (default: today).")
@mapping_options
@portfolio_options
@click.option("--concurrency", type=click.IntRange(1, 64), default=None,
              help="Patients fetched at once from a server (default: the server's `concurrency`, 4).")
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="Processes screening local files (default: the machine's cores; small inputs use one).")
@click.option("--engine", type=click.Choice(["embedded", "dask"]), default="embedded", show_default=True,
              help="Where local files are screened: this machine, or a Dask cluster (--scheduler) whose "
                   "workers read the same paths.")
@click.option("--scheduler", default=None, metavar="tcp://HOST:PORT", help="Dask scheduler for --engine dask.")
@click.option("--work-dir", type=click.Path(path_type=Path), default=None,
              help="Where --bulk downloads go: a new or empty folder (mode 0700); only the export's own "
                   "files are removed after the run.")
@click.option("--site-country", default=None, help="Screening site's country code (default: config [site] country).")
@click.option("--allow-draft", is_flag=True, help=ALLOW_DRAFT_HELP)
@db_option
@click.pass_context
def run(ctx: click.Context, trials: tuple[str, ...], source_arg: str, since: str | None, bulk: bool,
        group: str | None, patient_ids: tuple[str, ...], as_of, mapping_files: tuple[Path, ...],
        mapping_dirs: tuple[Path, ...], include_not_recruiting: bool, concurrency: int | None, workers: int | None,
        engine: str, scheduler: str | None, work_dir: Path | None, site_country: str | None, db: str | None,
        allow_draft: bool = False) -> int:
    """Screen a population against trials, store the results, report who is new."""
    if since is not None and since != "auto" and not INSTANT.match(since):
        raise ConfigError(f"--since {since!r}: give 'auto' or an ISO instant such as 2026-01-31T00:00:00Z")
    if bulk and Path(source_arg).exists():
        raise ConfigError("--bulk reads a FHIR server; a local folder is read directly (drop --bulk)")
    config = command_config(ctx)
    sources = mapping_sources(ctx, mapping_files, mapping_dirs)
    if not trials or ALL_TRIALS in trials:
        portfolio, _ = portfolio_trials(ctx, None, sources, include_not_recruiting, allow_draft, db)
        specs = [TrialSpec.load(t.trial, t.entry.path) for t in portfolio]
    else:
        check_explicit_files(trials, sources)
        specs = [TrialSpec.load(t, sources=sources) for t in trials]
    options = RunOptions(
        trials=specs, source=source_arg, as_of=as_of.date() if as_of else None, since=since, bulk=bulk, group=group,
        patient_ids=list(patient_ids) or None, concurrency=concurrency, workers=workers, engine=engine,
        scheduler=scheduler, work_dir=work_dir, site_country=(site_country or config.site_country or "US").upper())
    for spec in options.trials:
        check_draft(spec.mapping, spec.mapping_name, allow_draft)
    with open_command_store(ctx, db) as store:
        for spec in options.trials:
            stored = stored_criteria_text(store, spec.trial)
            for warning in (criteria_hash_warning(spec.mapping, spec.mapping_name, stored),
                            coverage_warning(spec.mapping, spec.mapping_name, reference_text(spec.trial, stored))):
                if warning:
                    click.echo(f"warning: {warning}", err=True)
        outcome = ScheduledRun(store, config, options, Progress()).execute()
        summary = run_summary(store, outcome, options.trials)
    click.echo("\n".join(summary.lines))
    r = outcome.run
    for pid, message in outcome.errors[:SHOWN_ERRORS]:
        click.echo(f"error: Patient/{pid}: {message}", err=True)
    if r.errors > SHOWN_ERRORS:
        click.echo(f"... and {r.errors - SHOWN_ERRORS} more patient error(s) (see the store's patient_errors)",
                   err=True)
    if outcome.source_errors:
        click.echo(f"warning: {len(outcome.source_errors)} problem(s) reading the source; data in them was not "
                   "screened", err=True)
        for message in outcome.source_errors[:SHOWN_ERRORS]:
            click.echo(f"warning: {message}", err=True)
    sys.stdout.flush()
    return EXIT_PARTIAL if summary.tally.has_errors else EXIT_OK


@dataclass(frozen=True)
class RunSummary:
    lines: list[str]
    tally: Tally


def run_summary(store: Store, outcome: RunOutcome, trials: list[TrialSpec]) -> RunSummary:
    """Patients screened, then per trial how many patients got each status (so nothing is a
    patient x trial count), then every kind of error (connector.report.tally)."""
    r = outcome.run
    resumed = " (resumed)" if outcome.resumed else ""
    resource_errors, with_errors = records.run_resource_errors(store, r.id)
    tally = Tally(patients=r.screened, resource_errors=resource_errors, patients_with_errors=with_errors,
                  not_screened=r.errors, source_problems=len(outcome.source_errors))
    lines = [f"run {r.id}{resumed}, {r.mode}, as of {r.as_of}: screened {count(r.screened, 'patient')} against "
             f"{count(len(trials), 'trial')}"]
    by_trial = records.run_status_counts(store, r.id)
    for spec in trials:
        new = len(records.changed_in_run(store, spec.trial, r.id))
        lines.append(f"  {spec.trial}: {statuses(by_trial.get(spec.trial, {}))}; {new} new or changed since the "
                     f"last run (mapping {spec.mapping_name} sha256 {spec.mapping_hash})")
    lines.append(tally.errors())
    return RunSummary(lines, tally)
