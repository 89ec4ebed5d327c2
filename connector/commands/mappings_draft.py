"""`trial-connector mappings draft|evaluate`: draft a mapping from registry text, measure drafts
against gold annotations (`mappings check` lists what a reviewer of a draft must confirm).

draft reads the trial's registry record from `--from FILE` (a CT.gov API v2 study, or a search
page holding it), else the store (`registry sync`; never creates one), else the record bundled
with the mappings; the draft is validated like any mapping before it is written.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import click
import yaml

from connector.commands.options import store_url, trial_id
from connector.errors import EXIT_OK, ConfigError, MappingError


def _record_from_file(path: Path, trial: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--from {path}: cannot read a JSON record ({exc.__class__.__name__})") from None
    studies = data.get("studies") if isinstance(data, dict) and "studies" in data else data
    studies = studies if isinstance(studies, list) else [studies]
    for study in studies:
        ident = ((study or {}).get("protocolSection") or {}).get("identificationModule") or {}
        if str(ident.get("nctId", "")).upper() == trial:
            return study
    if len(studies) == 1 and isinstance(studies[0], dict):
        return studies[0]  # a record without (or with another) id: draft it, the note says which trial
    raise ConfigError(f"--from {path}: no study {trial} in it")


def load_record(ctx: click.Context, trial: str, from_file: Path | None, db: str | None) -> tuple[dict[str, Any], str]:
    """The registry record to draft from and where it came from."""
    if from_file is not None:
        return _record_from_file(from_file, trial), str(from_file)
    from connector.trial_record import stored_record_at

    stored = stored_record_at(store_url(ctx, db), trial)
    if stored is not None:
        return stored, "the registry record synced in the store"
    from connector.resources import bundled_record

    bundled = bundled_record(trial)
    if bundled is not None:
        return _record_from_file(bundled, trial), str(bundled)
    raise ConfigError(f"no registry record for {trial}: run `trial-connector registry sync {trial}` "
                      "or give --from FILE")


@click.command("draft")
@click.argument("trial")
@click.option("--from", "from_file", type=click.Path(path_type=Path), default=None,
              help="CT.gov API v2 JSON of the study (default: the record synced in the store).")
@click.option("--out", "out_file", type=click.Path(path_type=Path), default=None,
              help="Write the draft mapping here (default: stdout).")
@click.option("--db", "db", metavar="PATH_OR_URL", default=None, help="Store to read a synced record from.")
@click.pass_context
def draft(ctx: click.Context, trial: str, from_file: Path | None, out_file: Path | None, db: str | None) -> int:
    """Draft a mapping from the trial's eligibility text: every bullet becomes computable criteria or
    `manual` ones, marked `status: draft` for a person to review."""
    from connector.drafting import draft_mapping
    from connector.mapping import build_mapping

    trial = trial_id(trial)
    record, source = load_record(ctx, trial, from_file, db)
    result = draft_mapping(record)
    document = result.document
    if document["trial"] != trial:
        result.notes.append(f"the record's id is {document['trial'] or 'missing'}; drafted as {trial}")
        document["trial"] = trial
    build_mapping(document, f"draft of {trial}")  # the same checks as any mapping file
    text = (f"# DRAFT mapping for {trial}, written by `trial-connector mappings draft` from {source}.\n"
            f"# Review it (`trial-connector mappings check`), then set `status: reviewed`.\n"
            + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=110))
    if out_file is None:
        click.echo(text, nl=False)
    else:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(text, encoding="utf-8")
    kinds = Counter("manual" if c["kind"] == "manual" else "computable" for c in document["criteria"])
    click.echo(f"{trial}: {len(document['criteria'])} criteria ({kinds['computable']} computable, "
               f"{kinds['manual']} manual){' -> ' + str(out_file) if out_file else ''}", err=True)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    return EXIT_OK


@click.command("evaluate")
@click.argument("gold", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--records", "record_dirs", multiple=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder of API v2 records (repeatable; default: the gold file's `records:` list).")
@click.option("-v", "--verbose", is_flag=True, help="List every miss and every extra.")
def evaluate(gold: Path, record_dirs: tuple[Path, ...], verbose: bool) -> int:
    """Draft every trial of a gold file and print precision/recall per category."""
    from connector.drafting import draft_mapping
    from connector.drafting.evaluate import bullet_coverage, evaluate as score, render

    try:
        annotations = yaml.safe_load(gold.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise MappingError(f"{gold}: cannot read the gold file ({exc.__class__.__name__})") from None
    dirs = list(record_dirs) or [gold.parent / d for d in annotations.get("records") or ["."]]
    trials = {k: v for k, v in annotations.items() if str(k).startswith("NCT")}
    documents: dict[str, dict[str, Any]] = {}
    bullets: Counter = Counter()
    for trial in trials:
        path = next((d / f"{trial}.json" for d in dirs if (d / f"{trial}.json").is_file()), None)
        if path is None:
            click.echo(f"warning: no record for {trial} in {', '.join(map(str, dirs))}; skipped", err=True)
            continue
        record = json.loads(path.read_text(encoding="utf-8"))
        document = draft_mapping(record).document
        documents[trial] = document
        bullets.update(bullet_coverage(record, document))
    click.echo(render(score(trials, documents), len(documents), bullets, verbose))
    sys.stdout.flush()
    return EXIT_OK
