"""Shared pytest fixtures: real FHIR servers (sekmet-fhir) started by the test session.

- `fhir_server`: no auth. `smart_fhir_server`: SMART Backend Services enforced, with two
  registered clients whose keys are in `server.client_keys`:
  `"connector"` (RS384) and `"connector-es384"` (ES384), both with scope `system/*.rs`.
  Get the connector's settings with `server.server_config(auth=server.smart_auth("connector", tmp_path))`.
- `fhir_server_factory(**kwargs)`: a fresh server of your own (e.g. `token_lifetime=2`, or to
  count what it holds), stopped at the end of the session.

The session servers are shared by every test: load data with ids unique to your test (a
prefix) and do not assume you know everything they hold. Mark tests that use them
`@pytest.mark.server`. Without sekmet-fhir installed they are skipped, saying why.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fhir_server import ClientKey, FhirTestServer, sekmet_available
from store_fixtures import store, store_url  # noqa: F401  (the store tests' fixtures, see store_fixtures.py)

# persisted caches (unit answers) of this session, never the user's ~/.cache; inherited by CLI subprocesses
os.environ.setdefault("TRIAL_CONNECTOR_CACHE_DIR", tempfile.mkdtemp(prefix="trial-connector-test-cache-"))

SKIP_REASON = "sekmet-fhir is not installed (pip install -e '.[test]'): real FHIR server tests skipped"


def _require_sekmet() -> None:
    if not sekmet_available():
        pytest.skip(SKIP_REASON)


@pytest.fixture(scope="session")
def fhir_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., FhirTestServer]]:
    """Start extra servers: `fhir_server_factory(smart_clients=[...], token_lifetime=2)`."""
    started: list[FhirTestServer] = []

    def make(**kwargs: Any) -> FhirTestServer:
        _require_sekmet()
        server = FhirTestServer(tmp_path_factory.mktemp("fhir-server"), **kwargs)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def fhir_server(fhir_server_factory: Callable[..., FhirTestServer]) -> FhirTestServer:
    """A FHIR R4 server without auth, on 127.0.0.1, for the whole session."""
    return fhir_server_factory()


@pytest.fixture(scope="session")
def smart_client_keys() -> dict[str, ClientKey]:
    """The SMART clients registered on `smart_fhir_server` (generated per session)."""
    return {"connector": ClientKey.generate("RS384", kid="connector-rs384"),
            "connector-es384": ClientKey.generate("ES384", kid="connector-es384")}


@pytest.fixture(scope="session")
def smart_fhir_server(fhir_server_factory: Callable[..., FhirTestServer],
                      smart_client_keys: dict[str, ClientKey]) -> FhirTestServer:
    """A FHIR R4 server enforcing SMART Backend Services (scopes checked, tokens last 300 s)."""
    server = fhir_server_factory(smart_clients=[key.registration(cid) for cid, key in smart_client_keys.items()])
    server.client_keys.update(smart_client_keys)
    return server
