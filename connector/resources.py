"""Where the files shipped with trial-connector live: JSON Schemas, bundled mappings and the
registry records they were written from.

The repository's top-level `schemas/`, `mappings/` and `examples/ctgov/` folders are the source
of truth. A wheel ships them as the data packages `connector.schemas`, `connector.bundled_mappings`
and `connector.bundled_records` (pyproject.toml maps the folders), found with importlib.resources
as folders of the `connector` package (they have no `__init__.py`, and a namespace package's
`files()` is not a plain path); a source checkout, including `pip install -e .`, has no such
folders inside `connector/` and reads the repository's folders themselves.
"""

from __future__ import annotations

import importlib.resources
from functools import cache
from pathlib import Path

_SOURCE_ROOT = Path(__file__).resolve().parents[1]

# kind -> (folder inside the installed `connector` package, folder in the repository)
_LOCATIONS: dict[str, tuple[str, str]] = {
    "schemas": ("schemas", "schemas"),
    "mappings": ("bundled_mappings", "mappings"),
    "records": ("bundled_records", "examples/ctgov"),
}


@cache
def data_dir(kind: str) -> Path:
    """The folder of shipped files of one kind: `schemas`, `mappings` or `records`."""
    shipped, folder = _LOCATIONS[kind]
    installed = Path(str(importlib.resources.files("connector"))) / shipped
    return installed if installed.is_dir() else _SOURCE_ROOT / folder


def schema_path(name: str) -> Path:
    """A shipped schema file, e.g. `mapping.schema.json` or `ctgov/ctg-oas-v2.yaml`."""
    return data_dir("schemas") / name


def bundled_record(trial: str) -> Path | None:
    """The shipped ClinicalTrials.gov API v2 record of a trial, when one is bundled."""
    path = data_dir("records") / f"{trial}.json"
    return path if path.is_file() else None
