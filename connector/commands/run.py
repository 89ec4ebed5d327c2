"""`trial-connector run`: the scheduled pre-screen of a whole population (cron-friendly).

Exit codes: 0 done, 3 done with per-patient errors (listed), 2 source unreachable after
retries or answering short (see README "Failure behaviour"), 4 another run holds the lock,
1 usage/mapping errors.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from connector.commands.options import command_config, db_option, open_command_store, trial_id
from connector.errors import EXIT_OK, EXIT_PARTIAL, ConfigError
from connector.pipeline import RunOptions, ScheduledRun, TrialSpec
from connector.scheduled.progress import Progress
from connector.trial_record import criteria_hash_warning, stored_criteria_text

INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?$")
SHOWN_ERRORS = 20


@click.command()
@click.option("--trial", "trials", multiple=True, required=True, help="NCT id (repeatable).")
@click.option("--source", "source_arg", required=True,
              help="FHIR base URL, configured server name, or a local folder/file of FHIR data.")
@click.option("--since", default=None, metavar="auto|INSTANT",
              help="Incremental: 'auto' = since the last successful run (first run screens everyone), "
                   "or an ISO instant. Without it everyone is screened.")
@click.option("--bulk", is_flag=True, help="Read the server through Bulk Data $export instead of per-patient REST.")
@click.option("--group", default=None, help="Only members of this Group (REST) / Group-level export (--bulk).")
@click.option("--patient", "patient_ids", multiple=True, help="Only these patient ids (repeatable).")
@click.option("--as-of", "as_of", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Screening date YYYY-MM-DD (default: today).")
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
@db_option
@click.pass_context
def run(ctx: click.Context, trials: tuple[str, ...], source_arg: str, since: str | None, bulk: bool,
        group: str | None, patient_ids: tuple[str, ...], as_of, concurrency: int | None, workers: int | None,
        engine: str, scheduler: str | None, work_dir: Path | None,
        site_country: str | None, db: str | None) -> int:
    """Screen a population against trials, store the results, report who is new."""
    names = list(dict.fromkeys(trial_id(t) for t in trials))
    if since is not None and since != "auto" and not INSTANT.match(since):
        raise ConfigError(f"--since {since!r}: give 'auto' or an ISO instant such as 2026-01-31T00:00:00Z")
    if bulk and Path(source_arg).exists():
        raise ConfigError("--bulk reads a FHIR server; a local folder is read directly (drop --bulk)")
    config = command_config(ctx)
    options = RunOptions(
        trials=[TrialSpec.load(t) for t in names], source=source_arg, as_of=as_of.date() if as_of else None,
        since=since, bulk=bulk, group=group, patient_ids=list(patient_ids) or None, concurrency=concurrency,
        workers=workers, engine=engine, scheduler=scheduler, work_dir=work_dir, site_country=(site_country or config.site_country or "US").upper())
    with open_command_store(ctx, db) as store:
        for spec in options.trials:
            warning = criteria_hash_warning(spec.mapping, spec.mapping_name, stored_criteria_text(store, spec.trial))
            if warning:
                click.echo(f"warning: {warning}", err=True)
        outcome = ScheduledRun(store, config, options, Progress()).execute()
    r = outcome.run
    resumed = " (resumed)" if outcome.resumed else ""
    click.echo(f"run {r.id}{resumed}, {r.mode}, as of {r.as_of}: screened {r.screened}, candidates {r.candidates}, "
               f"possible {r.possible}, excluded {r.excluded}, errors {r.errors}, new since last run {r.new_count}")
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
    return EXIT_PARTIAL if r.errors or outcome.source_errors else EXIT_OK
