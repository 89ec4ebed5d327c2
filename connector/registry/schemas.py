"""The two JSON Schemas a registry record passes: the API's Study schema (incoming JSON, from
the official OpenAPI description of ClinicalTrials.gov API v2, copied into
`schemas/ctgov/ctg-oas-v2.yaml`) and our own `schemas/trial.schema.json` (outgoing record).

Checking the incoming JSON first means a record mangled on the way (a mirror or tool that
unboxes one-element arrays, say) is rejected with the exact path instead of being half-read.

Speed: jsonschema-rs (compiled) answers "valid?" about 200 times faster than the pure-Python
jsonschema, which made validation 95% of a sync's CPU time; the Python validator is only run on
the rare invalid record, to describe what is wrong with JSON paths.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import jsonschema
import jsonschema_rs
import yaml

from connector.mapping.loader import json_path
from connector.resources import schema_path

MAX_ERRORS_SHOWN = 3


@lru_cache(maxsize=1)
def _study_schema() -> dict[str, Any]:
    """Draft 7 over the spec's `components`: OpenAPI 3.0 schema objects are a JSON Schema subset."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    spec = yaml.load(schema_path("ctgov/ctg-oas-v2.yaml").read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 - safe loader
    return {"$schema": "http://json-schema.org/draft-07/schema#", "$ref": "#/components/schemas/Study",
            "components": spec["components"]}


@lru_cache(maxsize=1)
def _trial_schema() -> dict[str, Any]:
    return json.loads(schema_path("trial.schema.json").read_text(encoding="utf-8"))


@lru_cache(maxsize=2)
def _validators(name: str) -> tuple[Any, jsonschema.protocols.Validator]:
    """(fast, describing) validators; formats are checked in our own schema only."""
    schema = _study_schema() if name == "study" else _trial_schema()
    formats = name == "trial"
    cls = jsonschema.validators.validator_for(schema)
    return (jsonschema_rs.validator_for(schema, validate_formats=formats),
            cls(schema, format_checker=cls.FORMAT_CHECKER if formats else None))


def study_errors(study: Any) -> list[str]:
    """Why `study` is not a valid API v2 Study, as `$.json.path: message` lines (empty when valid)."""
    return _errors("study", study)


def trial_record_errors(record: Any) -> list[str]:
    """Why a normalised record does not match schemas/trial.schema.json (empty when valid)."""
    return _errors("trial", record)


def _errors(name: str, instance: Any) -> list[str]:
    fast, described = _validators(name)
    if fast.is_valid(instance):
        return []
    errors = _describe(described, instance)
    if errors:
        return errors
    # The two validators disagree (regex dialects, say): report what the fast one found.
    return [f"{json_path(e.instance_path)}: {_short(e.message)}" for e in fast.iter_errors(instance)]


def summarise(errors: list[str]) -> str:
    """One line for the user: the first few problems and how many more."""
    shown = "; ".join(errors[:MAX_ERRORS_SHOWN])
    more = len(errors) - MAX_ERRORS_SHOWN
    return shown + (f" (and {more} more)" if more > 0 else "")


def _describe(validator: jsonschema.protocols.Validator, instance: Any) -> list[str]:
    errors = sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{error.json_path}: {_short(error.message)}" for error in errors]


def _short(message: str, limit: int = 160) -> str:
    return message if len(message) <= limit else message[: limit - 1] + "…"
