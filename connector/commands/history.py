"""`trial-connector history PATIENT_ID --trial NCT...`: a patient's status, run by run."""

from __future__ import annotations

import json

import click

from connector.commands.options import db_option, open_existing_command_store, trial_option
from connector.scheduled import records


@click.command()
@click.argument("patient_id")
@trial_option()
@click.option("--format", "output_format", type=click.Choice(["table", "json"]), default="table", show_default=True)
@db_option
@click.pass_context
def history(ctx: click.Context, patient_id: str, trial: str, output_format: str, db: str | None) -> int:
    """How a patient's pre-screen status changed from run to run."""
    patient_id = patient_id.removeprefix("Patient/")
    with open_existing_command_store(ctx, db) as store:
        rows = records.patient_history(store, trial, patient_id)
    if output_format == "json":
        click.echo(json.dumps({"trial": trial, "patient": f"Patient/{patient_id}", "runs": rows}, indent=2))
        return 0
    if not rows:
        click.echo(f"no stored results for Patient/{patient_id} in {trial}")
        return 0
    click.echo(f"Patient/{patient_id} in {trial}")
    for row in rows:
        change = "first result" if row["previous_status"] is None else (
            "unchanged" if row["previous_status"] == row["status"] else f"was {row['previous_status']}")
        click.echo(f"  run {row['run_id']:>4}  as of {row['as_of']}  {row['mode']:<11}  {row['status']:<9}  {change}")
    return 0
