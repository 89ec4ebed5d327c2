"""A patient's ranked trials as a FHIR R4 `searchset` Bundle of ResearchStudy, the shape the HL7
CodeX trial-matching `$match` operation returns.

Each entry has `search.mode = match` and `search.score` (0..1, connector.portfolio.scoring), and
points at the per-criterion evidence with a documented complex extension on `entry.search`:

    https://trial-connector.example/fhir/StructureDefinition/criterion-result   (one per criterion)
        criterion  valueString     the mapping's criterion id
        outcome    valueCode       met | not_met | unknown
        reason     valueCode       e.g. value, no-record, no-data, stale, manual
        evidence   valueReference  (0..*) the resource behind the outcome, e.g. Observation/net01-hb
    https://trial-connector.example/fhir/StructureDefinition/match-explanation   valueString
        the one-line reason of the score (e.g. "not met: gepnet_diagnosis (no-record)")
    https://trial-connector.example/fhir/StructureDefinition/match-subject       valueReference
        the patient screened, as the source identifies it (Patient/ID)

The Bundle is validated with fhir.resources.R4B before it is returned.
"""

from __future__ import annotations

import uuid
from typing import Any

from connector.errors import ConnectorError
from connector.portfolio.screening import PortfolioScreen
from connector.results import PatientResult

BASE = "https://trial-connector.example/fhir/StructureDefinition/"
CRITERION_RESULT = BASE + "criterion-result"
MATCH_EXPLANATION = BASE + "match-explanation"
MATCH_SUBJECT = BASE + "match-subject"
_NAMESPACE = uuid.UUID("6f1c2a52-3d1e-4c55-9d7e-6b1f0c1e5a11")


def searchset_bundle(screen: PortfolioScreen) -> dict[str, Any]:
    """The searchset Bundle of one patient's portfolio screen (best match first)."""
    from fhir.resources.R4B.bundle import Bundle

    from connector.registry.fhir import research_study
    from connector.report.research_subjects import minimal_study

    if len(screen.patients) != 1:
        raise ConnectorError(f"--format fhir describes one patient's matches; {len(screen.patients)} were screened "
                             "(give one --patient)")
    [patient] = screen.patients
    studies = {t.trial: (research_study(t.record) if t.record else minimal_study(t.trial)) for t in screen.trials}
    entries = []
    for score in screen.ranking(patient):
        result = screen.results[score.trial][patient]
        search = {"mode": "match", "score": score.score,
                  "extension": [{"url": MATCH_SUBJECT, "valueReference": {"reference": patient}},
                                {"url": MATCH_EXPLANATION, "valueString": score.reason},
                                *criterion_extensions(result)]}
        entries.append({"fullUrl": f"urn:uuid:{uuid.uuid5(_NAMESPACE, score.trial)}",
                        "resource": studies[score.trial], "search": search})
    bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}
    try:
        Bundle.model_validate(bundle)
    except Exception as exc:  # pydantic ValidationError: name the patient's screen, not its data
        raise ConnectorError(f"cannot build a valid FHIR searchset Bundle: {type(exc).__name__}: {exc}") from None
    return bundle


def criterion_extensions(result: PatientResult) -> list[dict[str, Any]]:
    out = []
    for criterion in result.criteria:
        parts: list[dict[str, Any]] = [{"url": "criterion", "valueString": criterion.id},
                                       {"url": "outcome", "valueCode": criterion.outcome},
                                       {"url": "reason", "valueCode": criterion.reason}]
        parts += [{"url": "evidence", "valueReference": {"reference": ref}}
                  for ref in dict.fromkeys(e.reference for e in criterion.evidence)]
        out.append({"url": CRITERION_RESULT, "extension": parts})
    return out
