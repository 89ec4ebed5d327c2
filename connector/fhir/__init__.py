"""FHIR R4 REST client: HTTP with retries (`http`), authentication (`auth`), what a server
supports (`capabilities`) and the searches that pull one patient's data (`client`).

Split this way so a later Bulk Data `$export` client can reuse `HttpClient` and the auth
without the search logic.
"""

from connector.fhir.client import FhirClient
from connector.fhir.http import FhirRequestError, HttpClient, HttpStats

__all__ = ["FhirClient", "FhirRequestError", "HttpClient", "HttpStats"]
