"""API v2 study JSON -> the project's trial record (snake_case, `schemas/trial.schema.json`).

The record keeps registry codes as they are (`PHASE2`, `RECRUITING`), ages both as the text
the registry shows and in years, partial dates as given (`2008-09`), the eligibility text
verbatim with its sha256 (the same definition as a mapping's `criteria_hash`), and the raw
`protocolSection` so nothing the registry said is lost.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from connector.errors import ConnectorError
from connector.mapping.hashing import criteria_hash
from connector.registry.eligibility import split_criteria
from connector.registry.ids import InvalidNctId, normalise_nct_id
from connector.registry.schemas import study_errors, summarise, trial_record_errors

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Year|Month|Week|Day|Hour|Minute)s?\s*$", re.IGNORECASE)
_DAYS_PER_YEAR = 365.25
_YEARS_PER_UNIT = {
    "year": 1.0,
    "month": 1.0 / 12.0,
    "week": 7.0 / _DAYS_PER_YEAR,
    "day": 1.0 / _DAYS_PER_YEAR,
    "hour": 1.0 / (_DAYS_PER_YEAR * 24),
    "minute": 1.0 / (_DAYS_PER_YEAR * 24 * 60),
}


class InvalidStudy(ConnectorError):
    """A study that fails the API's Study schema or ours; `errors` are `$.path: message` lines."""

    def __init__(self, label: str, schema: str, errors: list[str]):
        super().__init__(f"{label}: does not match {schema}: {summarise(errors)}")
        self.label = label
        self.errors = errors


def age_in_years(text: str | None) -> int | float | None:
    """`"18 Years"` -> 18, `"6 Months"` -> 0.5, `"28 Days"` -> 0.076660; None for no limit."""
    if not text:
        return None
    match = _AGE.match(text)
    if not match:
        return None
    value = float(match.group(1)) * _YEARS_PER_UNIT[match.group(2).lower()]
    value = round(value, 6)
    return int(value) if value.is_integer() else value


def study_label(study: Any) -> str:
    """The study's NCT id for messages, or a placeholder when it has none."""
    try:
        nct = study["protocolSection"]["identificationModule"]["nctId"]
        return nct if isinstance(nct, str) else "study without nctId"
    except (KeyError, TypeError):
        return "study without nctId"


def validate_study(study: Any, label: str | None = None) -> None:
    """Raise InvalidStudy (with JSON paths) unless `study` matches the API's Study schema."""
    errors = study_errors(study)
    if not errors and not isinstance(study, Mapping):
        errors = ["$: a study must be a JSON object"]
    if not errors:
        errors = _nct_id_errors(study)
    if errors:
        raise InvalidStudy(label or study_label(study), "the ClinicalTrials.gov API Study schema", errors)


def _nct_id_errors(study: Mapping[str, Any]) -> list[str]:
    """The API schema makes every section optional, but a record without its id is unusable:
    name the missing part (not the placeholder label) so the user knows what to fix."""
    section = study.get("protocolSection")
    if not isinstance(section, Mapping):
        return ["$.protocolSection: missing (a study record needs it)"]
    ident = section.get("identificationModule")
    nct = ident.get("nctId") if isinstance(ident, Mapping) else None
    if nct is None:
        return ["$.protocolSection.identificationModule.nctId: missing"]
    try:
        normalise_nct_id(nct)
    except InvalidNctId:
        return [f"$.protocolSection.identificationModule.nctId: {nct!r} is not an NCT id"]
    return []


def normalise_study(study: Mapping[str, Any], *, validate: bool = True) -> dict[str, Any]:
    """The trial record of one API study; validates input and output unless told not to."""
    if validate:
        validate_study(study)
    record = _build(study)
    if validate:
        errors = trial_record_errors(record)
        if errors:
            raise InvalidStudy(record["nct_id"], "schemas/trial.schema.json", errors)
    return record


def _build(study: Mapping[str, Any]) -> dict[str, Any]:
    ps = study.get("protocolSection") or {}
    ident = ps.get("identificationModule") or {}
    status = ps.get("statusModule") or {}
    design = ps.get("designModule") or {}
    conditions = ps.get("conditionsModule") or {}
    sponsor = (ps.get("sponsorCollaboratorsModule") or {}).get("leadSponsor")
    eligibility = ps.get("eligibilityModule") or {}
    arms_module = ps.get("armsInterventionsModule") or {}
    contacts = ps.get("contactsLocationsModule") or {}
    text = eligibility.get("eligibilityCriteria")
    split = split_criteria(text)
    start = status.get("startDateStruct") or {}
    primary = status.get("primaryCompletionDateStruct") or {}
    completion = status.get("completionDateStruct") or {}
    return {
        "nct_id": normalise_nct_id(ident["nctId"]),
        "nct_id_aliases": list(ident.get("nctIdAliases") or []),
        "brief_title": ident.get("briefTitle"),
        "official_title": ident.get("officialTitle"),
        "acronym": ident.get("acronym"),
        "overall_status": status.get("overallStatus"),
        "why_stopped": status.get("whyStopped"),
        "phases": list(design.get("phases") or []),
        "study_type": design.get("studyType"),
        "conditions": list(conditions.get("conditions") or []),
        "keywords": list(conditions.get("keywords") or []),
        "sponsor": {"name": sponsor.get("name"), "class": sponsor.get("class")} if sponsor else None,
        "minimum_age": eligibility.get("minimumAge"),
        "minimum_age_years": age_in_years(eligibility.get("minimumAge")),
        "maximum_age": eligibility.get("maximumAge"),
        "maximum_age_years": age_in_years(eligibility.get("maximumAge")),
        "sex": eligibility.get("sex"),
        "healthy_volunteers": eligibility.get("healthyVolunteers"),
        "std_ages": list(eligibility.get("stdAges") or []),
        "eligibility_criteria": text,
        "eligibility_criteria_sha256": criteria_hash(text) if text is not None else None,
        "inclusion_criteria": split.inclusion,
        "exclusion_criteria": split.exclusion,
        "arms": [_arm(a) for a in arms_module.get("armGroups") or []],
        "interventions": [_intervention(i) for i in arms_module.get("interventions") or []],
        "locations": [_location(loc) for loc in contacts.get("locations") or []],
        "start_date": start.get("date"),
        "start_date_type": start.get("type"),
        "primary_completion_date": primary.get("date"),
        "primary_completion_date_type": primary.get("type"),
        "completion_date": completion.get("date"),
        "completion_date_type": completion.get("type"),
        "last_update_posted": (status.get("lastUpdatePostDateStruct") or {}).get("date"),
        "has_results": bool(study.get("hasResults")) or "resultsSection" in study,
        "protocol_section": ps,
    }


def _arm(arm: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "label": arm.get("label"),
        "type": arm.get("type"),
        "description": arm.get("description"),
        "intervention_names": list(arm.get("interventionNames") or []),
    }


def _intervention(item: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "type": item.get("type"),
        "name": item.get("name"),
        "description": item.get("description"),
        "arm_labels": list(item.get("armGroupLabels") or []),
        "other_names": list(item.get("otherNames") or []),
    }


def _location(loc: Mapping[str, Any]) -> dict[str, Any]:
    geo = loc.get("geoPoint")
    return {
        "facility": loc.get("facility"),
        "city": loc.get("city"),
        "state": loc.get("state"),
        "zip": loc.get("zip"),
        "country": loc.get("country"),
        "status": loc.get("status"),
        "geo": {"lat": geo["lat"], "lon": geo["lon"]} if geo else None,
    }
