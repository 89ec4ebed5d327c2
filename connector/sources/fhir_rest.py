"""A FHIR server read over REST, patient by patient: the list of patient ids, then each
patient's raw resources through `FhirClient.patient_resources` (few, narrow searches).

Kept apart from `connector.sources` so local-file runs never import the HTTP stack.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any

from connector.fhir.client import FhirClient, Query
from connector.fhir.http import HttpStats
from connector.needs import EVERYTHING, DataNeeds


class RestSource:
    """Patient ids and per-patient resources from one FHIR server."""

    def __init__(self, client: FhirClient):
        self.client = client

    @property
    def stats(self) -> HttpStats:
        return self.client.stats

    def describe(self) -> str:
        return f"FHIR server {self.client.server.name}"

    def patient_ids(self, limit: int | None = None) -> Iterator[str]:
        """Every Patient id on the server (paged, ids only: `_elements=id`), or the first `limit`.

        Servers that reject `_elements` get the plain search.
        """
        seen: set[str] = set()
        query = Query("Patient", (
            (("_elements", "id"), ("_count", str(self.client.server.page_size))),
            (("_count", str(self.client.server.page_size)),),
        ))
        found = (resource["id"] for resource in self.client.search_broadening(query)
                 if resource.get("resourceType") == "Patient")
        ids = (pid for pid in found if pid not in seen and not seen.add(pid))  # a Patient updated mid-paging: once
        return islice(ids, limit) if limit is not None else ids

    def patient_resources(self, patient_id: str, needs: DataNeeds = EVERYTHING) -> list[dict[str, Any]]:
        """The patient's raw resources (see FhirClient.patient_resources)."""
        return self.client.patient_resources(patient_id, needs)

    def close(self) -> None:
        self.client.close()
