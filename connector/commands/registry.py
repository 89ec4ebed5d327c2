"""`trial-connector registry ...`: sync trial metadata from ClinicalTrials.gov and look at it.

Progress and errors go to stderr; stdout carries only what was asked for (records, FHIR,
change lists), so `registry show --format json` can be piped into other tools.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from connector.commands.options import command_config, db_option, open_command_store, open_existing_command_store
from connector.errors import ConnectorError
from connector.registry.client import OVERALL_STATUSES, CtGovClient, SearchQuery
from connector.registry.ids import normalise_all
from connector.registry.sync import Syncer, parse_since

EXIT_FAILED = 1


@click.group("registry")
def registry() -> None:
    """Trial metadata from the ClinicalTrials.gov API v2: versioned, validated, change-aware."""


def _err(line: str) -> None:
    click.echo(line, err=True)


@registry.command("sync")
@click.argument("nct_ids", nargs=-1, metavar="[NCT_ID]...")
@click.option("--query", "query_text", metavar="TEXT", help="Search the registry (sent as query.term).")
@click.option("--cond", metavar="TEXT", help="Conditions search (query.cond), alone or with --query.")
@click.option("--status", "statuses", multiple=True, metavar="STATUS",
              type=click.Choice(OVERALL_STATUSES, case_sensitive=False),
              help="With --query/--cond: only studies with this overall status (repeatable), e.g. RECRUITING.")
@click.option("--since", metavar="DATE|auto",
              help="Only studies updated since DATE (YYYY-MM-DD), or since the last sync ('auto').")
@click.option("--api-url", metavar="URL", help="API v2 base (default: env CTGOV_API_URL, [registry] api_url, "
                                               "else https://clinicaltrials.gov/api/v2).")
@click.option("--page-size", type=click.IntRange(1, 1000), default=1000, show_default=True)
@db_option
@click.pass_context
def sync(ctx: click.Context, nct_ids: tuple[str, ...], query_text: str | None, cond: str | None,
         statuses: tuple[str, ...], since: str | None, api_url: str | None, page_size: int, db: str | None) -> int:
    """Fetch trials by id or by search and store a new version of each one that changed.

    Ends with `fetched: N, new: N, changed: N, unchanged: N, failed: N` on stderr; exits 1 when
    any trial failed (not found, or failing the API's or our schema).
    """
    searching = bool(query_text or cond)
    if nct_ids and searching:
        raise click.UsageError("give NCT ids or --query/--cond, not both")
    if not nct_ids and not searching:
        raise click.UsageError("give one or more NCT ids, or --query TEXT")
    if statuses and not searching:
        raise click.UsageError("--status filters a search: use it with --query or --cond")
    try:
        since = parse_since(since)
    except ValueError:
        raise click.BadParameter(f"{since!r} is neither YYYY-MM-DD nor 'auto'", param_hint="--since") from None
    ids = normalise_all(nct_ids)  # every id checked before any request
    config = command_config(ctx)
    client = CtGovClient(api_url or config.registry_api_url,
                         requests_per_minute=config.registry_requests_per_minute)
    with open_command_store(ctx, db) as store:
        syncer = Syncer(store, report=_err)
        try:
            if ids:
                syncer.sync_ids(client, ids, since=since)
            else:
                query = SearchQuery(term=query_text, cond=cond, statuses=[s.upper() for s in statuses])
                syncer.sync_query(client, query, since=since, page_size=page_size)
        except ConnectorError:
            _err(syncer.counts.summary())
            raise
    _err(syncer.counts.summary())
    return EXIT_FAILED if syncer.counts.failed else 0


@registry.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@db_option
@click.pass_context
def import_(ctx: click.Context, files: tuple[Path, ...], db: str | None) -> int:
    """Load saved API JSON (a study, a search page {"studies": [...]}, or a list of studies)."""
    with open_command_store(ctx, db) as store:
        syncer = Syncer(store, report=_err)
        syncer.import_files(files)
    _err(syncer.counts.summary())
    return EXIT_FAILED if syncer.counts.failed else 0


@registry.command("show")
@click.argument("nct_ids", nargs=-1, required=True, metavar="NCT_ID...")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "fhir"]), default="table", show_default=True,
              help="json: records of schemas/trial.schema.json; fhir: R4 ResearchStudy.")
@db_option
@click.pass_context
def show(ctx: click.Context, nct_ids: tuple[str, ...], fmt: str, db: str | None) -> int:
    """Show the latest stored version of trials (sync or import them first)."""
    from connector.registry.fhir import research_study
    from connector.registry.render import trial_table
    from connector.registry.versions import latest_trial_record, trial_state

    ids = normalise_all(nct_ids)
    found: list[dict] = []
    missing = 0
    with open_existing_command_store(ctx, db) as store:
        for nct_id in ids:
            record = latest_trial_record(store, nct_id)
            if record is None:
                missing += 1
                _err(f"{nct_id}: not in the store (run: trial-connector registry sync {nct_id})")
                continue
            found.append(record)
            if fmt == "table":
                click.echo(trial_table(record, trial_state(store, nct_id)))
                click.echo()
    if fmt == "json" and found:
        click.echo(json.dumps(found[0] if len(ids) == 1 else found, ensure_ascii=False, indent=2))
    elif fmt == "fhir" and found:
        resources = [research_study(r) for r in found]
        if len(ids) == 1:
            out = resources[0]
        else:
            out = {"resourceType": "Bundle", "type": "collection",
                   "entry": [{"fullUrl": f"ResearchStudy/{r['id']}", "resource": r} for r in resources]}
        click.echo(json.dumps(out, ensure_ascii=False, indent=2))
    return EXIT_FAILED if missing else 0


@registry.command("changes")
@click.argument("nct_ids", nargs=-1, required=True, metavar="NCT_ID...")
@click.option("--since", metavar="DATE", help="Only versions stored on or after DATE (YYYY-MM-DD).")
@db_option
@click.pass_context
def changes(ctx: click.Context, nct_ids: tuple[str, ...], since: str | None, db: str | None) -> int:
    """List stored versions and, for each after the first, `field: old -> new` per changed field."""
    from connector.registry.render import changes_text
    from connector.registry.versions import trial_state, trial_versions

    if since is not None:
        try:
            since = parse_since(since)
        except ValueError:
            raise click.BadParameter(f"{since!r} is not YYYY-MM-DD", param_hint="--since") from None
        if since == "auto":
            raise click.BadParameter("'auto' is for sync; give a date", param_hint="--since")
    ids = normalise_all(nct_ids)
    missing = 0
    with open_existing_command_store(ctx, db) as store:
        for nct_id in ids:
            if trial_state(store, nct_id) is None:
                missing += 1
                _err(f"{nct_id}: not in the store (run: trial-connector registry sync {nct_id})")
                continue
            click.echo(changes_text(nct_id, trial_versions(store, nct_id, since=since)))
    return EXIT_FAILED if missing else 0
