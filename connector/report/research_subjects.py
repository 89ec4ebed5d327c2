"""Stored pre-screen results as an R4 Bundle of `ResearchSubject`, for EHRs and trial systems.

Status mapping: candidate -> `candidate`, possible -> `potential-candidate`, excluded ->
`ineligible`. Each ResearchSubject points at `Patient/<id>` and at `ResearchStudy/<NCT id>`
(the id the registry export uses); the ResearchStudy itself is in the Bundle too (from the
stored registry record when there is one, else a minimal one naming the NCT id).

Evidence is kept as one extension per criterion (EVIDENCE_EXTENSION) with sub-extensions
`criterion` (valueString: the mapping's criterion id), `outcome` (valueCode: met | not_met |
unknown), `reason` (valueCode: see connector.results.REASONS) and one `evidence`
(valueReference) per fact behind the outcome, whose `display` holds the value as recorded.
Extensions rather than contained resources: evidence only references the patient's own
records, so nothing clinical is copied into the Bundle.

ResearchSubject ids are stable (a hash of trial and patient), so posting the Bundle again as a
`transaction` (PUT) updates the same resources instead of adding new ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from connector.registry.fhir import NCT_IDENTIFIER_SYSTEM
from connector.results import CANDIDATE, EXCLUDED, POSSIBLE, PatientResult

SUBJECT_STATUS = {CANDIDATE: "candidate", POSSIBLE: "potential-candidate", EXCLUDED: "ineligible"}
EVIDENCE_EXTENSION = "https://trial-connector.example/fhir/StructureDefinition/prescreen-criterion"
SCREENED_EXTENSION = "https://trial-connector.example/fhir/StructureDefinition/prescreen-as-of"
SUBJECT_IDENTIFIER_SYSTEM = "https://trial-connector.example/fhir/prescreen"


def subject_id(trial: str, patient_id: str) -> str:
    return "tc-" + hashlib.sha256(f"{trial}|{patient_id}".encode()).hexdigest()[:40]


def research_subject(trial: str, result: PatientResult, as_of: str) -> dict[str, Any]:
    return {
        "resourceType": "ResearchSubject",
        "id": subject_id(trial, result.patient_id),
        "identifier": [{"system": SUBJECT_IDENTIFIER_SYSTEM, "value": f"{trial}/{result.patient_id}"}],
        "status": SUBJECT_STATUS[result.status],
        "study": {"reference": f"ResearchStudy/{trial}"},
        "individual": {"reference": f"Patient/{result.patient_id}"},
        "extension": [{"url": SCREENED_EXTENSION, "valueDate": as_of},
                      *(_criterion_extension(c) for c in result.criteria)],
    }


def _criterion_extension(criterion: Any) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [
        {"url": "criterion", "valueString": criterion.id},
        {"url": "outcome", "valueCode": criterion.outcome},
        {"url": "reason", "valueCode": criterion.reason},
    ]
    for evidence in criterion.evidence:
        shown = " ".join(str(x) for x in (evidence.value, evidence.unit) if x is not None)
        when = f" ({evidence.date})" if evidence.date else ""
        reference: dict[str, Any] = {"reference": evidence.reference}
        if shown or when:
            reference["display"] = (shown + when).strip()
        parts.append({"url": "evidence", "valueReference": reference})
    return {"url": EVIDENCE_EXTENSION, "extension": parts}


def minimal_study(trial: str) -> dict[str, Any]:
    """A ResearchStudy naming the trial when no registry record is stored (status unknown to us)."""
    return {"resourceType": "ResearchStudy", "id": trial, "status": "active",
            "identifier": [{"system": NCT_IDENTIFIER_SYSTEM, "value": trial}]}


def subjects_bundle(trial: str, study: dict[str, Any], rows: Iterable[tuple[PatientResult, str]],
                    bundle_type: str = "collection") -> dict[str, Any]:
    """A Bundle (collection, or transaction of PUTs) of the study and one ResearchSubject per result;
    validated with fhir.resources.R4B so the server gets nothing malformed."""
    resources = [study] + [research_subject(trial, result, as_of) for result, as_of in rows]
    entries = []
    for resource in resources:
        entry: dict[str, Any] = {"resource": resource}  # no fullUrl: ids are relative to the target server
        if bundle_type == "transaction":
            entry["request"] = {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}
        entries.append(entry)
    bundle = {"resourceType": "Bundle", "type": bundle_type, "entry": entries}
    Bundle.model_validate(bundle)
    return bundle
