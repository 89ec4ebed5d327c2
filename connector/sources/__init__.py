"""Where patients come from: local FHIR files or a FHIR server, behind one small interface.

Every source yields `(patient id, PatientFacts | ConnectorError)`: a patient whose data cannot
be read becomes that patient's error and the iteration goes on, so one bad patient never
sinks a run.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from connector.config import Config
from connector.errors import ConfigError, ConnectorError
from connector.facts import PatientFacts
from connector.needs import DataNeeds
from connector.sources.files import FileSource

FactsStream = Iterator[tuple[str, PatientFacts | ConnectorError]]


class PatientSource(Protocol):
    is_local: bool
    errors: list[str]

    def describe(self) -> str: ...

    def iter_facts(self, needs: DataNeeds, patient_ids: Iterable[str] | None = None) -> FactsStream: ...


class ServerSource:
    """A FHIR server read patient by patient through the REST client (narrow searches per patient)."""

    is_local = False

    def __init__(self, rest: Any, name: str):
        self.rest = rest  # connector.sources.fhir_rest.RestSource
        self.name = name
        self.errors: list[str] = []

    def describe(self) -> str:
        return f"FHIR server {self.name}"

    def iter_facts(self, needs: DataNeeds, patient_ids: Iterable[str] | None = None) -> FactsStream:
        from connector.scheduled.fetching import fetch_facts

        ids = patient_ids if patient_ids is not None else self.rest.patient_ids()
        for pid in ids:
            yield pid, fetch_facts(self.rest, pid, needs)  # one patient's failure, whatever it is, is its own


def open_source(arg: str, config: Config) -> PatientSource:
    """An existing path -> local files; a URL or configured server name -> that FHIR server."""
    if Path(arg).exists():
        return FileSource(Path(arg), config.max_resource_bytes)
    if arg in config.servers or arg.startswith(("http://", "https://")):
        from connector.fhir.client import FhirClient  # imported here: local runs need no HTTP stack
        from connector.sources.fhir_rest import RestSource

        server = config.server(arg)
        return ServerSource(RestSource(FhirClient(server)), server.name)
    raise ConfigError(f"source {arg!r} is neither an existing path nor a FHIR URL or configured server name")
