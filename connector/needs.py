"""What a trial's criteria need from a patient's record, so sources fetch no more than that.

The criteria engine computes a DataNeeds from a mapping; the FHIR client turns it into narrow
searches (`code=`, `date=ge`) and skips resource types nobody reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from connector.codes import canonical_system

ALL_TYPES = frozenset(
    {"Patient", "Observation", "Condition", "MedicationStatement", "MedicationRequest", "MedicationAdministration"}
)


@dataclass(frozen=True)
class DataNeeds:
    """resource_types: FHIR types to fetch (Patient always).
    observation_codes: (system, code) pairs; empty means every Observation.
    observations_since: earliest Observation date worth fetching; None means all history.
    """

    resource_types: frozenset[str] = ALL_TYPES
    observation_codes: frozenset[tuple[str, str]] = frozenset()
    observations_since: date | None = None

    def merge(self, other: "DataNeeds") -> "DataNeeds":
        """Needs of two trials screened in one run: the union of both."""
        codes = frozenset() if not self.observation_codes or not other.observation_codes else (
            self.observation_codes | other.observation_codes)
        since = None if self.observations_since is None or other.observations_since is None else min(
            self.observations_since, other.observations_since)
        return DataNeeds(self.resource_types | other.resource_types, codes, since)

    def reads(self, resource: dict[str, Any]) -> bool:
        """Whether a source fetching these needs keeps `resource`; Observations are narrowed by
        code like a REST search (`code=`), Medications are always kept (records point to them)."""
        rtype = resource.get("resourceType")
        if rtype == "Medication":
            return True
        if rtype not in self.resource_types:
            return False
        if rtype == "Observation" and self.observation_codes:
            code = resource.get("code")
            codings = code.get("coding") if isinstance(code, dict) else None
            return isinstance(codings, list) and any(
                isinstance(c, dict) and (canonical_system(c.get("system")), c.get("code")) in self.observation_codes
                for c in codings)
        return True


EVERYTHING = DataNeeds()
