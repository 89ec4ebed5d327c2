"""A FHIR server read through Bulk Data `$export`: the export is downloaded into a work dir
and handed to FileSource, which streams it (spilling to SQLite) so memory stays flat.

Incremental runs export with `_since`: the files then hold only what changed, not whole
records, so `touched_patient_ids` reads them for the ids to re-screen and the caller fetches
those patients' full records over REST.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from connector.errors import ConnectorError
from connector.facts import PatientFacts
from connector.fhir.bulk import BulkExportClient, ExportRequest, ExportResult, export_types, instant_z
from connector.needs import DataNeeds
from connector.parse import patient_id_of
from connector.sources.files import DEFAULT_MAX_RESOURCE_BYTES, FileSource, iter_resources
from connector.sources.problems import ProblemLog

log = logging.getLogger(__name__)


class BulkSource:
    """Patients of one FHIR server via `$export` (system, Patient or Group level)."""

    is_local = False

    def __init__(self, exporter: BulkExportClient, name: str, *, level: str = "patient",
                 group_id: str | None = None, since: str | None = None, type_filters: tuple[str, ...] = (),
                 max_resource_bytes: int = DEFAULT_MAX_RESOURCE_BYTES):
        self.exporter = exporter
        self.name = name
        self.level = "group" if group_id else level
        self.group_id = group_id
        self.since = instant_z(since) if since else None
        self.type_filters = type_filters
        self.max_resource_bytes = max_resource_bytes
        self.errors: Any = ProblemLog()
        self.result: ExportResult | None = None

    def describe(self) -> str:
        return f"FHIR server {self.name} (bulk export)"

    def request(self, needs: DataNeeds) -> ExportRequest:
        return ExportRequest(self.level, export_types(needs.resource_types), self.since, self.group_id,
                             self.type_filters)

    def export(self, needs: DataNeeds) -> Path:
        """Run (or finish) the export; the folder of NDJSON files it wrote."""
        if self.result is None:
            self.result = self.exporter.export(self.request(needs))
            for url in self.result.errors:
                self.errors.append(f"bulk export reported errors in {url}")
            log.info("bulk export: %d file(s) downloaded", len(self.result.files))
        return self.exporter.work_dir

    def touched_patient_ids(self, needs: DataNeeds) -> list[str]:
        """Ids of patients any exported resource belongs to, in first-seen order."""
        seen: dict[str, None] = {}

        def unreadable(pid: str, _message: str) -> None:  # a bad line naming a patient: that patient changed
            seen.setdefault(pid)

        for _, resource in iter_resources(self.export(needs), self.errors, unreadable, self.max_resource_bytes):
            pid = patient_id_of(resource)
            if pid is not None:
                seen.setdefault(pid)
        return list(seen)

    def iter_facts(self, needs: DataNeeds, patient_ids: Iterable[str] | None = None
                   ) -> Iterable[tuple[str, PatientFacts | ConnectorError]]:
        files = FileSource(self.export(needs), self.max_resource_bytes)
        files.errors = self.errors
        yield from files.iter_facts(needs, patient_ids)

    def cleanup(self) -> None:
        """Remove the downloaded files (PHI) once the run that used them has finished: only what
        the export wrote, and its folder when the export created it."""
        self.exporter.remove_files()
