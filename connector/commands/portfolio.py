"""The portfolio side of `screen` and `run`: every available mapping is a trial the site screens.

`screen` without `--trial` (or `--trial all`) reads the source once with the merged data needs of
all trials and ranks each patient's trials; `run --trial all` stores results per trial. Trials
not recruiting (registry record) or with a draft mapping are skipped with a note on stderr
unless `--include-not-recruiting` / `--allow-draft` asks for them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date
from typing import TYPE_CHECKING, Any, TypeVar

import click

from connector.commands.options import ALL_TRIALS, command_config, store_url
from connector.errors import EXIT_OK, EXIT_PARTIAL, ConfigError, ConnectorError

if TYPE_CHECKING:
    from connector.mapping.catalog import MappingSources

F = TypeVar("F", bound=Callable[..., Any])


def portfolio_options(func: F) -> F:
    """--include-not-recruiting (shared by screen and run; the mapping folders come from
    connector.commands.options.mapping_options, --allow-draft from connector.mapping.drafts)."""
    return click.option("--include-not-recruiting", is_flag=True,
                        help="Also screen trials whose registry record is not recruiting.")(func)


def portfolio_trials(ctx: click.Context, trial: str | None, sources: "MappingSources", include_not_recruiting: bool,
                     allow_draft: bool, db: str | None) -> tuple[list[Any], list[Any]]:
    """(trials to screen, trials skipped): connector.portfolio.trials PortfolioTrial and Skipped;
    skipped ones are also noted on stderr.

    `trial` None or 'all': the whole portfolio; an NCT id: that one trial (never skipped)."""
    from connector.portfolio.trials import select_trials

    single = trial not in (None, ALL_TRIALS)
    trials, skipped = select_trials(sources, store_url(ctx, db), include_not_recruiting or single,
                                    allow_draft or single)
    if single:
        trials = [t for t in trials if t.trial == trial]
        if not trials:
            raise ConfigError(f"no usable mapping for {trial}")
        return trials, []
    for note in skipped:
        click.echo(f"note: skipped {note.trial}: {note.note}", err=True)
    if not trials:
        raise ConfigError("no trial to screen: no usable mapping found")
    return trials, skipped


def screen_many(ctx: click.Context, trial: str | None, source_arg: str, patient_ids: list[str] | None,
                as_of: date, output_format: str, sources: "MappingSources", include_not_recruiting: bool,
                allow_draft: bool, site_country: str | None, db: str | None) -> int:
    """`screen` of the portfolio (or of one trial as a FHIR searchset): one pull, every trial."""
    from connector.portfolio.screening import screen_portfolio
    from connector.sources import open_source

    trials, skipped = portfolio_trials(ctx, trial, sources, include_not_recruiting, allow_draft, db)
    config = command_config(ctx)
    source = open_source(source_arg, config)
    if not source.is_local and not patient_ids:
        raise ConnectorError(f"{source.describe()}: give --patient ID (whole server populations are screened "
                             "by the scheduled run, not by screen)")
    country = (site_country or config.site_country or "US").upper()
    try:
        screen = screen_portfolio(trials, source, as_of, country, patient_ids, skipped)
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()
    for pid, message in screen.errors:
        click.echo(f"error: Patient/{pid}: {message}", err=True)
    if source.errors:
        click.echo(f"warning: {len(source.errors)} problem(s) reading {source.describe()}; "
                   "data in them was not screened", err=True)
    if output_format == "fhir":
        from connector.portfolio.searchset import searchset_bundle

        click.echo(json.dumps(searchset_bundle(screen), indent=2, ensure_ascii=False))
    elif output_format == "json":
        click.echo(json.dumps(screen.to_json(), indent=2, ensure_ascii=False))
    else:
        from connector.portfolio.render import render_portfolio_table

        click.echo(render_portfolio_table(screen))
    unreadable = any(result.errors for by_patient in screen.results.values() for result in by_patient.values())
    return EXIT_PARTIAL if screen.errors or source.errors or unreadable else EXIT_OK  # as a single-trial screen
