"""`trial-connector fetch`: pull one patient and show the facts the criteria would read.

The quickest way to check that a server, its auth and the parsing work end to end, and (with
-v) how many HTTP requests one patient costs. The output shows age instead of the birth date
and no names or identifiers, which the facts model does not hold anyway.
"""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass
from datetime import date
from pathlib import Path
from typing import Any

import click

from connector.errors import ConnectorError
from connector.facts import Coding, PatientFacts, Quantity
from connector.needs import EVERYTHING
from connector.parse import patient_facts


@click.command()
@click.option("--source", required=True, help="FHIR base URL, a configured server name, or a local file/folder.")
@click.option("--patient", "patient_id", required=True, help="Patient resource id (not an MRN).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_obj
def fetch(app: Any, source: str, patient_id: str, fmt: str) -> int:
    """Fetch one patient's data and print its facts grouped by type, with counts."""
    if Path(source).exists():
        facts = _from_files(source, patient_id, app)
    else:
        facts = _from_server(source, patient_id, app)
    if fmt == "json":
        click.echo(json.dumps(facts_json(facts), indent=2))
    else:
        from connector.report.console import Console

        Console.detect().echo(facts_table(facts))  # displays from the chart may not fit the console's encoding
    return 0


def _from_server(source: str, patient_id: str, app: Any) -> PatientFacts:
    from connector.fhir.client import FhirClient  # the HTTP stack only when a server is used

    client = FhirClient(app.config.server(source))
    try:
        client.connect()
        before = client.stats.snapshot()
        resources = client.patient_resources(patient_id, EVERYTHING)
        used = client.stats.requests - before.requests
        if app.verbosity >= 1:
            setup = before.requests
            click.echo(f"HTTP requests for Patient/{patient_id}: {used} "
                       f"({(client.stats.bytes - before.bytes) / 1024:.1f} KiB); "
                       f"{setup} more to connect (/metadata, auth)", err=True)
    finally:
        client.close()
    return patient_facts(patient_id, resources)


def _from_files(source: str, patient_id: str, app: Any) -> PatientFacts:
    from connector.sources import open_source

    for _, result in open_source(source, app.config).iter_facts(EVERYTHING, [patient_id]):
        if isinstance(result, ConnectorError):
            raise result
        return result
    raise ConnectorError(f"Patient/{patient_id} not found in {source}")  # pragma: no cover


def age_in_years(birth: date | None, today: date | None = None) -> int | None:
    if birth is None:
        return None
    today = today or date.today()
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def _plain(value: Any) -> Any:
    if is_dataclass(value):
        return {k: _plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, date):
        return value.isoformat()
    return value


def facts_json(facts: PatientFacts) -> dict[str, Any]:
    """The facts as JSON (birth date replaced by age in years)."""
    return {
        "patient": facts.reference,
        "version": facts.source.version if facts.source else None,
        "gender": facts.gender,
        "age": age_in_years(facts.birth_date),
        "deceased": facts.deceased,
        "last_updated": facts.last_updated,
        "counts": {"observations": len(facts.observations), "conditions": len(facts.conditions),
                   "medications": len(facts.medications), "errors": len(facts.errors)},
        "observations": _plain(facts.observations),
        "conditions": _plain(facts.conditions),
        "medications": _plain(facts.medications),
        "errors": list(facts.errors),
    }


def _code(codes: tuple[Coding, ...]) -> str:
    if not codes:
        return "-"
    first = codes[0]
    text = f"{_system_name(first.system)}|{first.code}" if first.system else str(first.code)
    return f"{text} {first.display}" if first.display else text


def _system_name(system: str) -> str:
    known = {"http://loinc.org": "LOINC", "http://snomed.info/sct": "SNOMED",
             "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm", "http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM",
             "http://hl7.org/fhir/sid/icd-10": "ICD-10"}
    return known.get(system, system)


def _quantity(q: Quantity | None) -> str:
    if q is None:
        return ""
    value = f"{q.value:.4g}"
    return f"{q.comparator or ''}{value} {q.unit or ''}".strip()


def _when(d: date | None) -> str:
    return d.isoformat() if d else "----------"


def facts_table(facts: PatientFacts) -> str:
    """A human-readable summary grouped by type, newest first, with counts."""
    age = age_in_years(facts.birth_date)
    head = [facts.reference]
    if facts.gender:
        head.append(facts.gender)
    if age is not None:
        head.append(f"{age} years")
    if facts.deceased:
        head.append("deceased")
    if facts.source and facts.source.version:
        head.append(f"version {facts.source.version}")
    lines = ["  ".join(head)]

    lines.append(f"Observations: {len(facts.observations)}")
    for o in sorted(facts.observations, key=lambda o: o.effective or date.min, reverse=True):
        value = _quantity(o.quantity) or (_code(o.value_codes) if o.value_codes else o.value_text or "")
        lines.append(f"  {_when(o.effective)}  {_code(o.codes)}  {value}  [{o.status or '?'}]  {o.source.reference}")
    lines.append(f"Conditions: {len(facts.conditions)}")
    for c in sorted(facts.conditions, key=lambda c: c.onset or c.recorded or date.min, reverse=True):
        status = "/".join(s for s in (c.clinical_status, c.verification_status) if s) or "?"
        lines.append(f"  {_when(c.onset or c.recorded)}  {_code(c.codes)}  [{status}]  {c.source.reference}")
    lines.append(f"Medications: {len(facts.medications)}")
    for m in sorted(facts.medications, key=lambda m: m.effective or date.min, reverse=True):
        name = _code(m.codes) if m.codes else (m.names[0] if m.names else "-")
        dose = f"  {_quantity(m.dose)}" if m.dose else ""
        lines.append(f"  {_when(m.effective)}  {m.kind}  {name}{dose}  [{m.status or '?'}]  {m.source.reference}")
    lines.append(f"Unreadable resources: {len(facts.errors)}")
    lines.extend(f"  {error}" for error in facts.errors)
    return "\n".join(lines)
