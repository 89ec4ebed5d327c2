"""`trial-connector report`: a trial's feasibility from the store (no pull): the funnel, the work
list, what changed since the last run and the trend per run, as a table, JSON, CSV (the work
list) or one self-contained HTML page for the coordinator."""

from __future__ import annotations

from pathlib import Path

import click

from connector.commands.options import (db_option, mapping_options, mapping_sources, open_existing_command_store,
                                        trial_option)
from connector.errors import ConnectorError
from connector.mapping.catalog import MappingSources, load_resolved
from connector.mapping.model import Mapping


@click.command()
@trial_option()
@click.option("--format", "output_format", type=click.Choice(["table", "json", "csv", "html"]), default="table",
              show_default=True, help="csv is the work list, one row per item.")
@click.option("--out", "out_path", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write to FILE instead of stdout (html is usually written to a file).")
@mapping_options
@db_option
@click.pass_context
def report(ctx: click.Context, trial: str, output_format: str, out_path: Path | None,
           mapping_files: tuple[Path, ...], mapping_dirs: tuple[Path, ...], db: str | None) -> int:
    """A trial's feasibility report from stored results: funnel, work list, changes, trend."""
    from connector.portfolio.feasibility import build_feasibility

    mapping = _mapping(trial, mapping_sources(ctx, mapping_files, mapping_dirs))
    with open_existing_command_store(ctx, db) as store:
        feasibility = build_feasibility(store, trial, mapping)
    if not feasibility.patients:
        click.echo(f"warning: no stored results for {trial} (run `trial-connector run --trial {trial}` first)",
                   err=True)
    if output_format == "html":
        from connector.portfolio.html import render_html

        text = render_html(feasibility)
    else:
        from connector.portfolio import render

        text = {"table": render.render_table, "json": render.render_json, "csv": render.render_csv}[
            output_format](feasibility)
    if out_path is None:
        click.echo(text, nl=not text.endswith("\n"))
    else:
        out_path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        click.echo(f"wrote {out_path}", err=True)
    return 0


def _mapping(trial: str, sources: MappingSources) -> Mapping | None:
    """The trial's mapping for criterion order and the work list; None (with a warning) if absent."""
    try:
        return load_resolved(trial, sources)[1]
    except ConnectorError as exc:
        click.echo(f"warning: {exc}; criteria are listed in stored order and no work list is made", err=True)
        return None
