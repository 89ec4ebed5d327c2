"""`trial-connector results`: the latest stored pre-screen of each patient for a trial.

`--new-since-last-run` keeps the patients whose status first appeared or changed in the most
recent finished run of the trial: the list research staff act on each morning.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import click

from connector.commands.options import command_config, db_option, open_command_store
from connector.errors import ConfigError, ConnectorError
from connector.results import STATUSES, PatientResult, ScreenReport
from connector.scheduled import records
from connector.store import Store


@click.command()
@click.option("--trial", required=True, help="NCT id.")
@click.option("--status", type=click.Choice(list(STATUSES)), default=None, help="Only patients with this status.")
@click.option("--new-since-last-run", "new_only", is_flag=True,
              help="Only patients whose status is new (first result or changed) in the last run.")
@click.option("--format", "output_format", type=click.Choice(["table", "json", "csv", "fhir"]), default="table",
              show_default=True)
@click.option("--post", is_flag=True,
              help="With --format fhir: also write the Bundle to the FHIR server as a transaction.")
@click.option("--server", "server_arg", default=None,
              help="FHIR server for --post (URL or configured name; default: the last run's server).")
@db_option
@click.pass_context
def results(ctx: click.Context, trial: str, status: str | None, new_only: bool, output_format: str, post: bool,
            server_arg: str | None, db: str | None) -> int:
    """Show stored results: table, JSON (as `screen --format json`), CSV, or FHIR ResearchSubjects."""
    trial = trial.strip().upper()
    if post and output_format != "fhir":
        raise ConfigError("--post writes ResearchSubject resources: use it with --format fhir")
    with open_command_store(ctx, db) as store:
        last = records.latest_run_of_trial(store, trial)
        wanted = records.changed_in_run(store, trial, last.id) if new_only and last else (set() if new_only else None)
        rows = records.latest_results(store, trial, status, wanted)
        patients = [PatientResult.from_json(r["result"]) for r in rows]
        as_of = last.as_of if last else max((r["as_of"] for r in rows), default=date.today().isoformat())
        if output_format == "fhir":
            if post:
                bundle = _post(ctx, store, trial, rows, server_arg, last)
                click.echo(f"posted {len(rows)} ResearchSubject(s) for {trial}", err=True)
            else:
                bundle = _fhir_bundle(store, trial, rows, "collection", fhir_output(ctx))
            click.echo(json.dumps(bundle, indent=2, ensure_ascii=False))
            return 0
    report = _report(trial, as_of, patients)
    if output_format == "json":
        from connector.report.json_out import render_json

        click.echo(render_json(report))
    elif output_format == "csv":
        from connector.report.csv_out import render_csv

        mapping = report_mapping(trial)
        ids = [c.id for c in mapping.criteria] if mapping is not None else None
        screened = {PatientResult.from_json(r["result"]).patient: r["as_of"] for r in rows}
        click.echo(render_csv(patients, ids, {"as_of": screened}), nl=False)
    else:
        _table(report, trial)
    return 0


def report_mapping(trial: str) -> Any:
    """The trial's mapping when it can be found (for criterion order and types), else None."""
    from connector.mapping import find_mapping, load_mapping

    try:
        return load_mapping(find_mapping(trial))
    except ConnectorError:
        return None


def _report(trial: str, as_of: str, patients: list[PatientResult]) -> ScreenReport:
    mapping = report_mapping(trial)
    name = mapping.file.name if mapping is not None and mapping.file else "unknown"
    return ScreenReport(trial, f"mappings/{name}" if mapping else name, mapping.criteria_hash if mapping else "",
                        date.fromisoformat(as_of), patients)


def _table(report: ScreenReport, trial: str) -> None:
    mapping = report_mapping(trial)
    if mapping is not None:
        from connector.report.table import render_table

        click.echo(render_table(report, mapping))
        return
    for patient in report.patients:
        click.echo(f"{patient.patient}  {patient.status.upper()}")
    click.echo(f"{len(report.patients)} patient(s)")


def fhir_output(ctx: click.Context) -> Any:
    """The site's identifier system and extension base for FHIR output (config [fhir_output])."""
    from connector.report.research_subjects import FhirOutput

    config = command_config(ctx)
    defaults = FhirOutput()
    return FhirOutput(config.output_identifier_system or defaults.identifier_system,
                      config.output_extension_base or defaults.extension_base)


def _fhir_bundle(store: Store, trial: str, rows: list[dict[str, Any]], bundle_type: str, output: Any,
                 with_study: bool = True, study_reference: str | None = None) -> dict[str, Any]:
    from connector.registry.fhir import research_study
    from connector.registry.versions import latest_trial_record
    from connector.report.research_subjects import minimal_study, subjects_bundle

    study = None
    if with_study:
        record = latest_trial_record(store, trial)
        study = research_study(record) if record else minimal_study(trial)
    return subjects_bundle(trial, study, ((PatientResult.from_json(r["result"]), r["as_of"]) for r in rows),
                           bundle_type, output, study_reference)


def _post(ctx: click.Context, store: Store, trial: str, rows: list[dict[str, Any]], server_arg: str | None,
          last: records.RunRow | None) -> dict[str, Any]:
    """Write the ResearchSubjects as a transaction; a ResearchStudy the tool did not create is
    referenced, never replaced. Returns the Bundle posted."""
    from connector.fhir.client import FhirClient
    from connector.report.research_subjects import existing_study

    config = command_config(ctx)
    target = server_arg or (last.source if last and last.source.startswith(("http://", "https://")) else None)
    if target is None:
        raise ConfigError("--post needs --server (the last run did not read a FHIR server)")
    named = next((name for name, s in config.servers.items() if s.url.rstrip("/") == target.rstrip("/")), None)
    output = fhir_output(ctx)
    client = FhirClient(config.server(named or target))
    try:
        found = existing_study(client, trial, output)
        theirs = found is not None and not found[1]
        if theirs:
            click.echo(f"note: {found[0]} exists on the server and was not created by trial-connector: "
                       "referenced, not replaced", err=True)
        bundle = _fhir_bundle(store, trial, rows, "transaction", output, with_study=not theirs,
                              study_reference=found[0] if found else None)
        client.http.post_json(client.base_url, bundle)
    finally:
        client.close()
    return bundle
