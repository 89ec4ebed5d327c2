"""Mapping documents that passed validation, remembered by the hash of their file's bytes.

Parsing a mapping's YAML and validating it against the JSON Schema took ~0.4 s of a
one-patient screen, every run, for a file that rarely changes. A document that validated is
kept as JSON under the cache directory (connector.unit_cache.cache_dir); the next load of the
same bytes reads it back and skips YAML and schema validation (the model is still built, so
checks made while building, such as units, still run). JSON, not pickle: the cache holds
data only. The folder name carries a digest of the schema and of the loader, so a change to
either starts afresh; an unreadable or unwritable cache only costs the time it would save.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from connector.unit_cache import cache_dir

log = logging.getLogger(__name__)

_LOADER = Path(__file__).with_name("loader.py")


@lru_cache(maxsize=4)
def _folder(schema_path: Path) -> Path:
    rules = hashlib.sha256()
    for path in (schema_path, _LOADER):
        try:
            rules.update(path.read_bytes())
        except OSError:
            rules.update(b"?")
    return cache_dir() / f"mappings-{rules.hexdigest()[:16]}"


def _entry(text: str, schema_path: Path) -> Path:
    return _folder(schema_path) / f"{hashlib.sha256(text.encode('utf-8')).hexdigest()}.json"


def recall(text: str, schema_path: Path) -> Any | None:
    """The validated document of exactly this mapping text, if it was validated before."""
    try:
        return json.loads(_entry(text, schema_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def remember(text: str, schema_path: Path, document: Any) -> None:
    """Keep a document that validated; one JSON cannot represent (YAML dates...) is not kept."""
    try:
        encoded = json.dumps(document, ensure_ascii=False)
    except (TypeError, ValueError):
        return
    if json.loads(encoded) != document:
        return
    target = _entry(text, schema_path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=".mapping-")
    except OSError as exc:
        log.debug("validated mapping not cached (%s)", exc.__class__.__name__)
        return
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(encoded)
        os.replace(tmp, target)
    except OSError as exc:
        os.unlink(tmp)
        log.debug("validated mapping not cached (%s)", exc.__class__.__name__)
