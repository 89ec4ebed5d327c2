"""`trial-connector servers`: list configured FHIR servers, check one before a run, and print
the public key set to register for SMART Backend Services.

`check` answers the questions a hospital integration starts with: does the URL answer, which
FHIR version, which of the resource types and search parameters we use exist, is `batch`
and Bulk `$export` offered, and does our authentication work.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import click

from connector.commands.options import command_config, mapping_options, mapping_sources, trial_id
from connector.config import ServerConfig
from connector.errors import EXIT_DATA, EXIT_OK, EXIT_SOURCE, ConfigError, ConnectorError, SourceError
from connector.fhir.capabilities import Capabilities
from connector.fhir.scopes import missing_scopes, needed_scopes
from connector.mapping.catalog import load_resolved
from connector.mapping.model import Mapping

# The types the connector reads and the search parameters it may send for each.
RELEVANT: dict[str, tuple[str, ...]] = {
    "Patient": ("_id", "_lastUpdated"),
    "Observation": ("patient", "subject", "code", "date", "_lastUpdated"),
    "Condition": ("patient", "subject", "code", "_lastUpdated"),
    "MedicationStatement": ("patient", "subject", "code", "medication", "_lastUpdated"),
    "MedicationRequest": ("patient", "subject", "code", "medication", "_lastUpdated"),
    "MedicationAdministration": ("patient", "subject", "code", "medication", "_lastUpdated"),
    "Medication": ("_id", "code"),
}


@click.group()
def servers() -> None:
    """FHIR servers: list the configured ones, check what one supports and whether auth works."""


@servers.command("list")
@click.pass_obj
def list_servers(app: Any) -> int:
    """The servers named in the config file (no secrets shown)."""
    configured = app.config.servers
    if not configured:
        click.echo("no servers configured (add [servers.NAME] to the config file, or pass a URL)")
        return EXIT_OK
    for name, server in sorted(configured.items()):
        tls = "TLS verify off" if not server.verify_tls else ("CA " + server.ca_bundle if server.ca_bundle else "")
        click.echo(f"{name}  {server.url}  auth={server.auth.type}  {tls}".rstrip())
    return EXIT_OK


@servers.command("check")
@click.argument("name_or_url")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@mapping_options
@click.option("--trial", default=None, help="With narrow_observations = \"auto\": time narrowed vs plain Observation "
                                          "searches for this trial's needs on the first patients, and report the choice.")
@click.pass_context
def check(ctx: click.Context, name_or_url: str, fmt: str, mapping_files: tuple[Path, ...],
          mapping_dirs: tuple[Path, ...], trial: str | None) -> int:
    """Read /metadata, try the configured auth, compare the granted SMART scopes with the ones the
    mappings need (plus write scopes when `post_results = true`), and report what the server supports.

    Exit code 0 all good, 1 configuration problem, 2 server unreachable, auth refused or scopes missing.
    """
    server = command_config(ctx).server(name_or_url)
    sources = mapping_sources(ctx, mapping_files, mapping_dirs)
    needed = needed_scopes(mapped_types(sources), server.post_results)
    timed = load_resolved(trial_id(trial), sources)[1] if trial else None
    report = check_server(server, needed, timed)
    click.echo(json.dumps(report, indent=2) if fmt == "json" else report_text(report))
    if report["auth"]["status"] == "config error":
        return EXIT_DATA
    return EXIT_OK if report["auth"]["status"] == "ok" and report["read"]["status"] == "ok" else EXIT_SOURCE


def mapped_types(sources: Any) -> set[str]:
    """The FHIR types that the usable mappings (the first one found per trial) of `sources`
    (a connector.mapping.catalog.MappingSources) read."""
    from connector.mapping.catalog import available_mappings
    from connector.mapping.loader import load_mapping
    from connector.mapping.needs import data_needs

    types: set[str] = set()
    seen: set[str] = set()
    for entry in available_mappings(sources):
        if entry.problem or entry.trial in seen:
            continue
        seen.add(entry.trial or "")
        try:
            types |= data_needs(load_mapping(entry.path), date.today()).resource_types
        except ConnectorError as exc:
            click.echo(f"warning: {exc}", err=True)
    return types


@servers.command("jwks")
@click.argument("key_file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--kid", default=None, help="Key id (default: the RFC 7638 thumbprint, which the connector "
                                          "also uses when the config sets no key_id).")
def jwks(key_file: Path, kid: str | None) -> int:
    """Print the public JWK Set of a PEM private key, to register with the EHR's SMART client.

    Only the public half is printed. Use the same `kid` as `key_id` in the server's [auth] table.
    """
    from connector.fhir.auth import load_pem_key, public_jwks, warn_if_readable_by_others

    warn_if_readable_by_others(key_file)
    key = load_pem_key(key_file.read_bytes(), f"{key_file}")
    click.echo(json.dumps(public_jwks(key, kid), indent=2))
    return EXIT_OK


def check_server(server: ServerConfig, needed: list[str] | None = None, timed: Mapping | None = None) -> dict[str, Any]:
    """The check as data. Raises SourceError only when /metadata itself cannot be reached.

    `timed`: with narrow_observations = "auto", the mapping whose needs are fetched for the first
    patients, narrowed and plain, to report which the client keeps.

    `needed`: the SMART scopes the mappings need; a token that does not grant them all fails
    the auth check naming the missing ones (each patient would otherwise fail with 403)."""
    from connector.fhir.auth import NoAuth, SmartBackendAuth, build_auth
    from connector.fhir.client import FhirClient

    auth_report: dict[str, Any] = {"type": server.auth.type}
    try:
        auth = build_auth(server)
    except ConfigError as exc:
        auth, auth_report = NoAuth(), {**auth_report, "status": "config error", "detail": str(exc)}
    client = FhirClient(server, auth=auth)
    try:
        caps = client.capabilities()
        report: dict[str, Any] = {"server": server.name, "url": server.url, **capability_report(caps)}
        if "status" not in auth_report:
            try:
                auth.authorization(client.http)
                auth_report["status"] = "ok"
                if isinstance(auth, SmartBackendAuth):
                    granted = auth.granted_scope or auth.scope
                    auth_report.update(client_id=auth.client_id, token_url=auth.token_url, algorithm=auth.algorithm,
                                       scope=granted, expires_in=auth.expires_in)
                    missing = missing_scopes(needed or [], granted)
                    if missing:
                        auth_report.update(status="failed", missing_scopes=missing,
                                           detail=f"the token does not grant {' '.join(missing)}, which the "
                                                  "mappings need: ask for them in [auth] scope and on the EHR")
            except (SourceError, ConfigError) as exc:
                auth_report.update(status="failed", detail=str(exc))
        report["auth"] = auth_report
        report["needed_scopes"] = needed or []
        report["read"] = _try_read(client) if auth_report["status"] == "ok" else {"status": "skipped"}
        if timed is not None and report["read"]["status"] == "ok":
            _measure_narrowing(client, timed)
        report["observation_searches"] = client.narrowing.describe()
        report["requests"] = client.stats.requests
        return report
    finally:
        client.close()


def _try_read(client: Any) -> dict[str, Any]:
    """One small authorised search, the way a run would start (scopes are checked here)."""
    try:
        bundle = client.http.get_json("Patient", params={"_summary": "count"})
    except SourceError as exc:
        return {"status": "failed", "detail": str(exc)}
    total = bundle.get("total") if isinstance(bundle, dict) else None
    return {"status": "ok", "patients": total if isinstance(total, int) else None}


def _measure_narrowing(client: Any, mapping: Mapping) -> None:
    """Fetch the first patients as a run of the mapping's trial would, alternately narrowed and plain (timed)."""
    from connector.fhir.narrowing import SAMPLES
    from connector.mapping.needs import data_needs

    if client.narrowing.pinned is not None:
        return
    needs = data_needs(mapping, date.today())
    bundle = client.http.get_json("Patient", params={"_count": str(2 * SAMPLES), "_elements": "id"})
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    ids = [e["resource"]["id"] for e in entries or [] if isinstance(e, dict) and isinstance(e.get("resource"), dict)
           and isinstance(e["resource"].get("id"), str)]
    for pid in (ids * 2 * SAMPLES)[: 2 * SAMPLES]:  # a server with few patients: some are timed twice
        client.patient_resources(pid, needs)


