"""The criteria hash: which registry text a mapping was written from.

Definition (shared with the registry sync): lowercase hex SHA-256 of the study's
`protocolSection.eligibilityModule.eligibilityCriteria` string exactly as the API returns it,
UTF-8 encoded. When the registry text changes, the hash changes and the mapping needs review.
"""

from __future__ import annotations

import hashlib
from typing import Any


def criteria_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def criteria_text_of(record: dict[str, Any]) -> str | None:
    """The eligibility criteria text of a CT.gov API v2 study record (None when absent)."""
    module = (record.get("protocolSection") or {}).get("eligibilityModule") or {}
    text = module.get("eligibilityCriteria")
    return text if isinstance(text, str) else None


def hash_mismatch_warning(mapping_hash: str, mapping_name: str, criteria_text: str, record_name: str) -> str | None:
    """A one-line warning when the mapping was written from other criteria text, else None."""
    current = criteria_hash(criteria_text)
    if current == mapping_hash:
        return None
    return (f"mapping {mapping_name} was written from other criteria text than {record_name} "
            f"(criteria_hash {mapping_hash[:12]}... vs current {current[:12]}...): review the mapping")
