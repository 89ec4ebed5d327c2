"""Human-readable views of stored trials: `registry show --format table` and `registry changes`."""

from __future__ import annotations

import textwrap
from typing import Any

from connector.registry.diff import render_change
from connector.registry.versions import TrialState, TrialVersion

_WIDTH = 100


def trial_table(record: dict[str, Any], state: TrialState | None = None) -> str:
    """A compact summary of one record: key facts, ages, criteria counts, arms, site countries."""
    sponsor = (record.get("sponsor") or {}).get("name")
    ages = f"{record.get('minimum_age') or 'no minimum'} to {record.get('maximum_age') or 'no maximum'}"
    countries = sorted({loc["country"] for loc in record.get("locations") or [] if loc.get("country")})
    rows = [
        ("trial", record["nct_id"]),
        ("title", record.get("brief_title")),
        ("status", record.get("overall_status")),
        ("phases", ", ".join(record.get("phases") or []) or None),
        ("study type", record.get("study_type")),
        ("sponsor", sponsor),
        ("conditions", "; ".join(record.get("conditions") or []) or None),
        ("ages", ages),
        ("sex", record.get("sex")),
        ("healthy volunteers", _yes_no(record.get("healthy_volunteers"))),
        ("criteria", f"{len(record.get('inclusion_criteria') or [])} inclusion, "
                     f"{len(record.get('exclusion_criteria') or [])} exclusion"),
        ("criteria sha256", record.get("eligibility_criteria_sha256")),
        ("start", _dated(record.get("start_date"), record.get("start_date_type"))),
        ("primary completion",
         _dated(record.get("primary_completion_date"), record.get("primary_completion_date_type"))),
        ("last update posted", record.get("last_update_posted")),
        ("has results", _yes_no(record.get("has_results"))),
        ("sites", f"{len(record.get('locations') or [])} in {', '.join(countries)}" if countries else None),
    ]
    if state is not None:
        rows.append(("stored version", f"{state.latest_version} (checked {state.last_checked_at[:19]}Z)"))
    lines = [_row(k, v) for k, v in rows if v not in (None, "")]
    for arm in record.get("arms") or []:
        lines.append(_row("arm", f"{arm.get('label')} [{arm.get('type') or '-'}]"))
    return "\n".join(lines)


def changes_text(nct_id: str, versions: list[TrialVersion]) -> str:
    """Each stored version, and under every version after the first its changed fields."""
    if not versions:
        return f"{nct_id}: no stored versions"
    lines = [nct_id]
    for version in versions:
        lines.append(f"  version {version.version}  stored {version.stored_at[:19]}Z  from {version.source}")
        if version.version > 1:
            lines.extend(f"    {render_change(change)}" for change in version.diff)
    return "\n".join(lines)


def _row(key: str, value: Any) -> str:
    text = str(value)
    wrapped = textwrap.wrap(text, _WIDTH - 22) or [""]
    return "\n".join(f"{key if i == 0 else '':<20}  {part}" for i, part in enumerate(wrapped))


def _yes_no(value: Any) -> str | None:
    return None if value is None else ("yes" if value else "no")


def _dated(value: str | None, kind: str | None) -> str | None:
    if not value:
        return None
    return f"{value} ({kind.lower()})" if kind else value