def capability_report(caps: Capabilities) -> dict[str, Any]:
    types: dict[str, Any] = {}
    for rtype, params in RELEVANT.items():
        if not caps.supports_type(rtype):
            types[rtype] = None
            continue
        listed = caps.resources.get(rtype, frozenset())
        types[rtype] = {"search_params": [p for p in params if p in listed] if listed else "not listed",
                        "include_medication": caps.supports_include(rtype, f"{rtype}:medication")
                        if rtype.startswith("Medication") and rtype != "Medication" else None}
    wanted = {"MedicationStatement", "MedicationRequest", "MedicationAdministration"}
    return {
        "capability_statement": caps.known,
        "fhir_version": caps.fhir_version,
        "software": caps.software,
        "types": types,
        "medication_history_from": caps.medication_types(wanted),
        "batch": caps.batch,
        "bulk_export": caps.bulk_export,
        "security_services": list(caps.security_services),
        "advertised_token_url": caps.token_url,
    }


def report_text(report: dict[str, Any]) -> str:
    yes = {True: "yes", False: "no"}
    lines = [f"server: {report['server']} ({report['url']})"]
    if not report["capability_statement"]:
        lines.append("CapabilityStatement: not available (common FHIR features assumed)")
    lines.append(f"FHIR version: {report['fhir_version'] or 'unknown'}"
                 + (f" ({report['software']})" if report["software"] else ""))
    lines.append("resource types we read:")
    for rtype, info in report["types"].items():
        if info is None:
            lines.append(f"  {rtype:<25} not supported")
            continue
        params = info["search_params"]
        shown = ", ".join(params) if isinstance(params, list) else params
        include_ok = info["include_medication"]
        include = "" if include_ok is None else f"; _include medication: {yes[include_ok]}"
        lines.append(f"  {rtype:<25} search: {shown or 'none of ours'}{include}")
    lines.append(f"medication history from: {', '.join(report['medication_history_from']) or 'nothing'}")
    lines.append(f"batch: {yes[report['batch']]}")
    lines.append(f"bulk export: {', '.join(report['bulk_export']) or 'no'}")
    if report["security_services"]:
        lines.append(f"security: {', '.join(report['security_services'])}")
    auth = report["auth"]
    detail = auth.get("detail")
    if auth["status"] == "ok" and auth.get("client_id"):
        detail = (f"client {auth['client_id']}, {auth['algorithm']}, token from {auth['token_url']}, "
                  f"expires in {auth['expires_in']:.0f} s, scope {auth['scope']}")
    if report.get("needed_scopes"):
        lines.append(f"SMART scopes the mappings need: {' '.join(report['needed_scopes'])}")
    lines.append(f"auth ({auth['type']}): {auth['status']}" + (f" - {detail}" if detail else ""))
    read = report["read"]
    count = read.get("patients")
    read_detail = read.get("detail") or (f"{count} Patient resources on the server" if count is not None else "")
    lines.append(f"read access: {read['status']}" + (f" - {read_detail}" if read_detail else ""))
    if "observation_searches" in report:
        lines.append(f"Observation searches: {report['observation_searches']}")
    return "\n".join(lines)
