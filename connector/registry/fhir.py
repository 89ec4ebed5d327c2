"""A trial record as an R4 `ResearchStudy`, validated with fhir.resources.R4B.

The resource id is the NCT id, so ResearchSubject resources written by a run can point at
`ResearchStudy/NCT05773274`. Eligibility goes into a contained `Group` (`enrollment`): one
characteristic per inclusion/exclusion item (`exclude` true for exclusion), plus age range and
sex. The registry's own status code is kept in an extension because FHIR's status value set is
coarser.
"""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.researchstudy import ResearchStudy

from connector.errors import ConnectorError

NCT_IDENTIFIER_SYSTEM = "https://clinicaltrials.gov"
CTGOV_STATUS_EXTENSION = "urn:trial-connector:StructureDefinition/ctgov-overall-status"
PHASE_SYSTEM = "http://terminology.hl7.org/CodeSystem/research-study-phase"
GENDER_SYSTEM = "http://hl7.org/fhir/administrative-gender"
UCUM = "http://unitsofmeasure.org"

_STATUS = {
    "RECRUITING": "active",
    "ENROLLING_BY_INVITATION": "active",
    "NOT_YET_RECRUITING": "approved",
    "ACTIVE_NOT_RECRUITING": "closed-to-accrual",
    "SUSPENDED": "temporarily-closed-to-accrual",
    "TERMINATED": "administratively-completed",
    "COMPLETED": "completed",
    "WITHDRAWN": "withdrawn",
    "AVAILABLE": "active",
    "NO_LONGER_AVAILABLE": "closed-to-accrual",
    "TEMPORARILY_NOT_AVAILABLE": "temporarily-closed-to-accrual",
    "APPROVED_FOR_MARKETING": "completed",
    "WITHHELD": "in-review",
}
_PHASE = {
    ("NA",): "n-a",
    ("EARLY_PHASE1",): "early-phase-1",
    ("PHASE1",): "phase-1",
    ("PHASE1", "PHASE2"): "phase-1-phase-2",
    ("PHASE2",): "phase-2",
    ("PHASE2", "PHASE3"): "phase-2-phase-3",
    ("PHASE3",): "phase-3",
    ("PHASE4",): "phase-4",
}


def fhir_status(record: dict[str, Any]) -> str:
    """FHIR status; UNKNOWN (not verified for 2 years) falls back to the last known status."""
    code = record.get("overall_status")
    if code == "UNKNOWN" or code is None:
        last = (record.get("protocol_section") or {}).get("statusModule", {}).get("lastKnownStatus")
        return _STATUS.get(last or "", "active")
    return _STATUS.get(code, "active")


def research_study(record: dict[str, Any]) -> dict[str, Any]:
    """The ResearchStudy JSON of a trial record; raises ConnectorError if FHIR validation fails."""
    nct_id = record["nct_id"]
    study: dict[str, Any] = {
        "resourceType": "ResearchStudy",
        "id": nct_id,
        "identifier": [{"system": NCT_IDENTIFIER_SYSTEM, "value": nct_id}],
        "status": fhir_status(record),
    }
    if record.get("overall_status"):
        study["extension"] = [{"url": CTGOV_STATUS_EXTENSION, "valueCode": record["overall_status"]}]
    if record.get("brief_title"):
        study["title"] = record["brief_title"]
    summary = ((record.get("protocol_section") or {}).get("descriptionModule") or {}).get("briefSummary")
    if summary or record.get("official_title"):
        study["description"] = summary or record["official_title"]
    phase = _PHASE.get(tuple(record.get("phases") or ()))
    if phase:
        study["phase"] = {"coding": [{"system": PHASE_SYSTEM, "code": phase}]}
    if record.get("conditions"):
        study["condition"] = [{"text": c} for c in record["conditions"]]
    if record.get("keywords"):
        study["keyword"] = [{"text": k} for k in record["keywords"]]
    countries = sorted({loc["country"] for loc in record.get("locations") or [] if loc.get("country")})
    if countries:
        study["location"] = [{"text": c} for c in countries]
    if (record.get("sponsor") or {}).get("name"):
        study["sponsor"] = {"display": record["sponsor"]["name"]}
    period = {k: v for k, v in (("start", record.get("start_date")),
                                ("end", record.get("completion_date") or record.get("primary_completion_date"))) if v}
    if period:
        study["period"] = period
    if record.get("why_stopped"):
        study["reasonStopped"] = {"text": record["why_stopped"]}
    arms = [_arm(a) for a in record.get("arms") or [] if a.get("label")]
    if arms:
        study["arm"] = arms
    group = _eligibility_group(record)
    if group is not None:
        study["contained"] = [group]
        study["enrollment"] = [{"reference": "#eligibility"}]
    try:
        ResearchStudy.model_validate(study)
    except Exception as exc:  # pydantic ValidationError: say which trial
        raise ConnectorError(f"{nct_id}: cannot build a valid FHIR ResearchStudy: {exc}") from None
    return study


def _arm(arm: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": arm["label"]}
    if arm.get("type"):
        out["type"] = {"text": arm["type"]}
    if arm.get("description"):
        out["description"] = arm["description"]
    return out


def _eligibility_group(record: dict[str, Any]) -> dict[str, Any] | None:
    characteristics: list[dict[str, Any]] = []
    low, high = record.get("minimum_age_years"), record.get("maximum_age_years")
    if low is not None or high is not None:
        age_range = {k: {"value": v, "unit": "a", "system": UCUM, "code": "a"}
                     for k, v in (("low", low), ("high", high)) if v is not None}
        characteristics.append({"code": {"text": "age"}, "valueRange": age_range, "exclude": False})
    if record.get("sex") in ("FEMALE", "MALE"):
        code = record["sex"].lower()
        characteristics.append({"code": {"text": "sex"}, "exclude": False,
                                "valueCodeableConcept": {"coding": [{"system": GENDER_SYSTEM, "code": code}]}})
    sections = ((False, record.get("inclusion_criteria") or []), (True, record.get("exclusion_criteria") or []))
    for exclude, items in sections:
        label = "exclusion criterion" if exclude else "inclusion criterion"
        characteristics.extend(
            {"code": {"text": label}, "valueCodeableConcept": {"text": item}, "exclude": exclude} for item in items
        )
    if not characteristics:
        return None
    return {"resourceType": "Group", "id": "eligibility", "type": "person", "actual": False,
            "name": f"Eligibility criteria of {record['nct_id']}", "characteristic": characteristics}
