"""trial-connector: finds and explains clinical-trial pre-screen candidates from FHIR R4 data."""

__version__ = "0.1.0"
