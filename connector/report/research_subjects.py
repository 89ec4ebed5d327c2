"""Stored pre-screen results as an R4 Bundle of `ResearchSubject`, for EHRs and trial systems.

Status mapping: candidate -> `candidate`, possible -> `potential-candidate`, excluded ->
`ineligible`. Each ResearchSubject points at `Patient/<id>` and at `ResearchStudy/<NCT id>`
(the id the registry export uses); the ResearchStudy itself is in the Bundle too (from the
stored registry record when there is one, else a minimal one naming the NCT id).

Evidence is kept as one extension per criterion (`FhirOutput.evidence_extension`) with sub-extensions
`criterion` (valueString: the mapping's criterion id), `outcome` (valueCode: met | not_met |
unknown), `reason` (valueCode: see connector.results.REASONS) and one `evidence`
(valueReference) per fact behind the outcome, whose `display` holds the value as recorded.
Extensions rather than contained resources: evidence only references the patient's own
records, so nothing clinical is copied into the Bundle.

ResearchSubject ids are stable (a hash of trial and patient), so posting the Bundle again as a
`transaction` (PUT) updates the same resources instead of adding new ones.

Posting never replaces a ResearchStudy the tool did not create (`existing_study`): one already
on the server (as `ResearchStudy/<NCT id>` or found by its NCT identifier) is only referenced;
ours, tagged `OURS_TAG`, is written only where none exists. The identifier system and the
extension URLs are the site's own (`[fhir_output]` in the config); the defaults are URNs, not
a made-up web domain.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from connector.registry.fhir import NCT_IDENTIFIER_SYSTEM
from connector.results import CANDIDATE, EXCLUDED, POSSIBLE, PatientResult

log = logging.getLogger(__name__)

SUBJECT_STATUS = {CANDIDATE: "candidate", POSSIBLE: "potential-candidate", EXCLUDED: "ineligible"}
DEFAULT_IDENTIFIER_SYSTEM = "urn:trial-connector:prescreen"
DEFAULT_EXTENSION_BASE = "urn:trial-connector:StructureDefinition"
OURS_TAG = "created-by-trial-connector"


@dataclass(frozen=True)
class FhirOutput:
    """The site's naming for what the tool writes: ResearchSubject identifiers and extensions."""

    identifier_system: str = DEFAULT_IDENTIFIER_SYSTEM
    extension_base: str = DEFAULT_EXTENSION_BASE

    def extension(self, name: str) -> str:
        return f"{self.extension_base.rstrip('/')}/{name}"

    @property
    def evidence_extension(self) -> str:
        return self.extension("prescreen-criterion")

    @property
    def screened_extension(self) -> str:
        return self.extension("prescreen-as-of")

    @property
    def ours_tag(self) -> dict[str, str]:
        return {"system": self.identifier_system, "code": OURS_TAG}


def subject_id(trial: str, patient_id: str) -> str:
    return "tc-" + hashlib.sha256(f"{trial}|{patient_id}".encode()).hexdigest()[:40]


def research_subject(trial: str, result: PatientResult, as_of: str, output: FhirOutput = FhirOutput(),
                     study_reference: str | None = None) -> dict[str, Any]:
    return {
        "resourceType": "ResearchSubject",
        "id": subject_id(trial, result.patient_id),
        "meta": {"tag": [output.ours_tag]},
        "identifier": [{"system": output.identifier_system, "value": f"{trial}/{result.patient_id}"}],
        "status": SUBJECT_STATUS[result.status],
        "study": {"reference": study_reference or f"ResearchStudy/{trial}"},
        "individual": {"reference": f"Patient/{result.patient_id}"},
        "extension": [{"url": output.screened_extension, "valueDate": as_of},
                      *(_criterion_extension(c, output) for c in result.criteria)],
    }


def _criterion_extension(criterion: Any, output: FhirOutput) -> dict[str, Any]:
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
    return {"url": output.evidence_extension, "extension": parts}


def minimal_study(trial: str) -> dict[str, Any]:
    """A ResearchStudy naming the trial when no registry record is stored (status unknown to us)."""
    return {"resourceType": "ResearchStudy", "id": trial, "status": "active",
            "identifier": [{"system": NCT_IDENTIFIER_SYSTEM, "value": trial}]}


def ours(study: dict[str, Any], output: FhirOutput) -> dict[str, Any]:
    """`study` tagged as created by this tool (so a later post may update it)."""
    meta = dict(study.get("meta") or {})
    meta["tag"] = [*(meta.get("tag") or []), output.ours_tag]
    return {**study, "meta": meta}


def is_ours(resource: dict[str, Any], output: FhirOutput) -> bool:
    tags = (resource.get("meta") or {}).get("tag") or []
    return any(isinstance(t, dict) and t.get("code") == OURS_TAG and t.get("system") == output.identifier_system
               for t in tags)


def existing_study(client: Any, trial: str, output: FhirOutput) -> tuple[str, bool] | None:
    """The server's ResearchStudy for `trial`: (reference, whether this tool created it), or None.

    Looked up as `ResearchStudy/<NCT id>`, then by NCT identifier (strict handling: a server
    that ignores the parameter would answer with every study)."""
    from connector.fhir.http import FhirRequestError

    try:
        found = client.read("ResearchStudy", trial)
        return f"ResearchStudy/{trial}", is_ours(found, output)
    except FhirRequestError as exc:
        if exc.status not in (404, 410):
            raise
    try:
        bundle = client.http.get_json("ResearchStudy", params=[("identifier", f"{NCT_IDENTIFIER_SYSTEM}|{trial}")],
                                      headers={"Prefer": "handling=strict"})
    except FhirRequestError as exc:
        log.info("ResearchStudy search by identifier refused (HTTP %d); only ResearchStudy/%s checked",
                 exc.status, trial)
        return None
    for entry in (bundle.get("entry") or []) if isinstance(bundle, dict) else []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") == "ResearchStudy" and resource.get("id"):
            return f"ResearchStudy/{resource['id']}", is_ours(resource, output)
    return None


def subjects_bundle(trial: str, study: dict[str, Any] | None, rows: Iterable[tuple[PatientResult, str]],
                    bundle_type: str = "collection", output: FhirOutput = FhirOutput(),
                    study_reference: str | None = None) -> dict[str, Any]:
    """A Bundle (collection, or transaction of PUTs) of the study (unless None: one already on the
    server, at `study_reference`) and one ResearchSubject per result; validated with
    fhir.resources.R4B so the server gets nothing malformed."""
    subjects = [research_subject(trial, result, as_of, output, study_reference) for result, as_of in rows]
    resources = ([ours(study, output)] if study is not None else []) + subjects
    entries = []
    for resource in resources:
        entry: dict[str, Any] = {"resource": resource}  # no fullUrl: ids are relative to the target server
        if bundle_type == "transaction":
            entry["request"] = {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}
        entries.append(entry)
    bundle = {"resourceType": "Bundle", "type": bundle_type, "entry": entries}
    Bundle.model_validate(bundle)
    return bundle
