"""`trial-connector mappings`: which mappings are available, what one says, whether it is valid
and complete.

    trial-connector mappings list [--mappings DIR]      every mapping found, in search order
    trial-connector mappings show NCT05773274           the mapping that would screen a trial
    trial-connector mappings check FILE...              validate, then coverage of the registry text
                                                        (a draft: what a reviewer must confirm)
    trial-connector mappings draft NCT... [--from FILE] [--out FILE]   draft a mapping from registry text
    trial-connector mappings evaluate GOLD              precision/recall of drafts against gold annotations

`check` exits 0 when every file is valid (a partial mapping is a warning; `--strict` makes it an
error), 1 when a file is invalid.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from connector.commands.mappings_draft import draft, evaluate
from connector.commands.options import db_option, mapping_options, mapping_sources, store_url
from connector.drafting.review import review_lines
from connector.errors import EXIT_DATA, EXIT_OK, ConnectorError
from connector.mapping.catalog import MappingEntry, available_mappings, load_resolved, mapping_entry
from connector.mapping.coverage import mapping_coverage
from connector.mapping.loader import load_mapping
from connector.mapping.model import Mapping
from connector.registry.ids import NCT_PATTERN
from connector.trial_record import criteria_hash_warning, reference_text, stored_criteria_text_at


@click.group()
def mappings() -> None:
    """Trial mappings: list the available ones, show one, check a file's validity and coverage,
    draft one from registry text, evaluate drafts."""


mappings.add_command(draft)
mappings.add_command(evaluate)


@mappings.command("list")
@mapping_options
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_context
def list_mappings(ctx: click.Context, mapping_files: tuple[Path, ...], mapping_dirs: tuple[Path, ...],
                  fmt: str) -> int:
    """Every mapping file found, in search order (--mapping, --mappings, [mappings] dir, bundled).

    A later file for a trial already listed is `shadowed`: it would not be used.
    """
    entries = available_mappings(mapping_sources(ctx, mapping_files, mapping_dirs))
    seen: set[str] = set()
    rows = []
    for entry in entries:
        state = "unusable: " + entry.problem if entry.problem else ("shadowed" if entry.trial in seen else "used")
        if entry.trial:
            seen.add(entry.trial)
        rows.append({**entry.to_json(), "state": state})
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        click.echo("no mappings found")
    for row in rows:
        click.echo(f"{row['trial'] or '?':<12} {row['source']:<10} {row['sha256'][:12]:<12} {row['file']}  "
                   f"({row['state']})")
    return EXIT_OK


@mappings.command("show")
@click.argument("trial_or_file")
@mapping_options
@click.option("--raw", is_flag=True, help="Print the mapping file itself.")
@click.pass_context
def show(ctx: click.Context, trial_or_file: str, mapping_files: tuple[Path, ...], mapping_dirs: tuple[Path, ...],
         raw: bool) -> int:
    """The mapping that screens a trial (an NCT id) or the one in a file: source, hash, criteria."""
    if NCT_PATTERN.match(trial_or_file.strip()):
        entry, mapping = load_resolved(trial_or_file, mapping_sources(ctx, mapping_files, mapping_dirs))
    else:
        entry = mapping_entry(Path(trial_or_file))
        if entry.problem:
            raise ConnectorError(entry.problem)
        mapping = load_mapping(entry.path)
    if raw:
        click.echo(entry.path.read_text(encoding="utf-8"), nl=False)
        return EXIT_OK
    click.echo(describe(entry, mapping))
    return EXIT_OK


def describe(entry: MappingEntry, mapping: Mapping) -> str:
    lines = [f"trial: {mapping.trial}" + (f" ({mapping.title})" if mapping.title else ""),
             f"file: {entry.name} ({entry.source})",
             f"sha256: {entry.sha256}",
             f"criteria_hash: {mapping.criteria_hash}",
             f"criteria ({len(mapping.criteria)}):"]
    for criterion in mapping.criteria:
        text = " / ".join(criterion.texts)
        lines.append(f"  {criterion.id:<28} {criterion.type:<9} {criterion.rule.kind:<18} "
                     f"{text[:70] + ('...' if len(text) > 70 else '')}")
    for arm in mapping.arms:
        lines.append(f"arm {arm.label}: {', '.join(o.name for o in arm.options)}")
    return "\n".join(lines)


@mappings.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--trial-record", type=click.Path(path_type=Path), default=None,
              help="CT.gov API v2 record to check against (default: the trial as synced in the store, else the "
                   "record bundled with trial-connector).")
@click.option("--strict", is_flag=True, help="A partial mapping (registry bullets not accounted for) is an error.")
@db_option
@click.pass_context
def check(ctx: click.Context, files: tuple[Path, ...], trial_record: Path | None, strict: bool,
          db: str | None) -> int:
    """Validate mapping files, then report which registry bullets no criterion accounts for."""
    failed = False
    for path in files:
        try:
            mapping = load_mapping(path)
        except ConnectorError as exc:
            click.echo(f"error: {exc}", err=True)
            failed = True
            continue
        entry = mapping_entry(path)
        click.echo(f"{entry.name}: valid mapping of {mapping.trial}, {len(mapping.criteria)} criteria, "
                   f"sha256 {entry.sha256[:12]}")
        if mapping.is_draft:
            for line in review_lines(mapping):
                click.echo(line)
        stored = stored_criteria_text_at(store_url(ctx, db), mapping.trial)
        hash_warning = criteria_hash_warning(mapping, entry.name, stored, trial_record)
        if hash_warning:
            click.echo(f"warning: {hash_warning}", err=True)
        reference = reference_text(mapping.trial, stored, trial_record)
        if reference is None or reference.text is None:
            click.echo(f"warning: {entry.name}: no registry text for {mapping.trial} to check coverage against "
                       f"(run: trial-connector registry sync {mapping.trial}, or give --trial-record)", err=True)
            continue
        coverage = mapping_coverage(mapping, reference.text)
        click.echo(f"{entry.name}: {coverage.summary()} ({reference.where})")
        for bullet in coverage.uncovered:
            click.echo(f"warning: {entry.name}: no criterion accounts for {bullet.section} bullet: "
                       f"{bullet.text[:160]}", err=True)
        for criterion_id in coverage.not_in_text:
            click.echo(f"warning: {entry.name}: criterion {criterion_id!r}: its text is not quoted verbatim from "
                       "the registry text", err=True)
        failed = failed or (strict and not coverage.complete)
    return EXIT_DATA if failed else EXIT_OK
